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


def test_fan_intersection_areas_equal_geos():
    from ij_bridge.stardist.nms import star_pair_intersection_areas

    rng = np.random.default_rng(3)
    P, n = 400, 32
    a = dist_to_coord(rng.uniform(3, 9, (P, n)), rng.uniform(-4, 4, (P, 2))).astype(float)
    b = dist_to_coord(rng.uniform(3, 9, (P, 24)), np.zeros((P, 2))).astype(float)
    xa, xb = a[:, ::-1].transpose(0, 2, 1), b[:, ::-1].transpose(0, 2, 1)
    area, ok = star_pair_intersection_areas(xa, xb)
    assert 0.05 < ok.mean() < 1          # random 3-9 px radii: often not star-shaped from the origin
    pa = shapely.polygons(np.concatenate([xa, xa[:, :1]], 1))
    pb = shapely.polygons(np.concatenate([xb, xb[:, :1]], 1))
    geos = shapely.area(shapely.intersection(pa, pb))
    np.testing.assert_allclose(area[ok], geos[ok], rtol=1e-9)
    assert np.all(area[~ok] == 0)


def test_nms_fast_paths_give_the_same_result():
    rng = np.random.default_rng(4)
    centres = rng.uniform(0, 200, (30, 2))
    pts = np.repeat(centres, 80, axis=0) + rng.normal(0, 2.0, (2400, 2))
    d = rng.uniform(5, 9, (2400, 32))
    coord = dist_to_coord(d, pts)
    prob = rng.random(2400)
    ref = non_maximum_suppression(coord, prob, 0.4, threads=1)
    np.testing.assert_array_equal(non_maximum_suppression(coord, prob, 0.4, centres=pts, threads=1), ref)
    np.testing.assert_array_equal(non_maximum_suppression(coord, prob, 0.4, centres=pts, threads=2), ref)
