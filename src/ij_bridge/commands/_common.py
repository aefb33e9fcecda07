"""Helpers shared by the bundled commands: images in and out with calibration."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..imagej.windows import unique_title  # noqa: F401 - kept here for the commands
from .registry import CommandError

LABEL_SUFFIX = "-labels"
DENOISED_SUFFIX = "-denoised"
POSITIONS = ("Automatic", "Stack", "Hyperstack")
OUTPUTS = ("ROI Manager", "Label Image", "Both")


def to_xarray(imp):
    """``from_imageplus`` (dims t, c, z, y, x present; physical coords; units)."""
    from ..imagej.images import from_imageplus

    return from_imageplus(imp)


def base_title(imp) -> str:
    """The image title without a TIFF-like extension (``blobs.tif`` -> ``blobs``)."""
    title = str(imp.getTitle())
    for ext in (".tiff", ".tif", ".TIF", ".TIFF", ".png", ".jpg"):
        if title.endswith(ext) and len(title) > len(ext):
            return title[: -len(ext)]
    return title


def like(data: np.ndarray, template, dims: Sequence[str], title: str):
    """Wrap ``data`` (axes ``dims``) as a DataArray with ``template``'s calibration."""
    import xarray as xr

    coords = {d: template.coords[d].values for d in dims if d in template.coords and d != "c"}
    units = {d: u for d, u in (template.attrs.get("units") or {}).items() if d in dims or d in "xyzt"}
    attrs: dict[str, Any] = {"units": units, "title": title}
    if "calibration" in template.attrs:
        attrs["calibration"] = dict(template.attrs["calibration"])
    if "info" in template.attrs:
        attrs["info"] = template.attrs["info"]
    return xr.DataArray(data, dims=tuple(dims), coords=coords, attrs=attrs)


def show_image(data: np.ndarray, template, dims: Sequence[str], title: str, *,
               display_range: tuple[float, float] | None = None):
    """Show ``data`` as a new image that keeps ``template``'s calibration; return the ImagePlus."""
    from ..imagej.images import to_imageplus

    da = like(data, template, dims, unique_title(title))
    imp = to_imageplus(da)
    if display_range is not None:
        imp.setDisplayRange(float(display_range[0]), float(display_range[1]))
    imp.show()
    return imp


def show_labels(labels: np.ndarray, template, dims: Sequence[str], title: str):
    """A label image (16-bit when it fits, else 32-bit) keeping ``template``'s calibration,
    shown with the distinct-colour label LUT (:func:`ij_bridge.imagej.images.set_label_lut`)."""
    labels = np.asarray(labels)
    top = int(labels.max()) if labels.size else 0
    if top <= 65535:
        data = labels.astype(np.uint16, copy=False)
    elif top <= 2**24:
        data = labels.astype(np.float32)
    else:
        raise CommandError(f"{top} objects: more than a 32-bit ImageJ image holds exactly (2**24)")
    from ..imagej.images import set_label_lut, to_imageplus

    imp = set_label_lut(to_imageplus(like(data, template, dims, unique_title(title))), top)
    imp.show()
    return imp


def label_array(imp, what: str = "label image") -> tuple[np.ndarray, Any]:
    """The integer labels of a label image and its DataArray (dims without ``c``)."""
    da = to_xarray(imp)
    if "s" in da.dims:
        raise CommandError(f"{what} {imp.getTitle()!r} is RGB; a label image is 8-, 16- or 32-bit "
                           "with one integer value per object")
    if "c" in da.dims:
        raise CommandError(f"{what} {imp.getTitle()!r} has {da.sizes['c']} channels; a label image "
                           "has one (split the channels first)")
    values = np.asarray(da.values)
    if np.issubdtype(values.dtype, np.floating):
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise CommandError(f"{what} {imp.getTitle()!r} has non-integer values: it is not a "
                               "label image (0 = background, 1, 2, ... = objects)")
        values = values.astype(np.int64)
    if values.size and values.min() < 0:
        raise CommandError(f"{what} {imp.getTitle()!r} has negative values; labels are >= 0")
    return values, da


def spacing_of(da, dims: Sequence[str]) -> tuple[list[float], str]:
    """Pixel size per spatial dim (array order) and the unit, from the DataArray's coords."""
    spacing = []
    for d in dims:
        c = da.coords.get(d)
        if c is not None and c.size > 1:
            spacing.append(float(c.values[1] - c.values[0]))
        else:
            cal = da.attrs.get("calibration") or {}
            key = {"x": "pixel_width", "y": "pixel_height", "z": "pixel_depth"}[d]
            spacing.append(float(cal.get(key, 1.0)))
    units = da.attrs.get("units") or {}
    unit = str(units.get("x", "pixel")).strip() or "pixel"  # ImageJ's " " = no unit
    return spacing, unit


def roi_position(choice: str, imp) -> str | None:
    """labels_to_rois ``position`` for the ``position=`` choice and the target image."""
    if choice == "Stack":
        return "stack"
    if choice == "Hyperstack":
        return "hyperstack"
    return "hyperstack" if imp.isHyperStack() else "stack"


def tiles_tuple(tiles: int, ndim: int) -> tuple[int, ...] | None:
    """``tiles=`` (tiles per axis; 0 = automatic) as StarDist's ``n_tiles``."""
    if tiles == 0:
        return None
    if ndim == 3:
        return (1, tiles, tiles)
    return (tiles, tiles)


def parse_threshold(text: str, key: str) -> float | None:
    """``auto`` (or empty) -> None; a number in [0, 1] -> float."""
    t = text.strip().lower()
    if t in ("", "auto", "default", "model"):
        return None
    try:
        v = float(t)
    except ValueError:
        raise CommandError(f"{key}= must be a number between 0 and 1, or 'auto' (the model's "
                           f"threshold); got {text!r}") from None
    if not 0 <= v <= 1 or math.isnan(v):
        raise CommandError(f"{key}= must lie between 0 and 1, got {v:g}")
    return v


def directory_or_file(path: str, key: str, must_exist: bool = True):
    from pathlib import Path

    if not path:
        raise CommandError(f"{key}= is required: give a folder, e.g. {key}=[/path/to/folder]")
    p = Path(path).expanduser()
    if must_exist and not p.exists():
        raise CommandError(f"{key}=[{path}] does not exist")
    return p


def set_torch_threads() -> None:
    """Leave torch's thread count alone unless ``IJ_BRIDGE_THREADS`` is set."""
    import os

    n = os.environ.get("IJ_BRIDGE_THREADS")
    if n:
        import torch

        torch.set_num_threads(max(1, int(n)))
