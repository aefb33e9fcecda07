"""Tests for ij_bridge.metrics (object matching and pixel/boundary QC measures)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from skimage.draw import disk

from ij_bridge.metrics import (
    DatasetMatching,
    Matching,
    dice,
    hamming_distance,
    hausdorff_distance,
    jaccard,
    label_overlap,
    matching,
    matching_dataset,
    mean_contour_distance,
    segmentation_qc,
    volume_error,
    youden_index,
)


def _square(shape, r0, c0, size, value=1, out=None):
    y = np.zeros(shape, np.int32) if out is None else out
    y[r0 : r0 + size, c0 : c0 + size] = value
    return y


def _dense_reference(t, p, thr, criterion):
    """StarDist's dense formulation, written out independently for checking."""
    tv = np.unique(t[t > 0])
    pv = np.unique(p[p > 0])
    if len(tv) == 0 or len(pv) == 0:
        return 0, 0.0
    inter = np.array([[np.count_nonzero((t == a) & (p == b)) for b in pv] for a in tv], float)
    at = np.array([np.count_nonzero(t == a) for a in tv], float)[:, None]
    ap = np.array([np.count_nonzero(p == b) for b in pv], float)[None, :]
    s = {"iou": inter / (at + ap - inter), "iot": inter / at, "iop": inter / ap}[criterion]
    n = min(s.shape)
    cost = -(s >= thr).astype(float) - s / (2 * n)
    a, b = linear_sum_assignment(cost)
    ok = (s[a, b] >= thr) & (s[a, b] > 0)
    return int(ok.sum()), float(s[a, b][ok].sum())


def test_shifted_squares_known_iou():
    t = _square((40, 40), 5, 5, 10)
    p = _square((40, 40), 5, 7, 10, value=4)  # shifted by 2 columns: IoU = 80/120
    iou = 80 / 120
    m = matching(t, p, thresh=0.5)
    assert isinstance(m, Matching)
    assert (m.tp, m.fp, m.fn) == (1, 0, 0)
    assert m.mean_matched_score == pytest.approx(iou)
    assert m.panoptic_quality == pytest.approx(iou)
    m7 = matching(t, p, thresh=0.7)
    assert (m7.tp, m7.fp, m7.fn) == (0, 1, 1)
    assert m7.accuracy == 0 and m7.f1 == 0 and m7.mean_true_score == 0
    assert matching(t, p, criterion="iot").mean_matched_score == pytest.approx(0.8)
    assert matching(t, p, thresh=0.9, criterion="iop").tp == 0


def test_shifted_disks_iou_and_threshold_list():
    t = np.zeros((64, 64), np.int32)
    p = np.zeros((64, 64), np.int32)
    t[disk((32, 32), 12)] = 1
    p[disk((32, 36), 12)] = 2
    iou = np.count_nonzero((t > 0) & (p > 0)) / np.count_nonzero((t > 0) | (p > 0))
    recs = matching(t, p, thresh=[0.3, iou, iou + 1e-9])
    assert [r.tp for r in recs] == [1, 1, 0]
    assert [r.thresh for r in recs] == [0.3, iou, iou + 1e-9]
    assert recs[0].mean_matched_score == pytest.approx(iou)


def test_identical_labels_all_one():
    t = np.zeros((50, 50), np.uint16)
    for k, (r, c) in enumerate([(5, 5), (5, 30), (30, 5), (30, 30)], start=1):
        _square(t.shape, r, c, 12, value=k * 10, out=t)
    m = matching(t, t, thresh=0.9)
    for f in ("precision", "recall", "accuracy", "f1", "mean_true_score", "mean_matched_score", "panoptic_quality"):
        assert getattr(m, f) == 1.0, f
    assert (m.tp, m.n_true, m.n_pred) == (4, 4, 4)
    assert jaccard(t, t) == dice(t, t) == youden_index(t, t) == 1.0
    assert volume_error(t, t) == 0 and hamming_distance(t, t) == 0
    assert hausdorff_distance(t, t) == 0 and mean_contour_distance(t, t) == 0


def test_empty_prediction_and_no_overlap():
    t = _square((30, 30), 2, 2, 5)
    _square(t.shape, 20, 20, 5, value=2, out=t)
    m = matching(t, np.zeros_like(t))
    assert (m.tp, m.fp, m.fn, m.n_pred) == (0, 0, 2, 0)
    assert m.precision == 0 and m.recall == 0 and m.f1 == 0
    p = _square((30, 30), 10, 10, 5)
    m = matching(t, p, report_matches=True)
    assert (m.tp, m.fp, m.fn) == (0, 1, 2)
    assert m.matched_pairs == () and m.matched_tps == ()
    both_empty = matching(np.zeros((4, 4), int), np.zeros((4, 4), int))
    assert (both_empty.tp, both_empty.fp, both_empty.fn, both_empty.f1) == (0, 0, 0, 0.0)


def test_one_to_one_assignment_split_and_merge():
    # one true object predicted as two halves: only one half can match (iot criterion)
    t = _square((20, 20), 2, 2, 10, value=3)
    p = np.zeros_like(t)
    p[2:12, 2:7] = 1
    p[2:12, 7:12] = 2
    m = matching(t, p, thresh=0.4, criterion="iop", report_matches=True)
    assert (m.tp, m.fp, m.fn) == (1, 1, 0)
    assert len(m.matched_pairs) == 1 and m.matched_pairs[0][0] == 3
    d = m.to_dict()
    assert d["tp"] == 1 and "matched_pairs" in d
    assert "matched_pairs" not in matching(t, p).to_dict()


@pytest.mark.parametrize("criterion", ["iou", "iot", "iop"])
def test_agrees_with_dense_hungarian_on_random_labels(criterion):
    rng = np.random.default_rng(7)
    for _ in range(8):
        ys = []
        for _ in range(2):
            y = np.zeros((48, 48), np.int32)
            for _ in range(rng.integers(0, 15)):
                r, c = rng.integers(0, 48, 2)
                h, w = rng.integers(2, 14, 2)
                y[r : r + h, c : c + w] = rng.integers(1, 60)
            ys.append(y)
        t, p = ys
        for thr in (0.1, 0.3, 0.5, 0.8):
            m = matching(t, p, thresh=thr, criterion=criterion)
            tp, ssum = _dense_reference(t, p, thr, criterion)
            assert m.tp == tp
            assert m.mean_true_score * m.n_true == pytest.approx(ssum)


def test_label_overlap_table():
    a = np.array([[1, 1, 0], [0, 2, 2]])
    b = np.array([[1, 0, 0], [0, 0, 3]])
    assert label_overlap(a, b).tolist() == [[2, 0, 0, 0], [1, 1, 0, 0], [1, 0, 0, 1]]


def test_many_objects_fast():
    shape = (1024, 1024)
    t = np.zeros(shape, np.int32)
    g = np.arange(8, 1024, 16)
    rr, cc = np.meshgrid(g, g, indexing="ij")
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    # 4096 touching squares of 16x16, prediction shifted by 3 px
    t = 1 + (yy // 16) * 64 + (xx // 16)
    p = np.roll(t, 3, axis=1)
    start = time.perf_counter()
    m = matching(t, p, thresh=[0.5, 0.9])
    elapsed = time.perf_counter() - start
    assert m[0].n_true == 4096 and m[0].tp == 4096
    assert m[0].mean_matched_score == pytest.approx(13 / 19)
    assert m[1].tp == 0
    assert elapsed < 20  # a dense 4096x4096 Hungarian would take far longer; generous for CI


def test_matching_dataset_pools_counts():
    t1 = _square((20, 20), 2, 2, 8)
    p1 = _square((20, 20), 2, 3, 8)  # IoU 56/72
    t2 = _square((20, 20), 2, 2, 8)
    p2 = np.zeros((20, 20), np.int32)
    d = matching_dataset([t1, t2], [p1, p2], thresh=0.5)
    assert isinstance(d, DatasetMatching)
    assert (d.tp, d.fp, d.fn, d.n_true, d.n_pred, d.n_images) == (1, 0, 1, 2, 1, 2)
    assert d.f1 == pytest.approx(2 / 3)
    assert d.mean_matched_score == pytest.approx(56 / 72)
    assert d.mean_true_score == pytest.approx(56 / 72 / 2)
    db = matching_dataset([t1, t2], [p1, p2], thresh=[0.5], by_image=True)[0]
    assert db.by_image and db.f1 == pytest.approx(0.5)  # mean of 1 and 0
    calls = []
    matching_dataset([t1], [p1], progress=lambda i, n, msg: calls.append((i, n)))
    assert calls == [(1, 1)]
    with pytest.raises(ValueError, match="same length"):
        matching_dataset([t1], [p1, p2])


def test_pixel_measures_known_values():
    t = _square((20, 20), 0, 0, 10)  # 100 px
    p = _square((20, 20), 0, 5, 10)  # 100 px, overlap 50
    assert jaccard(t, p) == pytest.approx(50 / 150)
    assert dice(t, p) == pytest.approx(0.5)
    # sensitivity 0.5, specificity 250/300
    assert youden_index(t, p) == pytest.approx(0.5 + 250 / 300 - 1)
    assert hamming_distance(t, p) == 100
    assert hamming_distance(t, p, spacing=(0.5, 0.2)) == pytest.approx(10.0)
    assert hamming_distance(t, p, normalize=True) == pytest.approx(0.25)
    big = _square((20, 20), 0, 0, 12)
    assert volume_error(t, big) == pytest.approx(0.44)
    assert volume_error(big, t) == pytest.approx(100 / 144 - 1)


def test_hausdorff_of_shifted_squares_in_physical_units():
    t = _square((40, 40), 10, 10, 10)
    p = _square((40, 40), 10, 13, 10)  # shifted by 3 columns
    assert hausdorff_distance(t, p) == pytest.approx(3.0)
    assert hausdorff_distance(t, p, spacing=(0.5, 0.25)) == pytest.approx(0.75)
    assert hausdorff_distance(t, p, spacing=(0.5, 0.25), percentile=100) == pytest.approx(0.75)
    assert hausdorff_distance(t, p, percentile=50) <= 3.0
    # contour points: the left and right edges (10 px each) are 3 px off; top/bottom mostly 0
    mcd = mean_contour_distance(t, p)
    assert 0 < mcd < 3.0
    assert mean_contour_distance(t, p, spacing=2.0) == pytest.approx(2 * mcd)


def test_hausdorff_3d_anisotropic():
    t = np.zeros((10, 20, 20), np.uint8)
    t[2:6, 5:15, 5:15] = 1
    p = np.zeros_like(t)
    p[4:8, 5:15, 5:15] = 1  # shifted by 2 slices
    assert hausdorff_distance(t, p, spacing=(3.0, 0.5, 0.5)) == pytest.approx(6.0)
    assert hausdorff_distance(t, np.zeros_like(t)) == np.inf
    assert hausdorff_distance(np.zeros_like(t), np.zeros_like(t)) == 0.0


def test_segmentation_qc_table():
    t = _square((40, 40), 10, 10, 10)
    p = _square((40, 40), 10, 13, 10)
    df = segmentation_qc(t, p, thresh=[0.5, 0.7], spacing=0.5, unit="µm")
    assert len(df) == 2
    assert df["tp"].tolist() == [1, 0]
    assert df["hausdorff_distance"].iloc[0] == pytest.approx(1.5)
    for col in ("accuracy", "f1", "jaccard", "dice", "youden_index", "volume_error", "hamming_distance",
                "hausdorff_distance_95", "mean_contour_distance", "panoptic_quality"):
        assert col in df.columns
    assert df.attrs["units"]["hausdorff_distance"] == "µm"
    assert df.attrs["units"]["hamming_distance"] == "µm^2"


def test_bad_input_rejected():
    a = np.zeros((5, 5), np.int32)
    with pytest.raises(ValueError, match="same shape"):
        matching(a, np.zeros((5, 6), np.int32))
    with pytest.raises(ValueError, match="non-integer"):
        matching(a, a + 0.3)
    with pytest.raises(ValueError, match="negative"):
        matching(a - 1, a)
    with pytest.raises(ValueError, match="criterion"):
        matching(a, a, criterion="dice")
    with pytest.raises(ValueError, match="thresh"):
        matching(a, a, thresh=1.5)
    with pytest.raises(ValueError, match="spacing"):
        hausdorff_distance(a, a, spacing=(1, 1, 1))
    # integral floats (ImageJ stores labels as 32-bit float) are accepted
    assert matching(a.astype(np.float32), a).n_true == 0


def test_3d_and_huge_label_values():
    t = np.zeros((8, 16, 16), np.int64)
    t[1:5, 2:8, 2:8] = 2**40  # label values far beyond the image size
    t[1:5, 9:15, 9:15] = 7
    p = np.zeros_like(t)
    p[1:5, 2:8, 3:9] = 1  # IoU 5/7 with the first
    m = matching(t, p, thresh=0.5, report_matches=True)
    assert (m.tp, m.fp, m.fn) == (1, 0, 1)
    assert m.matched_pairs == ((2**40, 1),)
    assert m.matched_scores[0] == pytest.approx(5 / 7)
