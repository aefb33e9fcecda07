"""Commands "Labels to ROIs" and "ROIs to Labels"."""

from __future__ import annotations

import numpy as np

from ._common import LABEL_SUFFIX, POSITIONS, base_title, label_array, roi_position, show_labels
from .registry import Checkbox, Choice, CommandError, ImageTitle, command


@command("Labels to ROIs", params=[
    ImageTitle("labels", help="label image (default: the active image)"),
    Choice("position", POSITIONS, "Automatic"),
    Checkbox("append", False, label="append to the ROI Manager"),
], help="One ROI per object of a label image, with its exact outline, into the ROI Manager.")
def labels_to_rois_command(ctx, labels, position, append):
    """ROI names ``label-0007`` (stacks: ``-z003``/``-t002``); positions as ``position=``."""
    from ..imagej.rois import labels_to_rois, set_roi_manager_rois

    values, da = label_array(labels)
    dims = tuple(d for d in da.dims)
    pos = roi_position(position, labels) if len(dims) > 2 else None
    rois = labels_to_rois(values, dims=dims, position=pos, progress=ctx.progress)
    set_roi_manager_rois(rois, reset=not append)
    ctx.log(f"{len(rois)} ROIs from {labels.getTitle()!r} into the ROI Manager")


@command("ROIs to Labels", params=[
    ImageTitle("image", help="image that gives the size and calibration (default: the active one)"),
], help="Paint the ROI Manager's ROIs into a new label image (16-bit) of the image's size.",
   user_errors=(ValueError,))
def rois_to_labels_command(ctx, image):
    """Label values from the ROIs' ``label`` property when all have one, else 1, 2, ..."""
    from ..imagej._java import jc
    from ..imagej.rois import rois_to_labels
    from ._common import to_xarray

    rm = jc.RoiManager.getInstance()
    rois = list(rm.getRoisAsArray()) if rm is not None else []
    if not rois:
        raise CommandError("the ROI Manager is empty: add ROIs first (e.g. with Labels to ROIs)")
    nc, nz, nt = int(image.getNChannels()), int(image.getNSlices()), int(image.getNFrames())
    dims = tuple(d for d, n in (("t", nt), ("z", nz)) if n > 1) + ("y", "x")
    shape = tuple(n for d, n in (("t", nt), ("z", nz)) if n > 1) + (int(image.getHeight()), int(image.getWidth()))
    labels = rois_to_labels(rois, shape, dims=dims, progress=ctx.progress)  # ValueError: user's
    template = to_xarray(image) if nc == 1 else to_xarray(image).isel(c=0, drop=True)
    out = show_labels(labels, template, dims, base_title(image) + LABEL_SUFFIX)
    ctx.log(f"{len(rois)} ROIs -> {int(np.count_nonzero(np.unique(labels)))} labels in {out.getTitle()!r}")
