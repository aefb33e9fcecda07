"""Noise2Void prediction of stacks larger than memory, written plane by plane.

:func:`predict_big` denoises a stack read lazily (a memory-mapped TIFF,
``np.memmap``, a zarr or h5py array, or the path of an uncompressed TIFF /
``.npy``) and writes the float32 result plane by plane into a memory-mapped
TIFF (through a hidden temporary sibling renamed into place when complete)
or into an array you pass.

* A **2D model** denoises each plane of the leading axis (``T``, ``Z`` as
  slices, or ``S``) on its own, with :meth:`ij_bridge.n2v.N2V.predict`: the
  result is that of the whole-stack prediction, plane for plane (the
  normalisation is the model's, not per image).
* A **3D model** denoises slabs of ``slab`` planes along Z, each read with a
  halo of the network's receptive radius in Z (rounded up to the pooling
  divisor, the slab starting on the divisor's lattice), and writes the slab's
  core planes: equal to whole-stack prediction to float rounding.

Memory is one plane (2D) or one slab with its halo (3D) plus the network's
tiles (:meth:`~ij_bridge.n2v.N2V.predict` tiles a plane that does not fit);
the memory maps are released after each plane.
"""

from __future__ import annotations

import math
import os
from contextlib import ExitStack
from typing import Any, Sequence

import numpy as np

from .. import cancel
from ..progress import Progress

__all__ = ["predict_big", "BIG_THRESHOLD_BYTES"]

#: Above this many bytes of float32 result the CLI uses :func:`predict_big` (default;
#: ``--big`` / ``--no-big`` force either way): 2 GiB.
BIG_THRESHOLD_BYTES = 2 * 2 ** 30


def predict_big(model, image: Any, output: str | os.PathLike | Any | None = None, *, axes: str,
                overwrite: bool = False, tile_shape: int | Sequence[int] | None = None, tta: bool = False,
                slab: int | None = None, imagej: bool = True, progress: Progress | None = None,
                show_progress: bool = False, tiff_kwargs: dict[str, Any] | None = None) -> Any:
    """Denoise a stack plane by plane (2D model) or slab by slab (3D model).

    Parameters
    ----------
    model : N2V
        A trained model.
    image : array-like or path
        The stack; never written.
    output : path or array-like, optional
        A TIFF path (float32, written through a temporary sibling and renamed
        into place; an existing file is replaced only with ``overwrite``), or
        an array of the input's shape that accepts slice assignment. Default:
        a new in-memory array.
    axes : str
        Axes of ``image``: the leading axis is the one walked through (``T``,
        ``S`` or ``Z``), then ``[C]YX`` or ``YX[C]``; e.g. ``"TYX"``,
        ``"ZYX"``, ``"ZYXC"``, ``"YX"`` (a single plane). For a 3D model
        ``"ZYX"`` or ``"ZYXC"``/``"ZCYX"``.
    tile_shape, tta
        As :meth:`~ij_bridge.n2v.N2V.predict`, per plane / slab.
    slab : int, optional
        3D model: core planes per slab (default: 4 divisors' worth, at least 8).
    imagej : bool
        Write an ImageJ hyperstack TIFF (axes from ``axes``).
    tiff_kwargs : dict, optional
        For an ImageJ TIFF: keywords of ``tifffile`` that carry the calibration,
        e.g. :func:`ij_bridge.io.calibration_tiff_kwargs` of the input's
        :func:`~ij_bridge.io.read_calibration` (pixel size, units, z spacing,
        origins). Default: uncalibrated.
    progress : callable, optional
        ``progress(done, total, message)`` per plane / slab; ``cancel.check()``
        runs before each (a cancelled run leaves no output file).
    show_progress : bool
        A tqdm bar.

    Returns
    -------
    ndarray, np.memmap or the given array
        For a path ``output``: a read-only memory map of the written TIFF.
    """
    from ..model_files import check_destination, staged
    from ..stardist.big import _Source, _find_mmap, preallocate

    if not model.is_trained:
        raise RuntimeError("the model is not trained: call train() or N2V.load() first")
    src = _Source(image)
    ax = str(axes).upper()
    if len(ax) != len(src.shape) or len(set(ax)) != len(ax) or set(ax) - set("STCZYX"):
        raise ValueError(f"axes {axes!r} do not fit an image of shape {src.shape}; "
                         "name each axis with one of T, S, C, Z, Y, X (e.g. 'TYX', 'ZYX')")
    if not ("Y" in ax and "X" in ax):
        raise ValueError(f"axes {axes!r} need Y and X")
    nd = model.config.ndim
    lead = ax[0] if ax[0] in "STZ" else None
    rest = ax[1:] if lead else ax
    if nd == 3 and lead != "Z":
        raise ValueError(f"a 3D model needs axes starting with Z (e.g. 'ZYX'), got {axes!r}")
    if nd == 2 and "Z" in rest:
        raise ValueError(f"axes {axes!r}: a 2D model walks the first axis plane by plane; put Z first")
    if any(a in rest for a in "STZ"):
        raise ValueError(f"axes {axes!r}: only one axis besides C, Y, X (it must come first)")
    shape = src.shape
    to_file = output is not None and isinstance(output, (str, os.PathLike))
    if to_file:
        check_destination(output, overwrite=overwrite, kind="denoised image", folder=False)
    elif output is not None and tuple(output.shape) != shape:
        raise ValueError(f"output has shape {tuple(output.shape)}, need {shape}")
    n = shape[0] if lead else 1
    plane_axes = rest.replace("Z", "") if nd == 2 else rest

    if nd == 3:
        div_z = int(model.config.divisor[0])
        rz = int(model.config.receptive_radius[0])
        halo = int(math.ceil(rz / div_z) * div_z)
        core = int(slab) if slab is not None else max(8, 4 * div_z)
        core = int(math.ceil(core / div_z) * div_z)
        steps = [(z, min(n, z + core)) for z in range(0, n, core)]
    else:
        halo = 0
        steps = [(z, z + 1) for z in range(n)]
    bar = None
    if show_progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(steps), desc="N2V planes", leave=False)
    try:
        with ExitStack() as stack:
            if to_file:
                import tifffile

                tmp = stack.enter_context(staged(output, overwrite=overwrite))
                nbytes = int(np.prod(shape)) * 4
                kw: dict[str, Any] = {"bigtiff": nbytes > 2 ** 31}
                ij_axes = "".join({"S": "T"}.get(a, a) for a in ax)
                in_order = [a for a in "TZCYX" if a in ij_axes] == list(ij_axes)
                if imagej and in_order and nbytes < 2 ** 32 - 2 ** 25:  # ImageJ's own layout and limit
                    kw = dict(tiff_kwargs or {})
                    kw["imagej"] = True
                    kw["metadata"] = {**kw.get("metadata", {}), "axes": ij_axes}
                out = tifffile.memmap(tmp, shape=shape, dtype=np.float32, **kw)
                preallocate(tmp)  # a full disk: OSError now, not SIGBUS mid-write
            else:
                out = np.zeros(shape, np.float32) if output is None else output
            out_mm = _find_mmap(out)
            for k, (z0, z1) in enumerate(steps):
                cancel.check()
                if nd == 2:
                    x = src.read((z0,) if lead else (slice(None),))
                    y = model.predict(x, tile_shape=tile_shape, tta=tta, axes=plane_axes)
                    if lead:
                        out[z0] = y
                    else:
                        out[...] = y
                else:
                    r0, r1 = max(0, z0 - halo), min(n, z1 + halo)
                    x = src.read((slice(r0, r1),))
                    y = model.predict(x, tile_shape=tile_shape, tta=tta, axes=ax)
                    out[z0:z1] = y[z0 - r0:z1 - r0]
                del x, y
                if out_mm is not None:
                    out.flush()
                    try:
                        import mmap

                        out_mm.madvise(mmap.MADV_DONTNEED)
                    except (OSError, ValueError, AttributeError):  # pragma: no cover
                        pass
                if bar is not None:
                    bar.update(1)
                if progress is not None:
                    progress(k + 1, len(steps), "denoising planes")
            if to_file:
                out.flush()
                out_mm = None
                del out
        if to_file:
            import tifffile

            return tifffile.memmap(output, mode="r")
        return out
    finally:
        if bar is not None:
            bar.close()
