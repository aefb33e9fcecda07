"""StarDist use cases: segment an image, train on image/mask pairs, load a model.

One copy of what the command line (``ij-bridge stardist``) and the ImageJ
commands ("StarDist 2D/3D/Train (torch)") both do, on xarray images with
their calibration. Nothing here imports Java, argparse or ImageJ dialogs;
errors are :class:`ValueError` / :class:`FileNotFoundError` whose messages are
written for users (the front ends show them as they are).

* :func:`segment` runs a model over every plane of a stack or time series (2D
  model) or every volume of a time series (3D model) and returns a
  :class:`Segmentation`: the calibrated label image, the model's polygons
  (2D) or polyhedra (3D), the centres, the probabilities, the objects table,
  and the ROIs (:meth:`Segmentation.rois`: polygons in 2D, per-slice outlines in 3D).
* :func:`train_from_pairs` pairs images with their masks by file name, checks
  them, holds out a seeded validation split and trains.
* :func:`load_model` reads any model the package knows (ij-bridge folders and
  zips, bundled names, the original StarDist's folders/zips/bioimage.io
  packages, TF SavedModel zips, the StarDist Fiji plugin's model names) and
  keeps the last one in a cache.

Which object a label image shows where polygons overlap
--------------------------------------------------------
StarDist paints the polygons into the label image in order of increasing
probability, so where two polygons overlap the pixel belongs to the more
probable object. The ROIs are the model's polygons (as in the StarDist Fiji
plugin), so an ROI can be larger than its object's pixels in the label image
by the overlapped part. An object that keeps no pixel at all is dropped from
the label image, the ROIs and the table alike; the objects left are numbered
1..n in order of decreasing probability, and label ``k`` is row ``k`` of the
table and the ROI named ``label-000k`` (ROI property ``label: k``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .models import ModelCache, channels_of, file_stamp

__all__ = ["DEFAULT_MODEL", "DEFAULT_MODEL_3D", "Segmentation", "segment", "load_model", "train_from_pairs",
           "pair_files", "read_pair", "split_pairs", "labels_for_imagej", "clear_model_cache"]

#: The model used where none is named (bundled with the package).
DEFAULT_MODEL = "stardist_nuclei2d"

#: The 3D model used where none is named (bundled with the package: ``models/stardist_nuclei3d``).
DEFAULT_MODEL_3D = "stardist_nuclei3d"

#: Percentiles of the input normalisation where none are given.
DEFAULT_PERCENTILES = (1.0, 99.8)

TIFF_SUFFIXES = (".tif", ".tiff")
SPATIAL = {2: ("y", "x"), 3: ("z", "y", "x")}
_PER_OBJECT = ("coord", "dist", "points", "prob")

from ..progress import Progress  # noqa: E402  (the one shared type)
Log = Callable[[str], None]

_CACHE = ModelCache()


# ------------------------------------------------------------------------------ label images

def labels_for_imagej(labels: np.ndarray) -> np.ndarray:
    """``labels`` in the type ImageJ shows them in: 16-bit when they fit, else 32-bit float.

    ImageJ has no 32-bit integer image; a float holds integers exactly up to 2**24.

    Examples
    --------
    >>> labels_for_imagej(np.array([[0, 3]])).dtype
    dtype('uint16')
    >>> labels_for_imagej(np.array([[0, 70000]])).dtype
    dtype('float32')
    """
    labels = np.asarray(labels)
    top = int(labels.max()) if labels.size else 0
    if top <= 65535:
        return labels.astype(np.uint16, copy=False)
    if top <= 2**24:
        return labels.astype(np.float32)
    raise ValueError(f"{top} objects: more than a 32-bit ImageJ image holds exactly (2**24); "
                     "segment the image in parts")


# ---------------------------------------------------------------------------------- results

@dataclass
class Segmentation:
    """What :func:`segment` found.

    Attributes
    ----------
    labels : xarray.DataArray
        The label image (0 = background, 1..n per plane), dims ``loop_dims`` +
        the model's spatial dims, with the input's coordinates, units and
        calibration; 16-bit, or 32-bit float beyond 65535 objects (ImageJ's
        types, see :func:`labels_for_imagej`).
    loop_dims : tuple of str
        The dims segmented one plane (2D model) or volume (3D model) at a time.
    planes : list of tuple of int
        The 0-based index along ``loop_dims`` of each plane, in order.
    points, probabilities : list of ndarray
        Per plane: the objects' centres (n, ndim) in pixels (row, col[, ...])
        and their probabilities (n,); object ``i`` has label ``i + 1``.
    polygons : list of ndarray or None
        2D: per plane the polygons' vertices (n, 2, n_rays) as (row, col)
        pixel coordinates; None for a 3D model.
    polyhedra : list of dict or None
        3D: per volume ``dist`` (n, n_rays), ``rays_vertices`` and
        ``rays_faces``; None for a 2D model.
    table : pandas.DataFrame
        One row per object: the 1-based plane along each loop dim, ``label``,
        ``probability``, ``center_<dim>_px``; a single plane also has the
        measurements of :func:`ij_bridge.measure.regionprops_table`.
    thresholds : dict
        The thresholds used, ``{"prob": p, "nms": n}``.
    """

    labels: Any
    loop_dims: tuple[str, ...]
    planes: list[tuple[int, ...]]
    points: list[np.ndarray]
    probabilities: list[np.ndarray]
    polygons: list[np.ndarray] | None
    polyhedra: list[dict] | None
    table: Any
    thresholds: dict = field(default_factory=dict)

    @property
    def counts(self) -> list[int]:
        """Objects per plane."""
        return [len(p) for p in self.probabilities]

    @property
    def n_objects(self) -> int:
        """Objects in all planes."""
        return int(sum(self.counts))

    def rois(self, position: str | None = "auto") -> list:
        """The objects as ImageJ ROIs (:class:`roifile.ImagejRoi`).

        2D model: the model's polygons, as the StarDist Fiji plugin makes them;
        vertices are the polygon's (x, y) with pixel centres at +0.5, as ImageJ
        draws them. 3D model: one ROI per object and z slice, the exact pixel
        outline of the object's voxels in that slice of the label image
        (:func:`ij_bridge.outlines.outline_rois`: a traced polygon, or a
        composite ROI where the object is in several pieces or has holes in
        the slice), so that ImageJ's by-slice tools (ROI Manager Measure,
        Interpolate ROIs, ...) see exactly the label stack's objects.

        Each ROI is named ``label-0007`` (stacks add the 1-based plane, ``-z003``,
        ``-t002``, ``-t002-z003``) and has the ROI property ``label`` (``7``).

        Parameters
        ----------
        position : {"auto", "stack", "hyperstack"} or None
            Stacks: ``"stack"`` gives each ROI its 1-based plane number
            (t-major, then z); ``"hyperstack"`` its z and t positions
            (``Roi.setPosition(0, z, t)``: all channels, 0 for a missing axis);
            ``"auto"``: 2D model ``"stack"`` for one loop dim, ``"hyperstack"``
            for two; 3D model always ``"hyperstack"``. A single plane's ROIs are
            never positioned.
        """
        import roifile

        if self.polygons is None:
            from ..outlines import outline_rois

            return outline_rois(self.labels, position="hyperstack" if position == "auto" else position)
        if not self.loop_dims:
            position = None
        elif position == "auto":
            position = "stack" if len(self.loop_dims) == 1 else "hyperstack"
        if position not in (None, "stack", "hyperstack"):
            raise ValueError(f"position must be 'auto', 'stack', 'hyperstack' or None, got {position!r}")
        top = max((len(p) for p in self.probabilities), default=0)
        digits = max(4, len(str(top)))
        shape = dict(zip(self.labels.dims, self.labels.shape))
        widths = {d: max(3, len(str(shape[d]))) for d in self.loop_dims}
        rois = []
        for k, (idx, polys) in enumerate(zip(self.planes, self.polygons)):
            where = {d: i + 1 for d, i in zip(self.loop_dims, idx)}
            suffix = "".join(f"-{d}{where[d]:0{widths[d]}d}" for d in self.loop_dims)
            for j, poly in enumerate(polys):
                lab = j + 1
                xy = np.stack([poly[1] + 0.5, poly[0] + 0.5], axis=1).astype(np.float32)
                roi = roifile.ImagejRoi.frompoints(xy)
                roi.roitype = roifile.ROI_TYPE.POLYGON
                roi.name = f"label-{lab:0{digits}d}{suffix}"
                roi.props = f"label: {lab}\n"
                if position == "stack":
                    roi.position = k + 1
                elif position == "hyperstack":
                    roi.c_position = 0
                    roi.z_position = where.get("z", 0)
                    roi.t_position = where.get("t", 0)
                rois.append(roi)
        return rois


# ----------------------------------------------------------------------------------- inputs

def _as_image(image: Any, axes: str | Sequence[str] | None, ndim: int, what: str):
    """A DataArray with lower-case dims; RGB samples (``s``) become channels (``c``)."""
    import xarray as xr

    if isinstance(image, xr.DataArray):
        da = image
        if axes is not None:
            names = _axes(axes, da.ndim, what)
            da = da.rename(dict(zip(da.dims, names)))
    else:
        arr = np.asarray(image)
        if axes is None:
            if arr.ndim != ndim:
                raise ValueError(f"{what} has {arr.ndim} axes; give axes= (e.g. 'TYX', 'YXC', "
                                 f"'ZYX') for a {ndim}D model")
            axes = SPATIAL[ndim]
        da = xr.DataArray(arr, dims=_axes(axes, arr.ndim, what))
    da = da.rename({d: str(d).lower() for d in da.dims if str(d) != str(d).lower()})
    if "s" in da.dims:  # RGB: its samples are the model's channels (never planes to loop over)
        if "c" in da.dims:
            raise ValueError(f"{what} has both channels and RGB samples; convert it to one of them")
        da = da.rename(s="c")
    if "c" in da.coords:
        da = da.drop_vars("c")
    return da


def _axes(axes: str | Sequence[str], n: int, what: str) -> tuple[str, ...]:
    names = tuple(str(a).lower() for a in axes)
    if len(names) != n or len(set(names)) != n:
        raise ValueError(f"axes={''.join(names)!r} does not name the {n} axes of {what} once each")
    return names


def _check_channels(da, n_channels: int, what: str) -> None:
    has = int(da.sizes["c"]) if "c" in da.dims else 1
    if has == n_channels:
        return
    if n_channels == 1:
        raise ValueError(f"{what} has {has} channels but the model takes one (RGB counts as 3): "
                         "select the channel to segment (or a grey version of an RGB image) first, "
                         "or use a model trained on as many channels")
    raise ValueError(f"the model takes {n_channels} channels but {what} has {has}")


def _check_percentiles(normalize: bool, percentiles: Sequence[float]) -> tuple[float, float]:
    try:
        low, high = (float(p) for p in percentiles)
    except (TypeError, ValueError):
        raise ValueError(f"percentiles must be two numbers (low, high), got {percentiles!r}") from None
    if normalize and not 0 <= low < high <= 100:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got low={low:g} high={high:g}")
    return low, high


# ---------------------------------------------------------------------------------- segment

def _use_big(model, plane, big: bool | None, n_tiles) -> bool:
    """Whether a 2D plane goes :func:`ij_bridge.stardist.big.predict_instances_big`'s way."""
    if big is False or int(model.ndim) != 2 or not hasattr(model, "predict_instances_big"):
        return False
    if big:
        return True
    from ..stardist.big import BIG_THRESHOLD_PIXELS

    return n_tiles is None and int(plane.sizes["y"]) * int(plane.sizes["x"]) > BIG_THRESHOLD_PIXELS


def segment(image: Any, model: Any, *, prob_thresh: float | None = None,
            nms_thresh: float | None = None, normalize: bool = True,
            percentiles: Sequence[float] = DEFAULT_PERCENTILES,
            n_tiles: Sequence[int] | int | None = None, axes: str | Sequence[str] | None = None,
            exclude_border: int = 0, progress: Progress | None = None,
            show_progress: bool = False, name: str | None = None,
            log: Log | None = None, big: bool | None = None) -> Segmentation:
    """Segment every plane (2D model) or volume (3D model) of ``image``.

    Parameters
    ----------
    image : xarray.DataArray or array_like
        A DataArray is read by its dim names (``t``, ``z``, ``c``, ``y``, ``x``;
        ``s``, RGB samples, are channels). A 2D model segments ``y, x`` planes
        and loops over every other dim but ``c`` (``z`` slices, ``t`` frames);
        a 3D model segments ``z, y, x`` volumes and loops over the rest.
    model : InstanceModel
        E.g. from :func:`load_model`.
    prob_thresh, nms_thresh : float, optional
        Default: the model's thresholds.
    normalize : bool
        Percentile-normalise each plane's channels (off for data already in [0, 1]).
    percentiles : (float, float)
        Low and high percentile of the normalisation.
    n_tiles : int or tuple of int, optional
        Tiles per spatial axis; default: automatic.
    axes : str, optional
        The axes of a numpy ``image`` (e.g. ``"TYX"``), or new names for a DataArray's dims.
    exclude_border : int
        Drop objects whose centre lies closer than this many pixels to the
        image's y/x edges (the Fiji plugin's ``excludeBoundary``; in 3D the
        lateral edges only, never the first and last slice); 0 keeps all.
    progress : callable, optional
        ``progress(done, total, message)`` over all planes.
    show_progress : bool
        A progress bar in the terminal for a single plane.
    name : str, optional
        How messages name the image (default: its title, else "the image").
    log : callable, optional
        Gets the notes and warnings below, one line each (``"warning: ..."``
        for warnings); without it the warnings are :class:`UserWarning` s and
        the notes are not given.
    big : bool, optional
        2D model: predict each plane block by block in bounded memory
        (:func:`ij_bridge.stardist.big.predict_instances_big`: the same
        objects; percentiles from a subsample above 4000² pixels). Default
        None: for planes above :data:`~ij_bridge.stardist.big.BIG_THRESHOLD_PIXELS`
        (4096²) when ``n_tiles`` is not given; True / False force it.

    Returns
    -------
    Segmentation

    Raises
    ------
    ValueError
        Missing spatial dims (a 3D model on an image without z slices), a
        channel count the model does not take, bad thresholds or percentiles;
        the message names the fix. All checks come before any prediction.

    Notes
    -----
    * A 2D model on a z-stack segments each slice on its own (a note says so:
      objects are not joined across slices; a 3D model segments volumes).
    * A 3D model on a stack without z calibration (z unit "pixel") warns that
      volumes and z positions come out in voxels.
    * A stack with fewer slices than the network's z divisor (grid × pooling)
      is padded in z (mirrored) for the network; the labels keep the stack's
      slices (a note says so). Other sizes are padded to the next multiple, as
      in every axis.
    """
    import pandas as pd
    import xarray as xr

    nd = int(model.ndim)
    spatial = list(SPATIAL[nd])
    what = name or (f"{image.attrs['title']!r}" if isinstance(image, xr.DataArray)
                    and image.attrs.get("title") else "the image")
    da = _as_image(image, axes, nd, what)
    dims = [str(d) for d in da.dims]
    if nd == 3 and "z" not in dims:
        raise ValueError(f"{what} is not a z-stack; a 3D model needs slices (segment 2D images "
                         "with a 2D model)")
    missing = [d for d in spatial if d not in dims]
    if missing:
        raise ValueError(f"{what}: dims {tuple(dims)} lack {missing} for a {nd}D model")
    _check_channels(da, channels_of(model), what)
    for line in _input_notes(da, model, what):
        if line.startswith("warning: ") and log is None:
            import warnings

            warnings.warn(line[len("warning: "):], UserWarning, stacklevel=2)
        elif log is not None:
            log(line)
    low, high = _check_percentiles(normalize, percentiles)
    used = {"prob": model.thresholds["prob"] if prob_thresh is None else float(prob_thresh),
            "nms": model.thresholds["nms"] if nms_thresh is None else float(nms_thresh)}
    for key, v in used.items():
        if not 0 <= v <= 1 or v != v:
            raise ValueError(f"the {'probability' if key == 'prob' else 'overlap (NMS)'} threshold "
                             f"must lie between 0 and 1, got {v:g}")
    if exclude_border < 0:
        raise ValueError(f"exclude_border must be >= 0 pixels, got {exclude_border}")
    loop = [d for d in dims if d not in spatial + ["c"]]
    loop_shape = [int(da.sizes[d]) for d in loop]
    planes = list(np.ndindex(*loop_shape)) if loop else [()]
    n = len(planes)
    labels = np.zeros(loop_shape + [int(da.sizes[d]) for d in spatial], np.int32)
    points, probs, polygons, polyhedra, rows = [], [], [], [], []
    for k, idx in enumerate(planes):
        plane = da.isel(dict(zip(loop, idx))) if loop else da
        plane = plane.transpose(*spatial, *(["c"] if "c" in plane.dims else []))
        tag = ", ".join(f"{d} {i + 1}/{s}" for d, i, s in zip(loop, idx, loop_shape))

        def sub(done, total, message, k=k, tag=tag):
            if progress is not None:
                progress(k * 1000 + int(1000 * done / max(total, 1)), n * 1000,
                         f"{tag}: {message}" if tag else message)

        if _use_big(model, plane, big, n_tiles):  # issue 14.3: maps and NMS block by block
            lbl, det = model.predict_instances_big(
                np.asarray(plane.values), None, prob_thresh=used["prob"], nms_thresh=used["nms"],
                normalize=normalize, percentiles=(low, high), progress=sub,
                show_progress=show_progress and n == 1)
        else:
            lbl, det = model.predict_instances(
                plane, prob_thresh=used["prob"], nms_thresh=used["nms"], n_tiles=n_tiles,
                normalize=normalize, percentiles=(low, high), progress=sub,
                show_progress=show_progress and n == 1)
        lbl, det = _kept_objects(np.asarray(lbl), det, nd, exclude_border)
        labels[idx] = lbl
        points.append(np.asarray(det["points"]))
        probs.append(np.asarray(det["prob"], dtype=float))
        if nd == 2:
            polygons.append(np.asarray(det["coord"]))
        else:
            polyhedra.append({k2: det[k2] for k2 in ("dist", "rays_vertices", "rays_faces") if k2 in det})
        for j in range(len(probs[-1])):
            row: dict[str, Any] = {d: i + 1 for d, i in zip(loop, idx)}
            row.update({"label": j + 1, "probability": float(probs[-1][j])})
            row.update({f"center_{a}_px": int(v) for a, v in zip(spatial, points[-1][j])})
            rows.append(row)
    coords = {d: da.coords[d] for d in loop + spatial if d in da.coords}
    attrs = {k: v for k, v in da.attrs.items() if k in ("units", "calibration", "title")}
    out = xr.DataArray(labels_for_imagej(labels), dims=loop + spatial, coords=coords, attrs=attrs)
    table = pd.DataFrame(rows, columns=loop + ["label", "probability"]
                         + [f"center_{a}_px" for a in spatial])
    if not loop and len(table):
        from ..measure import regionprops_table

        meas = regionprops_table(out.copy(data=labels))
        table = table.merge(meas, on="label", how="left")
    return Segmentation(labels=out, loop_dims=tuple(loop), planes=[tuple(i) for i in planes],
                        points=points, probabilities=probs,
                        polygons=polygons if nd == 2 else None,
                        polyhedra=polyhedra if nd == 3 else None, table=table, thresholds=used)


def _z_calibrated(da) -> bool:
    """True when the DataArray's z axis has a physical unit (not ImageJ's "pixel")."""
    from ..layout import canonical_unit

    units = da.attrs.get("units") or {}
    unit = units.get("z", units.get("x")) if "z" in da.coords else None
    return canonical_unit(unit) != "pixel"


def _input_notes(da, model, what: str) -> list[str]:
    """Lines about how the image will be segmented (``"warning: "`` first for warnings)."""
    lines = []
    nz = int(da.sizes["z"]) if "z" in da.dims else 1
    if model.ndim == 2 and nz > 1:
        lines.append(f"note: the 2D model segments each of the {nz} z slices of {what} on its own "
                     "(objects are not joined across slices); segment z-stacks as volumes with a "
                     "3D model")
    if model.ndim == 3:
        if not _z_calibrated(da):
            lines.append(f"warning: {what} has no z calibration (voxel depth in pixels): volumes and "
                         "z positions come out in voxels; set the voxel size (in ImageJ: Image > "
                         "Properties...) or save the stack with its z spacing")
        div = int(model.config.divisor[0])
        if nz < div:
            lines.append(f"note: {what} has {nz} slice(s), fewer than the model's z divisor {div}: "
                         f"padded (mirrored) to {div} slices for the network; the labels keep {nz}")
    return lines


def _kept_objects(lbl: np.ndarray, det: dict, ndim: int, border: int) -> tuple[np.ndarray, dict]:
    """Drop objects with no pixel in ``lbl`` (and those centred within ``border`` of the image's
    y/x edges); number the others 1..n in their order."""
    n = len(det["prob"])
    present = np.zeros(max(n, int(lbl.max(initial=0))) + 1, bool)
    present[np.unique(lbl)] = True
    keep = present[1:n + 1].copy()
    if border > 0 and n:
        h, w = lbl.shape[-2:]
        pts = np.asarray(det["points"]).reshape(-1, ndim)[:, -2:]
        keep &= ((pts[:, 0] >= border) & (pts[:, 0] < h - border)
                 & (pts[:, 1] >= border) & (pts[:, 1] < w - border))
    if keep.all():
        return lbl, det
    lut = np.zeros(present.size, np.int32)
    kept = np.flatnonzero(keep) + 1
    lut[kept] = np.arange(1, len(kept) + 1, dtype=np.int32)
    det = dict(det)
    for key in _PER_OBJECT:
        if key in det:
            det[key] = np.asarray(det[key])[keep]
    return lut[lbl], det


# -------------------------------------------------------------------------------- load_model

def clear_model_cache() -> None:
    """Forget the cached model (the next :func:`load_model` reads its files again)."""
    _CACHE.clear()


def load_model(spec: str | Path | None = None, ndim: int | None = None, *,
               fiji: str | Path | None = None, device: Any = None, log: Log | None = None,
               stand_in: bool = True, what: str | None = None):
    """A StarDist model, cached per file version (one model is kept).

    Parameters
    ----------
    spec : str or Path, optional
        A bundled name (default :data:`DEFAULT_MODEL`; with ``ndim=3``
        :data:`DEFAULT_MODEL_3D`), a folder or
        ``.zip`` saved by ij-bridge, the original StarDist's folder, zip or
        bioimage.io package, a TF SavedModel zip (the Fiji plugin's format), or
        one of the StarDist Fiji plugin's model names (``Versatile
        (fluorescent nuclei)``, ...), looked up in ``fiji``, ``$IJ_BRIDGE_FIJI``
        or ``$IJ_BRIDGE_MODELS``.
    ndim : {2, 3}, optional
        The dimensionality the caller needs; a model of the other is an error.
    fiji : str or Path, optional
        Fiji.app or a folder of models, for the plugin's model names.
    device : str, optional
        cpu, cuda, ...; default: cuda if available.
    log : callable, optional
        Gets a line saying which model runs when a Fiji name was given.
    stand_in : bool
        A plugin model name that is not found runs the bundled model for
        ``Versatile (fluorescent nuclei)`` (``log`` says so and that results
        differ); False makes that an error too.
    what : str, optional
        How messages name the model (e.g. ``"model=[x]"`` or ``"--model x"``).

    Raises
    ------
    FileNotFoundError
        No such model (never a silent fallback to the bundled one).
    ValueError
        The files are not a model, or it has the other dimensionality.
    """
    from ..stardist.fiji_models import is_fiji_model_name
    from ..stardist.model import bundled_models

    spec = str(spec if spec is not None else "").strip()
    if not spec:
        if ndim == 3 and DEFAULT_MODEL_3D not in bundled_models():
            raise ValueError(f"a 3D model is needed and this installation has no bundled one "
                             f"({DEFAULT_MODEL_3D} is missing): give the folder or .zip of a model "
                             "trained on z-stacks")
        spec = DEFAULT_MODEL_3D if ndim == 3 else DEFAULT_MODEL
    what = what or f"model {spec!r}"
    p = Path(spec).expanduser()
    if not p.exists() and is_fiji_model_name(spec):
        if ndim == 3:
            raise ValueError(f"{what} is a 2D model of the StarDist Fiji plugin; a 3D model is needed")
        model = _load_fiji(spec, fiji, device, log, stand_in, what)
    else:
        dev = None if device is None else str(device)
        if p.exists():
            key: tuple = ("path", str(p.resolve()), file_stamp(p), dev)
        elif spec in bundled_models() or "!/" in spec:
            key = ("name", spec, None, dev)
        else:
            names = bundled_models()
            hint = f", or a bundled model ({', '.join(names)})" if names else ""
            raise FileNotFoundError(f"StarDist model not found: {spec} ({what} does not exist); give "
                                    "the folder or .zip of a StarDist model (ij-bridge's, the original "
                                    f"StarDist's or a bioimage.io package){hint}")
        model = _CACHE.get(key, lambda: _read_model(str(p) if p.exists() else spec, device, what))
    if ndim is not None and model.ndim != ndim:
        other = "z-stacks with a 3D model" if model.ndim == 3 else "2D images (or each slice) with it"
        raise ValueError(f"{what} is a {model.ndim}D model; a {ndim}D model is needed here: segment "
                         f"{other}" + (f", or give a 2D model ({DEFAULT_MODEL} is bundled)"
                                       if ndim == 2 else ", or train a 3D model on z-stacks"))
    return model


def _read_model(spec: str, device: Any, what: str):
    from ..stardist.model import StarDistBase

    try:
        model = StarDistBase.load(spec, device=device)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{what}: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
    if not hasattr(model, "source"):
        model.source = spec
    return model


def _load_fiji(name: str, fiji, device, log, stand_in: bool, what: str):
    """The StarDist Fiji plugin's model ``name``; the bundled one (with a Log note) if absent."""
    from ..stardist.fiji_models import (FIJI_MODELS, fallback_note, not_found_message, place_kwargs,
                                        resolve_fiji_model)
    from ..stardist.model import StarDistBase
    from ..stardist.savedmodel import load_stardist_savedmodel

    where = place_kwargs(fiji)
    fiji_dir, models_dir = where.get("fiji"), where.get("models")
    ref = resolve_fiji_model(name, fiji=fiji_dir, models=models_dir)  # FileNotFoundError: bad place
    if ref is None:
        if not stand_in or FIJI_MODELS.get(name) is not FIJI_MODELS["Versatile (fluorescent nuclei)"]:
            raise FileNotFoundError(not_found_message(name, fiji=fiji_dir, models=models_dir))
        if log is not None:
            log(fallback_note(name, DEFAULT_MODEL, fiji=fiji_dir, models=models_dir))
        return load_model(DEFAULT_MODEL, 2, device=device)

    def read():
        try:
            if ref.is_savedmodel:
                m = load_stardist_savedmodel(ref.location, device=device, fiji_model=ref.model)
            else:
                m = StarDistBase.load(ref.location, device=device)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{what}: {exc}") from None
        except ValueError as exc:
            raise ValueError(f"{what}: {exc}") from None
        m.source = f"'{name}' ({ref.location})"
        return m

    model = _CACHE.get(("fiji", ref.stamp(), None if device is None else str(device)), read)
    if model.ndim != 2:
        raise ValueError(f"{what} at {ref.location} is not a 2D model")
    if log is not None:
        log(f"'{name}': the StarDist Fiji plugin's own model, read from {ref.location} "
            f"(thresholds prob {model.thresholds['prob']:g}, nms {model.thresholds['nms']:g})")
    return model


# ---------------------------------------------------------------------------------- training

def _tiffs(folder: Path, what: str) -> dict[str, Path]:
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder not found: {folder}")
    files = {f.name: f for f in sorted(folder.iterdir()) if f.suffix.lower() in TIFF_SUFFIXES}
    if not files:
        raise ValueError(f"no .tif files in {what} folder {folder}")
    return files


def pair_files(images: str | Path, masks: str | Path, *, log: Log | None = None
               ) -> list[tuple[Path, Path]]:
    """Each TIFF of folder ``images`` with the mask of the same file name in folder ``masks``.

    An image without a mask is an error; masks without an image are ignored (``log`` says so).
    """
    imgs = _tiffs(Path(images), "images")
    msks = _tiffs(Path(masks), "masks")
    missing = sorted(set(imgs) - set(msks))
    if missing:
        raise ValueError(f"{len(missing)} image(s) have no mask of the same name in {masks}: "
                         f"{', '.join(missing[:5])}")
    extra = sorted(set(msks) - set(imgs))
    if extra and log is not None:
        log(f"note: ignoring {len(extra)} mask(s) without an image: {', '.join(extra[:5])}")
    return [(imgs[k], msks[k]) for k in sorted(imgs)]


def split_pairs(n: int, val_fraction: float = 0.15, seed: int = 0) -> tuple[list[int], list[int]]:
    """Indices (training, validation) of ``n`` pairs: ``round(val_fraction * n)`` held out (at
    least one when there are two or more and the fraction is > 0), drawn with ``seed``.

    Examples
    --------
    >>> split_pairs(1)
    ([0], [])
    >>> train, val = split_pairs(10, 0.2, seed=0); len(train), len(val)
    (8, 2)
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"the validation fraction must be in [0, 1), got {val_fraction}")
    n_val = int(round(val_fraction * n))
    if n >= 2 and val_fraction > 0:
        n_val = max(1, n_val)
    order = np.random.default_rng(seed).permutation(n)
    return sorted(int(i) for i in order[n_val:]), sorted(int(i) for i in order[:n_val])


def _read(item: Any, what: str):
    import xarray as xr

    if isinstance(item, xr.DataArray):
        da = item
    elif isinstance(item, (str, Path)):
        from ..io import imread

        try:
            da = imread(item)
        except FileNotFoundError:
            raise FileNotFoundError(f"{what} not found: {item}") from None
        except Exception as exc:  # unreadable file: a user error
            raise ValueError(f"cannot read {item}: {exc}") from None
    else:
        raise ValueError(f"{what} must be a file or an xarray.DataArray, got {type(item).__name__}")
    return _as_image(da, None, 2, str(item) if isinstance(item, (str, Path)) else what)


def _single(da, ndim: int, name: str):
    """Only the model's spatial dims (+ c): extra dims of size 1 are dropped, others are errors."""
    dims = [str(d) for d in da.dims]
    spatial = list(SPATIAL[ndim])
    missing = [d for d in spatial if d not in dims]
    if missing:
        raise ValueError(f"{name}: dims {tuple(dims)} lack {missing} for a {ndim}D model")
    extra = [d for d in dims if d not in spatial + ["c"] and da.sizes[d] > 1]
    if extra:
        raise ValueError(f"{name}: dims {tuple(dims)}; training needs single {ndim}D images (extra "
                         f"dims {extra}){' - z-stacks train a 3D model' if 'z' in extra else ''}")
    drop = [d for d in dims if d not in spatial + ["c"]]
    da = da.squeeze(drop) if drop else da
    return da.transpose(*spatial, *(["c"] if "c" in da.dims else []))


def read_pair(image: Any, mask: Any, ndim: int | None = None) -> tuple[Any, np.ndarray]:
    """An image (DataArray, spatial dims then ``c``) and its checked label image (int32).

    ``ndim`` None: 3 for an image with more than one z slice, else 2.
    """
    iname = str(image) if isinstance(image, (str, Path)) else "image"
    mname = str(mask) if isinstance(mask, (str, Path)) else "mask"
    x = _read(image, "image")
    y = _read(mask, "mask")
    if ndim is None:
        ndim = 3 if "z" in x.dims and x.sizes["z"] > 1 else 2
    x = _single(x, ndim, iname)
    y = _single(y, ndim, mname)
    if "c" in y.dims:
        raise ValueError(f"{mname}: a label image must have one channel, got {y.sizes['c']}")
    sx = {d: int(x.sizes[d]) for d in SPATIAL[ndim]}
    sy = {d: int(y.sizes[d]) for d in SPATIAL[ndim]}
    if sx != sy:
        raise ValueError(f"{Path(iname).name} and its mask {mname} differ in size ({sx} vs {sy}); "
                         "give each image the label image of the same name and size")
    from ..stardist.geometry import check_label_image

    return x, np.asarray(check_label_image(np.asarray(y.values), f"mask {mname}")).astype(np.int32)


def _spacing(da, ndim: int) -> list[float]:
    out = []
    for d in SPATIAL[ndim]:
        c = da.coords.get(d)
        out.append(float(abs(c.values[1] - c.values[0])) if c is not None and c.size > 1 else 1.0)
    return out


def train_from_pairs(images: Any, masks: Any, *, ndim: int | None = None,
                     val_images: Any = None, val_masks: Any = None, val_fraction: float = 0.15,
                     seed: int = 0, patch_size: Sequence[int] | int | None = None,
                     fit_patch: bool = True,
                     device: Any = None, log: Log | None = None, progress: Progress | None = None,
                     show_progress: bool = False, **config: Any):
    """Train a StarDist model on images and their label images.

    Parameters
    ----------
    images, masks : folder, or sequences of files / DataArrays
        Folders are paired by file name (:func:`pair_files`); sequences pair by position.
    ndim : {2, 3}, optional
        Default: 3 when the images are z-stacks, else 2.
    val_images, val_masks : optional
        Validation pairs; without them ``val_fraction`` of the pairs is held out
        (:func:`split_pairs` with ``seed``) and tunes the thresholds.
    seed : int
        Seeds the validation split and the training (sampling, augmentation).
    patch_size : int or tuple of int, optional
        Training patch per spatial axis (default the config's); an int is the
        size in y and x (a z-stack's patch then has a quarter of it in z, at
        least the grid's divisor).
    fit_patch : bool
        Reduce the patch to fit the smallest image (to multiples of the grid);
        False makes a patch larger than an image an error.
    device : str, optional
        cpu, cuda, ...
    log : callable, optional
        Gets a line about the data and the training.
    progress : callable, optional
        ``progress(done, total, message)`` during training.
    show_progress : bool
        A progress bar in the terminal.
    **config
        :class:`ij_bridge.stardist.StarDistConfig` fields (``epochs``,
        ``steps_per_epoch``, ``n_rays``, ``grid``, ``batch_size``,
        ``learning_rate``, ``augment``, ...). 3D: ``anisotropy`` defaults to
        the images' voxel size (z, y, x) relative to the smallest.

    Returns
    -------
    StarDist2D or StarDist3D
        The trained model (not saved: the caller writes it).
    """
    from ..stardist import StarDist2D, StarDist3D, StarDistConfig

    def as_pairs(imgs, msks, what):
        if (imgs is None) != (msks is None):
            raise ValueError(f"give both {what} images and masks, or neither")
        if imgs is None:
            return []
        if isinstance(imgs, (str, Path)) and isinstance(msks, (str, Path)):
            return pair_files(imgs, msks, log=log)
        imgs, msks = list(imgs), list(msks)
        if len(imgs) != len(msks):
            raise ValueError(f"{len(imgs)} {what} images but {len(msks)} masks; give one mask per image")
        if not imgs:
            raise ValueError(f"no {what} images given")
        return list(zip(imgs, msks))

    pairs = as_pairs(images, masks, "training")
    val_pairs = as_pairs(val_images, val_masks, "validation")
    if val_images is None:
        train_i, val_i = split_pairs(len(pairs), val_fraction, seed)
        pairs, val_pairs = [pairs[i] for i in train_i], [pairs[i] for i in val_i]
    data = [read_pair(x, y, ndim) for x, y in pairs]
    vdata = [read_pair(x, y, ndim) for x, y in val_pairs]
    nds = {3 if "z" in x.dims else 2 for x, _ in data + vdata}
    if len(nds) > 1:
        raise ValueError("the images mix 2D images and z-stacks; train 2D and 3D models separately")
    nd = nds.pop()
    channels = {int(x.sizes.get("c", 1)) for x, _ in data + vdata}
    if len(channels) > 1:
        raise ValueError(f"the images have different channel counts {sorted(channels)}; give "
                         "images with as many channels each")
    n_channels = channels.pop()
    X, Y = [x for x, _ in data], [y for _, y in data]
    spatial = list(SPATIAL[nd])
    probe = StarDistConfig(ndim=nd, **({"grid": config["grid"]} if config.get("grid") else {}))
    div = probe.divisor
    if patch_size is None:
        want = list(probe.patch_size)
    elif isinstance(patch_size, (int, np.integer)):  # y and x; a z-stack's patch is a quarter as deep
        want = [int(patch_size)] * 2 if nd == 2 else [max(div[0], int(patch_size) // 4)] + [int(patch_size)] * 2
    else:
        want = [int(v) for v in patch_size]
        if len(want) != nd:
            raise ValueError(f"the patch size {want} needs {nd} values for a {nd}D model")
    smallest = [min(int(x.sizes[d]) for x in X + [v for v, _ in vdata]) for d in spatial]
    size = [min((w // q) * q, (s // q) * q) for w, s, q in zip(want, smallest, div)]
    if any(s < q for s, q in zip(size, div)):
        raise ValueError(f"images of {dict(zip(spatial, smallest))} are too small for a {nd}D model: "
                         f"each of {spatial} needs at least {list(div)} pixels")
    if size != want and not fit_patch:
        raise ValueError(f"the patch size {want} does not fit the smallest image "
                         f"({dict(zip(spatial, smallest))}); give a patch size of at most the "
                         "smallest image's size")
    if size != want and log is not None:
        log(f"patch size reduced to {size} to fit the smallest image")
    if nd == 3 and config.get("anisotropy") is None:
        sz = _spacing(X[0], 3)
        if len(set(sz)) > 1:
            config["anisotropy"] = tuple(s / min(sz) for s in sz)
    config = {k: v for k, v in config.items() if v is not None}
    cfg = StarDistConfig(ndim=nd, n_channels=n_channels, patch_size=tuple(size), seed=seed, **config)
    klass = StarDist3D if nd == 3 else StarDist2D
    model = klass(cfg, device=device)
    if log is not None:
        log(f"training {klass.__name__} on {len(X)} image(s), "
            + (f"validating on {len(vdata)}" if vdata else "no validation data")
            + f": {cfg.epochs} epochs x {cfg.steps_per_epoch} steps, patch {list(cfg.patch_size)}, "
            f"{cfg.n_rays} rays" + (f", anisotropy {tuple(round(a, 3) for a in cfg.anisotropy)}"
                                    if cfg.anisotropy else "") + f"; device {model.device}")
    validation = ([x for x, _ in vdata], [y for _, y in vdata]) if vdata else None
    model.train(X, Y, validation_data=validation, progress=progress, show_progress=show_progress,
                optimize_thresholds=validation is not None)
    return model
