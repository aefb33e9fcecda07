"""Calibrated per-object measurements of a label image, as a pandas table (no Java).

:func:`regionprops_table` is the core of the "Measure Labels" command: one row
per object with ImageJ-style columns, in physical units.

Conventions
-----------
* Arrays are in numpy order: ``(y, x)`` or ``(z, y, x)``. ``spacing`` and
  ``origin`` follow the same order.
* Calibration as in ImageJ 1.x: the origin is in pixels, and a position ``p``
  in pixel coordinates maps to ``(p - origin) * pixel_size``.
* Centroids: like ImageJ's Measure, a pixel ``i`` covers ``[i, i+1)`` and its
  centre is at ``i + 0.5`` (``imagej_centres=True``, the default), so a single
  pixel at column 0 of an uncalibrated image has ``centroid_x = 0.5``. With
  ``imagej_centres=False`` pixel centres are at ``i`` (the convention of
  xarray coordinates and of scikit-image).

Where values differ from ImageJ's Analyze › Measure
---------------------------------------------------
* ``perimeter`` is the length of the marching-squares contour at half height
  of the object mask (through the mid-points of the boundary pixel edges),
  summed over the outer outline and the outlines of holes. ImageJ measures a
  traced (Wand) outline along the pixel edges with its own corner correction,
  which cuts corners more: checked against ImageJ 1.53t, a 10×10 square gives
  37.66 there and 38.83 here, a 21-pixel-wide oval (349 px) 67.60 there and
  68.77 here, so circularity is a few percent lower here for small objects.
  Our estimate also works for anisotropic pixels (ImageJ's ellipse and shape
  values need square pixels).
* A label with holes: area, intensity and moments use the label's own
  pixels. ImageJ's Wand outline encloses holes, so its area includes them.
* ``circularity`` = 4π·area/perimeter², capped at 1 as in ImageJ; it inherits
  the perimeter difference above.
* ``major``/``minor`` and ``angle`` follow ImageJ's ellipse fitting (second
  moments of the pixels treated as unit squares, axes rescaled so that the
  ellipse has the object's area); ``angle`` is in degrees, 0–180,
  counter-clockwise from the x axis with y pointing up on screen. Area,
  centroid, major, minor, angle and solidity agree with ImageJ 1.53t to
  4 decimals on the shapes in the tests. For non-square pixels the moments are
  taken in physical units (ImageJ reports 0 for the axes there).
* ``solidity`` = area / area of the convex hull of the pixel corners, as
  ImageJ's convex hull of a traced outline.
* ``std`` uses the sample standard deviation (n − 1), as ImageJ.
* 3D objects get ``volume``, ``surface_area`` (marching cubes), ``sphericity``
  and the three ellipsoid axes instead of the 2D shape descriptors.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from .layout import dim_name
from .metrics import check_label_image

__all__ = ["regionprops_table", "IMAGEJ_COLUMNS", "to_imagej_columns"]

_AXES = {2: ("y", "x"), 3: ("z", "y", "x")}

#: Column names of ImageJ's Results table for the columns of :func:`regionprops_table`.
IMAGEJ_COLUMNS = {
    "label": "Label",
    "area": "Area",
    "volume": "Volume",
    "mean": "Mean",
    "std": "StdDev",
    "min": "Min",
    "max": "Max",
    "centroid_x": "X",
    "centroid_y": "Y",
    "centroid_z": "Z",
    "perimeter": "Perim.",
    "surface_area": "Surface",
    "major": "Major",
    "intermediate": "Intermediate",
    "minor": "Minor",
    "angle": "Angle",
    "circularity": "Circ.",
    "sphericity": "Sphericity",
    "solidity": "Solidity",
}


def to_imagej_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Rename the columns of :func:`regionprops_table` to ImageJ's Results headings.

    ``df.attrs["units"]`` is renamed along with the columns.

    Examples
    --------
    >>> lbl = np.zeros((4, 4), np.uint8); lbl[1:3, 1:3] = 1
    >>> list(to_imagej_columns(regionprops_table(lbl)).columns[:4])
    ['Label', 'Area', 'X', 'Y']
    """
    out = df.rename(columns=IMAGEJ_COLUMNS)
    out.attrs = dict(df.attrs)
    if "units" in df.attrs:
        out.attrs["units"] = {IMAGEJ_COLUMNS.get(k, k): v for k, v in df.attrs["units"].items()}
    return out


def _per_axis(v: Any, ndim: int, name: str, default: float) -> np.ndarray:
    if v is None:
        return np.full(ndim, float(default))
    a = np.atleast_1d(np.asarray(v, dtype=float))
    if a.size == 1:
        a = np.repeat(a, ndim)
    if a.shape != (ndim,):
        raise ValueError(f"{name} needs one value per axis {_AXES.get(ndim, ndim)}, got {tuple(a)}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} values must be finite, got {tuple(a)}")
    return a


def _from_xarray(labels: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Spacing/origin/unit from a calibrated xarray.DataArray (dims named z/y/x)."""
    info: dict[str, Any] = {}
    # dim names and units as everywhere in the package (ij_bridge.layout): any alias, and the
    # units of attrs["units"] that from_imageplus / io.imread write
    dims = [dim_name(d) or str(d).lower() for d in labels.dims]
    attr_units = {dim_name(k): v for k, v in (labels.attrs.get("units") or {}).items() if dim_name(k)}
    spacing, origin, units = [], [], []
    for d, name in zip(labels.dims, dims):
        if name not in ("z", "y", "x"):
            raise ValueError(
                f"label image has a dimension {d!r}; measure one 2D/3D label image at a time "
                "(select a single channel/time point first)"
            )
        if d in labels.coords and labels.sizes[d] > 1:
            c = np.asarray(labels.coords[d].values, dtype=float)
            step = float(c[1] - c[0])
            spacing.append(step)
            origin.append(-c[0] / step if step else 0.0)
            units.append(labels.coords[d].attrs.get("units") or labels.coords[d].attrs.get("unit")
                         or attr_units.get(name))
        else:
            spacing.append(1.0)
            origin.append(0.0)
            units.append(None)
    info["spacing"] = spacing
    info["origin"] = origin
    u = {x for x in units if x}
    if len(u) == 1:
        info["units"] = u.pop()
    return np.asarray(labels.values), info


def _ellipse_2d(n, sx, sy, sxx, syy, sxy, pw, ph, area):
    """ImageJ-style ellipse from per-label sums (x, y in pixel index units)."""
    mx, my = sx / n, sy / n
    # central second moments in physical units, pixels as unit squares (+1/12)
    cxx = (sxx / n - mx**2 + 1.0 / 12.0) * pw**2
    cyy = (syy / n - my**2 + 1.0 / 12.0) * ph**2
    cxy = (sxy / n - mx * my) * pw * ph
    tr = cxx + cyy
    disc = np.sqrt(np.maximum((cxx - cyy) ** 2 / 4 + cxy**2, 0))
    l1 = tr / 2 + disc
    l2 = np.maximum(tr / 2 - disc, 0)
    major = 4 * np.sqrt(l1)
    minor = 4 * np.sqrt(l2)
    # rescale so that pi/4 * major * minor == area (ImageJ's EllipseFitter does this)
    prod = np.pi / 4 * major * minor
    scale = np.sqrt(np.divide(area, prod, out=np.ones_like(area), where=prod > 0))
    major, minor = major * scale, minor * scale
    # major axis direction (vx, vy) in image coordinates (y down)
    vx = np.where(np.abs(cxy) > 1e-12 * np.maximum(tr, 1e-300), cxy, np.where(cxx >= cyy, 1.0, 0.0))
    vy = np.where(np.abs(cxy) > 1e-12 * np.maximum(tr, 1e-300), l1 - cxx, np.where(cxx >= cyy, 0.0, 1.0))
    angle = np.degrees(np.arctan2(-vy, vx)) % 180.0
    angle = np.where(disc <= 1e-12 * np.maximum(tr, 1e-300), 0.0, angle)  # a circle: ImageJ reports 0
    angle = np.where(np.isclose(angle, 180.0), 0.0, angle)
    return major, minor, angle


def _contour_length(mask: np.ndarray, spacing: np.ndarray) -> float:
    from skimage.measure import find_contours

    padded = np.pad(mask.astype(np.float32), 1)
    total = 0.0
    for c in find_contours(padded, 0.5):
        d = np.diff(c, axis=0) * spacing
        total += float(np.sum(np.sqrt(np.sum(d * d, axis=1))))
    return total


def _hull_volume(mask: np.ndarray, spacing: np.ndarray) -> float:
    """Area/volume of the convex hull of the pixel corners of ``mask``."""
    from scipy.spatial import ConvexHull, QhullError

    m = np.pad(mask, 1)
    # only boundary pixels contribute hull vertices
    border = m & ~ndi.binary_erosion(m)
    idx = np.argwhere(border).astype(float) - 1.0
    corners = np.array(np.meshgrid(*([[0.0, 1.0]] * mask.ndim), indexing="ij")).reshape(mask.ndim, -1).T
    pts = (idx[:, None, :] + corners[None, :, :]).reshape(-1, mask.ndim)
    pts = np.unique(pts, axis=0) * spacing
    try:
        return float(ConvexHull(pts).volume)
    except (QhullError, ValueError):
        return float(np.count_nonzero(mask) * np.prod(spacing))


def regionprops_table(
    labels: Any,
    intensity: Any = None,
    spacing: float | Sequence[float] | None = None,
    units: str | None = None,
    origin: float | Sequence[float] | None = None,
    imagej_centres: bool = True,
) -> pd.DataFrame:
    """Measure every object of a label image, in calibrated units.

    Parameters
    ----------
    labels : array_like of int or xarray.DataArray
        2D ``(y, x)`` or 3D ``(z, y, x)`` label image, 0 = background. A
        DataArray with dims named z/y/x and coordinates supplies ``spacing``,
        ``origin`` and ``units`` (from the coordinates' ``units`` attribute)
        unless they are given explicitly.
    intensity : array_like, optional
        Image of the same shape for the intensity columns.
    spacing : float or sequence of float, optional
        Pixel size per axis, in array order (e.g. ``(pixel_height,
        pixel_width)``). Default 1 (uncalibrated).
    units : str, optional
        Spatial unit of ``spacing`` (e.g. ``"µm"``); default ``"pixel"``.
    origin : float or sequence of float, optional
        Calibration origin per axis, in pixels, as ImageJ's
        ``Calibration.xOrigin``/``yOrigin``/``zOrigin`` (array order).
    imagej_centres : bool
        Pixel centres at ``i + 0.5`` as ImageJ's Measure (default) or at ``i``.

    Returns
    -------
    pandas.DataFrame
        One row per object, sorted by label. 2D columns: ``label, area, mean,
        std, min, max, centroid_x, centroid_y, perimeter, major, minor, angle,
        circularity, solidity``. 3D columns: ``label, volume, mean, std, min,
        max, centroid_x, centroid_y, centroid_z, surface_area, major,
        intermediate, minor, sphericity, solidity``. The intensity columns are
        present only with ``intensity``. ``df.attrs["units"]`` maps each column
        to its unit (e.g. ``"µm^2"``), ``df.attrs["spacing"]``/``["origin"]``
        record the calibration used.

    Raises
    ------
    ValueError
        Non-integer or negative labels, shape mismatch with ``intensity``,
        wrong number of spacing/origin values, non-positive spacing.

    Examples
    --------
    >>> lbl = np.zeros((8, 10), np.uint16); lbl[2:4, 1:6] = 3
    >>> df = regionprops_table(lbl, spacing=(0.5, 0.25), units="µm")
    >>> df[["label", "area", "centroid_x", "centroid_y"]].values.tolist()
    [[3.0, 1.25, 0.875, 1.5]]
    >>> df.attrs["units"]["area"]
    'µm^2'
    """
    info: dict[str, Any] = {}
    if hasattr(labels, "dims") and hasattr(labels, "coords"):
        labels, info = _from_xarray(labels)
    if hasattr(intensity, "dims") and hasattr(intensity, "values"):
        intensity = np.asarray(intensity.values)
    lbl = check_label_image(labels, "labels")
    ndim = lbl.ndim
    if ndim not in (2, 3):
        raise ValueError(f"labels must be 2D (y, x) or 3D (z, y, x), got shape {lbl.shape}")
    sp = _per_axis(spacing if spacing is not None else info.get("spacing"), ndim, "spacing", 1.0)
    if np.any(sp <= 0):
        raise ValueError(f"spacing must be positive, got {tuple(sp)}")
    org = _per_axis(origin if origin is not None else info.get("origin"), ndim, "origin", 0.0)
    unit = units if units is not None else info.get("units")
    if unit is None:
        unit = "pixel"
    if not isinstance(unit, str):
        raise ValueError(f"units must be one string for all axes (e.g. 'µm'), got {unit!r}")
    img = None
    if intensity is not None:
        img = np.asarray(intensity)
        if img.shape != lbl.shape:
            raise ValueError(
                f"intensity image shape {img.shape} differs from label image shape {lbl.shape}; "
                "they must be the same size (one channel, one time point)"
            )
        if img.dtype == bool or not np.issubdtype(img.dtype, np.number):
            raise ValueError(f"intensity must be a numeric image, got dtype {img.dtype}")
        if np.iscomplexobj(img):
            raise ValueError("intensity must be real-valued")

    flat = lbl.ravel().astype(np.intp, copy=False)
    size = lbl.size
    if size and int(flat.max()) < 4 * size + 1024:
        counts = np.bincount(flat) if size else np.zeros(1, np.int64)
        ids = np.flatnonzero(counts)
        ids = ids[ids > 0]
        lut = np.zeros(len(counts), np.int64)
        lut[ids] = np.arange(1, len(ids) + 1)
        dense = lut[flat]
    else:
        ids, inv = np.unique(flat, return_inverse=True)
        dense = inv.astype(np.int64) if (len(ids) and ids[0] == 0) else inv.astype(np.int64) + 1
        ids = ids[ids > 0]
    n_obj = len(ids)

    units_map: dict[str, str] = {"label": ""}
    data: dict[str, np.ndarray] = {"label": ids.astype(np.int64)}
    if n_obj == 0:
        df = pd.DataFrame(data)
        df.attrs["units"] = units_map
        return df

    m = dense.reshape(lbl.shape)
    fg = dense > 0
    d_fg = dense[fg]
    n = np.bincount(d_fg, minlength=n_obj + 1)[1:].astype(np.float64)
    vox = float(np.prod(sp))
    area_name = "area" if ndim == 2 else "volume"
    data[area_name] = n * vox
    units_map[area_name] = f"{unit}^{ndim}"

    if img is not None:
        v = img.ravel()[fg].astype(np.float64)
        s1 = np.bincount(d_fg, weights=v, minlength=n_obj + 1)[1:]
        mean = s1 / n
        dev = v - mean[d_fg - 1]
        s2 = np.bincount(d_fg, weights=dev * dev, minlength=n_obj + 1)[1:]
        std = np.sqrt(np.divide(s2, n - 1, out=np.zeros_like(s2), where=n > 1))
        index = np.arange(1, n_obj + 1)
        data["mean"] = mean
        data["std"] = std
        data["min"] = np.asarray(ndi.minimum(img, labels=m, index=index), dtype=np.float64)
        data["max"] = np.asarray(ndi.maximum(img, labels=m, index=index), dtype=np.float64)
        for k in ("mean", "std", "min", "max"):
            units_map[k] = "intensity"

    # coordinate sums per label (pixel index units)
    coords = np.nonzero(m)
    d_c = m[coords]
    sums = [np.bincount(d_c, weights=c.astype(np.float64), minlength=n_obj + 1)[1:] for c in coords]
    shift = 0.5 if imagej_centres else 0.0
    names = _AXES[ndim]
    for ax in reversed(range(ndim)):  # x first, like ImageJ's X, Y, Z columns
        col = f"centroid_{names[ax]}"
        data[col] = (sums[ax] / n + shift - org[ax]) * sp[ax]
        units_map[col] = unit

    objs = ndi.find_objects(m)
    if ndim == 2:
        sy, sx = sums
        ys, xs = coords
        syy = np.bincount(d_c, weights=ys.astype(np.float64) ** 2, minlength=n_obj + 1)[1:]
        sxx = np.bincount(d_c, weights=xs.astype(np.float64) ** 2, minlength=n_obj + 1)[1:]
        sxy = np.bincount(d_c, weights=xs.astype(np.float64) * ys, minlength=n_obj + 1)[1:]
        area = n * vox
        major, minor, angle = _ellipse_2d(n, sx, sy, sxx, syy, sxy, sp[1], sp[0], area)
        perim = np.empty(n_obj)
        hull = np.empty(n_obj)
        for i, sl in enumerate(objs):
            mask = m[sl] == i + 1
            perim[i] = _contour_length(mask, sp)
            hull[i] = _hull_volume(mask, sp)
        data["perimeter"] = perim
        data["major"] = major
        data["minor"] = minor
        data["angle"] = angle
        circ = np.divide(4 * np.pi * area, perim**2, out=np.ones_like(area), where=perim > 0)
        data["circularity"] = np.minimum(circ, 1.0)
        data["solidity"] = np.minimum(area / hull, 1.0)
        units_map.update(
            perimeter=unit, major=unit, minor=unit, angle="degree", circularity="", solidity=""
        )
    else:
        from skimage.measure import marching_cubes, mesh_surface_area

        surf = np.empty(n_obj)
        hull = np.empty(n_obj)
        for i, sl in enumerate(objs):
            mask = m[sl] == i + 1
            padded = np.pad(mask, 1).astype(np.float32)
            try:
                verts, faces, _, _ = marching_cubes(padded, 0.5, spacing=tuple(sp))
                surf[i] = mesh_surface_area(verts, faces)
            except (ValueError, RuntimeError):
                surf[i] = np.nan
            hull[i] = _hull_volume(mask, sp)
        # ellipsoid with the same second moments (pixels as cubes: +spacing^2/12)
        cov = np.empty((n_obj, 3, 3))
        means = [sums[a] / n for a in range(3)]
        for a in range(3):
            for b in range(a, 3):
                w = coords[a].astype(np.float64) * coords[b]
                sab = np.bincount(d_c, weights=w, minlength=n_obj + 1)[1:]
                c = (sab / n - means[a] * means[b]) * sp[a] * sp[b]
                if a == b:
                    c = c + sp[a] ** 2 / 12.0
                cov[:, a, b] = cov[:, b, a] = c
        ev = np.clip(np.linalg.eigvalsh(cov), 0, None)[:, ::-1]  # descending
        axes = 2.0 * np.sqrt(5.0 * ev)  # full axis lengths, major first
        vol = n * vox
        data["surface_area"] = surf
        data["major"] = axes[:, 0]
        data["intermediate"] = axes[:, 1]
        data["minor"] = axes[:, 2]
        data["sphericity"] = np.minimum(np.pi ** (1 / 3) * (6 * vol) ** (2 / 3) / surf, 1.0)
        data["solidity"] = np.minimum(vol / hull, 1.0)
        units_map.update(
            surface_area=f"{unit}^2", major=unit, intermediate=unit, minor=unit, sphericity="", solidity=""
        )

    df = pd.DataFrame(data)
    df.attrs["units"] = units_map
    df.attrs["spacing"] = tuple(float(s) for s in sp)
    df.attrs["origin"] = tuple(float(o) for o in org)
    df.attrs["unit"] = unit
    return df
