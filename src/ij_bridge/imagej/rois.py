"""ROIs between ImageJ 1.x and Python.

The Python-side ROI type is :class:`roifile.ImagejRoi`, which models ImageJ's
``.roi`` format completely. Conversions go through that byte format in bulk:
``ij.io.RoiEncoder``/``ij.io.RoiDecoder`` on the Java side and roifile's
``tobytes``/``frombytes`` on the Python side, so every property the format
knows survives (type, coordinates at sub-pixel precision, rounded corners,
composite shapes with holes, name, plain and hyperstack positions, stroke and
fill colours, stroke width, group, properties, point counters, ...).

Label images go to ImageJ ROIs with :func:`labels_to_rois` (exact pixel
outlines from ``ij.plugin.filter.ThresholdToSelection``) and back with
:func:`rois_to_labels` (ImageJ's own ``Roi.getMask()``, so pixel membership is
exactly ImageJ's).

Conventions
-----------
* Coordinates: ImageJ and roifile use ``(x, y)``; numpy label images are
  indexed ``[row, col]`` = ``[y, x]``. ``roi.getBounds()`` gives ``x, y`` of
  the top-left pixel corner.
* ROI names made by :func:`labels_to_rois`: ``"label-0007"`` for label 7 of a
  2D image; stacks add the 1-based plane, ``"label-0007-z003"``,
  ``"label-0007-t002"`` or ``"label-0007-t002-z003"``. Each ROI also carries
  the ROI property ``label`` (``roi.getProperty("label") == "7"``), which
  survives ``.roi``/``.zip`` files and the ROI Manager; :func:`rois_to_labels`
  uses it to give back the original label values.
* Positions: ImageJ numbers channels, slices and frames from 1; 0 means
  "all". A plain stack position is ``roi.setPosition(n)``; a hyperstack
  position is ``roi.setPosition(c, z, t)``.

See ``docs/rois.md`` for more.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

import numpy as np
import roifile
from tqdm import tqdm

from ..layout import IMAGEJ_ORDER, dim_name
from . import runtime
from ._java import jc

__all__ = [
    "roi_from_java", "roi_to_java", "labels_to_rois", "rois_to_labels",
    "get_roi_manager_rois", "set_roi_manager_rois", "get_overlay_rois", "set_overlay_rois",
    "LABEL_PROPERTY", "JAVA_ROI_TYPES",
]

#: ROI property in which :func:`labels_to_rois` stores the label value.
LABEL_PROPERTY = "label"

#: ImageJ's in-memory ROI type constants (``Roi.getType()``). These are NOT the
#: type codes of the ``.roi`` file format (``roifile.ROI_TYPE``): e.g. a
#: rectangle is 0 in memory but ``ROI_TYPE.RECT == 1`` in a file.
JAVA_ROI_TYPES = {
    0: "rectangle", 1: "oval", 2: "polygon", 3: "freehand", 4: "traced", 5: "line",
    6: "polyline", 7: "freeline", 8: "angle", 9: "composite", 10: "point",
}

# a label image's dims, in ImageJ's order (ij_bridge.layout.IMAGEJ_ORDER without c and s)
_AXES = tuple(d for d in IMAGEJ_ORDER if d not in ("c", "s"))
_DEFAULT_DIMS = {2: ("y", "x"), 3: ("z", "y", "x"), 4: ("t", "z", "y", "x")}

from ..progress import Progress  # noqa: E402  (the shared type; this name is kept)


# --------------------------------------------------------------------------- Java access
def _ensure_started() -> None:
    if not runtime.is_started():
        runtime.start()


def _is_java_roi(obj: Any) -> bool:
    if not runtime.is_started():
        return False
    return isinstance(obj, jc.Roi)


def _describe(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


# --------------------------------------------------------------------------- single ROIs
def roi_from_java(roi: Any) -> roifile.ImagejRoi:
    """Convert an ImageJ ``ij.gui.Roi`` to a :class:`roifile.ImagejRoi`.

    The ROI is encoded with ImageJ's own ``RoiEncoder`` and decoded by roifile,
    so nothing that the ``.roi`` format can hold is lost.

    Parameters
    ----------
    roi : ij.gui.Roi
        Any ImageJ ROI (rectangle, oval, polygon, freehand, traced, line,
        polyline, angle, point, composite ``ShapeRoi``, text, ...).

    Returns
    -------
    roifile.ImagejRoi

    Examples
    --------
    >>> r = roi_from_java(imp.getRoi())            # doctest: +SKIP
    >>> r.name, r.left, r.top, r.coordinates()     # doctest: +SKIP
    """
    _ensure_started()
    if isinstance(roi, roifile.ImagejRoi):
        return roi
    if not _is_java_roi(roi):
        raise TypeError(f"roi_from_java expects an ij.gui.Roi, got {_describe(roi)}")
    data = jc.RoiEncoder.saveAsByteArray(roi)
    if data is None:
        raise ValueError(f"ImageJ's RoiEncoder could not encode {roi}")
    return roifile.ImagejRoi.frombytes(bytes(data))


def roi_to_java(roi: roifile.ImagejRoi | bytes | Any) -> Any:
    """Convert a :class:`roifile.ImagejRoi` (or ``.roi`` file bytes) to an ImageJ ROI.

    Decoded by ImageJ's own ``RoiDecoder``, so the result is what ImageJ gets
    when it opens the same ``.roi`` file, with one fix-up: the stroke width of
    point ROIs, which ImageJ 1.53t's decoder drops, is restored. An
    ``ij.gui.Roi`` is returned as is.

    Parameters
    ----------
    roi : roifile.ImagejRoi, bytes or ij.gui.Roi

    Returns
    -------
    ij.gui.Roi
        The subclass matching the type (``PolygonRoi``, ``OvalRoi``,
        ``ShapeRoi``, ``Line``, ``PointRoi``, ...).
    """
    _ensure_started()
    if _is_java_roi(roi):
        return roi
    if isinstance(roi, roifile.ImagejRoi):
        data = roi.tobytes()
    elif isinstance(roi, (bytes, bytearray, memoryview)):
        data = bytes(roi)
    else:
        raise TypeError(
            f"roi_to_java expects a roifile.ImagejRoi, .roi bytes or an ij.gui.Roi, got {_describe(roi)}")
    if len(data) < 64 or data[:4] != b"Iout":
        raise ValueError("not ImageJ .roi data (the 'Iout' header is missing)")
    from ..io import check_roi_coordinates

    check_roi_coordinates(roi if isinstance(roi, roifile.ImagejRoi) else data)
    import jpype

    jbytes = jpype.JArray(jpype.JByte)(np.frombuffer(data, dtype=np.int8))
    jroi = jc.RoiDecoder(jbytes, None).getRoi()
    if jroi is None:
        raise ValueError("ImageJ's RoiDecoder could not decode this ROI")
    if data[6] == int(roifile.ROI_TYPE.POINT) and jroi.getStrokeWidth() == 0:
        # ImageJ 1.53t's decoder drops the stroke width that its encoder wrote for points
        parsed = roi if isinstance(roi, roifile.ImagejRoi) else roifile.ImagejRoi.frombytes(data)
        width = float(parsed.float_stroke_width or parsed.stroke_width or 0)
        if width > 0:
            jroi.setStrokeWidth(jpype.JDouble(width))
    return jroi


def _check_java_coordinates(jroi: Any, what: str) -> None:
    """Refuse an ``ij.gui.Roi`` whose outline has NaN or infinite coordinates."""
    poly = jroi.getFloatPolygon()
    if poly is None or int(poly.npoints) == 0:
        return
    n = int(poly.npoints)
    xs = np.asarray(poly.xpoints[:n], dtype=np.float64)
    ys = np.asarray(poly.ypoints[:n], dtype=np.float64)
    bad = ~(np.isfinite(xs) & np.isfinite(ys))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        name = jroi.getName()
        label = f"{what} {str(name)!r}" if name is not None else what
        raise ValueError(f"{label} has NaN or infinite coordinates (point {i + 1} is "
                         f"({xs[i]:g}, {ys[i]:g})); remove those points, or drop the ROI")


def _to_java_list(rois: Iterable[Any]) -> list:
    """ImageJ ROIs for ROIs of any accepted kind; NaN or infinite coordinates are refused."""
    from ..io import check_roi_coordinates

    if isinstance(rois, (roifile.ImagejRoi, bytes)) or _is_java_roi(rois):
        rois = [rois]
    out = []
    for k, r in enumerate(rois):
        if _is_java_roi(r):
            _check_java_coordinates(r, f"ROI {k + 1}")
        elif isinstance(r, (roifile.ImagejRoi, bytes, bytearray)):
            check_roi_coordinates(r, f"ROI {k + 1}")
        out.append(roi_to_java(r))
    return out


# --------------------------------------------------------------------------- labels -> ROIs
def _normalise_dims(dims: Sequence[str], ndim: int, what: str) -> tuple[str, ...]:
    # any name of the one alias table (ij_bridge.layout.ALIASES, any case); unknown names stay
    dims = tuple(dim_name(d) or str(d) for d in dims)
    if len(dims) != ndim:
        raise ValueError(f"{what} has {ndim} dimensions but dims={dims} names {len(dims)}")
    if dims[-2:] != ("y", "x"):
        raise ValueError(f"{what}: the last two dims must be ('y', 'x'), got {dims}")
    if any(d not in _AXES for d in dims) or len(set(dims)) != len(dims):
        raise ValueError(f"{what}: dims must be unique names out of {_AXES} (a label image "
                         f"has no channel axis), got {dims}")
    # keep ImageJ's order t, z, y, x so that plain stack positions are well defined
    order = [d for d in _AXES if d in dims]
    if list(dims) != order:
        raise ValueError(f"{what}: dims must be in the order {tuple(order)}, got {dims}")
    return dims


def _label_array(labels: Any, dims: Sequence[str] | None) -> tuple[np.ndarray, tuple[str, ...]]:
    if hasattr(labels, "dims") and hasattr(labels, "values"):  # xarray.DataArray
        if dims is None:
            dims = labels.dims
        labels = labels.values
    arr = np.asarray(labels)
    if arr.ndim not in (2, 3, 4):
        raise ValueError(f"a label image must be 2D, 3D or 4D (y, x with optional z and t), "
                         f"got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"the label image is empty (shape {arr.shape})")
    if arr.dtype == bool:
        arr = arr.view(np.uint8)
    elif not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"a label image must have an integer dtype (0 = background), got "
                        f"{arr.dtype}; convert with labels.astype(np.int32) if the values "
                        f"are whole numbers")
    if np.issubdtype(arr.dtype, np.signedinteger) and arr.min() < 0:
        raise ValueError("a label image must not have negative values (0 = background)")
    if arr.dtype == np.uint64 and arr.max() > np.iinfo(np.int64).max:
        raise ValueError("label values above 2**63 - 1 are not supported")
    dims = _normalise_dims(dims if dims is not None else _DEFAULT_DIMS[arr.ndim], arr.ndim,
                           "the label image")
    return arr, dims


def _objects(plane: np.ndarray) -> tuple[np.ndarray, list]:
    """Label values present in a 2D plane and their bounding-box slices."""
    from scipy import ndimage as ndi

    top = int(plane.max())
    if top == 0:
        return np.zeros(0, np.int64), []
    if top <= 4 * 65536 or top <= plane.size:
        slices = ndi.find_objects(plane)
        ids = np.array([i + 1 for i, s in enumerate(slices) if s is not None], dtype=np.int64)
        return ids, [slices[i - 1] for i in ids]
    # sparse, huge label values: compact them first (find_objects allocates max+1 entries)
    values, inverse = np.unique(plane, return_inverse=True)
    compact = inverse.reshape(plane.shape)
    if values[0] != 0:
        compact = compact + 1
        values = np.concatenate([[0], values])
    slices = ndi.find_objects(compact)
    keep = [i for i, s in enumerate(slices) if s is not None]
    return values[np.array(keep, dtype=np.int64) + 1].astype(np.int64), [slices[i] for i in keep]


def _outline(plane: np.ndarray, label: int, sl: tuple[slice, slice], tts: Any) -> Any:
    """Exact pixel outline of one object, found on its bounding-box crop only."""
    import jpype

    crop = np.ascontiguousarray(plane[sl] == label).view(np.int8)
    h, w = crop.shape
    ip = jc.ByteProcessor(w, h, jpype.JArray(jpype.JByte)(crop.ravel()))
    ip.setThreshold(1.0, 1.0, jc.ImageProcessor.NO_LUT_UPDATE)
    roi = tts.convert(ip)
    if roi is None:  # cannot happen for a non-empty crop, but never return a wrong ROI
        raise RuntimeError(f"ThresholdToSelection found no outline for label {label}")
    b = roi.getBounds()
    roi.setLocation(jpype.JInt(sl[1].start + b.x), jpype.JInt(sl[0].start + b.y))
    return roi


def _name_function(names: Any, max_label: int) -> Callable[[int], str]:
    if names is None or isinstance(names, str):
        prefix = "label" if names is None else names
        width = max(4, len(str(max_label)))
        return lambda lab: f"{prefix}-{lab:0{width}d}"
    if isinstance(names, Mapping):
        def from_mapping(lab: int) -> str:
            try:
                return str(names[lab])
            except KeyError:
                raise KeyError(f"names has no entry for label {lab}") from None
        return from_mapping
    if callable(names):
        return lambda lab: str(names(lab))
    raise TypeError(f"names must be None, a prefix string, a mapping label -> name or a "
                    f"callable, got {_describe(names)}")


def labels_to_rois(
    labels: Any,
    *,
    dims: Sequence[str] | None = None,
    names: str | Mapping[int, str] | Callable[[int], str] | None = None,
    position: Literal["auto", "stack", "hyperstack"] | int | tuple[int, int, int] | None = "auto",
    progress: Progress | None = None,
) -> list:
    """One ImageJ ROI per labelled object, with its exact pixel outline.

    Each object's outline comes from ImageJ's ``ThresholdToSelection`` run on
    the object's bounding-box crop, so ``imp.setRoi(roi);
    imp.getStatistics()`` counts exactly the object's pixels. An object in
    several pieces, or with holes, becomes one composite ``ShapeRoi``.

    Parameters
    ----------
    labels : array-like or xarray.DataArray
        Integer label image, 0 = background: ``(y, x)``, ``(z, y, x)``,
        ``(t, y, x)`` or ``(t, z, y, x)``. A bool mask is one object, label 1.
    dims : sequence of str, optional
        Axis names of ``labels``. Default: the DataArray's dims, else
        ``(y, x)``, ``(z, y, x)`` or ``(t, z, y, x)`` by number of axes. Use
        ``dims=("t", "y", "x")`` for a 2D time series.
    names : str, mapping or callable, optional
        ROI names. Default ``"label-0007"`` (zero-padded to at least 4 digits);
        a string replaces the prefix (``"nucleus"`` gives ``"nucleus-0007"``);
        a mapping or callable gives the name of each label value. Stacks append
        the 1-based plane: ``"-z003"``, ``"-t002"`` or ``"-t002-z003"``.
    position : {"auto", "stack", "hyperstack"}, int, (c, z, t) or None
        Stacks: ``"stack"`` sets the plain stack position
        ``roi.setPosition(n)`` (n = 1-based plane index, t-major then z);
        ``"hyperstack"`` sets ``roi.setPosition(0, z, t)`` (channel 0 = all
        channels, a missing axis is 0 = all); ``"auto"`` (default) is
        ``"stack"`` for a single z or t axis and ``"hyperstack"`` when both are
        present. 2D: ``None``/``"auto"`` leave the ROIs unpositioned, an int is
        a plain stack position and a ``(c, z, t)`` tuple a hyperstack position
        given to every ROI.
    progress : callable, optional
        ``progress(done, total, message)`` after each plane.

    Returns
    -------
    list of ij.gui.Roi
        Ordered by plane (t, then z) and, within a plane, by label value. Each
        ROI has the property ``"label"`` (the label value as text).

    Examples
    --------
    >>> rois = labels_to_rois(mask)                          # doctest: +SKIP
    >>> set_roi_manager_rois(rois)                           # doctest: +SKIP
    """
    arr, dims = _label_array(labels, dims)
    stack_dims = dims[:-2]
    stack_shape = arr.shape[:-2]
    if stack_dims:
        if position == "auto":
            position = "stack" if len(stack_dims) == 1 else "hyperstack"
        if position not in ("stack", "hyperstack", None):
            raise ValueError(f"for a stack of labels, position must be 'auto', 'stack', "
                             f"'hyperstack' or None, got {position!r}")
    else:
        if position == "auto":
            position = None
        if isinstance(position, str):
            raise ValueError(f"position={position!r} needs a stack of labels (3D or 4D); for a "
                             f"2D label image give None, a stack position n or a (c, z, t) tuple")
        if position is not None and not (
                isinstance(position, (int, np.integer)) and position >= 0
                or isinstance(position, tuple) and len(position) == 3
                and all(isinstance(p, (int, np.integer)) and p >= 0 for p in position)):
            raise ValueError(f"position must be None, a stack position n >= 0 or a (c, z, t) "
                             f"tuple of ints >= 0, got {position!r}")
    _ensure_started()
    import jpype

    name_of = _name_function(names, int(arr.max()))
    widths = {d: max(3, len(str(n))) for d, n in zip(stack_dims, stack_shape)}
    tts = jc.ThresholdToSelection()
    tts.showStatus(False)
    rois: list = []
    planes = list(np.ndindex(*stack_shape))
    with tqdm(total=len(planes), desc="labels to ROIs", unit="plane", leave=False,
              disable=len(planes) < 2 or None) as bar:
        for done, index in enumerate(planes, 1):
            plane = arr[index]
            ids, slices = _objects(plane)
            where = {d: i + 1 for d, i in zip(stack_dims, index)}  # 1-based like ImageJ
            suffix = "".join(f"-{d}{where[d]:0{widths[d]}d}" for d in stack_dims)
            for lab, sl in zip(ids.tolist(), slices):
                roi = _outline(plane, lab, sl, tts)
                roi.setName(name_of(lab) + suffix)
                roi.setProperty(LABEL_PROPERTY, str(lab))
                if position == "stack":
                    roi.setPosition(jpype.JInt(done))
                elif position == "hyperstack":
                    roi.setPosition(0, where.get("z", 0), where.get("t", 0))
                elif isinstance(position, tuple):
                    roi.setPosition(*(int(p) for p in position))
                elif position is not None:
                    roi.setPosition(jpype.JInt(int(position)))
                rois.append(roi)
            bar.update(1)
            if progress is not None:
                progress(done, len(planes), f"plane {done}/{len(planes)}: {len(ids)} objects")
    return rois


# --------------------------------------------------------------------------- ROIs -> labels
def _plane_selection(roi: Any, dims: tuple[str, ...], shape: tuple[int, ...], k: int) -> tuple:
    """Index into the stack axes of the output for one ROI's position."""
    stack_dims = dims[:-2]
    if not stack_dims:
        return ()
    stack_shape = shape[:-2]

    def check(axis: int, value: int, how: str) -> int:
        if not 1 <= value <= stack_shape[axis]:
            raise ValueError(f"ROI {k} ({roi.getName()}) has {how} {value}, outside the "
                             f"{stack_dims[axis]} range 1..{stack_shape[axis]} of shape {shape}")
        return value - 1

    if roi.hasHyperStackPosition():
        pos = {"z": int(roi.getZPosition()), "t": int(roi.getTPosition())}
        return tuple(slice(None) if pos[d] == 0 else check(i, pos[d], f"{d} position")
                     for i, d in enumerate(stack_dims))
    n = int(roi.getPosition())
    if n == 0:
        return tuple(slice(None) for _ in stack_dims)
    total = int(np.prod(stack_shape))
    if not 1 <= n <= total:
        raise ValueError(f"ROI {k} ({roi.getName()}) has stack position {n}, outside 1..{total} "
                         f"for shape {shape}")
    return tuple(int(i) for i in np.unravel_index(n - 1, stack_shape))


def _label_values(jrois: list, labels: Any) -> list[int]:
    n = len(jrois)
    if isinstance(labels, str):
        if labels not in ("auto", "index"):
            raise ValueError(f"labels must be 'auto', 'index' or a sequence of ints, got {labels!r}")
        if labels == "auto":
            props = [r.getProperty(LABEL_PROPERTY) for r in jrois]
            if n and all(p is not None and str(p).strip().isdigit() and int(str(p)) > 0
                         for p in props):
                return [int(str(p)) for p in props]
        return list(range(1, n + 1))
    values = [int(v) for v in labels]
    if len(values) != n:
        raise ValueError(f"labels has {len(values)} values for {n} ROIs")
    if any(v <= 0 for v in values):
        raise ValueError("label values must be > 0 (0 is background)")
    return values


def rois_to_labels(
    rois: Iterable[Any],
    shape: Sequence[int],
    *,
    labels: Literal["auto", "index"] | Sequence[int] = "auto",
    dims: Sequence[str] | None = None,
    dtype: Any = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Paint area ROIs into a label image, with ImageJ's own pixel membership.

    Parameters
    ----------
    rois : iterable of ij.gui.Roi or roifile.ImagejRoi
        Area ROIs (rectangle, oval, polygon, freehand, traced, composite).
        Lines and points are rejected.
    shape : sequence of int
        Output shape: ``(y, x)``, ``(z, y, x)``, ``(t, y, x)`` (with ``dims``)
        or ``(t, z, y, x)``.
    labels : "auto", "index" or sequence of int
        Value of each ROI. ``"index"``: 1, 2, ... in list order. ``"auto"``
        (default): the ROIs' ``"label"`` property when every ROI has one (as
        :func:`labels_to_rois` sets it), else as ``"index"``.
    dims : sequence of str, optional
        Axis names of ``shape``; default ``(y, x)``, ``(z, y, x)`` or
        ``(t, z, y, x)``.
    dtype : numpy dtype, optional
        Default ``uint16`` when the largest value fits, else ``uint32``.
    progress : callable, optional
        ``progress(done, total, message)``.

    Returns
    -------
    numpy.ndarray
        Label image of ``shape``, 0 = background. Where ROIs overlap, the later
        ROI wins. Pixels outside the image are dropped.

    Notes
    -----
    Positions select planes of a stack shape: a hyperstack position uses its z
    and t (0 = all planes along that axis; the channel is ignored); a plain
    stack position ``n`` is the n-th plane in t-major, z-minor order; an
    unpositioned ROI goes into every plane. A 2D shape ignores positions.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3, 4) or any(s <= 0 for s in shape):
        raise ValueError(f"shape must have 2 to 4 positive sizes, got {shape}")
    dims = _normalise_dims(dims if dims is not None else _DEFAULT_DIMS[len(shape)], len(shape),
                           "shape")
    jrois = _to_java_list(rois)
    for k, r in enumerate(jrois):
        if not r.isArea():
            raise ValueError(f"ROI {k} ({r.getName()}) is a {r.getTypeAsString()} ROI; only area "
                             f"ROIs (rectangle, oval, polygon, freehand, traced, composite) can "
                             f"become labels")
    values = _label_values(jrois, labels)
    top = max(values, default=0)
    if dtype is None:
        dtype = np.uint16 if top <= np.iinfo(np.uint16).max else np.uint32
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.integer) or top > np.iinfo(dtype).max:
        raise ValueError(f"dtype {dtype} cannot hold label values up to {top}")
    selections = [_plane_selection(r, dims, shape, k) for k, r in enumerate(jrois)]
    out = np.zeros(shape, dtype=dtype)
    height, width = shape[-2:]
    for k, (roi, value, sel) in enumerate(
            tqdm(list(zip(jrois, values, selections)), desc="ROIs to labels", unit="ROI",
                 leave=False, disable=len(jrois) < 100 or None), 1):
        b = roi.getBounds()
        x0, y0, w, h = int(b.x), int(b.y), int(b.width), int(b.height)
        mask_ip = roi.getMask()
        if mask_ip is None:
            mask = np.ones((h, w), dtype=bool)
        else:
            mw, mh = int(mask_ip.getWidth()), int(mask_ip.getHeight())
            mask = np.asarray(mask_ip.getPixels()).reshape(mh, mw) != 0
            w, h = mw, mh
        xa, ya = max(x0, 0), max(y0, 0)
        xb, yb = min(x0 + w, width), min(y0 + h, height)
        if xa < xb and ya < yb:
            region = out[sel + (slice(ya, yb), slice(xa, xb))]
            region[..., mask[ya - y0:yb - y0, xa - x0:xb - x0]] = value
        if progress is not None:
            progress(k, len(jrois), f"ROI {k}/{len(jrois)}")
    return out


# --------------------------------------------------------------------------- ROI Manager
def _roi_manager(create: bool) -> Any:
    from .windows import roi_manager

    return roi_manager(create)


def get_roi_manager_rois(*, java: bool = False) -> list:
    """The ROIs in ImageJ's ROI Manager, in its order.

    Parameters
    ----------
    java : bool
        Return the ``ij.gui.Roi`` objects themselves (the manager's own
        instances: changing them changes the manager) instead of
        :class:`roifile.ImagejRoi` copies.

    Returns
    -------
    list
        Empty when no ROI Manager is open.

    Raises
    ------
    HeadlessError
        In headless mode; start ImageJ with ``mode="virtual"``.
    """
    rm = _roi_manager(create=False)
    if rm is None:
        return []
    rois = list(rm.getRoisAsArray())
    return rois if java else [roi_from_java(r) for r in rois]


def set_roi_manager_rois(rois: Iterable[Any], reset: bool = True) -> Any:
    """Put ROIs into ImageJ's ROI Manager (opening it if needed).

    Names, positions, colours and properties are kept as they are: the ROIs
    are added like ``rm.add(roi, -1)``, so the manager neither renames them
    nor re-positions them to the current image. Unnamed ROIs get ImageJ's
    usual ``yyyy-xxxx`` names.

    Parameters
    ----------
    rois : iterable of ij.gui.Roi or roifile.ImagejRoi
    reset : bool
        Empty the manager first (default); else append.

    Returns
    -------
    ij.plugin.frame.RoiManager

    Raises
    ------
    HeadlessError
        In headless mode; start ImageJ with ``mode="virtual"``.
    """
    rm = _roi_manager(create=True)
    jrois = _to_java_list(rois)
    if reset:
        rm.reset()
    for r in jrois:
        rm.add(r, -1)
    return rm


# --------------------------------------------------------------------------- Overlay
def _check_imageplus(imp: Any) -> None:
    _ensure_started()
    if not isinstance(imp, jc.ImagePlus):
        raise TypeError(f"expected an ij.ImagePlus, got {_describe(imp)}")


def get_overlay_rois(imp: Any, *, java: bool = False) -> list:
    """The ROIs of an image's Overlay (empty list when it has none).

    Parameters
    ----------
    imp : ij.ImagePlus
    java : bool
        Return the overlay's own ``ij.gui.Roi`` objects instead of
        :class:`roifile.ImagejRoi` copies.
    """
    _check_imageplus(imp)
    overlay = imp.getOverlay()
    if overlay is None:
        return []
    rois = list(overlay.toArray())
    return rois if java else [roi_from_java(r) for r in rois]


def set_overlay_rois(imp: Any, rois: Iterable[Any], reset: bool = True) -> Any:
    """Show ROIs as the image's Overlay. Needs no display.

    Parameters
    ----------
    imp : ij.ImagePlus
    rois : iterable of ij.gui.Roi or roifile.ImagejRoi
    reset : bool
        Replace the existing overlay (default); else add to it.

    Returns
    -------
    ij.gui.Overlay
    """
    _check_imageplus(imp)
    jrois = _to_java_list(rois)
    overlay = None if reset else imp.getOverlay()
    if overlay is None:
        overlay = jc.Overlay()
    for r in jrois:
        overlay.add(r)
    imp.setOverlay(overlay)
    return overlay
