"""StarDist 2D on images larger than memory: block by block, labels written as they are done.

:func:`predict_instances_big` (also the method
:meth:`ij_bridge.stardist.StarDist2D.predict_instances_big`) segments a 2D
image of any size in bounded memory. The image is read block by block from
an array-like that slices lazily (a memory-mapped TIFF, ``np.memmap``, a zarr
or h5py array, or the path of an uncompressed TIFF / ``.npy``), and the label
image is written block by block into a memory-mapped TIFF (through a hidden
temporary sibling renamed into place) or into an array you pass.

How it works
------------
The image is cut into a grid of *cores* (``block_size``, a multiple of the
network's divisor) that tile it without overlap.

1. **Maps and candidates.** Each core is read with a *halo* around it (the
   network's receptive radius, rounded up to the divisor; the read region
   starts on the divisor's lattice), so the probability and distance maps in
   the core equal those of a whole-image prediction (same input values, same
   pooling lattice, same zero padding at the image border). The candidates
   of the core (grid positions above ``prob_thresh``) are kept in memory; the
   maps are dropped.
2. **NMS across block borders.** A core's non-maximum suppression runs on its
   own candidates plus those of its neighbours within ``margin`` pixels of
   it, in the whole-image order (decreasing probability, ties in raster
   order of the whole image); of the survivors the core keeps those whose
   centre lies in it. Each candidate belongs to exactly one core, so every
   object is decided once. A core's NMS runs as soon as its neighbours' maps
   are done; afterwards only the candidates near its edge are kept, and
   those go once its neighbours are decided, so that memory holds about two
   rows of blocks' candidates.
3. **Labels.** When all cores are decided, objects are numbered as
   :meth:`predict_instances` numbers them (``1..n`` by decreasing
   probability) and each core's labels are painted (in ascending
   probability, every object that reaches into the core, rasterised in
   whole-image coordinates) and written out.

With this, the objects are those of whole-image prediction, label for label,
unless a chain of suppressions (A suppresses B, which would have suppressed
C) reaches further than ``margin`` across a core border, or float rounding of
the network differs between a block and the whole image for a value at
``prob_thresh``; a warning says when objects are larger than ``margin / 2``
in radius (then pass a larger ``margin``). This differs from the original
StarDist's ``predict_instances_big``, which runs a full ``predict_instances``
on overlapping blocks and keeps, per block, the objects whose *label bounding
box* is its responsibility (objects must be smaller than ``min_overlap``, or
it fails): here the maps are computed once per pixel and NMS sees the
candidates on both sides of every border.

Normalisation
-------------
Percentiles are computed once, on a regular subsample of the whole image
(every ``s``-th row and column, ``s = ceil(sqrt(pixels / sample_pixels))``;
with the default ``sample_pixels`` of 16 million, ``s = 1`` up to 4000 x 4000,
i.e. exactly the whole-image percentiles, ``s = 3`` at 8192², ``s = 5`` at
20,000²), not per block; each block is normalised with them.

Memory
------
About: the network's working memory for one block with its halo (the
largest term; ``block_size`` is chosen from ``memory_limit`` when not given),
the candidates of about two rows of blocks (``4 * (n_rays + 4)`` bytes each),
the kept objects (``8 * n_rays + 24`` bytes each) and one core of labels. The
input and output memory maps are released after each block (their pages stay
in the page cache, not in this process). See ``docs/benchmarks.md`` for
measured peaks.
"""

from __future__ import annotations

import contextlib
import errno
import math
import mmap
import os
import time
import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import cancel
from ..progress import Progress

__all__ = ["predict_instances_big", "open_image", "BIG_THRESHOLD_PIXELS", "normalization_percentiles",
           "block_grid"]

#: Above this many pixels (``Y * X``) the CLI and batch runs use :func:`predict_instances_big`
#: (default; ``--big`` / ``--no-big`` force either way). 4096 x 4096: whole-image prediction
#: of a 4096² image with the bundled model peaks at a few GB.
BIG_THRESHOLD_PIXELS = 4096 * 4096

_DEFAULT_MEMORY = 2 ** 30  # bytes for one block's network pass (auto block_size)


# ----------------------------------------------------------------------------- input

class _Source:
    """A 2D(+C) image read by slices; releases memory-mapped pages after each read."""

    def __init__(self, image: Any, name: str = "image"):
        self.name = name
        self._owned = None
        if isinstance(image, (str, os.PathLike)):
            image = open_image(image)
            self._owned = image
        if not hasattr(image, "shape") or not hasattr(image, "__getitem__"):
            image = np.asarray(image)
        self.array = image
        self.shape = tuple(int(s) for s in image.shape)
        self.dtype = np.dtype(image.dtype)
        self._mmap = _find_mmap(image)

    def read(self, sl: tuple[slice, ...]) -> np.ndarray:
        out = np.array(self.array[sl], copy=True)
        self.release()
        return out

    def release(self) -> None:
        if self._mmap is not None:
            try:
                self._mmap.madvise(mmap.MADV_DONTNEED)
            except (OSError, ValueError, AttributeError):  # pragma: no cover - platform without madvise
                pass


def _find_mmap(a: Any):
    """The ``mmap.mmap`` under a numpy memmap (or a view of one), else None."""
    seen = 0
    while a is not None and seen < 8:
        m = getattr(a, "_mmap", None)
        if isinstance(m, mmap.mmap):
            return m
        a = getattr(a, "base", None)
        seen += 1
    return None


def open_image(path: str | os.PathLike) -> np.ndarray:
    """Open a large 2D image without reading it: a memory map of an uncompressed TIFF or ``.npy``.

    Raises
    ------
    ValueError
        The file cannot be memory-mapped (compressed, tiled or multi-file
        TIFF); the message says how to convert it.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    if p.suffix.lower() == ".npy":
        return np.load(p, mmap_mode="r")
    import tifffile

    try:
        return tifffile.memmap(p, mode="r")
    except ValueError as exc:
        raise ValueError(f"{p} cannot be memory-mapped ({exc}); save it as an uncompressed, "
                         "untiled TIFF (e.g. tifffile.imwrite(path, data, compression=None)) or pass "
                         "an array that reads slices lazily (zarr, h5py)") from None


def normalization_percentiles(src: Any, low: float, high: float, sample_pixels: int = 16_000_000,
                              channels: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """Percentiles of a regular subsample of a large image.

    Parameters
    ----------
    src : array-like or _Source
        ``(Y, X)`` or, with ``channels``, ``(Y, X, C)``.
    low, high : float
        Percentiles.
    sample_pixels : int
        At most about this many pixels (per channel) are used: every ``s``-th
        row and column with ``s = ceil(sqrt(Y * X / sample_pixels))``.

    Returns
    -------
    lo, hi : ndarray
        ``(C, 1, 1)`` float32, as :func:`~ij_bridge.stardist.model.normalize_percentiles`
        computes them (equal to it when ``s == 1``).
    s : int
        The stride.
    """
    src = src if isinstance(src, _Source) else _Source(src)
    h, w = src.shape[:2]
    s = max(1, int(math.ceil(math.sqrt(h * w / float(sample_pixels)))))
    rows = []
    step = max(1, (1 << 24) // max(1, w * src.dtype.itemsize)) * s  # ~16 MB of rows per read
    for r in range(0, h, step):
        cancel.check()
        rows.append(src.read((slice(r, min(h, r + step), s), slice(None, None, s))))
    sample = np.concatenate(rows, axis=0)
    if not channels:
        sample = sample[..., None]
    sample = np.moveaxis(sample, -1, 0).astype(np.float32, copy=False)
    lo, hi = np.percentile(sample, (low, high), axis=(1, 2), keepdims=True)
    return lo, hi, s


# ----------------------------------------------------------------------------- blocks

def block_grid(shape: Sequence[int], block_size: Sequence[int]) -> list[list[tuple[slice, slice]]]:
    """Cores that tile ``shape`` (Y, X): rows of ``(row slice, column slice)``."""
    h, w = shape
    by, bx = block_size
    return [[(slice(r, min(h, r + by)), slice(c, min(w, c + bx))) for c in range(0, w, bx)]
            for r in range(0, h, by)]


def _auto_block_size(model, limit: int, halo: Sequence[int], div: Sequence[int]) -> tuple[int, int]:
    """The largest square core whose network pass (with halo) fits ``limit`` bytes."""
    cfg = model.config
    nf = _n_filters(model)
    # measured: about 103 bytes per input pixel for 8 filters and 24 rays (fp32, eval); with margin
    bpp = 12.0 * nf + 2.0 * (cfg.n_rays + 1) + 16
    side = int(math.sqrt(limit / bpp))
    q = int(np.lcm.reduce([int(v) for v in div]))
    core = max(q * 8, (side - 2 * max(halo)) // q * q)
    core = min(core, 4096 // q * q)
    return core, core


def _n_filters(model) -> int:
    a = getattr(model.config, "original", None)
    if a:
        if a.get("backbone") == "unet":
            return int(a.get("unet_n_filter_base", 32))
        return int(a.get("resnet_n_filter_base", 32)) * 2
    return int(model.config.unet_n_filters)


# ----------------------------------------------------------------------------- output

def _create_output(path: Path, shape: tuple[int, int], dtype, tiff_kwargs=None) -> np.memmap:
    import tifffile

    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    kw = dict(tiff_kwargs or {})
    if kw.get("imagej") and nbytes >= 2 ** 32 - 2 ** 25:  # ImageJ's TIFFs stop at 4 GB
        kw.pop("imagej")
        kw.pop("metadata", None)
    if not kw.get("imagej"):
        kw.setdefault("photometric", "minisblack")
        kw.setdefault("bigtiff", nbytes > 2 ** 31)
    out = tifffile.memmap(path, shape=shape, dtype=dtype, **kw)
    preallocate(path)
    return out


def preallocate(path: str | os.PathLike) -> None:
    """Reserve the disk blocks of a (sparse) memory-mapped file now.

    A write through a memory map into a full disk is a SIGBUS that kills the
    process; reserved up front, a full disk is an ``OSError`` (ENOSPC) here,
    before any work, and the staged write cleans up.
    """
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):  # a file system without it
            return
        raise
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- main

def predict_instances_big(model, image: Any, output: str | os.PathLike | Any | None = None, *,
                          overwrite: bool = False, block_size: int | Sequence[int] | None = None,
                          margin: int | None = None, prob_thresh: float | None = None,
                          nms_thresh: float | None = None, normalize: bool = True,
                          percentiles: Sequence[float] | None = None, sample_pixels: int = 16_000_000,
                          memory_limit: int | None = None, labels_dtype: Any = np.int32,
                          tiff_kwargs: dict[str, Any] | None = None, precision: str = "float32",
                          progress: Progress | None = None,
                          show_progress: bool = False) -> tuple[Any, dict[str, Any]]:
    """Segment a 2D image of any size block by block, in bounded memory.

    Parameters
    ----------
    model : StarDist2D
        The model.
    image : array-like or path
        ``(Y, X)`` or ``(Y, X, C)``; anything that reads slices lazily (a
        ``np.memmap`` such as ``tifffile.memmap(path)``, a zarr or h5py
        array) or the path of an uncompressed TIFF or ``.npy`` file (opened
        as a memory map). It is never written.
    output : path or array-like, optional
        Where the int32 label image goes: a path (a TIFF, written through a
        hidden temporary sibling and renamed into place when complete; an
        existing file is replaced only with ``overwrite``), or an array of
        shape ``(Y, X)`` that accepts slice assignment. Default: a new
        in-memory array (only for images whose labels fit in memory).
    overwrite : bool
        Replace an existing ``output`` file.
    block_size : int or (int, int), optional
        Core size in pixels (rounded up to a multiple of the network's
        divisor). Default: the largest square whose network pass with halo
        fits ``memory_limit``, at most 4096.
    margin : int, optional
        How far (pixels) beyond its core a core's NMS looks at neighbouring
        candidates; default ``max(64, 8 * median object radius)`` estimated on
        the first block, at most the core size. Objects are those of
        whole-image prediction when suppression chains stay within it.
    prob_thresh, nms_thresh : float, optional
        Default: the model's thresholds.
    normalize : bool
        Percentile normalisation with percentiles of a subsample of the whole
        image (see the module notes); ``False`` for data already in [0, 1].
    percentiles : (float, float), optional
        Default ``config.percentiles``.
    sample_pixels : int
        Size of the normalisation subsample.
    memory_limit : int, optional
        Bytes for one block's network pass when choosing ``block_size``
        (default 1 GiB; then a model of 8 base filters gets cores of 2304,
        one of 32 filters cores of 1248).
    labels_dtype : dtype or "imagej"
        Type of the label image (default int32, as :meth:`predict_instances`);
        ``"imagej"``: 16-bit when the objects fit, else 32-bit float (ImageJ's
        types; chosen once all objects are known, before any label is written).
    tiff_kwargs : dict, optional
        Passed to ``tifffile.memmap`` for a path ``output`` (e.g. ``imagej``,
        ``resolution``, ``metadata``).
    precision : {"float32", "bfloat16"}
        Arithmetic of the network. ``"bfloat16"`` (a bfloat16 copy of the
        weights, activations in bfloat16; the maps are returned as float32)
        runs about twice as fast on CPUs with AVX512-BF16/AMX and GPUs, and
        changes the maps by about 1e-2, so a few objects near the thresholds
        change; the default keeps float32, whose objects equal
        :meth:`predict_instances`'.
    progress : callable, optional
        ``progress(done, total, message)``; ``cancel.check()`` runs per block
        (a cancelled run leaves no output file).
    show_progress : bool
        A tqdm bar.

    Returns
    -------
    labels : ndarray or np.memmap or the given array
        For a path ``output``: a read-only memory map of the written TIFF.
    details : dict
        As :meth:`~ij_bridge.stardist.StarDist2D.predict_instances`
        (``coord``, ``points``, ``prob``; object ``i`` has label ``i + 1``),
        plus ``block_size``, ``margin``, ``halo``, ``percentiles_stride``
        (the normalisation subsample's stride), ``n_blocks`` and ``seconds``
        (wall time of the network passes, the NMS and the label painting).
    """
    from ..model_files import staged
    from .geometry import dist_to_coord
    from .nms import non_maximum_suppression

    if model.config.ndim != 2:
        raise ValueError("predict_instances_big is for 2D models; predict a 3D stack with predict_instances")
    cfg = model.config
    prob_thresh = model.thresholds["prob"] if prob_thresh is None else float(prob_thresh)
    nms_thresh = model.thresholds["nms"] if nms_thresh is None else float(nms_thresh)
    if not 0 <= prob_thresh <= 1 or not 0 <= nms_thresh <= 1:
        raise ValueError(f"thresholds must lie in [0, 1], got prob={prob_thresh}, nms={nms_thresh}")
    src = _Source(image)
    nc = cfg.n_channels
    if len(src.shape) == 2 and nc == 1:
        channels = False
    elif len(src.shape) == 3 and src.shape[2] == nc:
        channels = True
    else:
        want = "(Y, X)" if nc == 1 else f"(Y, X, {nc})"
        raise ValueError(f"image has shape {src.shape}; this model takes {want} "
                         "(move the channel axis last)")
    if src.dtype == bool or not np.issubdtype(src.dtype, np.number) or np.issubdtype(src.dtype, np.complexfloating):
        raise ValueError(f"image must be real numbers, got dtype {src.dtype}")
    H, W = src.shape[:2]
    if H < 1 or W < 1:
        raise ValueError(f"image is empty: shape {src.shape}")
    div = tuple(int(v) for v in cfg.divisor)
    grid = tuple(int(v) for v in cfg.grid)
    halo = tuple(int(v) for v in model._halo())
    q = int(np.lcm.reduce(div))
    if block_size is None:
        block = _auto_block_size(model, int(memory_limit or _DEFAULT_MEMORY), halo, div)
    else:
        b = (int(block_size),) * 2 if np.isscalar(block_size) else tuple(int(v) for v in block_size)
        if len(b) != 2 or min(b) < 1:
            raise ValueError(f"block_size needs 1 or 2 positive values, got {block_size}")
        block = tuple(int(math.ceil(v / d) * d) for v, d in zip(b, div))
    if precision not in ("float32", "bfloat16"):
        raise ValueError(f"precision must be 'float32' or 'bfloat16', got {precision!r}")
    if precision == "bfloat16":
        import torch

        from ..device import warn_if_emulated

        warn_if_emulated(torch.bfloat16, model.device, "precision", "prediction", has_auto=False)
    if margin is not None and (int(margin) < 0 or int(margin) > min(block)):
        raise ValueError(f"margin={margin} must lie in [0, block size {min(block)}]; "
                         "pass a larger block_size or a smaller margin")

    # destination checked before any long work
    to_file = output is not None and isinstance(output, (str, os.PathLike))
    if to_file:
        from ..model_files import check_destination

        check_destination(output, overwrite=overwrite, kind="label image", folder=False)
    elif output is not None and tuple(output.shape) != (H, W):
        raise ValueError(f"output has shape {tuple(output.shape)}, need {(H, W)}")

    cores = block_grid((H, W), block)
    ni, nj = len(cores), len(cores[0])
    n_blocks = ni * nj
    total = 2 * n_blocks + 1
    bar = None
    if show_progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, desc="StarDist blocks", leave=False)

    def report(done, message):
        if bar is not None:
            bar.n = done
            bar.set_description(message)
            bar.refresh()
        if progress is not None:
            progress(done, total, message)

    try:
        with ExitStack() as stack:
            forward = stack.enter_context(_network(model, precision))
            if to_file:  # the file is created once the objects (and so the label type) are known
                tmp = stack.enter_context(staged(output, overwrite=overwrite))
                # ... but its room is reserved now: a full disk fails before the long work
                worst = 4 if isinstance(labels_dtype, str) else np.dtype(labels_dtype).itemsize
                with open(tmp, "wb") as fh:
                    fh.truncate(H * W * worst + 65536)
                preallocate(tmp)
            elif output is not None:
                out = output

            # -- normalisation: one set of percentiles for the whole image
            stride = 1
            if normalize:
                lo_p, hi_p = percentiles if percentiles is not None else cfg.percentiles
                lo, hi, stride = normalization_percentiles(src, lo_p, hi_p, sample_pixels, channels)
                scale = np.maximum(hi - lo, 1e-20)
            report(1, "normalisation")

            gh, gw = int(math.ceil(H / grid[0])), int(math.ceil(W / grid[1]))
            cand: dict[tuple[int, int], tuple] = {}  # candidates per core: points, prob, dist, key
            computed: set[tuple[int, int]] = set()
            decided: set[tuple[int, int]] = set()
            kept: list[tuple] = []
            state = {"margin": None if margin is None else int(margin), "done": 1}
            secs = {"network": 0.0, "nms": 0.0, "labels": 0.0}

            def neighbours(i, j):
                return [(a, b) for a in range(max(0, i - 1), min(ni, i + 2))
                        for b in range(max(0, j - 1), min(nj, j + 2))]

            def compute(i, j):
                rs, cs = cores[i][j]
                r0 = max(0, rs.start - halo[0]); r1 = min(H, rs.stop + halo[0])
                c0 = max(0, cs.start - halo[1]); c1 = min(W, cs.stop + halo[1])
                x = src.read((slice(r0, r1), slice(c0, c1)) + ((slice(None),) if channels else ()))
                x = x[..., None] if not channels else x
                x = np.moveaxis(x, -1, 0).astype(np.float32, copy=False)
                if normalize:
                    x = ((x - lo) / scale).astype(np.float32)
                ph = int(math.ceil((r1 - r0) / div[0]) * div[0]) - (r1 - r0)
                pw = int(math.ceil((c1 - c0) / div[1]) * div[1]) - (c1 - c0)
                if ph or pw:  # only at the image's end, as the whole-image prediction pads
                    x = np.pad(x, [(0, 0), (0, ph), (0, pw)], mode="reflect")
                t0 = time.perf_counter()
                o = forward(x)
                secs["network"] += time.perf_counter() - t0
                del x
                g0, g1 = (rs.start - r0) // grid[0], (cs.start - c0) // grid[1]
                n0 = int(math.ceil(rs.stop / grid[0])) - rs.start // grid[0]
                n1 = int(math.ceil(cs.stop / grid[1])) - cs.start // grid[1]
                prob = o[0, g0:g0 + n0, g1:g1 + n1]
                yy, xx = np.nonzero(prob > prob_thresh)
                p = prob[yy, xx].astype(np.float32)
                d = np.maximum(o[1:, g0 + yy, g1 + xx].T, 1e-3).astype(np.float32)
                del o, prob
                gy, gx = yy + rs.start // grid[0], xx + cs.start // grid[1]
                key = gy.astype(np.int64) * gw + gx
                pts = np.stack([gy * grid[0], gx * grid[1]], axis=1).astype(np.int64)
                cand[(i, j)] = (pts, p, d, key)
                computed.add((i, j))
                if state["margin"] is None:
                    state["margin"] = _estimate_margin(d, block)

            def decide(i, j):
                m = state["margin"]
                rs, cs = cores[i][j]
                parts = []
                for nb in neighbours(i, j):
                    pts, p, d, key = cand[nb]
                    if nb != (i, j):
                        sel = ((pts[:, 0] >= rs.start - m) & (pts[:, 0] < rs.stop + m)
                               & (pts[:, 1] >= cs.start - m) & (pts[:, 1] < cs.stop + m))
                        pts, p, d, key = pts[sel], p[sel], d[sel], key[sel]
                    parts.append((pts, p, d, key))
                pts = np.concatenate([t[0] for t in parts])
                p = np.concatenate([t[1] for t in parts])
                d = np.concatenate([t[2] for t in parts])
                key = np.concatenate([t[3] for t in parts])
                order = np.lexsort((key, -p))  # whole-image order: decreasing prob, then raster
                pts, p, d, key = pts[order], p[order], d[order], key[order]
                if len(p):
                    t0 = time.perf_counter()
                    coord = dist_to_coord(d, pts)
                    keep = non_maximum_suppression(coord, p, nms_thresh, centres=pts)
                    secs["nms"] += time.perf_counter() - t0
                    keep = np.sort(keep)
                    inside = ((pts[keep, 0] >= rs.start) & (pts[keep, 0] < rs.stop)
                              & (pts[keep, 1] >= cs.start) & (pts[keep, 1] < cs.stop))
                    keep = keep[inside]
                    kept.append((pts[keep], p[keep], d[keep], key[keep], coord[keep]))
                decided.add((i, j))
                # keep only the band a neighbour's NMS still needs; drop what nobody needs
                pts, p, d, key = cand[(i, j)]
                band = ~((pts[:, 0] >= rs.start + m) & (pts[:, 0] < rs.stop - m)
                         & (pts[:, 1] >= cs.start + m) & (pts[:, 1] < cs.stop - m))
                cand[(i, j)] = (pts[band], p[band], d[band], key[band])
                for nb in neighbours(i, j):
                    if nb in cand and all(x in decided for x in neighbours(*nb)):
                        del cand[nb]

            for i in range(ni):
                for j in range(nj):
                    cancel.check()
                    compute(i, j)
                    state["done"] += 1
                    for nb in neighbours(i, j):
                        if nb not in decided and all(x in computed for x in neighbours(*nb)):
                            cancel.check()
                            decide(*nb)
                    report(state["done"], "predicting blocks")
            for i in range(ni):  # (all are decided above; kept for safety)
                for j in range(nj):
                    if (i, j) not in decided:
                        decide(i, j)
            cand.clear()

            # -- number the objects as whole-image prediction does, then paint block by block
            if kept:
                pts = np.concatenate([t[0] for t in kept]); p = np.concatenate([t[1] for t in kept])
                d = np.concatenate([t[2] for t in kept]); key = np.concatenate([t[3] for t in kept])
                coord = np.concatenate([t[4] for t in kept])
            else:
                R = cfg.n_rays
                pts = np.zeros((0, 2), np.int64); p = np.zeros(0, np.float32)
                d = np.zeros((0, R), np.float32); key = np.zeros(0, np.int64)
                coord = np.zeros((0, 2, R), np.float32)
            kept.clear()
            order = np.lexsort((key, -p))
            pts, p, d, coord = pts[order], p[order], d[order], coord[order]
            m_used = state["margin"] or 0
            if len(d) and float(np.max(d)) * 2 > m_used and m_used < min(block):
                warnings.warn(f"objects up to {float(np.max(d)):.0f} px in radius against margin={m_used}: "
                              "near block borders objects may differ from whole-image prediction; "
                              "pass a larger margin", stacklevel=2)
            if isinstance(labels_dtype, str) and labels_dtype == "imagej":
                if len(p) > 2 ** 24:
                    raise ValueError(f"{len(p)} objects: more than a 32-bit ImageJ image holds exactly "
                                     "(2**24); segment the image in parts")
                ldt = np.dtype(np.uint16 if len(p) <= 65535 else np.float32)
            else:
                ldt = np.dtype(labels_dtype)
                if ldt.kind in "iu" and len(p) > np.iinfo(ldt).max:
                    raise ValueError(f"{len(p)} objects do not fit labels_dtype {ldt}")
            if to_file:
                out = _create_output(tmp, (H, W), ldt, tiff_kwargs)
            elif output is None:
                out = np.zeros((H, W), ldt)
            out_mmap = _find_mmap(out)
            lo_b = np.floor(coord.min(axis=2)).astype(np.int64) - 1  # (n, 2) bounding boxes
            hi_b = np.ceil(coord.max(axis=2)).astype(np.int64) + 1
            for i in range(ni):
                for j in range(nj):
                    cancel.check()
                    rs, cs = cores[i][j]
                    sel = np.flatnonzero((lo_b[:, 0] < rs.stop) & (hi_b[:, 0] >= rs.start)
                                         & (lo_b[:, 1] < cs.stop) & (hi_b[:, 1] >= cs.start))
                    t0 = time.perf_counter()
                    out[rs, cs] = _paint(coord, p, sel, (H, W), rs, cs).astype(ldt, copy=False)
                    secs["labels"] += time.perf_counter() - t0
                    state["done"] += 1
                    report(state["done"], "writing labels")
                if out_mmap is not None:
                    out.flush() if hasattr(out, "flush") else None
                    try:
                        out_mmap.madvise(mmap.MADV_DONTNEED)
                    except (OSError, ValueError, AttributeError):  # pragma: no cover
                        pass
            if to_file:
                out.flush()
                out_mmap = None
                del out
                out = None
        if to_file:
            import tifffile

            out = tifffile.memmap(output, mode="r")
    finally:
        if bar is not None:
            bar.close()
    details = {"coord": coord, "points": pts, "prob": p, "block_size": tuple(block), "margin": m_used,
               "halo": halo, "percentiles_stride": stride, "n_blocks": n_blocks,
               "seconds": {k: round(v, 3) for k, v in secs.items()}}
    return out, details


@contextlib.contextmanager
def _network(model, precision: str):
    """A forward function ``(C, Y, X) -> (1 + R, Y/g, X/g)`` float32 for the blocks.

    ReLUs run in place for the blocks' passes (the same values, one
    full-resolution map less of memory traffic; restored afterwards). With
    ``precision="bfloat16"`` a bfloat16 copy of the network runs.
    """
    import torch

    net = model.net
    relus = [m for m in net.modules() if isinstance(m, torch.nn.ReLU) and not m.inplace]
    for m in relus:
        m.inplace = True
    try:
        if precision == "float32":
            yield model._forward_padded
            return
        import copy

        half = copy.deepcopy(net).to(torch.bfloat16).eval()

        def fwd(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                t = model._tensor(x[None]).to(torch.bfloat16)
                prob, dist = half(t)
                out = torch.cat([torch.sigmoid(prob.float()), dist.float()], dim=1)[0]
            return out.cpu().numpy()

        yield fwd
    finally:
        for m in relus:
            m.inplace = False


def _estimate_margin(d: np.ndarray, block) -> int:
    """``max(64, 8 * median object radius)``, from the first block's candidates, at most the core."""
    r = float(np.median(d.mean(axis=1))) if len(d) else 0.0
    return int(min(min(block), max(64, math.ceil(8 * r))))


def _paint(coord: np.ndarray, prob: np.ndarray, sel: np.ndarray, shape, rs: slice, cs: slice) -> np.ndarray:
    """Labels of one core: objects ``sel`` (global order) painted in ascending probability."""
    from skimage.draw import polygon

    lbl = np.zeros((rs.stop - rs.start, cs.stop - cs.start), np.int32)
    if len(sel) == 0:
        return lbl
    for k in sel[np.argsort(prob[sel], kind="stable")]:
        rr, cc = polygon(coord[k, 0], coord[k, 1], shape)  # whole-image coordinates, as polygons_to_label
        inb = (rr >= rs.start) & (rr < rs.stop) & (cc >= cs.start) & (cc < cs.stop)
        lbl[rr[inb] - rs.start, cc[inb] - cs.start] = k + 1
    return lbl
