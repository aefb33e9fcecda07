"""ImageJ-compatible files without Java: hyperstack TIFF, ROI sets, CSV tables.

This module never starts a JVM. It also holds the Python side of the image model
(dim names, dtypes, calibration) that :mod:`ij_bridge.imagej.images` shares, so that a
TIFF read here and an ``ImagePlus`` converted by the bridge give the same
:class:`xarray.DataArray`.

Images
------
:func:`imread` and :func:`imwrite` speak ImageJ's hyperstack TIFF (what *File > Save
As > Tiff* writes and ``IJ.openImage`` reads) through tifffile:

* dims ``t, c, z, y, x`` (a subset as present) and ``s`` (size 3) for RGB, as in
  :func:`ij_bridge.from_imageplus`; data are stored in ImageJ's TZCYXS order.
* Calibration as ImageJ stores it: pixel width/height in the X/YResolution tags (as
  1/size; the rational is chosen so that ImageJ's ``1/(num/den)`` gives back the very
  same double where 32-bit rationals allow it), and ``unit``, ``yunit``, ``zunit``,
  ``spacing``, ``finterval``, ``tunit``, ``xorigin``, ``yorigin``, ``zorigin`` and the
  value function (``cf``, ``c0``.., ``vunit``) in the ImageJ description. Units are
  written with ImageJ's ``\\uXXXX`` escapes, so ``µm`` survives. A time origin (ImageJ
  has none) goes in a ``torigin`` entry that ImageJ ignores and :func:`imread` reads.
* Pixel types: uint8, uint16, float32 and RGB as they are; int16 is written as
  signed 16-bit (ImageJ opens it with its signed-16-bit calibration; :func:`imread`
  returns int16); every other dtype is converted as documented in
  :mod:`ij_bridge.imagej.images` (bool → 0/255, int8 → int16, wider ints and floats →
  float32, warning where a value changes).
* ``overlay=`` (a sequence of :class:`roifile.ImagejRoi`) and ``roi=`` (the image's
  selection) are stored in ImageJ's own TIFF metadata; :func:`imread` returns them in
  ``attrs["overlay"]`` and ``attrs["roi"]``.

Files are written atomically: into a temporary file next to the target, then renamed
over it (``os.replace``), so a failed write never leaves a half-written file. An
existing file is never replaced unless ``overwrite=True``.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import warnings
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any, Hashable, Iterator, Mapping, Sequence

import numpy as np
import xarray as xr

__all__ = [
    "imread", "imwrite", "read_rois", "write_rois", "read_table", "write_table",
    "normalise_dims", "LossyConversionWarning", "DIM_ORDER",
]

#: The dims used for images, in order (``s`` only for RGB).
DIM_ORDER = ("t", "c", "z", "y", "x", "s")

_ALIASES = {
    "t": "t", "time": "t", "frame": "t", "frames": "t",
    "c": "c", "ch": "c", "channel": "c", "channels": "c",
    "z": "z", "pln": "z", "plane": "z", "slice": "z", "slices": "z",
    "y": "y", "row": "y",
    "x": "x", "col": "x",
    "s": "s", "rgb": "s", "sample": "s",
}

UNCALIBRATED_TIME = "frame"


class LossyConversionWarning(UserWarning):
    """A pixel value changed on the way to ImageJ or to a file (the message says how)."""


# =========================================================================== image model
def normalise_dims(dims: Sequence[Hashable] | str) -> tuple[str, ...]:
    """Map dim names (ours, PyImageJ's, any case) to ``t, c, z, y, x, s``.

    A string such as ``"zyx"`` names one axis per character.

    Raises
    ------
    ValueError
        For unknown or repeated names, or when ``y`` or ``x`` is missing.
    """
    out = []
    for d in dims:
        key = str(d).strip().lower()
        if key not in _ALIASES:
            raise ValueError(
                f"unknown dim {d!r}; use t, c, z, y, x (or PyImageJ's time, ch, pln, row, col) "
                "and s (or rgb) of size 3 for RGB colour samples")
        out.append(_ALIASES[key])
    if len(set(out)) != len(out):
        raise ValueError(f"dims {tuple(dims)!r} name the same axis twice (as {tuple(out)!r})")
    if "y" not in out or "x" not in out:
        raise ValueError(f"dims {tuple(dims)!r} need both a y (row) and an x (col) dim")
    return tuple(out)


def as_dataarray(data: Any, dims: Sequence[Hashable] | str | None) -> tuple[xr.DataArray, tuple[str, ...]]:
    """Validate an image; return it as a DataArray and its normalised dim names."""
    if isinstance(data, xr.DataArray):
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


def to_imagej_dtype(arr: np.ndarray, is_rgb: bool, stacklevel: int = 3) -> tuple[np.ndarray, bool]:
    """Pixels as uint8/uint16/float32 (uint8 for RGB), and whether they are signed 16-bit.

    Signed data (int8, int16) come back as raw uint16 = value + 32768, ImageJ's
    signed-16-bit convention; the flag says so.
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
        key = _ALIASES.get(str(d).lower())
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
        if _ALIASES.get(str(d).strip().lower()) is None:
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
        "x": (np.arange(w) - cal["x_origin"]) * cal["pixel_width"],
        "y": (np.arange(h) - cal["y_origin"]) * cal["pixel_height"],
    }
    units = {"x": cal["x_unit"], "y": cal["y_unit"] or cal["x_unit"]}
    if "z" in keep:
        coords["z"] = (np.arange(nz) - cal["z_origin"]) * cal["pixel_depth"]
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
    """ImageJ's own unit clean-up (``Calibration.setUnit``): '' → pixel, um → µm, A → Å."""
    if unit is None or unit == "":
        return "pixel"
    return {"um": "µm", "A": "Å"}.get(unit, unit)


# =========================================================================== atomic files
def default_file_mode() -> int:
    """The permissions a plain ``open(path, "w")`` would give a new file (0666 less the umask)."""
    try:  # Linux: read the umask without changing it (os.umask is process-wide and racy)
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def _atomic_path(path: str | os.PathLike, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it over ``path`` on success."""
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"{str(target)!r} is a folder; give a file name")
    if target.exists() and not overwrite:
        raise FileExistsError(f"{str(target)!r} exists; pass overwrite=True to replace it")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"folder {str(target.parent)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, default_file_mode())  # mkstemp made it private (0600)
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


# =========================================================================== TIFF
def _escape(s: str) -> str:
    """ImageJ's escaping for description values (java.util.Properties)."""
    out = []
    for ch in str(s):
        o = ord(ch)
        if ch in "\n\r":
            raise ValueError(f"ImageJ metadata values cannot contain line breaks: {s!r}")
        if 0x20 <= o < 0x7F and ch != "\\":
            out.append(ch)
        elif o <= 0xFFFF:
            out.append(f"\\u{o:04X}")
        else:
            raise ValueError(f"character {ch!r} cannot be stored in ImageJ metadata")
    return "".join(out)


_ESC = re.compile(r"\\u([0-9a-fA-F]{4})|\\(.)")


def _unescape(s: Any) -> Any:
    if not isinstance(s, str):
        return s
    simple = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
    return _ESC.sub(lambda m: chr(int(m.group(1), 16)) if m.group(1) else simple.get(m.group(2), m.group(2)), s)


def _simplest_fraction_between(lo: Fraction, hi: Fraction) -> Fraction:
    """The fraction with the smallest denominator in the open interval (lo, hi), 0 < lo < hi."""
    fl = lo.numerator // lo.denominator
    if fl + 1 < hi:  # an integer lies strictly inside
        return Fraction(fl + 1)
    if lo == fl:  # lo is an integer; look just above it
        return fl + 1 / _simplest_fraction_between(1 / (hi - fl), Fraction(10**30))
    return fl + 1 / _simplest_fraction_between(1 / (hi - fl), 1 / (lo - fl))


def _resolution_rational(size: float) -> tuple[int, int]:
    """(num, den) < 2**32 with ``1.0 / (num / den) == size`` in doubles, if one exists.

    ImageJ reads a pixel size as ``1/(num/den)`` from the X/YResolution rational. For
    the double ``q = 1/size`` and its neighbours, the simplest fraction that rounds to
    ``q`` is tried; the first that gives back ``size`` exactly wins, else the closest.
    """
    if not (size > 0 and math.isfinite(size)):
        raise ValueError(f"pixel size must be a positive number, got {size!r}")
    limit = 2**32 - 1
    q0 = 1.0 / size
    qs = [q0]
    up = down = q0
    for _ in range(4):
        up, down = math.nextafter(up, math.inf), math.nextafter(down, 0.0)
        qs += [up, down]
    best, best_err = None, math.inf
    for q in qs:
        fq = Fraction(q)
        half = Fraction(math.ulp(q)) / 4  # stay well inside q's rounding interval
        f = _simplest_fraction_between(fq - half, fq + half) if q > half else fq
        num, den = f.numerator, f.denominator
        if num > limit or den > limit:
            g = Fraction(q).limit_denominator(limit)
            while g.numerator > limit:
                g = Fraction(q).limit_denominator(max(1, g.denominator // 2))
            num, den = g.numerator, g.denominator
        if num == 0 or den == 0:
            continue
        err = abs(1.0 / (num / den) - size)
        if err == 0:
            return num, den
        if err < best_err:
            best, best_err = (num, den), err
    if best is None:
        raise ValueError(f"pixel size {size!r} cannot be stored as a TIFF resolution")
    return best


def _fmt(v: float) -> str:
    """A float as ImageJ's description wants it (shortest exact repr, ints without .0)."""
    v = float(v)
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)


def imwrite(path: str | os.PathLike, data: Any, *, dims: Sequence[str] | str | None = None,
            overlay: Sequence[Any] | None = None, roi: Any = None, overwrite: bool = False,
            compression: str | None = None) -> Path:
    """Write an ImageJ hyperstack TIFF with calibration (and overlay/selection).

    Parameters
    ----------
    path : str or path
        Target file (``.tif``). Its folder must exist.
    data : numpy.ndarray or xarray.DataArray
        The image, as for :func:`ij_bridge.to_imageplus` (a numpy array is 2-D
        ``(y, x)`` unless ``dims`` names its axes; an xarray carries calibration).
    dims : sequence of str or str, optional
        Names of a numpy array's axes, e.g. ``"zyx"``.
    overlay : sequence of roifile.ImagejRoi, optional
        Stored as the image's Overlay.
    roi : roifile.ImagejRoi, optional
        Stored as the image's selection.
    overwrite : bool
        Replace an existing file (default: refuse with :class:`FileExistsError`).
    compression : str, optional
        tifffile compression, e.g. ``"zlib"`` (ImageJ reads zlib/deflate-compressed
        TIFFs; default uncompressed, as ImageJ writes).

    Returns
    -------
    pathlib.Path
        The written file.
    """
    import tifffile

    da, norm = as_dataarray(data, dims)
    is_rgb = "s" in norm
    cal = calibration_from_dataarray(da, norm)
    pixels, signed = to_imagej_dtype(np.asarray(da.values), is_rgb)
    if signed:  # tifffile writes int16 as signed 16-bit, which ImageJ reads as such
        pixels = (pixels ^ np.uint16(0x8000)).view(np.int16)
    arr, sizes = stack_order(da, norm, pixels)
    axes = "TZCYX" + ("S" if is_rgb else "")
    for k in ("pixel_width", "pixel_height", "pixel_depth"):
        if not (cal[k] > 0 and math.isfinite(cal[k])):
            raise ValueError(f"{k} must be a positive number, got {cal[k]!r}")
    meta: dict[str, Any] = {"axes": axes, "unit": _escape(cal["x_unit"])}
    if cal["y_unit"] and cal["y_unit"] != cal["x_unit"]:
        meta["yunit"] = _escape(cal["y_unit"])
    if cal["z_unit"] and cal["z_unit"] != cal["x_unit"]:
        meta["zunit"] = _escape(cal["z_unit"])
    if cal["pixel_depth"] != 1.0:
        meta["spacing"] = _fmt(cal["pixel_depth"])
    if cal["frame_interval"]:
        meta["finterval"] = _fmt(cal["frame_interval"])
    if cal["time_unit"] != "sec":
        meta["tunit"] = _escape(cal["time_unit"])
    for k in ("x_origin", "y_origin", "z_origin"):
        if cal[k]:
            meta[k.replace("_", "")] = _fmt(cal[k])
    if cal.get("t_origin"):
        meta["torigin"] = _fmt(cal["t_origin"])
    vc = cal.get("value_calibration")
    if vc and not signed and pixels.dtype != np.float32 and vc.get("coefficients") is not None:
        meta["cf"] = int(vc["function"])
        for i, c in enumerate(vc["coefficients"]):
            meta[f"c{i}"] = _fmt(c)
        meta["vunit"] = _escape(vc.get("unit") or "Gray Value")
    if cal.get("value_unit") and pixels.dtype == np.float32:
        meta["vunit"] = _escape(cal["value_unit"])
    if cal.get("invert_y"):
        meta["inverty"] = "true"
    dr = da.attrs.get("display_range")
    if dr is not None and not is_rgb and sizes["c"] == 1:
        meta["min"], meta["max"] = _fmt(dr[0]), _fmt(dr[1])
    if cal.get("info") is not None:
        meta["Info"] = str(cal["info"])
    labels = da.attrs.get("slice_labels")
    n_planes = sizes["t"] * sizes["z"] * sizes["c"]
    if labels is not None and len(labels) == n_planes and any(lab for lab in labels):
        meta["Labels"] = ["" if lab is None else str(lab) for lab in labels]
    if overlay:
        meta["Overlays"] = [_roi_bytes(r) for r in overlay]
        for i, blob in enumerate(meta["Overlays"]):
            check_roi_coordinates(blob, f"overlay ROI {i + 1}")
    if roi is not None:
        meta["ROI"] = _roi_bytes(roi)
        check_roi_coordinates(meta["ROI"], "roi=")
    resolution = (_resolution_rational(cal["pixel_width"]), _resolution_rational(cal["pixel_height"]))
    with _atomic_path(path, overwrite) as tmp:
        tifffile.imwrite(tmp, arr, imagej=True, resolution=resolution, resolutionunit=1,
                         metadata=meta, compression=compression,
                         photometric="rgb" if is_rgb else "minisblack")
    return Path(path)


def _roi_bytes(roi: Any) -> bytes:
    if isinstance(roi, (bytes, bytearray)):
        return bytes(roi)
    tobytes = getattr(roi, "tobytes", None)
    if tobytes is None:
        raise TypeError(f"expected a roifile.ImagejRoi (or .roi bytes), got {type(roi).__name__}; "
                        "convert Java ROIs with ij_bridge.roi_from_java first")
    return tobytes()


_AXES = {"T": "t", "C": "c", "Z": "z", "Y": "y", "X": "x", "S": "s"}


def imread(path: str | os.PathLike) -> xr.DataArray:
    """Read a TIFF (ImageJ hyperstack or plain) as a calibrated DataArray.

    For ImageJ TIFFs the result equals what ``ij_bridge.from_imageplus(IJ.openImage(path))``
    gives: the same dims, pixels, coordinates, units and calibration (read the way
    ImageJ 1.53t reads them, including its ``1/(num/den)`` pixel size). Signed 16-bit
    images (int16 files, or ImageJ's value function ``-32768 + 1·raw``) come back as
    int16. Overlay and selection are in ``attrs["overlay"]`` / ``attrs["roi"]``
    (:class:`roifile.ImagejRoi`).

    Other TIFFs (OME, plain multi-page) use tifffile's axes: T, C, Z, Y, X, S as named;
    a plain page sequence (I or Q) becomes z. Resolution tags in cm or inch calibrate x
    and y.
    """
    import tifffile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        axes = series.axes.upper()
        data = series.asarray()
        page = tif.pages[0]
        meta = tif.imagej_metadata if tif.is_imagej else None
        xres = page.tags.get("XResolution")
        yres = page.tags.get("YResolution")
        resunit = page.tags.get("ResolutionUnit")
        xres = xres.value if xres is not None else None
        yres = yres.value if yres is not None else None
        resunit = int(resunit.value) if resunit is not None else 2
    cal = default_calibration()
    attrs: dict[str, Any] = {"title": path.name}

    def _pixel_size(res):
        if res is None:
            return None
        num, den = (res if isinstance(res, tuple) else (res, 1))
        return 1.0 / (num / den) if den and num else None

    pw, ph = _pixel_size(xres), _pixel_size(yres)
    if meta is not None:
        meta = {k: _unescape(v) for k, v in meta.items()}
        unit = str(meta.get("unit", ""))
        # as ImageJ's FileOpener: the description's unit always applies; pixel sizes
        # come from the resolution tags (1.0 where a tag is missing)
        cal["pixel_width"] = pw if pw is not None else 1.0
        cal["pixel_height"] = ph if ph is not None else 1.0
        cal["x_unit"] = sanitize_unit(unit)
        if meta.get("spacing") is not None:
            cal["pixel_depth"] = abs(float(meta["spacing"]))
        for key, field in (("xorigin", "x_origin"), ("yorigin", "y_origin"), ("zorigin", "z_origin"),
                           ("finterval", "frame_interval"), ("torigin", "t_origin")):
            if meta.get(key) is not None:
                cal[field] = float(meta[key])
        cal["time_unit"] = str(meta.get("tunit") or "sec")
        if meta.get("yunit"):
            cal["y_unit"] = sanitize_unit(str(meta["yunit"]))
        if meta.get("zunit"):
            cal["z_unit"] = sanitize_unit(str(meta["zunit"]))
        for k in ("y_unit", "z_unit"):
            if cal[k] == cal["x_unit"]:
                cal[k] = None
        if meta.get("inverty") in (True, "true"):
            attrs["invert_y"] = True
        if meta.get("Info") is not None:
            attrs["info"] = str(meta["Info"])
        # value calibration
        coeffs = [float(meta[f"c{i}"]) for i in range(5) if meta.get(f"c{i}") is not None]
        vunit = meta.get("vunit")
        if data.dtype == np.uint16 and meta.get("cf") == 0 and coeffs == [-32768.0, 1.0] and vunit is not None:
            data = (data ^ np.uint16(0x8000)).view(np.int16)
        elif vunit is not None and data.dtype == np.float32:
            attrs["value_unit"] = str(vunit)
        elif vunit is not None and meta.get("cf") is not None and data.dtype in (np.uint8, np.uint16):
            attrs["value_calibration"] = {"function": int(meta["cf"]),
                                          "coefficients": coeffs or None, "unit": str(vunit)}
        if meta.get("min") is not None and meta.get("max") is not None:
            attrs["display_range"] = (float(meta["min"]), float(meta["max"]))
        labels = meta.get("Labels")
        if labels is not None:
            labels = [labels] if isinstance(labels, str) else list(labels)
            attrs["slice_labels"] = [lab if lab else None for lab in labels]
        if meta.get("Overlays") is not None:
            attrs["overlay"] = _rois_from_meta(meta["Overlays"])
        if meta.get("ROI") is not None:
            attrs["roi"] = _rois_from_meta(meta["ROI"])[0]
    elif pw is not None and resunit in (2, 3) and not (resunit == 2 and pw == 1.0 / 72.0):
        cal["pixel_width"] = pw
        cal["pixel_height"] = ph if ph is not None else pw
        cal["x_unit"] = "inch" if resunit == 2 else "cm"

    # axes -> ImageJ stack order
    letters = []
    for a in axes:
        if a in _AXES:
            letters.append(_AXES[a])
        elif a in "IQ" and "z" not in letters and "Z" not in axes:
            letters.append("z")
        else:
            raise ValueError(f"{str(path)!r} has TIFF axes {axes!r}; axis {a!r} has no ImageJ "
                             "equivalent (supported: T, C, Z, Y, X, S and one plain page axis)")
    if "s" in letters and data.shape[letters.index("s")] != 3:
        raise ValueError(f"{str(path)!r} has {data.shape[letters.index('s')]} samples per pixel; "
                         "only RGB (3) is supported")
    if "x" not in letters:
        raise ValueError(f"{str(path)!r} has TIFF axes {axes!r} (shape {data.shape}) without an x axis; "
                         "an image needs rows and columns: save it as a 2-D image")
    if "y" not in letters:  # a single row (tifffile squeezes it): one row of pixels, as ImageJ opens it
        data = np.expand_dims(data, letters.index("x"))
        letters.insert(letters.index("x"), "y")
    if "s" in letters and data.dtype != np.uint8:
        # ImageJ's RGB is 8 bits per sample; it opens 48-bit (and other) RGB as 3 channels
        if "c" in letters:
            raise ValueError(f"{str(path)!r} is {data.dtype} RGB with channels (axes {axes!r}); ImageJ "
                             "holds RGB only as 8-bit: save the colours as channels instead")
        letters[letters.index("s")] = "c"
    if data.dtype not in (np.uint8, np.uint16, np.int16, np.float32):
        data, signed = to_imagej_dtype(data, "s" in letters)
        if signed:
            data = (data ^ np.uint16(0x8000)).view(np.int16)
    present = {d: data.shape[i] for i, d in enumerate(letters)}
    order = [letters.index(d) for d in ("t", "z", "c", "y", "x", "s") if d in letters]
    arr = np.transpose(data, order)
    nt, nz, nc = present.get("t", 1), present.get("z", 1), present.get("c", 1)
    h, w = present["y"], present["x"]
    stack = arr.reshape((nt * nz * nc, h, w) + ((3,) if "s" in letters else ()))
    if attrs.get("display_range") is not None and (nc > 1 or "s" in letters):
        del attrs["display_range"]
    return assemble(stack, nc, nz, nt, cal, attrs)


def _rois_from_meta(value: Any) -> list:
    from roifile import ImagejRoi

    items = value if isinstance(value, (list, tuple)) else [value]
    return [ImagejRoi.frombytes(bytes(b)) for b in items]


# =========================================================================== ROI sets
def read_rois(path: str | os.PathLike) -> list:
    """Read a ``.roi`` file or an ImageJ ROI-set ``.zip`` as a list of :class:`roifile.ImagejRoi`."""
    from roifile import roiread

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    rois = roiread(path)
    return list(rois) if isinstance(rois, list) else [rois]


def check_roi_coordinates(roi: Any, what: str = "ROI") -> None:
    """Refuse a :class:`roifile.ImagejRoi` with NaN or infinite coordinates.

    ImageJ would paint such a ROI as nothing, or fail deep inside; its file would
    carry the NaN on. Checks the sub-pixel and composite coordinates, line end
    points and sub-pixel rectangles.

    Raises
    ------
    ValueError
        Naming the ROI and the first bad point.
    """
    if isinstance(roi, (bytes, bytearray)):
        from roifile import ImagejRoi

        roi = ImagejRoi.frombytes(bytes(roi))
    name = getattr(roi, "name", None)
    label = f"{what} {name!r}" if name else what
    for attr in ("subpixel_coordinates", "multi_coordinates"):
        c = getattr(roi, attr, None)
        if c is None:
            continue
        c = np.asarray(c, dtype=np.float64)
        bad = ~np.isfinite(c)
        if bad.any():
            if attr == "subpixel_coordinates" and c.ndim == 2:
                i = int(np.flatnonzero(bad.any(axis=1))[0])
                where = f"point {i + 1} is ({c[i, 0]:g}, {c[i, 1]:g})"
            else:
                where = f"{int(bad.sum())} value(s) are NaN or inf"
            raise ValueError(f"{label} has NaN or infinite coordinates ({where}); remove those "
                             "points, or drop the ROI")
    for attr in ("x1", "y1", "x2", "y2", "xd", "yd", "widthd", "heightd"):
        v = getattr(roi, attr, 0.0)
        if v is not None and not math.isfinite(float(v)):
            raise ValueError(f"{label} has a NaN or infinite {attr} ({v}); give finite coordinates, "
                             "or drop the ROI")


def write_rois(path: str | os.PathLike, rois: Sequence[Any], *, overwrite: bool = False) -> Path:
    """Write ROIs as ImageJ's ROI Manager does: one ``.roi`` or a ``.zip`` set.

    Unlike ``roifile.roiwrite``, this never appends to an existing zip: the file holds
    exactly ``rois``, in order (the ROI Manager's order), and an existing file is only
    replaced with ``overwrite=True``. Entry names are the ROI names (made unique with
    ``-2``, ``-3``... as ImageJ does); unnamed ROIs get ImageJ-style names from their
    position.

    Parameters
    ----------
    path : str or path
        ``.zip`` for a set, ``.roi`` for exactly one ROI.
    rois : sequence of roifile.ImagejRoi
    overwrite : bool
    """
    import zipfile

    rois = list(rois)
    path = Path(path)
    if not rois:
        raise ValueError("no ROIs to write")
    blobs = [_roi_bytes(r) for r in rois]
    for i, r in enumerate(rois):
        check_roi_coordinates(r, f"ROI {i + 1}")
    suffix = path.suffix.lower()
    if suffix == ".roi":
        if len(rois) != 1:
            raise ValueError(f"a .roi file holds one ROI, got {len(rois)}; use a .zip path")
        with _atomic_path(path, overwrite) as tmp:
            tmp.write_bytes(blobs[0])
        return path
    if suffix != ".zip":
        raise ValueError(f"ROI files end in .roi or .zip, got {path.name!r}")
    from roifile import ImagejRoi

    names: list[str] = []
    seen: set[str] = set()
    for i, r in enumerate(rois):
        if isinstance(r, (bytes, bytearray)):
            r = rois[i] = ImagejRoi.frombytes(bytes(r))
        base = getattr(r, "name", None) or _auto_name(r, i)
        base = base[:-4] if base.lower().endswith(".roi") else base
        name, k = base, 1
        while name in seen:
            k += 1
            name = f"{base}-{k}"
        seen.add(name)
        names.append(name)
        if name != getattr(r, "name", None):  # the ROI's own name = its entry name, as ImageJ saves
            copy = ImagejRoi.frombytes(blobs[i])
            copy.name = name
            blobs[i] = copy.tobytes()
    with _atomic_path(path, overwrite) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, blob in zip(names, blobs):
                # a fixed entry time (the zip epoch) and mode: the same ROIs give the same bytes
                info = zipfile.ZipInfo(f"{name}.roi", date_time=ZIP_EPOCH)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, blob)
    return path


#: The entry time of every zip entry written here (zip's earliest date): reproducible bytes.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _auto_name(roi: Any, index: int) -> str:
    """ImageJ-like 'yyyy-xxxx' name from the ROI's centre (or the index if unknown)."""
    try:
        yc = int((roi.top + roi.bottom) / 2)
        xc = int((roi.left + roi.right) / 2)
        return f"{yc:04d}-{xc:04d}"
    except Exception:
        return f"roi-{index + 1:04d}"


# =========================================================================== tables
def write_table(path: str | os.PathLike, df: Any, *, overwrite: bool = False) -> Path:
    """Write a DataFrame as a CSV that ImageJ opens as a Results table.

    A non-default index (row labels) becomes a ``Label`` column (the index name is not kept)
    after a row-number column headed ``" "``, the layout ImageJ saves and needs to
    recognise labels; numbers are written with full precision (``repr``), missing
    values as ``NaN``, as ImageJ does.
    """
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas.DataFrame, got {type(df).__name__}")
    out = df.copy()
    if not isinstance(out.index, pd.RangeIndex) or out.index.start != 0 or out.index.step != 1:
        label = "Label"  # the only heading ImageJ takes for row labels
        if label in out.columns:
            raise ValueError(f"the index (row labels) and a column are both named {label!r}")
        out = out.reset_index(names=[label])
        # ImageJ recognises row labels only after its row-number column (heading " ")
        out.insert(0, " ", np.arange(1, len(out) + 1))
    with _atomic_path(path, overwrite) as tmp:
        out.to_csv(tmp, index=False, na_rep="NaN", float_format=None)
    return Path(path)


def read_table(path: str | os.PathLike) -> Any:
    """Read a CSV/TSV table as saved by ImageJ (or :func:`write_table`) into a DataFrame.

    ImageJ's row-number column (heading ``" "``) is dropped; a ``Label`` column becomes
    the (string) index, as in :func:`ij_bridge.results_to_dataframe`.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    sep = "\t" if path.suffix.lower() in (".tsv", ".txt", ".xls") else ","
    df = pd.read_csv(path, sep=sep, keep_default_na=False, na_values=["NaN"])
    first = df.columns[0] if len(df.columns) else None
    if first is not None and (str(first).strip() == "" or str(first).startswith("Unnamed: 0")):
        df = df.drop(columns=first)
    if "Label" in df.columns:
        df = df.set_index("Label")
        df.index = df.index.astype(str)
    return df
