"""Command "Segmentation QC": matching scores and pixel/boundary metrics vs ground truth."""

from __future__ import annotations

from ._common import label_array, spacing_of
from .registry import CommandError, ImageTitle, Number, command


@command("Segmentation QC", params=[
    ImageTitle("prediction", help="predicted label image"),
    ImageTitle("truth", help="ground-truth label image"),
    Number("threshold", 0.5, digits=2, minimum=0, maximum=1, label="threshold (IoU)"),
], help="Object matching at an IoU threshold, and pixel and boundary measures, into Results.")
def segmentation_qc_command(ctx, prediction, truth, threshold):
    """Columns as :func:`ij_bridge.metrics.segmentation_qc`; distances in calibrated units."""
    from ..imagej.tables import dataframe_to_results
    from ..metrics import segmentation_qc

    if prediction.getID() == truth.getID():
        raise CommandError("prediction= and truth= are the same image; choose two label images")
    p, pda = label_array(prediction, "prediction")
    t, tda = label_array(truth, "ground truth")
    if p.shape != t.shape:
        raise CommandError(f"prediction {dict(pda.sizes)} and truth {dict(tda.sizes)} differ in size")
    if "t" in tda.dims:
        raise CommandError("Segmentation QC compares one 2D or 3D label image pair; for a time "
                           "series compare frame by frame (Image > Duplicate... frames=n)")
    spatial = [d for d in tda.dims if d in ("z", "y", "x")]
    spacing, unit = spacing_of(tda, spatial)
    df = segmentation_qc(t, p, thresh=threshold, spacing=spacing, unit=unit)
    dataframe_to_results(df, "Results", show=True)
    row = df.iloc[0]
    what = "3D objects" if "z" in spatial and tda.sizes["z"] > 1 else "objects"
    ctx.log(f"{prediction.getTitle()!r} vs {truth.getTitle()!r} ({what}) at IoU {threshold:g}: "
            f"TP {int(row['tp'])}, FP {int(row['fp'])}, FN {int(row['fn'])}, "
            f"F1 {row['f1']:.3f}, accuracy {row['accuracy']:.3f}, "
            f"Hausdorff {row['hausdorff_distance']:.4g} {df.attrs['units']['hausdorff_distance']}")
