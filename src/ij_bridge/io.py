"""ImageJ-compatible files without Java: hyperstack TIFF, ROI sets, CSV tables.

This module never starts a JVM. The image model it shares with
:mod:`ij_bridge.imagej.images` (dim names, dtypes, calibration) is
:mod:`ij_bridge.layout`, so that a TIFF read here and an ``ImagePlus`` converted by the
bridge give the same :class:`xarray.DataArray`; the rules are stated once, in
``docs/bridge.md``. Its names (``normalise_dims``, ``LossyConversionWarning``,
``DIM_ORDER``, ...) stay importable from here.

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
  returns int16); every other dtype is converted by
  :func:`ij_bridge.layout.to_imagej_dtype` (bool → 0/255, int8 → int16, wider ints and
  floats → float32, warning where a value changes).
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
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import xarray as xr

__all__ = [
    "imread", "imwrite", "read_calibration", "calibration_tiff_kwargs", "read_rois", "write_rois",
    "read_table", "write_table",
    "normalise_dims", "LossyConversionWarning", "DIM_ORDER",
]

# The image model (dims, aliases, dtypes, calibration) lives in ij_bridge.layout; these
# names stay importable from here.
from .layout import (DIM_ORDER, IMAGEJ_ORDER, MAX_PLANE_PIXELS, UNCALIBRATED_TIME,  # noqa: F401
                     LossyConversionWarning, as_dataarray, assemble, calibration_from_dataarray,
                     check_plane_size, default_calibration, dim_name, normalise_dims, sanitize_unit,
                     stack_order, to_imagej_dtype)


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
    meta: dict[str, Any] = {"axes": axes, **_geometry_metadata(cal)}
    vc = cal.get("value_calibration")
    if vc and not signed and pixels.dtype != np.float32 and vc.get("coefficients") is not None:
        meta["cf"] = int(vc["function"])
        for i, c in enumerate(vc["coefficients"]):
            meta[f"c{i}"] = _fmt(c)
        meta["vunit"] = _escape(vc.get("unit") or "Gray Value")
    if cal.get("value_unit") and pixels.dtype == np.float32:
        meta["vunit"] = _escape(cal["value_unit"])
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
    resolution = _resolution(cal)
    with _atomic_path(path, overwrite) as tmp:
        tifffile.imwrite(tmp, arr, imagej=True, resolution=resolution, resolutionunit=1,
                         metadata=meta, compression=compression,
                         photometric="rgb" if is_rgb else "minisblack")
    return Path(path)


def _geometry_metadata(cal: dict[str, Any]) -> dict[str, Any]:
    """The description entries of ImageJ's spatial and time calibration (units, spacing, origins, interval)."""
    meta: dict[str, Any] = {"unit": _escape(cal["x_unit"])}
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
    if cal.get("invert_y"):
        meta["inverty"] = "true"
    return meta


def _resolution(cal: dict[str, Any]) -> tuple[tuple[int, int], tuple[int, int]]:
    return (_resolution_rational(cal["pixel_width"]), _resolution_rational(cal["pixel_height"]))


def calibration_tiff_kwargs(cal: dict[str, Any], axes: str | None = None) -> dict[str, Any]:
    """Keyword arguments for ``tifffile`` that write an ImageJ TIFF with this spatial calibration.

    For writers that fill a file plane by plane (``tifffile.memmap``) rather than
    through :func:`imwrite`: the pixel sizes, units, z spacing, origins and
    frame interval of ``cal`` (as :func:`read_calibration` returns it) are
    written exactly as :func:`imwrite` writes them.

    Parameters
    ----------
    cal : dict
        A calibration (:func:`read_calibration`, or a DataArray's ``attrs``).
    axes : str, optional
        ImageJ axes of the data to be written, e.g. ``"YX"`` or ``"ZYX"``
        (left out: the writer adds them).
    """
    meta = _geometry_metadata(cal) if axes is None else {"axes": axes, **_geometry_metadata(cal)}
    return {"imagej": True, "resolution": _resolution(cal), "resolutionunit": 1, "metadata": meta}


def read_calibration(path: str | os.PathLike) -> dict[str, Any]:
    """The spatial and time calibration of a TIFF, from its header only (no pixels are read).

    Returns the same keys and values as the ``attrs`` of :func:`imread`'s result
    (``pixel_width``, ``pixel_height``, ``pixel_depth``, units, origins,
    ``frame_interval``, ``time_unit``); value calibration is not included.
    """
    import tifffile

    with tifffile.TiffFile(path) as tif:
        meta, xres, yres, resunit = _header(tif)
    cal = default_calibration()
    attrs: dict[str, Any] = {}
    _geometry_from_header(cal, attrs, meta, xres, yres, resunit)
    if attrs.get("invert_y"):
        cal["invert_y"] = True
    return cal


def _header(tif: Any) -> tuple[dict[str, Any] | None, Any, Any, int]:
    page = tif.pages[0]
    meta = tif.imagej_metadata if tif.is_imagej else None
    if meta is not None:
        meta = {k: _unescape(v) for k, v in meta.items()}
    xres = page.tags.get("XResolution")
    yres = page.tags.get("YResolution")
    resunit = page.tags.get("ResolutionUnit")
    return (meta, xres.value if xres is not None else None, yres.value if yres is not None else None,
            int(resunit.value) if resunit is not None else 2)


def _pixel_size(res: Any) -> float | None:
    if res is None:
        return None
    num, den = (res if isinstance(res, tuple) else (res, 1))
    return 1.0 / (num / den) if den and num else None


def _geometry_from_header(cal: dict[str, Any], attrs: dict[str, Any], meta: dict[str, Any] | None,
                          xres: Any, yres: Any, resunit: int) -> None:
    """Fill ``cal`` with the spatial and time calibration of a TIFF header, as ImageJ 1.53t reads it."""
    pw, ph = _pixel_size(xres), _pixel_size(yres)
    if meta is not None:
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
    elif pw is not None and resunit in (2, 3) and not (resunit == 2 and pw == 1.0 / 72.0):
        cal["pixel_width"] = pw
        cal["pixel_height"] = ph if ph is not None else pw
        cal["x_unit"] = "inch" if resunit == 2 else "cm"


def _roi_bytes(roi: Any) -> bytes:
    if isinstance(roi, (bytes, bytearray)):
        return bytes(roi)
    tobytes = getattr(roi, "tobytes", None)
    if tobytes is None:
        raise TypeError(f"expected a roifile.ImagejRoi (or .roi bytes), got {type(roi).__name__}; "
                        "convert Java ROIs with ij_bridge.roi_from_java first")
    return tobytes()


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
        meta, xres, yres, resunit = _header(tif)
    cal = default_calibration()
    attrs: dict[str, Any] = {"title": path.name}
    _geometry_from_header(cal, attrs, meta, xres, yres, resunit)
    if meta is not None:
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

    # axes -> ImageJ stack order
    letters = []
    for a in axes:
        if dim_name(a) is not None:  # tifffile's T, C, Z, Y, X, S are ours (ij_bridge.layout)
            letters.append(dim_name(a))
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
    order = [letters.index(d) for d in IMAGEJ_ORDER if d in letters]
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
