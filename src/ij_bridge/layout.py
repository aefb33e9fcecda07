"""The image layout shared by every part of ij-bridge: dims, aliases, dtypes, calibration.

No Java and no ImageJ here: :mod:`ij_bridge.io` (TIFF files),
:mod:`ij_bridge.imagej.images` (``ImagePlus``), :mod:`ij_bridge.imagej.rois` (label
images), :mod:`ij_bridge.n2v` and :mod:`ij_bridge.stardist` (model inputs) all read
dim names, ``axes=`` strings, dtypes and calibration through this one module, so a
name or a number means the same thing everywhere. The user guide for these rules is
``docs/bridge.md`` (sections *Dimensions*, *Pixel types*, *Calibration*).

Dims
----
Six dims, each with one short name:

====  ==========================================================  =====================
dim   meaning                                                     also accepted
====  ==========================================================  =====================
t     time points (ImageJ's frames)                               time, frame, frames
c     channels                                                    ch, channel, channels
z     depth (ImageJ's slices)                                     pln, plane, slice, slices
y     rows                                                        row
x     columns                                                     col
s     RGB colour samples, size 3 (R, G, B): ImageJ's and          rgb, sample
      tifffile's ``S``, TIFF's *SamplesPerPixel*
====  ==========================================================  =====================

:data:`ALIASES` is that table (case-insensitive). Two orders matter:

* :data:`DIM_ORDER` ``t, c, z, y, x, s``: the dims of every DataArray this package
  returns (:func:`ij_bridge.from_imageplus`, :func:`ij_bridge.io.imread`), size-1
  ``t``, ``c``, ``z`` dropped.
* :data:`IMAGEJ_ORDER` ``t, z, c, y, x, s`` (ImageJ's TZCYX(S)): the order in which
  ImageJ stores the planes of a hyperstack (channel fastest, then slice, then frame)
  and in which ImageJ's TIFFs hold them.

``s`` means RGB colour samples and nothing else. N2V used to read the letter ``S`` in
a numpy ``axes=`` string as "independent images" (CSBDeep's *sample* axis); that
still works in N2V, with a :class:`DeprecationWarning` (:func:`legacy_sample_axis`):
write ``T`` for a stack of independent images.

Models (N2V, StarDist) read the RGB sample dim ``s`` as their channel axis: a colour
image is a three-channel image to a network (:func:`to_model_layout`).

Examples
--------
>>> normalise_dims(("Time", "ROW", "col"))
('t', 'y', 'x')
>>> parse_axes("ZYX")
('z', 'y', 'x')
>>> parse_axes("yxs")
('y', 'x', 's')
"""

from __future__ import annotations

import math
import types
import warnings
from typing import Any, Callable, Hashable, Iterable, Mapping, Sequence

import numpy as np
import xarray as xr

__all__ = [
    # dims
    "DIM_ORDER", "IMAGEJ_ORDER", "SPATIAL_DIMS", "ALIASES", "dim_name", "normalise_dims",
    "parse_axes", "legacy_sample_axis", "image_dims", "as_dataarray", "to_model_layout",
    # dtypes
    "LossyConversionWarning", "IMAGEJ_DTYPES", "imagej_dtype", "to_imagej_dtype",
    # calibration
    "UNCALIBRATED_TIME", "default_calibration", "calibration_from_dataarray", "sanitize_unit",
    "canonical_unit", "same_unit", "pixel_size", "physical_coords",
    # ImageJ's planes
    "MAX_PLANE_PIXELS", "check_plane_size", "stack_order", "assemble",
]


# =========================================================================== dims
#: The dims of the DataArrays this package returns, in order (``s`` only for RGB).
DIM_ORDER = ("t", "c", "z", "y", "x", "s")

#: ImageJ's hyperstack order TZCYX(S): how planes are stored (channel fastest).
IMAGEJ_ORDER = ("t", "z", "c", "y", "x", "s")

#: Spatial dims, outermost first.
SPATIAL_DIMS = ("z", "y", "x")

#: The one alias table: any accepted dim name (lower case) → its dim.
ALIASES: Mapping[str, str] = types.MappingProxyType({
    "t": "t", "time": "t", "frame": "t", "frames": "t",
    "c": "c", "ch": "c", "channel": "c", "channels": "c",
    "z": "z", "pln": "z", "plane": "z", "slice": "z", "slices": "z",
    "y": "y", "row": "y",
    "x": "x", "col": "x",
    "s": "s", "rgb": "s", "sample": "s",
})

_DIMS_HELP = ("use t, c, z, y, x (or PyImageJ's time, ch, pln, row, col) and s (or rgb) of size 3 "
              "for RGB colour samples")

_S_DEPRECATION = ("the letter S for independent images (CSBDeep's 'sample' axis) is deprecated: in "
                  "ij-bridge S is ImageJ's RGB sample axis (docs/bridge.md#dimensions). Write T for a "
                  "stack of independent images (same result)")


def dim_name(name: Hashable) -> str | None:
    """The dim that ``name`` stands for (any case, any alias), or ``None``.

    >>> dim_name("Channel"), dim_name("pln"), dim_name("height")
    ('c', 'z', None)
    """
    return ALIASES.get(str(name).strip().lower())


def _canonical_dims(names: Iterable[Hashable], *, unknown: Callable[[Hashable], str],
                    twice: Callable[[list[str]], str], no_yx: Callable[[], str]) -> tuple[str, ...]:
    """The canonical dim of each name; one checked, distinct set that holds ``y`` and ``x``.

    Parameters
    ----------
    names : iterable of hashable
        Dim names (any spelling of :data:`ALIASES`).
    unknown, twice, no_yx : callable
        Build the error message for an unknown name (given it), for a repeated dim (given
        the canonical names so far) and for a missing ``y`` or ``x``; called only on error.

    Raises
    ------
    ValueError
        With the message of the first check that fails.
    """
    out: list[str] = []
    for name in names:
        key = dim_name(name)
        if key is None:
            raise ValueError(unknown(name))
        out.append(key)
    if len(set(out)) != len(out):
        raise ValueError(twice(out))
    if "y" not in out or "x" not in out:
        raise ValueError(no_yx())
    return tuple(out)


def normalise_dims(dims: Sequence[Hashable] | str) -> tuple[str, ...]:
    """Map dim names (ours, PyImageJ's, any case) to ``t, c, z, y, x, s``.

    A string such as ``"zyx"`` names one axis per character.

    Raises
    ------
    ValueError
        For unknown or repeated names, or when ``y`` or ``x`` is missing.

    Examples
    --------
    >>> normalise_dims("TCYX")
    ('t', 'c', 'y', 'x')
    >>> normalise_dims(["pln", "row", "col"])
    ('z', 'y', 'x')
    """
    return _canonical_dims(
        dims,
        unknown=lambda d: f"unknown dim {d!r}; {_DIMS_HELP}",
        twice=lambda out: f"dims {tuple(dims)!r} name the same axis twice (as {tuple(out)!r})",
        no_yx=lambda: f"dims {tuple(dims)!r} need both a y (row) and an x (col) dim")


def parse_axes(axes: str | Sequence[Hashable], ndim: int | None = None, *,
               what: str = "image") -> tuple[str, ...]:
    """The dims named by an ``axes=`` string (or sequence) for a numpy array.

    One letter per axis, in the array's order, any case: ``"YX"``, ``"ZYX"``,
    ``"TZCYX"``, ``"YXC"``, ``"YXS"`` (RGB). A sequence may use any name of
    :data:`ALIASES`.

    Parameters
    ----------
    axes : str or sequence of str
    ndim : int, optional
        The array's number of dimensions; checked against ``axes``.
    what : str
        How error messages name the array.

    ``S`` is always RGB samples here; N2V's old ``S`` (independent images) is split off
    first by :func:`legacy_sample_axis`.

    Raises
    ------
    ValueError
        Unknown or repeated letters, no ``Y`` or ``X``, or a length that is not ``ndim``.

    Examples
    --------
    >>> parse_axes("tzcyx")
    ('t', 'z', 'c', 'y', 'x')
    >>> parse_axes("YX", ndim=3)
    Traceback (most recent call last):
    ...
    ValueError: image: axes 'YX' name 2 axes but the array has 3; pass axes= with one letter per axis (T, C, Z, Y, X, S)
    """
    if isinstance(axes, str):
        items: list[Hashable] = list(axes.strip())
        shown: Any = axes
    else:
        items = list(axes)
        shown = tuple(axes)
    if ndim is not None and len(items) != ndim:
        raise ValueError(f"{what}: axes {shown!r} name {len(items)} axes but the array has {ndim}; "
                         "pass axes= with one letter per axis (T, C, Z, Y, X, S)")
    return _canonical_dims(
        items,
        unknown=lambda a: (f"{what}: axes {shown!r}: unknown axis {a!r}; use the letters T (time or "
                           "independent images), C (channels), Z, Y, X and S (RGB samples)"),
        twice=lambda out: f"{what}: axes {shown!r} name the same axis twice (as {''.join(out).upper()!r})",
        no_yx=lambda: f"{what}: axes {shown!r} must contain Y and X")


def legacy_sample_axis(axes: str, *, what: str = "image", stacklevel: int = 2) -> tuple[str, int | None]:
    """Split N2V's deprecated sample letter ``S`` off an ``axes=`` string.

    N2V (after CSBDeep) read ``S`` as "independent images"; in ij-bridge ``S`` is
    ImageJ's RGB sample axis. Where a model keeps the old meaning working, it calls
    this first: it warns (:class:`DeprecationWarning`, pointing to ``T``) and returns
    the axes without the ``S`` and the position the ``S`` had (``None`` if absent).

    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     legacy_sample_axis("SYX")
    ('YX', 0)
    >>> legacy_sample_axis("TYX")
    ('TYX', None)
    """
    up = str(axes).strip().upper()
    if "S" not in up:
        return str(axes).strip(), None
    if up.count("S") > 1:
        raise ValueError(f"{what}: axes {axes!r} name S more than once")
    warnings.warn(f"{what}: axes {axes!r}: {_S_DEPRECATION}", DeprecationWarning, stacklevel=stacklevel + 1)
    i = up.index("S")
    rest = str(axes).strip()
    return rest[:i] + rest[i + 1:], i


def _is_dataarray(obj: Any) -> bool:
    return isinstance(obj, xr.DataArray)


def image_dims(image: Any, axes: str | Sequence[Hashable] | None = None, *,
               what: str = "image") -> tuple[str, ...]:
    """The dims of an image: an xarray's dim names, or a numpy array's ``axes=``.

    A DataArray names its own dims (``axes`` must then be ``None`` or agree with
    them); a numpy array needs ``axes`` unless it is 2-D (then ``(y, x)``).

    Raises
    ------
    ValueError
        Unknown/repeated names, a missing ``axes`` for an array that is not 2-D, or
        ``axes`` that contradict an xarray's dims.

    Examples
    --------
    >>> image_dims(xr.DataArray(np.zeros((2, 4, 5)), dims=("ch", "row", "col")))
    ('c', 'y', 'x')
    >>> image_dims(np.zeros((3, 4, 5)), "ZYX")
    ('z', 'y', 'x')
    """
    if _is_dataarray(image):
        unknown = [d for d in image.dims if dim_name(d) is None]
        if unknown:
            raise ValueError(f"{what}: xarray dims {[str(d) for d in unknown]} are not understood; "
                             f"{_DIMS_HELP} (rename others, e.g. .rename({{{str(unknown[0])!r}: 't'}}))")
        dims = normalise_dims(image.dims)
        if axes is not None and parse_axes(axes, image.ndim, what=what) != dims:
            raise ValueError(f"{what}: axes={axes!r} contradict the xarray dims {tuple(image.dims)}; "
                             "leave axes= out for an xarray (its dims decide)")
        return dims
    ndim = np.ndim(image)
    if axes is None:
        if ndim != 2:
            raise ValueError(f"{what}: a {ndim}-D numpy array needs axes=, e.g. 'ZYX' for a z-stack, "
                             "'CYX' for channels, 'YXS' for RGB; only 2-D arrays are taken as 'YX'")
        return ("y", "x")
    return parse_axes(axes, ndim, what=what)


def as_dataarray(data: Any, dims: Sequence[Hashable] | str | None) -> tuple[xr.DataArray, tuple[str, ...]]:
    """Validate an image for ImageJ; return it as a DataArray and its normalised dims.

    ``dims`` names a numpy array's axes (a string names one per character); a
    DataArray names its own. Used by :func:`ij_bridge.to_imageplus` and
    :func:`ij_bridge.io.imwrite`.

    Examples
    --------
    >>> da, dims = as_dataarray(np.zeros((4, 5, 3), np.uint8), "yxs")
    >>> dims, da.shape
    (('y', 'x', 's'), (4, 5, 3))
    """
    if _is_dataarray(data):
        if dims is not None:
            raise ValueError("dims= is for numpy arrays; an xarray.DataArray names its own dims "
                             "(rename them with data.rename(...))")
        da = data
    else:
        arr = np.asarray(data)
        if dims is None:
            if arr.ndim != 2:
                raise ValueError(
                    f"a {arr.ndim}-D numpy array needs dims=, e.g. dims=('z', 'y', 'x') for a "
                    "z-stack, ('c', 'y', 'x') for channels or ('y', 'x', 's') for RGB; or pass an "
                    "xarray.DataArray with named dims. Only 2-D arrays are taken as (y, x)")
            dims = ("y", "x")
        if len(dims) != arr.ndim:
            raise ValueError(f"dims {tuple(dims)!r} name {len(dims)} axes but the array has "
                             f"{arr.ndim} (shape {arr.shape})")
        da = xr.DataArray(arr, dims=tuple(str(d) for d in dims))
    if da.ndim < 2:
        raise ValueError(f"an image needs at least 2 dims (y, x); got shape {da.shape}")
    norm = normalise_dims(da.dims)
    if da.size == 0:
        raise ValueError(f"cannot convert an empty array (shape {da.shape}) to an image")
    if "s" in norm and da.sizes[da.dims[norm.index("s")]] != 3:
        raise ValueError("dim 's' (RGB samples) must have size 3 (R, G, B); name it 'c' "
                         "for a multi-channel image instead")
    return da, norm


def to_model_layout(data: Any, dims: Sequence[str], target: Sequence[str], *, what: str = "image",
                    rgb_as_channels: bool = True) -> np.ndarray:
    """Transpose an array with (normalised) ``dims`` into the order ``target``.

    Dims of ``target`` that the array lacks are added with size 1; dims the array has
    but ``target`` lacks are dropped when their size is 1, and refused otherwise. With
    ``rgb_as_channels`` the RGB sample dim ``s`` is the channel dim ``c`` (a network
    sees colour as three channels); an image with both ``c`` and ``s`` is refused.

    Raises
    ------
    ValueError
        An extra dim of size > 1 (the message says how to select one), or both
        ``c`` and ``s``.

    Examples
    --------
    >>> to_model_layout(np.zeros((4, 5, 3)), ("y", "x", "s"), ("c", "y", "x")).shape
    (3, 4, 5)
    >>> to_model_layout(np.zeros((1, 4, 5)), ("t", "y", "x"), ("y", "x", "c")).shape
    (4, 5, 1)
    """
    arr = np.asarray(data.values if _is_dataarray(data) else data)
    dims = list(dims)
    if len(dims) != arr.ndim:
        raise ValueError(f"{what}: dims {tuple(dims)} name {len(dims)} axes but the array has {arr.ndim}")
    if rgb_as_channels and "s" in dims:
        if "c" in dims:
            raise ValueError(f"{what} has both channels (c) and RGB samples (s); a model takes one "
                             "channel axis: convert the RGB to channels first")
        dims[dims.index("s")] = "c"
    extra = [d for d in dims if d not in target]
    big = [d for d in extra if arr.shape[dims.index(d)] > 1]
    if big:
        d = big[0]
        raise ValueError(f"{what} has the dim {d!r} of size {arr.shape[dims.index(d)]}, which this "
                         f"model does not take (it takes {tuple(target)}); select one, e.g. "
                         f"image.isel({d}=0)")
    if extra:
        arr = np.squeeze(arr, axis=tuple(dims.index(d) for d in extra))
        dims = [d for d in dims if d not in extra]
    for d in target:
        if d not in dims:
            arr = arr[..., None]
            dims.append(d)
    return np.transpose(arr, [dims.index(d) for d in target])


# =========================================================================== dtypes
class LossyConversionWarning(UserWarning):
    """A pixel value changed on the way to ImageJ or to a file (the message says how)."""


#: The pixel types ImageJ holds: 8-bit, 16-bit, 32-bit float (RGB is 8-bit per sample).
IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))


def imagej_dtype(dtype: Any, is_rgb: bool = False) -> np.dtype:
    """The numpy dtype that :func:`from_imageplus` gives back for pixels of ``dtype``.

    >>> [str(imagej_dtype(d)) for d in ("uint8", "int8", "bool", "float64", "int32")]
    ['uint8', 'int16', 'uint8', 'float32', 'float32']

    Raises
    ------
    TypeError
        For dtypes ImageJ cannot hold, as :func:`to_imagej_dtype`.
    """
    dt = np.dtype(dtype)
    if is_rgb:
        if dt != np.uint8:
            raise TypeError(f"RGB images (dim 's') must be uint8, got {dt}")
        return np.dtype(np.uint8)
    if dt.kind == "b":
        return np.dtype(np.uint8)
    if dt.kind not in "uif":
        raise TypeError(f"cannot convert dtype {dt} to an ImageJ image; ImageJ holds 8-, 16-bit "
                        "integers, 32-bit floats and RGB")
    dt = dt.newbyteorder("=")
    if dt in IMAGEJ_DTYPES:
        return dt
    if dt in (np.dtype(np.int8), np.dtype(np.int16)):
        return np.dtype(np.int16)
    return np.dtype(np.float32)


def to_imagej_dtype(arr: np.ndarray, is_rgb: bool, stacklevel: int = 3) -> tuple[np.ndarray, bool]:
    """Pixels as uint8/uint16/float32 (uint8 for RGB), and whether they are signed 16-bit.

    Signed data (int8, int16) come back as raw uint16 = value + 32768, ImageJ's
    signed-16-bit convention; the flag says so. The full table is in ``docs/bridge.md``
    (*Pixel types*): bool → 0/255, float16 → float32 exactly, float64 and integers wider
    than 16 bits → float32 with a :class:`LossyConversionWarning` where a value changes.

    Raises
    ------
    TypeError
        complex, strings, objects, datetimes; RGB that is not uint8.

    Examples
    --------
    >>> px, signed = to_imagej_dtype(np.array([[-1, 2]], np.int16), is_rgb=False)
    >>> px.dtype, px.tolist(), signed
    (dtype('uint16'), [[32767, 32770]], True)
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     px, _ = to_imagej_dtype(np.array([[2**24 + 1]], np.int64), is_rgb=False)
    >>> px.dtype, w[0].category.__name__
    (dtype('float32'), 'LossyConversionWarning')
    """
    dt = arr.dtype
    if is_rgb:
        if dt != np.uint8:
            raise TypeError(f"RGB images (dim 's') must be uint8, got {dt}; scale to 0..255 and "
                            "use .astype('uint8'), or rename dim 's' to 'c' for a multi-channel image")
        return arr, False
    if dt.kind == "b":
        return arr.astype(np.uint8) * np.uint8(255), False
    if dt.kind not in "uif":
        raise TypeError(f"cannot convert dtype {dt} to an ImageJ image; ImageJ holds 8-, 16-bit "
                        "integers, 32-bit floats and RGB")
    if dt.byteorder not in ("=", "|") and dt.itemsize > 1:
        arr = arr.astype(dt.newbyteorder("="))
        dt = arr.dtype
    if dt == np.uint8 or dt == np.uint16 or dt == np.float32:
        return arr, False
    if dt == np.int16 or dt == np.int8:
        raw = arr.astype(np.int16, copy=dt == np.int8).view(np.uint16) ^ np.uint16(0x8000)
        return raw, True
    if dt == np.float16:
        return arr.astype(np.float32), False
    with np.errstate(over="ignore", invalid="ignore"):
        out = arr.astype(np.float32)
    if dt == np.float64:
        overflow = int(np.count_nonzero(np.isfinite(arr) & ~np.isfinite(out)))
        underflow = int(np.count_nonzero((arr != 0) & (out == 0)))
        if overflow or underflow:
            warnings.warn(
                f"float64 → 32-bit float: {overflow} value(s) overflow to ±inf and {underflow} "
                "non-zero value(s) become 0 (float32 range is about 1.2e-38..3.4e38); rescale "
                "the data first to keep them", LossyConversionWarning, stacklevel=stacklevel)
        return out, False
    # wider integers
    exact = np.isfinite(out).all() and np.array_equal(out.astype(dt), arr)
    if not exact:
        diff = np.abs(out.astype(np.float64) - arr.astype(np.float64))
        changed = int(np.count_nonzero(diff))
        warnings.warn(
            f"{dt} → 32-bit float: {changed} value(s) are not exactly representable "
            f"(largest change {float(diff.max()):g}); float32 holds integers exactly only up "
            "to 2**24 = 16777216", LossyConversionWarning, stacklevel=stacklevel)
    return out, False



# =========================================================================== calibration
#: The unit of an uncalibrated time axis (coordinates are frame numbers 0, 1, ...).
UNCALIBRATED_TIME = "frame"


def _uniform_step(name: str, coord: np.ndarray) -> tuple[float, float, float]:
    """(step, origin in pixels, first value) of an evenly spaced increasing coordinate.

    Step candidates are the first difference and the mean step, and both rounded to
    4..15 significant digits; the origin is ``-coord[0] / step``. Among the steps that
    reproduce the coordinate with ImageJ's formula ``(i - origin) * step`` to rounding
    error, the shortest decimal wins (0.3 rather than 0.299999999988 from coordinates far
    from zero). For a single
    sample the step and origin are NaN.
    """
    c = np.asarray(coord)
    if c.dtype.kind not in "uif":
        raise ValueError(f"coordinate {name!r} is not numeric ({c.dtype}); ImageJ calibration "
                         f"needs numbers. Drop it with data.drop_vars({name!r}) to go uncalibrated")
    c = c.astype(np.float64)
    if not np.all(np.isfinite(c)):
        raise ValueError(f"coordinate {name!r} has NaN or inf values")
    n = c.size
    if n == 1:
        return math.nan, math.nan, float(c[0])
    candidates = {c[1] - c[0], (c[-1] - c[0]) / (n - 1)}
    candidates |= {float(f"{s:.{digits}g}") for s in list(candidates) for digits in range(4, 16)}
    idx = np.arange(n, dtype=np.float64)
    scored = []
    for s in candidates:
        if not s > 0:
            continue
        o = -c[0] / s + 0.0  # no negative zero
        err = float(np.max(np.abs((idx - o) * s - c)))
        scored.append((err, len(repr(s)), s, o))
    best, best_err = None, math.inf
    if scored:
        best_err = min(t[0] for t in scored)
        # among pairs that reproduce the coordinate to rounding error, the shortest
        # numbers (0.1625 rather than 0.16249999999999998) are what the user meant
        tol = max(best_err, 16 * np.finfo(np.float64).eps * float(np.max(np.abs(c))))
        err, _, s_, o_ = min((t for t in scored if t[0] <= tol), key=lambda t: (t[1], t[0]))
        best, best_err = (s_, o_), err
    if best is None:
        raise ValueError(f"coordinate {name!r} must increase (ImageJ pixel sizes are positive)")
    s, o = best
    if best_err > 1e-6 * s:
        d = np.diff(c)
        raise ValueError(
            f"coordinate {name!r} is not evenly spaced (steps from {d.min():g} to {d.max():g}); "
            "ImageJ calibration needs one constant step. Resample, or drop the coordinate "
            f"with data.drop_vars({name!r}) to go uncalibrated")
    return float(s), float(o), float(c[0])


def default_calibration() -> dict[str, Any]:
    """An uncalibrated image's calibration (ImageJ's defaults)."""
    return {
        "pixel_width": 1.0, "pixel_height": 1.0, "pixel_depth": 1.0,
        "x_origin": 0.0, "y_origin": 0.0, "z_origin": 0.0,
        "frame_interval": 0.0, "t_origin": 0.0,
        "x_unit": "pixel", "y_unit": None, "z_unit": None, "time_unit": "sec",
    }


_CAL_SPEC = {"x": ("pixel_width", "x_origin", "x_unit"), "y": ("pixel_height", "y_origin", "y_unit"),
             "z": ("pixel_depth", "z_origin", "z_unit"), "t": ("frame_interval", "t_origin", "time_unit")}


def calibration_from_dataarray(da: xr.DataArray, norm: tuple[str, ...]) -> dict[str, Any]:
    """ImageJ calibration (as a dict, see :func:`default_calibration`) of an image.

    Coordinates with a constant step give sizes and origins (origins in pixels);
    ``attrs["units"]`` gives units; ``attrs["calibration"]`` (written by
    :func:`ij_bridge.from_imageplus` and :func:`imread`) supplies the exact numbers
    while the coordinates still agree with them, and the calibration of dims that the
    array does not have.
    """
    orig = dict(zip(norm, da.dims))
    attrs = da.attrs or {}
    units: dict[str, str] = {}
    for d, u in _checked_units(attrs.get("units")).items():
        key = dim_name(d)
        if key is not None and u is not None:
            units[key] = str(u)
    prev = _checked_calibration(attrs.get("calibration"))
    cal = default_calibration()
    for d, (size_key, origin_key, unit_key) in _CAL_SPEC.items():
        if d not in norm:  # absent dim: keep what an earlier reader recorded
            for k in (size_key, origin_key, unit_key):
                if prev.get(k) is not None:
                    cal[k] = prev[k]
            continue
        name = orig[d]
        n = da.sizes[name]
        if d == "t" and units.get("t") == UNCALIBRATED_TIME:
            continue  # frame numbers: uncalibrated time
        if name not in da.coords:
            if d in units:
                cal[unit_key] = units[d]
            continue
        coord = np.asarray(da.coords[name].values)
        step, origin, first = _uniform_step(str(name), coord)
        ps, po = prev.get(size_key), prev.get(origin_key)
        if ps is not None and po is not None and ps > 0:
            if d == "t":
                expected = po + np.arange(n) * ps
            else:
                expected = (np.arange(n) - po) * ps
            if np.array_equal(expected, coord.astype(np.float64)):
                step, origin, first = float(ps), float(po), float(po)
        if math.isnan(step):  # one sample: the step cannot be seen in the coordinate
            step = float(ps) if ps else 1.0
            origin = -first / step + 0.0
        cal[size_key] = step
        cal[origin_key] = first if d == "t" else origin
        cal[unit_key] = units.get(d, prev.get(unit_key) or cal[unit_key])
    for k in ("value_calibration", "value_unit", "info", "invert_y"):
        if attrs.get(k) is not None:
            cal[k] = attrs[k]
    if "c" in norm and orig["c"] in da.coords:
        cc = np.asarray(da.coords[orig["c"]].values)
        if not (cc.dtype.kind in "iu" and np.array_equal(cc, np.arange(cc.size))):
            warnings.warn("channel coordinates are not kept by ImageJ (channels come back as "
                          "0..C-1)", UserWarning, stacklevel=3)
    return cal


def _checked_units(units: Any) -> Mapping[Any, Any]:
    """``attrs["units"]``: a mapping of dim names to unit strings (or absent)."""
    if units is None:
        return {}
    if not isinstance(units, Mapping):
        example = f"{{'x': {units!r}, 'y': {units!r}}}" if isinstance(units, str) else "{'x': 'um', 'y': 'um'}"
        raise ValueError(f"attrs['units'] must map dims to units, e.g. {example}; got "
                         f"{type(units).__name__} {units!r}")
    for d, u in units.items():
        if dim_name(d) is None:
            raise ValueError(f"attrs['units'] names the dim {d!r}; use x, y, z, t (e.g. {{'x': 'um'}})")
        if u is not None and not isinstance(u, str):
            raise ValueError(f"attrs['units'][{d!r}] must be a unit string such as 'um', got {u!r}")
    return units


_CAL_NUMBERS = ("pixel_width", "pixel_height", "pixel_depth", "x_origin", "y_origin", "z_origin",
                "frame_interval", "t_origin")


def _checked_calibration(cal: Any) -> dict[str, Any]:
    """``attrs["calibration"]`` (as :func:`ij_bridge.from_imageplus` writes it), checked key by key."""
    if cal is None:
        return {}
    if not isinstance(cal, Mapping):
        raise ValueError(f"attrs['calibration'] must be a dict such as from_imageplus writes "
                         f"({', '.join(default_calibration())}), got {type(cal).__name__} {cal!r}; "
                         "or leave it out and give coordinates and attrs['units']")
    valid = default_calibration()
    out = dict(cal)
    for k, v in out.items():
        if k not in valid:
            raise ValueError(f"attrs['calibration'] has the unknown key {k!r}; its keys are "
                             f"{', '.join(valid)}")
        if v is None:
            continue
        if k in _CAL_NUMBERS:
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(float(v)):
                raise ValueError(f"attrs['calibration'][{k!r}] must be a finite number, got {v!r}")
            if k.startswith("pixel_") and not float(v) > 0:
                raise ValueError(f"attrs['calibration'][{k!r}] (a pixel size) must be positive, got {v!r}")
            if k == "frame_interval" and float(v) < 0:
                raise ValueError(f"attrs['calibration']['frame_interval'] must be >= 0, got {v!r}")
        elif not isinstance(v, str):
            raise ValueError(f"attrs['calibration'][{k!r}] must be a unit string such as 'um', got {v!r}")
    return out


#: ImageJ holds one plane in one Java array: at most 2**31 - 1 pixels.
MAX_PLANE_PIXELS = 2**31 - 1


def check_plane_size(height: int, width: int) -> None:
    """Refuse planes larger than ImageJ can hold (a Java array of 2**31 - 1 pixels).

    Raises
    ------
    ValueError
        Naming the size and the fix (crop, tile or downsample).
    """
    n = int(height) * int(width)
    if n > MAX_PLANE_PIXELS:
        raise ValueError(f"a plane of {int(height)} x {int(width)} = {n} pixels is more than ImageJ holds "
                         f"in one image plane (2**31 - 1 = {MAX_PLANE_PIXELS} pixels): crop, tile or "
                         "downsample it first")


def stack_order(da: xr.DataArray, norm: tuple[str, ...], pixels: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """``pixels`` (laid out as ``da``) as a (T, Z, C, Y, X[, S]) array, and dim sizes."""
    sizes = {d: (da.sizes[da.dims[norm.index(d)]] if d in norm else 1) for d in DIM_ORDER}
    order = [norm.index(d) for d in ("t", "z", "c", "y", "x", "s") if d in norm]
    arr = np.transpose(pixels, order)
    shape = tuple(sizes[d] for d in ("t", "z", "c", "y", "x")) + ((3,) if "s" in norm else ())
    return arr.reshape(shape), sizes


def assemble(stack: np.ndarray, nc: int, nz: int, nt: int, cal: Mapping[str, Any],
             attrs: dict[str, Any]) -> xr.DataArray:
    """A DataArray from pixels in ImageJ stack order (N, Y, X[, 3]) and a calibration."""
    rgb = stack.ndim == 4
    n, h, w = stack.shape[:3]
    arr = stack.reshape((nt, nz, nc, h, w) + ((3,) if rgb else ()))
    keep = [d for d, size in zip(("t", "c", "z"), (nt, nc, nz)) if size > 1]
    arr = arr.transpose((0, 2, 1) + tuple(range(3, arr.ndim)))  # t, c, z, ...
    index = tuple(slice(None) if d in keep else 0 for d in ("t", "c", "z"))
    arr = np.ascontiguousarray(arr[index])
    dims = keep + ["y", "x"] + (["s"] if rgb else [])
    coords: dict[str, Any] = {
        "x": physical_coords(w, cal["x_origin"], cal["pixel_width"]),
        "y": physical_coords(h, cal["y_origin"], cal["pixel_height"]),
    }
    units = {"x": cal["x_unit"], "y": cal["y_unit"] or cal["x_unit"]}
    if "z" in keep:
        coords["z"] = physical_coords(nz, cal["z_origin"], cal["pixel_depth"])
        units["z"] = cal["z_unit"] or cal["x_unit"]
    if "t" in keep:
        if cal["frame_interval"] > 0:
            coords["t"] = cal["t_origin"] + np.arange(nt) * cal["frame_interval"]
            units["t"] = cal["time_unit"]
        else:
            coords["t"] = np.arange(nt)
            units["t"] = UNCALIBRATED_TIME
    if "c" in keep:
        coords["c"] = np.arange(nc)
    if rgb:
        coords["s"] = ["R", "G", "B"]
    attrs = dict(attrs)
    attrs["units"] = units
    attrs["calibration"] = {k: cal[k] for k in default_calibration()}
    return xr.DataArray(arr, dims=dims, coords=coords, attrs=attrs, name=attrs.get("title"))


def sanitize_unit(unit: str | None) -> str:
    """ImageJ's own unit clean-up (``Calibration.setUnit``): '' → pixel, um → µm, A → Å.

    This is the spelling ImageJ stores; every other unit is kept as given (see
    :func:`canonical_unit` to compare spellings).

    >>> sanitize_unit("um"), sanitize_unit(""), sanitize_unit("micron")
    ('µm', 'pixel', 'micron')
    """
    if unit is None or unit == "":
        return "pixel"
    return {"um": "µm", "A": "Å"}.get(unit, unit)


#: Spellings of one unit (lower case) → the spelling ImageJ uses. Only for comparing
#: units: stored units keep the user's spelling (apart from ImageJ's own um → µm, A → Å).
_UNIT_SPELLINGS = types.MappingProxyType({
    "um": "µm", "µm": "µm", "\u03bcm": "µm", "micron": "µm", "microns": "µm", "micrometer": "µm",
    "micrometre": "µm", "micrometers": "µm", "micrometres": "µm",
    "nm": "nm", "nanometer": "nm", "nanometre": "nm", "nanometers": "nm", "nanometres": "nm",
    "mm": "mm", "millimeter": "mm", "millimetre": "mm", "millimeters": "mm", "millimetres": "mm",
    "cm": "cm", "m": "m", "meter": "m", "metre": "m",
    "a": "Å", "å": "Å", "angstrom": "Å", "angstroms": "Å",
    "inch": "inch", "inches": "inch", "in": "inch",
    "pixel": "pixel", "pixels": "pixel", "px": "pixel", "": "pixel",
    "s": "sec", "sec": "sec", "second": "sec", "seconds": "sec",
    "ms": "ms", "min": "min", "minute": "min", "minutes": "min", "h": "hour", "hr": "hour", "hour": "hour",
    "hours": "hour",
})


def canonical_unit(unit: str | None) -> str:
    """One spelling per unit, for comparing units (not for storing them).

    ``um``, ``µm`` (micro sign U+00B5, ImageJ's), ``μm`` (Greek mu U+03BC),
    ``micron(s)`` and ``micrometer`` are all ``"µm"``; ``pixels``/``px``/empty are
    ``"pixel"``; ``A``/``angstrom`` are ``"Å"``. Other units come back stripped.

    >>> canonical_unit("microns"), canonical_unit("\\u03bcm"), canonical_unit(None)
    ('µm', 'µm', 'pixel')
    """
    if unit is None:
        return "pixel"
    u = str(unit).strip()
    if u == "A":  # Å in ImageJ; a lower-case "a" is not a length
        return "Å"
    return _UNIT_SPELLINGS.get(u.lower(), u)


def same_unit(a: str | None, b: str | None) -> bool:
    """Whether two unit strings name the same unit (:func:`canonical_unit`).

    >>> same_unit("um", "micron"), same_unit("um", "nm")
    (True, False)
    """
    return canonical_unit(a) == canonical_unit(b)


def physical_coords(n: int, origin: float, size: float) -> np.ndarray:
    """ImageJ's physical positions of ``n`` pixels: ``(i - origin) * size``.

    ImageJ keeps origins in pixels (``Calibration.xOrigin``); the bridge's coordinates
    are these physical positions, bit for bit ``Calibration.getX(i)``.

    >>> physical_coords(3, 1.0, 0.5).tolist()
    [-0.5, 0.0, 0.5]
    """
    return (np.arange(int(n)) - float(origin)) * float(size)


def pixel_size(image: Any, dims: Sequence[str] = SPATIAL_DIMS) -> dict[str, tuple[float, str]]:
    """Pixel size and unit of each of ``dims`` that the image has, as ImageJ calibrates it.

    A numpy array, or a dim without a coordinate, is uncalibrated: ``(1.0, "pixel")``
    (a numpy array is taken as ``(y, x)``-like: only ``y`` and ``x`` are reported).

    >>> da = xr.DataArray(np.zeros((2, 3)), dims=("y", "x"),
    ...                   coords={"y": [0.0, 0.25], "x": [0.0, 0.25, 0.5]},
    ...                   attrs={"units": {"x": "um", "y": "um"}})
    >>> pixel_size(da)
    {'y': (0.25, 'um'), 'x': (0.25, 'um')}
    >>> pixel_size(np.zeros((4, 4)))
    {'y': (1.0, 'pixel'), 'x': (1.0, 'pixel')}
    """
    if not _is_dataarray(image):
        return {d: (1.0, "pixel") for d in dims if d in ("y", "x")}
    norm = normalise_dims(image.dims)
    cal = calibration_from_dataarray(image, norm)
    out = {}
    for d in dims:
        if d not in norm:
            continue
        size_key, _, unit_key = _CAL_SPEC[d]
        unit = cal[unit_key] or cal["x_unit"]
        out[d] = (float(cal[size_key]), str(unit))
    return out
