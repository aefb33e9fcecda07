"""Command "Measure Labels": calibrated per-object measurements into a Results table."""

from __future__ import annotations

import numpy as np

from ._common import label_array, to_xarray
from .registry import CommandError, ImageTitle, command


@command("Measure Labels", params=[
    ImageTitle("labels", help="label image (default: the active image)"),
    ImageTitle("intensity", optional=True, help="image for the intensity columns (optional)"),
], help="One row per object in the Results table, in calibrated units.", user_errors=(ValueError,))
def measure_labels_command(ctx, labels, intensity):
    """Columns of :func:`ij_bridge.measure.regionprops_table` under ImageJ's Results headings
    (:func:`ij_bridge.measure.to_imagej_columns`: ``Label, Area, Mean, X, Y, Perim.`` ...; a
    stack: ``Volume, Surface, Sphericity, Z`` ...); a time series adds ``Frame`` (1-based)."""
    import pandas as pd

    from ..imagej.tables import dataframe_to_results
    from ..measure import regionprops_table, to_imagej_columns

    values, da = label_array(labels)
    ivalues = None
    if intensity is not None:
        ida = to_xarray(intensity)
        if "c" in ida.dims or "s" in ida.dims:
            raise CommandError(f"intensity image {intensity.getTitle()!r} has several channels; "
                               "select one channel (e.g. Image > Duplicate... channels=1)")
        if tuple(ida.dims) != tuple(da.dims) or ida.shape != da.shape:
            raise CommandError(f"intensity image {intensity.getTitle()!r} has shape "
                               f"{dict(ida.sizes)}, the label image {dict(da.sizes)}: they must match")
        ivalues = np.asarray(ida.values)
    # ImageJ writes " " for TIFFs whose resolution has no unit: that is pixels
    unit = str((da.attrs.get("units") or {}).get("x", "pixel")).strip() or "pixel"
    if unit in ("pixels", "pixel"):
        unit = "pixel"
    if "z" in da.dims and da.sizes["z"] > 1 and unit == "pixel":
        ctx.log(f"{labels.getTitle()!r} has no spatial calibration: volumes are in voxels "
                "(Image > Properties... sets the voxel size)")
    frames = da.sizes.get("t", 1)
    tables = []
    for t in range(frames):
        sub = da.isel(t=t) if "t" in da.dims else da
        lab = values[t] if "t" in da.dims else values
        sub = sub.copy(data=lab)
        inten = None if ivalues is None else (ivalues[t] if "t" in da.dims else ivalues)
        # units from the image's attrs (from_imageplus puts them there, not on the coords);
        # a ValueError (bad labels or units) is the user's (user_errors)
        df = regionprops_table(sub, intensity=inten, units=unit)
        if "t" in da.dims:
            df.insert(1, "frame", np.int64(t + 1))
        tables.append(df)
        ctx.progress(t + 1, frames, f"frame {t + 1}/{frames}: {len(df)} objects")
    units = dict(tables[0].attrs.get("units", {}))
    if "t" in da.dims:
        units["frame"] = ""
    df = pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]
    df.attrs["units"] = units
    table = to_imagej_columns(df)
    dataframe_to_results(table, "Results", show=True)
    shown = {k: v for k, v in table.attrs["units"].items()
             if k in ("Area", "Volume", "Perim.", "Surface", "X")}
    ctx.log(f"{len(df)} objects measured in {labels.getTitle()!r}; units: "
            + ", ".join(f"{k} [{v}]" for k, v in shown.items()))
