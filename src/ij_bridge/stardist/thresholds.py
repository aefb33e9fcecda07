"""Choice of the probability and NMS thresholds on validation data."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..progress import Progress

__all__ = ["optimize_thresholds"]


def optimize_thresholds(model, X_val: Sequence[Any], Y_val: Sequence[Any],
                        nms_threshs: Sequence[float] = (0.3, 0.4, 0.5),
                        iou_threshs: Sequence[float] = (0.3, 0.5, 0.7),
                        prob_range: tuple[float, float] = (0.1, 0.95),
                        normalize: bool = True, n_tiles=None,
                        progress: Progress | None = None,
                        _channels_first: bool = False) -> dict[str, float]:
    """Choose ``prob`` and ``nms`` thresholds that maximise validation accuracy.

    The score is the mean over ``iou_threshs`` of the accuracy
    ``tp / (tp + fp + fn)`` pooled over the validation images. Network outputs
    are computed once; for each NMS threshold, NMS runs once at the lowest
    probability (greedy NMS at a higher probability threshold keeps exactly
    the kept objects above it), then the probability threshold is searched on
    a 0.05 grid and refined on a 0.01 grid.

    Parameters
    ----------
    model : StarDist2D or StarDist3D
        Its ``thresholds`` are set to the result.
    X_val, Y_val : sequence of array_like
        Validation images and label images.

    Returns
    -------
    dict
        ``{"prob": float, "nms": float, "score": float}``.
    """
    from ..metrics import matching_dataset
    from .geometry import check_label_image

    if len(X_val) != len(Y_val) or not len(X_val):
        raise ValueError(f"need equally many validation images and labels (got {len(X_val)}, {len(Y_val)})")
    Y = [check_label_image(np.asarray(y), f"validation label image {i}") for i, y in enumerate(Y_val)]
    maps = []
    for i, x in enumerate(X_val):
        xc = x if _channels_first else model._to_channels_first(x, f"validation image {i}")
        if normalize:
            xc = model._normalize(xc)
        if xc.shape[1:] != Y[i].shape:
            raise ValueError(f"validation pair {i}: image {xc.shape[1:]} and labels {Y[i].shape} differ")
        maps.append(model._predict_prepared(xc, n_tiles))
    p_min = float(prob_range[0])
    total = len(nms_threshs)
    best = (-1.0, None, None)
    for step, nms in enumerate(nms_threshs):
        if progress is not None:
            progress(step, total, f"optimising thresholds (nms={nms})")
        kept = []  # per image: (prob of kept objects, labels renderer)
        for (prob, dist), y in zip(maps, Y):
            lbl, det = model._instances(prob, dist, y.shape, p_min, nms)
            kept.append((lbl, det["prob"]))

        cache: dict[float, float] = {}

        def score(pt: float) -> float:
            pt = round(float(pt), 4)
            if pt not in cache:
                preds = []
                for lbl, pr in kept:
                    ids = np.flatnonzero(pr > pt) + 1
                    # objects are labelled i+1 by decreasing prob; drop those below pt
                    lut = np.zeros(len(pr) + 1, np.int32)
                    lut[ids] = ids
                    preds.append(lut[lbl])
                ms = matching_dataset(Y, preds, thresh=list(iou_threshs))
                cache[pt] = float(np.mean([m.accuracy for m in ms]))
            return cache[pt]

        coarse = np.arange(p_min, prob_range[1] + 1e-9, 0.05)
        vals = [score(p) for p in coarse]
        b = float(coarse[int(np.argmax(vals))])
        fine = np.arange(max(p_min, b - 0.04), min(prob_range[1], b + 0.04) + 1e-9, 0.01)
        for p in fine:
            score(p)
        pt, s = max(cache.items(), key=lambda kv: (kv[1], -abs(kv[0] - 0.5)))
        if s > best[0]:
            best = (s, pt, float(nms))
    if progress is not None:
        progress(total, total, "thresholds optimised")
    s, pt, nms = best
    model.thresholds = {"prob": float(pt), "nms": float(nms)}
    return {"prob": float(pt), "nms": float(nms), "score": float(s)}
