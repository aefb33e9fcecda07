"""Images between numpy/xarray and ImageJ 1.x ``ImagePlus``, calibration included.

Conventions
-----------
The dims, the dim aliases, the dtype table and the calibration rules are those of
:mod:`ij_bridge.layout` (Java-free, shared with :mod:`ij_bridge.io`), stated once in
``docs/bridge.md`` (*Dimensions*, *Pixel types*, *Calibration*). In short: an
:class:`xarray.DataArray` with dims ``t, c, z, y, x`` (and ``s``, size 3, for RGB) and
physical coordinates; a numpy array is uncalibrated and needs ``dims=`` unless 2-D.

ImageJ side: 8-bit, 16-bit, 32-bit or RGB ``ImagePlus``, a stack or hyperstack in
ImageJ's order (channel fastest, then slice, then frame). With more than one of
C, Z, T the image is marked as a hyperstack; with C > 1 it is a ``CompositeImage``.
A time origin (ImageJ has none) is kept in the ImagePlus property
``ij_bridge.t_origin``.

Speed: whole stacks move through one ``java.nio`` direct buffer that views the numpy
memory; Java copies each plane in bulk. No per-pixel or per-row Python loops.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import xarray as xr

from ._java import jc
from ..layout import (DIM_ORDER, LossyConversionWarning, as_dataarray, assemble,
                      calibration_from_dataarray, check_plane_size, normalise_dims, stack_order,
                      to_imagej_dtype)

__all__ = ["to_imageplus", "from_imageplus", "set_label_lut", "LossyConversionWarning", "normalise_dims",
           "DIM_ORDER"]

T_ORIGIN_PROPERTY = "ij_bridge.t_origin"


# --------------------------------------------------------------------------- Java
def _ensure_started() -> None:
    from . import runtime

    runtime._ensure_started()


_JTYPES = {  # numpy dtype of the ImageJ pixel array -> (jpype primitive, nio view method)
    np.dtype(np.uint8): ("JByte", None),
    np.dtype(np.uint16): ("JShort", "asShortBuffer"),
    np.dtype(np.float32): ("JFloat", "asFloatBuffer"),
    np.dtype(np.int32): ("JInt", "asIntBuffer"),  # packed RGB
}


def _typed_buffer(arr: np.ndarray):
    """A Java typed buffer viewing the memory of the contiguous array ``arr``."""
    import jpype.nio

    flat = arr.reshape(-1).view(np.uint8)
    bb = jpype.nio.convertToDirectBuffer(flat)
    bb = bb.order(jc.ByteOrder.nativeOrder())
    method = _JTYPES[arr.dtype][1]
    return bb if method is None else getattr(bb, method)()


def _planes_to_java(stack: np.ndarray) -> list:
    """Java primitive arrays, one per plane of the C-contiguous (N, H, W) ``stack``."""
    import jpype

    stack = np.ascontiguousarray(stack)
    jtype = getattr(jpype, _JTYPES[stack.dtype][0])
    n, h, w = stack.shape
    buf = _typed_buffer(stack)
    planes = []
    for _ in range(n):
        arr = jpype.JArray(jtype)(h * w)
        buf.get(arr)  # bulk copy in Java, advances the buffer's position
        planes.append(arr)
    del buf
    return planes


def _java_to_planes(pixels: Sequence, dtype: np.dtype, h: int, w: int) -> np.ndarray:
    """Copy Java primitive arrays (one per plane) into a new (N, H, W) numpy array."""
    out = np.empty((len(pixels), h, w), dtype=dtype)
    if out.size == 0:
        return out
    buf = _typed_buffer(out)
    for arr in pixels:
        buf.put(arr)
    del buf
    return out


# --------------------------------------------------------------------------- calibration
def _apply_calibration(imp, cal: dict, signed16: bool) -> None:
    jcal = jc.Calibration(imp)
    jcal.pixelWidth = float(cal["pixel_width"])
    jcal.pixelHeight = float(cal["pixel_height"])
    jcal.pixelDepth = float(cal["pixel_depth"])
    jcal.xOrigin = float(cal["x_origin"])
    jcal.yOrigin = float(cal["y_origin"])
    jcal.zOrigin = float(cal["z_origin"])
    jcal.frameInterval = float(cal["frame_interval"])
    jcal.setXUnit(str(cal["x_unit"]))
    jcal.setYUnit(None if cal["y_unit"] is None else str(cal["y_unit"]))
    jcal.setZUnit(None if cal["z_unit"] is None else str(cal["z_unit"]))
    jcal.setTimeUnit(str(cal["time_unit"]))
    if cal.get("invert_y"):
        jcal.setInvertY(True)
    if signed16:
        jcal.setSigned16BitCalibration()
    elif cal.get("value_calibration") and imp.getBitDepth() in (8, 16):
        vc = cal["value_calibration"]
        import jpype

        coeffs = vc.get("coefficients")
        jcoeffs = None if coeffs is None else jpype.JArray(jpype.JDouble)([float(v) for v in coeffs])
        jcal.setFunction(int(vc["function"]), jcoeffs, str(vc.get("unit") or "Gray Value"))
    if cal.get("value_unit") and imp.getBitDepth() == 32:
        jcal.setValueUnit(str(cal["value_unit"]))
    if cal.get("info") is not None:
        imp.setProperty("Info", str(cal["info"]))
    imp.setCalibration(jcal)
    if cal.get("t_origin"):
        imp.setProperty(T_ORIGIN_PROPERTY, jc.Double(float(cal["t_origin"])))


# --------------------------------------------------------------------------- to ImageJ
def to_imageplus(data: Any, title: str | None = None, *,
                 dims: Sequence[str] | None = None):
    """Copy an array into a new ImageJ ``ImagePlus`` (with calibration).

    Parameters
    ----------
    data : numpy.ndarray or xarray.DataArray
        Pixels. A numpy array is uncalibrated and must be 2-D ``(y, x)`` unless ``dims``
        names its axes. An xarray's dims (``t, c, z, y, x, s`` or PyImageJ's names) may
        come in any order; see the module docs for dtypes and calibration.
    title : str, optional
        Image title; default ``data.attrs["title"]``, else ``data.name``, else ``"image"``.
    dims : sequence of str, optional
        Names of a numpy array's axes, e.g. ``("z", "y", "x")``.

    Returns
    -------
    ij.ImagePlus
        Not shown; call ``imp.show()`` to display it.

    Raises
    ------
    ValueError
        Missing/unknown/repeated dims, empty arrays, unevenly spaced coordinates, a
        plane over ImageJ's 2**31 - 1 pixels, ``attrs["units"]`` that is not a
        mapping of dims to unit strings, an ``attrs["calibration"]`` that is not
        what :func:`from_imageplus` writes (unknown keys, pixel sizes that are not
        positive finite numbers).
    TypeError
        dtypes ImageJ cannot hold (complex, strings, objects; RGB that is not uint8).

    Examples
    --------
    >>> imp = to_imageplus(np.zeros((5, 64, 64), np.uint16), dims=("z", "y", "x"))  # doctest: +SKIP
    >>> imp.getNSlices()  # doctest: +SKIP
    5
    """
    da, norm = as_dataarray(data, dims)
    is_rgb = "s" in norm
    # everything that can fail on the Python side happens before Java is touched
    # (and before any copy of the pixels)
    check_plane_size(da.sizes[da.dims[norm.index("y")]], da.sizes[da.dims[norm.index("x")]])
    cal = calibration_from_dataarray(da, norm)
    pixels, signed16 = to_imagej_dtype(np.asarray(da.values), is_rgb)
    arr, sizes = stack_order(da, norm, pixels)
    h, w = sizes["y"], sizes["x"]
    n = sizes["t"] * sizes["z"] * sizes["c"]
    if is_rgb:
        rgb = arr.reshape(n, h, w, 3)
        packed = np.empty((n, h, w, 4), np.uint8)  # little-endian ARGB ints: B, G, R, A bytes
        packed[..., 0] = rgb[..., 2]
        packed[..., 1] = rgb[..., 1]
        packed[..., 2] = rgb[..., 0]
        packed[..., 3] = 255
        stack_arr = packed.view("<i4").reshape(n, h, w).astype(np.int32, copy=False)
    else:
        stack_arr = np.ascontiguousarray(arr).reshape(n, h, w)
    if title is None:
        title = da.attrs.get("title") or (str(da.name) if da.name is not None else "image")
    labels = da.attrs.get("slice_labels")
    if labels is not None and len(labels) != n:
        labels = None

    _ensure_started()
    planes = _planes_to_java(stack_arr)
    ImageStack = jc.ImageStack
    ImagePlus = jc.ImagePlus
    stack = ImageStack(w, h)
    for i, p in enumerate(planes):
        stack.addSlice(None if labels is None or labels[i] is None else str(labels[i]), p)
    imp = ImagePlus(str(title), stack)
    imp.setDimensions(sizes["c"], sizes["z"], sizes["t"])
    if sum(v > 1 for v in (sizes["c"], sizes["z"], sizes["t"])) > 1:
        imp.setOpenAsHyperStack(True)
    if sizes["c"] > 1 and not is_rgb:
        CompositeImage = jc.CompositeImage
        imp = CompositeImage(imp, CompositeImage.COMPOSITE)
    _apply_calibration(imp, cal, signed16)
    dr = da.attrs.get("display_range")
    if dr is not None and sizes["c"] == 1 and not is_rgb:
        imp.setDisplayRange(float(dr[0]), float(dr[1]))
    return imp


# --------------------------------------------------------------------------- label images
def set_label_lut(imp, top: int | None = None):
    """Show a label image with distinct colours: :func:`ij_bridge.luts.label_lut`, 0 black.

    Sets the image's LUT (all planes) and its display range to ``0 ..
    max(255, top)``: with up to 255 objects every label has its own entry of
    the table (label k is entry k), as label tools show them. ImageJ shows a
    16-bit image through 256 LUT entries, so with more objects consecutive
    labels share a colour in bands of ``(top + 1) / 256`` (beyond 511
    objects the first few labels then fall on entry 0 and show black).

    Parameters
    ----------
    imp : ij.ImagePlus
        A single-channel 8-, 16- or 32-bit label image.
    top : int, optional
        The largest label (default: the image's maximum over all planes).

    Returns
    -------
    ij.ImagePlus
        ``imp``, for chaining.
    """
    import jpype

    from ..luts import label_lut

    _ensure_started()
    if imp.getType() == jc.ImagePlus.COLOR_RGB or imp.getNChannels() > 1:
        raise ValueError(f"{imp.getTitle()!r} is not a single-channel label image (RGB or "
                         f"{imp.getNChannels()} channels)")
    if top is None:
        stack = imp.getStack()
        top = max((stack.getProcessor(i + 1).getStatistics().max for i in range(stack.getSize())),
                  default=0)
    table = label_lut().astype(np.int8)  # Java bytes are signed
    rgb = [jpype.JArray(jpype.JByte)(table[:, i].tolist()) for i in range(3)]
    imp.setLut(jc("ij.process.LUT")(*rgb))
    imp.setDisplayRange(0.0, float(max(255, int(top))))
    return imp


# --------------------------------------------------------------------------- from ImageJ
def _calibration_dict(jcal, imp) -> dict:
    t0 = imp.getProperty(T_ORIGIN_PROPERTY)
    # ImageJ keeps a blank unit (" ") from TIFFs without a resolution unit: that is "pixel"
    xunit, yunit, zunit = (str(u).strip() or "pixel" for u in (jcal.getXUnit(), jcal.getYUnit(), jcal.getZUnit()))
    return {
        "pixel_width": float(jcal.pixelWidth), "pixel_height": float(jcal.pixelHeight),
        "pixel_depth": float(jcal.pixelDepth),
        "x_origin": float(jcal.xOrigin), "y_origin": float(jcal.yOrigin), "z_origin": float(jcal.zOrigin),
        "frame_interval": float(jcal.frameInterval),
        "t_origin": float(t0.doubleValue()) if t0 is not None else 0.0,
        "x_unit": xunit, "y_unit": None if yunit == xunit else yunit,
        "z_unit": None if zunit == xunit else zunit, "time_unit": str(jcal.getTimeUnit()),
    }


def from_imageplus(imp) -> xr.DataArray:
    """Copy an ImageJ ``ImagePlus`` into an :class:`xarray.DataArray`.

    Parameters
    ----------
    imp : ij.ImagePlus
        Any 8-, 16-, 32-bit or RGB image, stack or hyperstack (virtual stacks are read
        plane by plane).

    Returns
    -------
    xarray.DataArray
        dims ``t, c, z, y, x`` (those with size > 1, always ``y, x``) plus ``s`` (size 3)
        for RGB; coords in physical units; ``attrs["units"]`` per calibrated dim and the
        other attrs listed in the module docs.
    """
    if imp is None:
        raise ValueError("no image (got None); is an image open?")
    _ensure_started()
    ImagePlus = jc.ImagePlus
    itype = int(imp.getType())
    w, h = int(imp.getWidth()), int(imp.getHeight())
    nc, nz, nt = int(imp.getNChannels()), int(imp.getNSlices()), int(imp.getNFrames())
    stack = imp.getStack()
    n = int(stack.getSize())
    if nc * nz * nt != n:  # inconsistent dimensions: treat as a plain z-stack, like ImageJ
        nc, nz, nt = 1, n, 1
    pixels = [stack.getPixels(i + 1) for i in range(n)]
    if itype == ImagePlus.COLOR_RGB:
        raw = _java_to_planes(pixels, np.dtype(np.int32), h, w)
        arr = raw.view(np.uint8).reshape(n, h, w, 4)[..., [2, 1, 0]]
    elif itype in (ImagePlus.GRAY8, ImagePlus.COLOR_256):
        arr = _java_to_planes(pixels, np.dtype(np.uint8), h, w)
    elif itype == ImagePlus.GRAY16:
        arr = _java_to_planes(pixels, np.dtype(np.uint16), h, w)
    elif itype == ImagePlus.GRAY32:
        arr = _java_to_planes(pixels, np.dtype(np.float32), h, w)
    else:  # pragma: no cover - ImageJ has no other types
        raise TypeError(f"unsupported ImagePlus type {itype}")
    del pixels
    jcal = imp.getCalibration()
    attrs: dict[str, Any] = {"title": str(imp.getTitle())}
    if itype == ImagePlus.GRAY16 and jcal.isSigned16Bit():
        arr ^= np.uint16(0x8000)
        arr = arr.view(np.int16)
    elif itype in (ImagePlus.GRAY8, ImagePlus.GRAY16, ImagePlus.COLOR_256) and jcal.calibrated():
        coeffs = jcal.getCoefficients()
        attrs["value_calibration"] = {
            "function": int(jcal.getFunction()),
            "coefficients": None if coeffs is None else [float(v) for v in coeffs],
            "unit": str(jcal.getValueUnit()),
        }
    if itype == ImagePlus.GRAY32 and str(jcal.getValueUnit()) != "Gray Value":
        attrs["value_unit"] = str(jcal.getValueUnit())
    if jcal.getInvertY():
        attrs["invert_y"] = True
    info = imp.getProperty("Info")
    if info is not None:
        attrs["info"] = str(info)
    labels = [stack.getSliceLabel(i + 1) for i in range(n)]
    if any(lab is not None for lab in labels):
        attrs["slice_labels"] = [None if lab is None else str(lab) for lab in labels]
    if nc == 1 and itype != ImagePlus.COLOR_RGB:
        attrs["display_range"] = (float(imp.getDisplayRangeMin()), float(imp.getDisplayRangeMax()))
    return assemble(arr, nc, nz, nt, _calibration_dict(jcal, imp), attrs)
