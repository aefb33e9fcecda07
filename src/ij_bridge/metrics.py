"""Segmentation quality: object matching and pixel/boundary measures (no Java).

Two families of measures live here.

**Object matching** (:func:`matching`, :func:`matching_dataset`) follows the
definitions of StarDist (Schmidt et al. 2018, Weigert et al. 2020) so that
published numbers carry over:

* every pair of a true object and a predicted object gets a score, by default
  the intersection over union (``criterion="iou"``), or the intersection over
  the true object (``"iot"``) or over the predicted object (``"iop"``);
* true and predicted objects are paired one-to-one by a maximum-cardinality
  assignment (Hungarian algorithm) of pairs whose score is at least ``thresh``,
  ties broken by the larger total score;
* matched pairs are true positives (tp), unmatched predictions false positives
  (fp), unmatched true objects false negatives (fn);
* ``precision = tp/(tp+fp)``, ``recall = tp/(tp+fn)``,
  ``accuracy = tp/(tp+fp+fn)`` (the "average precision" of the StarDist and
  DSB 2018 papers), ``f1 = 2tp/(2tp+fp+fn)``;
* ``mean_matched_score`` is the mean score of the true positives,
  ``mean_true_score`` the sum of those scores divided by the number of true
  objects, and ``panoptic_quality = sum / (tp + fp/2 + fn/2)``
  (Kirillov et al. 2019).

The overlap table is built from the label pairs of overlapping pixels only
(sparse), and the assignment is solved separately for each connected group of
overlapping objects, so that images with many thousands of objects are matched
in a fraction of a second.

**Pixel and boundary measures** compare the foreground masks (``labels > 0``):
:func:`jaccard`, :func:`dice`, :func:`youden_index`, :func:`volume_error`,
:func:`hamming_distance`, :func:`hausdorff_distance` (with a percentile
variant) and :func:`mean_contour_distance`. Distances and volumes are in
physical units when ``spacing`` (pixel size per axis) is given.

:func:`segmentation_qc` combines both into one table.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .progress import Progress

__all__ = [
    "Matching",
    "DatasetMatching",
    "CRITERIA",
    "check_label_image",
    "label_overlap",
    "matching",
    "matching_dataset",
    "jaccard",
    "dice",
    "youden_index",
    "volume_error",
    "hamming_distance",
    "hausdorff_distance",
    "mean_contour_distance",
    "segmentation_qc",
]

CRITERIA = ("iou", "iot", "iop")

ProgressCallback = Progress  # the shared type (ij_bridge.progress); this name is kept


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Matching:
    """Result of matching one prediction against one ground truth at one threshold.

    Attributes
    ----------
    criterion : str
        ``"iou"``, ``"iot"`` or ``"iop"``.
    thresh : float
        A pair is a match when its score is at least this value.
    fp, tp, fn : int
        False positives, true positives, false negatives.
    precision, recall, accuracy, f1 : float
        ``tp/(tp+fp)``, ``tp/(tp+fn)``, ``tp/(tp+fp+fn)``, ``2tp/(2tp+fp+fn)``;
        0 when the denominator is 0.
    n_true, n_pred : int
        Number of objects in the ground truth and in the prediction.
    mean_true_score : float
        Sum of the scores of the matched pairs divided by ``n_true``.
    mean_matched_score : float
        Mean score of the matched pairs.
    panoptic_quality : float
        Sum of the scores of the matched pairs divided by ``tp + fp/2 + fn/2``.
    matched_pairs : tuple of (int, int) or None
        With ``report_matches=True``: the assigned (true label, predicted label)
        pairs, in the original label values (only pairs that overlap).
    matched_scores : tuple of float or None
        Their scores.
    matched_tps : tuple of int or None
        Indices into ``matched_pairs`` of the pairs that count as true positives.
    """

    criterion: str
    thresh: float
    fp: int
    tp: int
    fn: int
    precision: float
    recall: float
    accuracy: float
    f1: float
    n_true: int
    n_pred: int
    mean_true_score: float
    mean_matched_score: float
    panoptic_quality: float
    matched_pairs: tuple[tuple[int, int], ...] | None = None
    matched_scores: tuple[float, ...] | None = None
    matched_tps: tuple[int, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Fields as a plain dict (the ``matched_*`` fields only when reported)."""
        d = asdict(self)
        for k in ("matched_pairs", "matched_scores", "matched_tps"):
            if d[k] is None:
                del d[k]
        return d

    # StarDist's records are namedtuples; keep their spelling working too
    _asdict = to_dict


@dataclass(frozen=True)
class DatasetMatching(Matching):
    """Matching scores aggregated over a data set (see :func:`matching_dataset`).

    Attributes
    ----------
    by_image : bool
        False: counts and score sums pooled over all images, rates computed from
        the totals. True: rates and scores averaged over images (counts summed).
    n_images : int
        Number of image pairs aggregated.
    """

    by_image: bool = False
    n_images: int = 0


# --------------------------------------------------------------------------- checks


def check_label_image(y: Any, name: str = "labels") -> np.ndarray:
    """Validate a label image and return it as a non-negative integer array.

    The one check of label images in ij-bridge (metrics, measurements and
    StarDist training all use it). Integer arrays are returned unchanged;
    floating-point arrays (ImageJ often stores labels as 32-bit float) are
    accepted when every value is a whole number and become ``int64``.
    A boolean array is refused: it is a mask, and touching objects in it
    cannot be told apart, so counting it as one object would give silently
    wrong scores, measurements or training targets.

    Raises
    ------
    ValueError
        For a boolean mask, non-integer values, negative values, NaN/inf, or
        a 0-d array; the message names the fix.

    Examples
    --------
    >>> check_label_image(np.array([[0, 1], [2, 2]], np.uint16)).dtype
    dtype('uint16')
    >>> check_label_image(np.array([[True, False]]))
    Traceback (most recent call last):
    ...
    ValueError: labels is boolean (a mask); label each object with its own integer (e.g. skimage.measure.label) before using it
    """
    a = np.asarray(y)
    if a.ndim == 0:
        raise ValueError(f"{name} must be an image (an array with at least 1 dimension), got a scalar")
    if a.dtype == bool:
        raise ValueError(f"{name} is boolean (a mask); label each object with its own integer "
                         "(e.g. skimage.measure.label) before using it")
    if np.issubdtype(a.dtype, np.integer):
        if np.issubdtype(a.dtype, np.signedinteger) and a.size and a.min() < 0:
            raise ValueError(
                f"{name} has negative values (min {a.min()}); label images need 0 for background "
                "and positive integers for objects"
            )
        return a
    if np.issubdtype(a.dtype, np.floating):
        if a.size and not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or infinite values; a label image needs whole numbers >= 0")
        if a.size and np.any(a != np.round(a)):
            raise ValueError(
                f"{name} has non-integer values (dtype {a.dtype}); it looks like an intensity image, "
                "not a label image. Pass the label image (0 = background, 1, 2, ... = objects)"
            )
        if a.size and a.min() < 0:
            raise ValueError(f"{name} has negative values (min {a.min()}); labels must be >= 0")
        return a.astype(np.int64)
    raise ValueError(f"{name} must be an integer label image, got dtype {a.dtype}")


def _check_pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = check_label_image(y_true, "y_true")
    p = check_label_image(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(
            f"y_true and y_pred must have the same shape, got {t.shape} and {p.shape}; "
            "crop or resample one of them first"
        )
    return t, p


def _dense_index(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map labels to 0..n (0 stays background). Returns (index image (flat), label values)."""
    flat = y.ravel()
    if flat.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    mx = int(flat.max())
    if mx < 4 * flat.size + 1024:
        counts = np.bincount(flat.astype(np.intp, copy=False), minlength=mx + 1)
        values = np.flatnonzero(counts)
        values = values[values > 0]
        lut = np.zeros(mx + 1, np.int64)
        lut[values] = np.arange(1, len(values) + 1)
        return lut[flat], values.astype(np.int64)
    values, inv = np.unique(flat, return_inverse=True)
    if values[0] == 0:
        return inv.astype(np.int64), values[1:].astype(np.int64)
    return inv.astype(np.int64) + 1, values.astype(np.int64)


@dataclass(frozen=True)
class _Overlap:
    t_values: np.ndarray  # original labels of true objects (n_true,)
    p_values: np.ndarray  # original labels of predicted objects (n_pred,)
    t_area: np.ndarray  # pixel counts (n_true,)
    p_area: np.ndarray  # pixel counts (n_pred,)
    rows: np.ndarray  # 0-based true index of each overlapping pair
    cols: np.ndarray  # 0-based pred index
    inter: np.ndarray  # intersection pixel count of the pair


def _overlap(t: np.ndarray, p: np.ndarray) -> _Overlap:
    ti, tv = _dense_index(t)
    pi, pv = _dense_index(p)
    nt, np_ = len(tv), len(pv)
    t_area = np.bincount(ti, minlength=nt + 1)[1:]
    p_area = np.bincount(pi, minlength=np_ + 1)[1:]
    both = (ti > 0) & (pi > 0)
    key = ti[both] * (np_ + 1) + pi[both]
    if (nt + 1) * (np_ + 1) <= max(4 * key.size, 1 << 20):
        cnt = np.bincount(key, minlength=(nt + 1) * (np_ + 1))
        keys = np.flatnonzero(cnt)
        inter = cnt[keys]
    else:
        keys, inter = np.unique(key, return_counts=True)
    rows, cols = np.divmod(keys, np_ + 1)
    return _Overlap(tv, pv, t_area, p_area, rows - 1, cols - 1, inter.astype(np.int64))


def label_overlap(y_true: Any, y_pred: Any) -> np.ndarray:
    """Dense overlap table: ``out[i, j]`` = pixels where ``y_true == i`` and ``y_pred == j``.

    Rows and columns are indexed by the label values themselves (row/column 0
    is background), as in StarDist. For very many objects prefer
    :func:`matching`, which never builds this table.

    Examples
    --------
    >>> a = np.array([[1, 1, 0], [0, 2, 2]])
    >>> b = np.array([[1, 0, 0], [0, 0, 3]])
    >>> label_overlap(a, b).tolist()
    [[2, 0, 0, 0], [1, 1, 0, 0], [1, 0, 0, 1]]
    """
    t, p = _check_pair(y_true, y_pred)
    t = t.ravel().astype(np.int64)
    p = p.ravel().astype(np.int64)
    nt = int(t.max()) + 1 if t.size else 1
    np_ = int(p.max()) + 1 if p.size else 1
    return np.bincount(t * np_ + p, minlength=nt * np_).reshape(nt, np_)


def _pair_scores(ov: _Overlap, criterion: str) -> np.ndarray:
    inter = ov.inter.astype(np.float64)
    at = ov.t_area[ov.rows].astype(np.float64)
    ap = ov.p_area[ov.cols].astype(np.float64)
    if criterion == "iou":
        return inter / (at + ap - inter)
    if criterion == "iot":
        return inter / at
    if criterion == "iop":
        return inter / ap
    raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")


def _safe_div(x: float, y: float) -> float:
    return float(x) / float(y) if abs(y) > 1e-10 else 0.0


def _counts(criterion: str, thresh: float, tp: int, fp: int, fn: int, n_true: int,
            n_pred: int) -> dict[str, Any]:
    """The fields of a matching record besides its scores (:func:`_scores`)."""
    return dict(criterion=criterion, thresh=thresh, fp=fp, tp=tp, fn=fn, n_true=n_true, n_pred=n_pred)


def _scores(tp: int, fp: int, fn: int, sum_score: float, n_true: int) -> dict[str, float]:
    """The rates and mean scores of a matching, from its counts and summed matched scores."""
    return dict(
        precision=_safe_div(tp, tp + fp),
        recall=_safe_div(tp, tp + fn),
        accuracy=_safe_div(tp, tp + fp + fn),
        f1=_safe_div(2 * tp, 2 * tp + fp + fn),
        mean_true_score=_safe_div(sum_score, n_true),
        mean_matched_score=_safe_div(sum_score, tp),
        panoptic_quality=_safe_div(sum_score, tp + fp / 2 + fn / 2),
    )


def _check_thresh(thresh: Any) -> tuple[list[float], bool]:
    scalar = np.isscalar(thresh) or (isinstance(thresh, np.ndarray) and thresh.ndim == 0)
    ths = [float(thresh)] if scalar else [float(x) for x in thresh]
    if not ths:
        raise ValueError("thresh is an empty sequence; give one threshold or several")
    for th in ths:
        if not (0.0 <= th <= 1.0):
            raise ValueError(f"thresh must be in [0, 1], got {th}")
    return ths, scalar


class _Assigner:
    """Hungarian assignment restricted to connected groups of overlapping objects.

    Pairs without overlap have score 0 and can never be matches (for any
    threshold > 0), and adding them to an assignment never changes its cost, so
    solving each connected component of the overlap graph separately gives the
    same optimum as StarDist's dense assignment.
    """

    def __init__(self, rows: np.ndarray, cols: np.ndarray, scores: np.ndarray, n_true: int, n_pred: int):
        self.rows, self.cols, self.scores = rows, cols, scores
        n = n_true + n_pred
        if len(rows):
            g = coo_matrix((np.ones(len(rows)), (rows, n_true + cols)), shape=(n, n))
            _, comp = connected_components(g, directed=False)
            pc = comp[rows]  # component of each pair
            order = np.argsort(pc, kind="stable")
            pc_sorted = pc[order]
            starts = np.flatnonzero(np.r_[True, pc_sorted[1:] != pc_sorted[:-1]])
            ends = np.r_[starts[1:], len(order)]
            sizes = ends - starts
            # components that are a single pair (the common case) are matched directly
            self.single = order[starts[sizes == 1]]
            self.groups = [order[s:e] for s, e in zip(starts[sizes > 1], ends[sizes > 1])]
        else:
            self.single = np.zeros(0, np.int64)
            self.groups = []

    def assign(self, thr: float) -> tuple[np.ndarray, np.ndarray]:
        """Indices of assigned pairs (into rows/cols/scores) and whether each is a match."""
        chosen = [self.single]
        for g in self.groups:
            r, ri = np.unique(self.rows[g], return_inverse=True)
            c, ci = np.unique(self.cols[g], return_inverse=True)
            s = self.scores[g]
            n_m = min(len(r), len(c))
            # maximise the number of pairs >= thr; break ties by the larger score sum
            cost = np.zeros((len(r), len(c)))
            cost[ri, ci] = -(s >= thr).astype(float) - s / (2.0 * n_m)
            pidx = np.full((len(r), len(c)), -1, np.int64)
            pidx[ri, ci] = g
            a, b = linear_sum_assignment(cost)
            sel = pidx[a, b]
            chosen.append(sel[sel >= 0])
        idx = np.concatenate(chosen) if chosen else np.zeros(0, np.int64)
        idx = np.sort(idx)
        ok = self.scores[idx] >= thr
        if thr <= 0.0:
            ok &= self.scores[idx] > 0.0
        return idx, ok


def matching(
    y_true: Any,
    y_pred: Any,
    thresh: float | Sequence[float] = 0.5,
    criterion: str = "iou",
    report_matches: bool = False,
) -> Matching | list[Matching]:
    """Match predicted objects to ground-truth objects and score the result.

    Parameters
    ----------
    y_true, y_pred : array_like of int
        Label images of the same shape (2D or 3D; 0 = background). Label values
        need not be consecutive.
    thresh : float or sequence of float
        Minimum score for a pair to count as a match. A sequence gives one
        record per threshold (the overlaps are computed once).
    criterion : {"iou", "iot", "iop"}
        Pair score: intersection over union, over the true object, or over the
        predicted object.
    report_matches : bool
        Also report the assigned pairs and their scores.

    Returns
    -------
    Matching or list of Matching
        One record for a scalar ``thresh``, a list for a sequence.

    Notes
    -----
    Same definitions as StarDist's ``stardist.matching.matching``. One
    difference: pairs that do not overlap are never matched, even for
    ``thresh=0`` (StarDist would count them as true positives at 0), and
    ``matched_pairs`` lists only overlapping pairs.

    Examples
    --------
    >>> y = np.zeros((10, 10), int); y[2:6, 2:6] = 1
    >>> p = np.zeros((10, 10), int); p[2:6, 3:7] = 5
    >>> m = matching(y, p, thresh=0.5)
    >>> m.tp, m.fp, m.fn, round(m.mean_matched_score, 2)
    (1, 0, 0, 0.6)
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    ths, scalar = _check_thresh(thresh)
    t, p = _check_pair(y_true, y_pred)
    ov = _overlap(t, p)
    scores = _pair_scores(ov, criterion)
    n_true, n_pred = len(ov.t_values), len(ov.p_values)
    assigner = _Assigner(ov.rows, ov.cols, scores, n_true, n_pred)

    out = []
    for thr in ths:
        idx, ok = assigner.assign(thr)
        tp = int(np.count_nonzero(ok))
        fp, fn = n_pred - tp, n_true - tp
        sum_score = float(np.sum(scores[idx][ok]))
        extra: dict[str, Any] = {}
        if report_matches:
            extra = dict(
                matched_pairs=tuple(
                    (int(ov.t_values[i]), int(ov.p_values[j])) for i, j in zip(ov.rows[idx], ov.cols[idx])
                ),
                matched_scores=tuple(float(s) for s in scores[idx]),
                matched_tps=tuple(int(i) for i in np.flatnonzero(ok)),
            )
        out.append(
            Matching(
                **_counts(criterion, thr, tp, fp, fn, n_true, n_pred),
                **_scores(tp, fp, fn, sum_score, n_true),
                **extra,
            )
        )
    return out[0] if scalar else out


def matching_dataset(
    ys_true: Sequence[Any],
    ys_pred: Sequence[Any],
    thresh: float | Sequence[float] = 0.5,
    criterion: str = "iou",
    by_image: bool = False,
    show_progress: bool = False,
    progress: ProgressCallback | None = None,
) -> DatasetMatching | list[DatasetMatching]:
    """Match a data set of label images and aggregate the scores.

    Parameters
    ----------
    ys_true, ys_pred : sequence of array_like
        Ground-truth and predicted label images, pairwise of equal shape.
    thresh, criterion
        As in :func:`matching`.
    by_image : bool
        False (default, as in StarDist): tp/fp/fn and the matched-score sums are
        pooled over all images, and the rates are computed from the totals.
        True: the rates and scores of each image are averaged (counts are summed).
    show_progress : bool
        Show a tqdm progress bar.
    progress : callable, optional
        ``progress(done, total, message)`` after each image.

    Returns
    -------
    DatasetMatching or list of DatasetMatching
    """
    ys_true = list(ys_true)
    ys_pred = list(ys_pred)
    if len(ys_true) != len(ys_pred):
        raise ValueError(
            f"ys_true and ys_pred must have the same length, got {len(ys_true)} and {len(ys_pred)}"
        )
    if not ys_true:
        raise ValueError("matching_dataset needs at least one image pair")
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    ths, scalar = _check_thresh(thresh)
    for i, (a, b) in enumerate(zip(ys_true, ys_pred)):
        sa, sb = np.shape(a), np.shape(b)
        if sa != sb:
            raise ValueError(f"image pair {i}: y_true shape {sa} differs from y_pred shape {sb}")

    it: Iterable[int] = range(len(ys_true))
    if show_progress:
        from tqdm.auto import tqdm

        it = tqdm(it, total=len(ys_true), desc="matching")
    per_image: list[list[Matching]] = []
    for i in it:
        per_image.append(matching(ys_true[i], ys_pred[i], thresh=ths, criterion=criterion))
        if progress is not None:
            progress(i + 1, len(ys_true), "matching")

    n = len(per_image)
    out = []
    for k, thr in enumerate(ths):
        recs = [r[k] for r in per_image]
        tp = sum(r.tp for r in recs)
        fp = sum(r.fp for r in recs)
        fn = sum(r.fn for r in recs)
        n_true = sum(r.n_true for r in recs)
        n_pred = sum(r.n_pred for r in recs)
        if by_image:
            avg = {
                f: float(np.mean([getattr(r, f) for r in recs]))
                for f in (
                    "precision",
                    "recall",
                    "accuracy",
                    "f1",
                    "mean_true_score",
                    "mean_matched_score",
                    "panoptic_quality",
                )
            }
        else:
            sum_score = sum(r.mean_true_score * r.n_true for r in recs)
            avg = _scores(tp, fp, fn, sum_score, n_true)
        out.append(
            DatasetMatching(
                **_counts(criterion, thr, tp, fp, fn, n_true, n_pred),
                by_image=bool(by_image),
                n_images=n,
                **avg,
            )
        )
    return out[0] if scalar else out


# --------------------------------------------------------------------------- pixel measures


def _masks(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t, p = _check_pair(y_true, y_pred)
    return t > 0, p > 0


def _check_spacing(spacing: Any, ndim: int) -> np.ndarray:
    if spacing is None:
        return np.ones(ndim)
    s = np.atleast_1d(np.asarray(spacing, dtype=float))
    if s.size == 1:
        s = np.repeat(s, ndim)
    if s.shape != (ndim,):
        raise ValueError(f"spacing needs one value per axis ({ndim}), got {tuple(s)}")
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"spacing values must be positive and finite, got {tuple(s)}")
    return s


def jaccard(y_true: Any, y_pred: Any) -> float:
    """Jaccard index (IoU) of the foreground masks: ``|A∩B| / |A∪B|`` (1 when both are empty)."""
    a, b = _masks(y_true, y_pred)
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def dice(y_true: Any, y_pred: Any) -> float:
    """Dice coefficient (F1) of the foreground masks: ``2|A∩B| / (|A|+|B|)`` (1 when both are empty)."""
    a, b = _masks(y_true, y_pred)
    s = np.count_nonzero(a) + np.count_nonzero(b)
    return 1.0 if s == 0 else 2.0 * np.count_nonzero(a & b) / s


def youden_index(y_true: Any, y_pred: Any) -> float:
    """Youden's J of the foreground masks: sensitivity + specificity − 1.

    A term whose denominator is empty (no true foreground, or no true
    background) counts as 1.
    """
    a, b = _masks(y_true, y_pred)
    tp = np.count_nonzero(a & b)
    fn = np.count_nonzero(a & ~b)
    fp = np.count_nonzero(~a & b)
    tn = a.size - tp - fn - fp
    sens = tp / (tp + fn) if tp + fn else 1.0
    spec = tn / (tn + fp) if tn + fp else 1.0
    return float(sens + spec - 1.0)


def volume_error(y_true: Any, y_pred: Any) -> float:
    """Relative (signed) volume error of the foreground: ``(|B| − |A|) / |A|``.

    Positive when the prediction is larger. Unitless, so independent of pixel
    size. 0 when both masks are empty, ``inf`` when only the truth is empty.
    """
    a, b = _masks(y_true, y_pred)
    va, vb = np.count_nonzero(a), np.count_nonzero(b)
    if va == 0:
        return 0.0 if vb == 0 else math.inf
    return (vb - va) / va


def hamming_distance(y_true: Any, y_pred: Any, spacing: Any = None, normalize: bool = False) -> float:
    """Hamming distance of the foreground masks: size of their symmetric difference.

    Parameters
    ----------
    spacing : float or sequence of float, optional
        Pixel size per axis; the result is then an area/volume in physical
        units (pixel count × pixel area/volume).
    normalize : bool
        Return the fraction of image pixels that differ instead.
    """
    a, b = _masks(y_true, y_pred)
    n = np.count_nonzero(a ^ b)
    if normalize:
        return n / a.size if a.size else 0.0
    return float(n * np.prod(_check_spacing(spacing, a.ndim)))


def _surface(m: np.ndarray) -> np.ndarray:
    """Foreground pixels with a background face-neighbour; outside the image counts as background."""
    if not m.any():
        return m
    er = ndi.binary_erosion(m, structure=ndi.generate_binary_structure(m.ndim, 1), border_value=0)
    return m & ~er


def _surface_distances(a: np.ndarray, b: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances from each surface pixel of ``a`` to the surface of ``b`` and vice versa."""
    sa, sb = _surface(a), _surface(b)
    # crop to the bounding box of both surfaces: all nearest points lie inside it
    nz = np.nonzero(sa | sb)
    box = tuple(slice(int(ix.min()), int(ix.max()) + 1) for ix in nz)
    sa, sb = sa[box], sb[box]
    da = ndi.distance_transform_edt(~sb, sampling=spacing)[sa]
    db = ndi.distance_transform_edt(~sa, sampling=spacing)[sb]
    return da, db


def hausdorff_distance(y_true: Any, y_pred: Any, spacing: Any = None, percentile: float | None = None) -> float:
    """Hausdorff distance between the contours (surfaces) of the foreground masks.

    The contour of a mask is its foreground pixels that touch background along
    an axis (the image border counts as background). Distances are measured
    between pixel centres, in physical units when ``spacing`` is given.

    Parameters
    ----------
    spacing : float or sequence of float, optional
        Pixel size per axis (z, y, x order for 3D, like the array).
    percentile : float, optional
        E.g. 95 for the robust "HD95": the larger of the two directed
        percentile distances. None (default) is the classic maximum.

    Returns
    -------
    float
        0 when both masks are empty, ``inf`` when only one is.
    """
    a, b = _masks(y_true, y_pred)
    sp = _check_spacing(spacing, a.ndim)
    if percentile is not None and not (0 <= percentile <= 100):
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    ea, eb = not a.any(), not b.any()
    if ea or eb:
        return 0.0 if ea and eb else math.inf
    da, db = _surface_distances(a, b, sp)
    if percentile is None:
        return float(max(da.max(), db.max()))
    return float(max(np.percentile(da, percentile), np.percentile(db, percentile)))


def mean_contour_distance(y_true: Any, y_pred: Any, spacing: Any = None) -> float:
    """Bilateral mean contour (surface) distance of the foreground masks.

    The mean of the two directed mean distances (truth contour → prediction
    contour, and back), as the "average symmetric surface distance" of medical
    image segmentation challenges. Contours as in :func:`hausdorff_distance`.
    0 when both masks are empty, ``inf`` when only one is.
    """
    a, b = _masks(y_true, y_pred)
    sp = _check_spacing(spacing, a.ndim)
    ea, eb = not a.any(), not b.any()
    if ea or eb:
        return 0.0 if ea and eb else math.inf
    da, db = _surface_distances(a, b, sp)
    return float(0.5 * (da.mean() + db.mean()))


def segmentation_qc(
    y_true: Any,
    y_pred: Any,
    thresh: float | Sequence[float] = 0.5,
    spacing: Any = None,
    unit: str = "pixel",
    criterion: str = "iou",
    percentile: float = 95.0,
) -> pd.DataFrame:
    """Quality-control table: object matching plus pixel and boundary measures.

    Parameters
    ----------
    y_true, y_pred : array_like of int
        Ground-truth and predicted label images of the same shape.
    thresh : float or sequence of float
        Matching threshold(s); one row per threshold.
    spacing : float or sequence of float, optional
        Pixel size per axis for the distance and Hamming columns.
    unit : str
        Name of the spatial unit of ``spacing`` (e.g. ``"µm"``), stored in
        ``df.attrs["units"]``.
    criterion : {"iou", "iot", "iop"}
        Matching criterion.
    percentile : float
        Percentile of the robust Hausdorff column ``hausdorff_distance_<p>``.

    Returns
    -------
    pandas.DataFrame
        Columns ``criterion, thresh, tp, fp, fn, precision, recall, accuracy,
        f1, n_true, n_pred, mean_true_score, mean_matched_score,
        panoptic_quality, jaccard, dice, youden_index, volume_error,
        hamming_distance, hausdorff_distance, hausdorff_distance_<p>,
        mean_contour_distance``. ``df.attrs["units"]`` maps column → unit.
    """
    t, p = _check_pair(y_true, y_pred)
    sp = _check_spacing(spacing, t.ndim)
    recs = matching(t, p, thresh=thresh, criterion=criterion)
    if isinstance(recs, Matching):
        recs = [recs]
    a, b = t > 0, p > 0
    pix = dict(  # (the label images: these functions take labels and refuse boolean masks)
        jaccard=jaccard(t, p),
        dice=dice(t, p),
        youden_index=youden_index(t, p),
        volume_error=volume_error(t, p),
        hamming_distance=hamming_distance(t, p, spacing=sp),
    )
    if a.any() and b.any():
        da, db = _surface_distances(a, b, sp)
        hd = float(max(da.max(), db.max()))
        hdp = float(max(np.percentile(da, percentile), np.percentile(db, percentile)))
        mcd = float(0.5 * (da.mean() + db.mean()))
    else:
        v = 0.0 if (not a.any() and not b.any()) else math.inf
        hd = hdp = mcd = v
    pname = f"hausdorff_distance_{percentile:g}"
    rows = []
    for r in recs:
        d = r.to_dict()
        row = {k: d[k] for k in ("criterion", "thresh", "tp", "fp", "fn")}
        row.update({k: d[k] for k in d if k not in row})
        row.update(pix)
        row["hausdorff_distance"] = hd
        row[pname] = hdp
        row["mean_contour_distance"] = mcd
        rows.append(row)
    df = pd.DataFrame(rows)
    vol_unit = f"{unit}^{t.ndim}" if spacing is not None else ("pixel" if t.ndim == 1 else "pixels")
    dist_unit = unit if spacing is not None else "pixel"
    df.attrs["units"] = {
        "hamming_distance": vol_unit,
        "hausdorff_distance": dist_unit,
        pname: dist_unit,
        "mean_contour_distance": dist_unit,
    }
    return df
