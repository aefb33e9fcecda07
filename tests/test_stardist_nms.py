"""Non-maximum suppression: the original's rule, exact areas, GT round trip."""

from __future__ import annotations


import numpy as np
import pytest
import shapely

from ij_bridge.metrics import matching
from ij_bridge.stardist import (
    dist_to_coord, edt_prob, fill_label_holes, non_maximum_suppression,
    non_maximum_suppression_3d, polygons_to_label, rays_golden_spiral, star_dist_2d,
)
from ij_bridge.stardist.nms import nms_from_maps



def _overlap(c1, c2):
    a, b = shapely.Polygon(c1.T), shapely.Polygon(c2.T)
    return a.intersection(b).area / min(a.area, b.area)


@pytest.mark.parametrize("shift", [2.0, 4.5, 7.0])
def test_two_shifted_shapes_suppressed_only_below_their_overlap(shift):
    rng = np.random.default_rng(int(shift * 10))
    d = rng.uniform(4, 7, (2, 32))
    coord = dist_to_coord(d, np.array([[20.0, 20.0], [20.0, 20.0 + shift]]))
    ov = _overlap(coord[0], coord[1])
    assert 0 < ov < 1
    prob = np.array([0.6, 0.9])
    # the lower-probability one goes, whatever the input order
    assert non_maximum_suppression(coord, prob, ov - 1e-3).tolist() == [1]
    assert sorted(non_maximum_suppression(coord, prob, ov + 1e-3).tolist()) == [0, 1]
    assert non_maximum_suppression(coord[::-1], prob[::-1], ov - 1e-3).tolist() == [0]


def test_ratio_uses_the_smaller_area():
    # a small polygon entirely inside a large one: overlap / smaller area = 1
    coord = dist_to_coord(np.array([[10.0] * 16, [2.0] * 16]), np.array([[30, 30], [31, 30]]))
    assert non_maximum_suppression(coord, np.array([0.9, 0.8]), 0.99).tolist() == [0]
    # by IoU it would be ~0.04 and survive; the original's rule suppresses it
    assert non_maximum_suppression(coord, np.array([0.8, 0.9]), 0.99).tolist() == [1]


def test_greedy_chain_and_disjoint():
    # A overlaps B, B overlaps C, A and C are disjoint: B is suppressed by A, so C survives
    pts = np.array([[20, 10], [20, 17], [20, 24]], float)
    coord = dist_to_coord(np.full((3, 32), 5.0), pts)
    keep = non_maximum_suppression(coord, np.array([0.9, 0.8, 0.7]), 0.1)
    assert keep.tolist() == [0, 2]
    far = dist_to_coord(np.full((3, 16), 3.0), np.array([[0, 0], [0, 50], [50, 0]], float))
    assert non_maximum_suppression(far, np.array([0.1, 0.3, 0.2]), 0.0).tolist() == [1, 2, 0]


def test_empty_and_bad_input():
    assert non_maximum_suppression(np.zeros((0, 2, 32)), np.zeros(0), 0.4).tolist() == []
    with pytest.raises(ValueError, match="coord"):
        non_maximum_suppression(np.zeros((3, 32)), np.zeros(3), 0.4)


def test_many_candidates_are_pruned():
    # 5000 candidates around 50 objects: returns a sensible number of objects
    rng = np.random.default_rng(0)
    centres = rng.uniform(0, 400, (50, 2))
    pts = np.repeat(centres, 100, axis=0) + rng.normal(0, 1.0, (5000, 2))
    d = rng.uniform(5, 7, (5000, 32))
    keep = non_maximum_suppression(dist_to_coord(d, pts), rng.random(5000), 0.4)
    assert 40 <= len(keep) <= 80


def test_ground_truth_distances_reproduce_the_annotation(shared_data):
    import tifffile

    lbl = tifffile.imread(shared_data / "nuclei2d" / "train_left_mask.tif").astype(np.int32)
    lbl = fill_label_holes(lbl, warn=False)
    prob = edt_prob(lbl)
    for grid in [(1, 1), (2, 2)]:
        dist = star_dist_2d(lbl, 32, grid=grid)
        p = prob[::grid[0], ::grid[1]]
        points, pr, _, coord = nms_from_maps(p, dist, prob_thresh=0.5, nms_thresh=0.4, grid=grid)
        pred = polygons_to_label(coord, lbl.shape, prob=pr)
        m = matching(lbl, pred, thresh=0.5)
        assert m.accuracy > 0.9, (grid, m)
        assert abs(m.n_pred - m.n_true) <= 3


def test_nms_3d_two_balls():
    rays = rays_golden_spiral(32)
    d = np.full((2, 32), 5.0)
    for shift, expect in [(2.0, [1]), (12.0, [1, 0])]:
        pts = np.array([[10.0, 10.0, 10.0], [10.0, 10.0, 10.0 + shift]])
        keep = non_maximum_suppression_3d(d, pts, np.array([0.5, 0.7]), rays, 0.3)
        assert keep.tolist() == expect
    # overlap of two 5-balls shifted by 5: about 0.31 of a ball (closed form of lens volume)
    pts = np.array([[10.0, 10.0, 10.0], [10.0, 10.0, 15.0]])
    assert non_maximum_suppression_3d(d, pts, np.array([0.5, 0.7]), rays, 0.2).tolist() == [1]
    assert non_maximum_suppression_3d(d, pts, np.array([0.5, 0.7]), rays, 0.45).tolist() == [1, 0]
    assert non_maximum_suppression_3d(np.zeros((0, 32)), np.zeros((0, 3)), np.zeros(0), rays).tolist() == []


def _random_polygons(rng, k, n, centre_spread):
    """``k`` random star-convex polygons with ``n`` rays (very uneven radii: often concave)."""
    return dist_to_coord(rng.uniform(0.5, 9, (k, n)), rng.uniform(-centre_spread, centre_spread, (k, 2))).astype(float)


def _shapely_polygons(coord):
    """GEOS polygons from ``(k, 2, n)`` vertices."""
    return shapely.polygons(np.concatenate([coord, coord[:, :, :1]], 2).transpose(0, 2, 1))


def test_exact_intersection_areas_equal_geos():
    from ij_bridge.stardist import polygon_intersection_areas

    rng = np.random.default_rng(3)
    a = _random_polygons(rng, 600, 32, 14)
    b = _random_polygons(rng, 600, 24, 0)

    ref = shapely.area(shapely.intersection(_shapely_polygons(a), _shapely_polygons(b)))
    assert (ref > 0).mean() > 0.5 and (ref == 0).any()
    np.testing.assert_allclose(polygon_intersection_areas(a, b), ref, rtol=1e-12, atol=1e-10)
    # opposite orientation and a non-star (concave, centre outside its kernel) polygon
    np.testing.assert_allclose(polygon_intersection_areas(a[:, :, ::-1], b), ref, rtol=1e-12, atol=1e-10)
    comb = np.array([[0, 0, 10, 10, 2, 2, 10, 10, 0], [0, 10, 10, 8, 8, 2, 2, 0, 0]], float)[:, :-1]
    box = np.array([[1, 1, 9, 9], [1, 9, 9, 1]], float)
    got = polygon_intersection_areas(comb[None], box[None])[0]
    assert got == pytest.approx(shapely.Polygon(comb.T).intersection(shapely.Polygon(box.T)).area, abs=1e-12)
    # shared (collinear) edges and touching boundaries: no special cases
    sq = np.array([[0, 0, 4, 4], [0, 4, 4, 0]], float)
    for shift, want in [((0, 0), 16), ((2, 0), 8), ((2, 2), 4), ((4, 0), 0), ((1, 0.5), 10.5)]:
        got = polygon_intersection_areas(sq[None], (sq + np.array(shift)[:, None])[None])[0]
        assert got == pytest.approx(want, abs=1e-12)
    with pytest.raises(ValueError, match="vertices"):
        polygon_intersection_areas(sq, sq)


def _geos_greedy(coord, prob, thresh):
    """Reference: the original's rule with GEOS areas, brute force over box-overlapping pairs."""
    polys = _shapely_polygons(coord)
    tree = shapely.STRtree(polys)
    area = shapely.area(polys)
    order = np.argsort(-prob, kind="stable")
    rank = np.empty(len(order), int)
    rank[order] = np.arange(len(order))
    gone = np.zeros(len(order), bool)
    keep = []
    for r, i in enumerate(order):
        if gone[i]:
            continue
        keep.append(i)
        cand = tree.query(polys[i])
        cand = cand[(rank[cand] > r) & ~gone[cand]]
        inter = shapely.area(shapely.intersection(polys[i], polys[cand]))
        gone[cand[inter / (np.minimum(area[i], area[cand]) + 1e-10) > thresh]] = True
    return np.asarray(keep)


@pytest.mark.parametrize("thresh", [0.1, 0.4, 0.7])
def test_nms_equals_a_geos_reference(thresh):
    rng = np.random.default_rng(4)
    centres = rng.uniform(-50, 200, (30, 2))          # negative coordinates too
    pts = np.repeat(centres, 80, axis=0) + rng.normal(0, 2.0, (2400, 2))
    d = rng.uniform(5, 9, (2400, 32))
    d[::97] *= 6                                     # a few far larger candidates than the rest
    coord = dist_to_coord(d, pts)
    prob = rng.random(2400)
    ref = _geos_greedy(coord, prob, thresh)
    np.testing.assert_array_equal(non_maximum_suppression(coord, prob, thresh, centres=pts), ref)
    np.testing.assert_array_equal(non_maximum_suppression(coord, prob, thresh), ref)


def test_nms_reports_progress_for_many_candidates():
    # 40k candidates (the threaded path with a progress counter): same as GEOS, monotone progress
    rng = np.random.default_rng(5)
    centres = rng.uniform(0, 2000, (500, 2))
    pts = np.repeat(centres, 80, axis=0) + rng.normal(0, 1.5, (40_000, 2))
    coord = dist_to_coord(rng.uniform(5, 7, (40_000, 32)), pts)
    seen = []
    prob = rng.random(40_000)
    keep = non_maximum_suppression(coord, prob, 0.4, centres=pts,
                                   progress=lambda done, total, msg: seen.append((done, total)))
    np.testing.assert_array_equal(keep, _geos_greedy(coord, prob, 0.4))
    assert 500 <= len(keep) <= 1000
    assert seen[-1] == (40_000, 40_000)
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))
    with pytest.raises(ValueError, match="NaN"):
        non_maximum_suppression(np.full((2, 2, 8), np.nan), np.ones(2), 0.4)
