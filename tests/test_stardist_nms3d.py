"""3D NMS: exact polyhedron volumes and intersections, the greedy rule, and the original's decisions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import ConvexHull

from ij_bridge.stardist import non_maximum_suppression_3d, polyhedron_volumes, rays_golden_spiral
from ij_bridge.stardist.geometry import Rays
from ij_bridge.stardist.nms import polyhedron_intersection_volumes

FIXTURE = Path(__file__).parent / "fixtures" / "reference" / "nms3d" / "candidates.npz"


def _hull_rays(vertices) -> Rays:
    """Rays through ``vertices`` (normalised) with their convex hull's triangles as faces."""
    v = np.asarray(vertices, float)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    return Rays(v, ConvexHull(v).simplices)  # any orientation: NMS orients the faces itself


CUBE = _hull_rays([[z, y, x] for z in (-1, 1) for y in (-1, 1) for x in (-1, 1)])
OCTA = _hull_rays([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])


def _inside(x, centre, dist, rays):
    """Brute-force inside test: ``x`` lies in the cone of some face and on the centre's side of its plane."""
    inv = np.linalg.inv(rays.vertices.astype(float)[rays.faces].transpose(0, 2, 1))
    out = np.zeros(len(x), bool)
    for s in range(0, len(x), 20_000):
        a = np.einsum("fij,nj->nfi", inv, x[s:s + 20_000] - centre)
        ok = (a >= 0).all(axis=2) & ((a / dist[rays.faces][None]).sum(axis=2) <= 1.0)
        out[s:s + 20_000] = ok.any(axis=1)
    return out


# Rays hold float32 unit vectors (as the original's do): shapes built from them are exact to ~1e-7
# relative; the computation itself is double precision.
F32 = 1e-6


def test_volume_closed_forms():
    # a cube of side 2 (rays to its corners at distance sqrt(3)), an octahedron |z|+|y|+|x| <= d
    assert polyhedron_volumes(np.full((1, 8), np.sqrt(3)), CUBE)[0] == pytest.approx(8.0, rel=F32)
    d = np.array([[1.5] * 6, [4.0] * 6])
    np.testing.assert_allclose(polyhedron_volumes(d, OCTA), 4 / 3 * d[:, 0] ** 3, rtol=F32)
    # unit distances on the golden spiral: the convex hull of the rays
    rays = rays_golden_spiral(96)
    hull = ConvexHull(rays.vertices.astype(float)).volume
    assert polyhedron_volumes(np.ones((1, 96)), rays)[0] == pytest.approx(hull, rel=1e-6)
    # anisotropic rays are triangulated before they are normalised (as the original's): then unit
    # distances give a slightly non-convex polyhedron inside the hull
    rays = rays_golden_spiral(96, anisotropy=(2, 1, 1))
    hull = ConvexHull(rays.vertices.astype(float)).volume
    assert 0.99 * hull < polyhedron_volumes(np.ones((1, 96)), rays)[0] < hull


@pytest.mark.parametrize("shift", [(0.0, 0.0, 0.0), (0.5, 0.0, 0.0), (0.3, -1.2, 0.7), (1.9, 1.0, -0.25),
                                   (2.0, 0.0, 0.0), (3.0, 0.1, 0.2)])
def test_intersection_of_two_cubes_is_exact(shift):
    d = np.full((1, 8), np.sqrt(3))
    got = polyhedron_intersection_volumes(d, np.zeros((1, 3)), d, np.array([shift]), CUBE)[0]
    want = np.prod(np.clip(2.0 - np.abs(shift), 0, None))
    assert got == pytest.approx(want, abs=8 * F32)
    # a small cube well inside a large one, and the other way round
    small, big = np.full((1, 8), 0.5 * np.sqrt(3)), np.full((1, 8), 3 * np.sqrt(3))
    s = np.array([shift]) * 0.5
    assert polyhedron_intersection_volumes(small, s, big, np.zeros((1, 3)), CUBE)[0] == pytest.approx(1.0, abs=F32)
    assert polyhedron_intersection_volumes(big, np.zeros((1, 3)), small, s, CUBE)[0] == pytest.approx(1.0, abs=F32)


def test_intersections_equal_a_monte_carlo_reference():
    """Random (often concave) polyhedra against 150k uniform samples; tolerance 4.5 standard errors + 0.5 %."""
    rng = np.random.default_rng(7)
    rays = rays_golden_spiral(32, anisotropy=(2, 1, 1))
    k = 5
    da, db = rng.uniform(2, 6, (k, 32)), rng.uniform(2, 6, (k, 32))
    pa, pb = rng.uniform(-1, 1, (k, 3)), rng.uniform(-4, 4, (k, 3))
    got = polyhedron_intersection_volumes(da, pa, db, pb, rays)
    # symmetric: computed from the other centre, through a different decomposition
    np.testing.assert_allclose(polyhedron_intersection_volumes(db, pb, da, pa, rays), got, rtol=1e-9, atol=1e-9)
    n, side = 150_000, 16.0
    for q in range(k):
        x = rng.uniform(-side / 2, side / 2, (n, 3))
        both = _inside(x, pa[q], da[q], rays) & _inside(x, pb[q], db[q], rays)
        p = both.mean()
        est, se = p * side ** 3, np.sqrt(p * (1 - p) / n) * side ** 3
        assert abs(got[q] - est) <= 4.5 * se + 5e-3 * est, (q, got[q], est, se)
    assert (got > 1).sum() >= 4


def _brute_greedy(dist, points, prob, rays, thresh):
    """Reference: the greedy rule with exact volumes of every pair, no pruning."""
    n = len(prob)
    order = np.argsort(-prob, kind="stable")
    vol = polyhedron_volumes(dist, rays)
    ii, jj = np.triu_indices(n, 1)
    inter = np.zeros((n, n))
    inter[ii, jj] = polyhedron_intersection_volumes(dist[ii], points[ii], dist[jj], points[jj], rays)
    inter = np.maximum(inter, inter.T)
    gone = np.zeros(n, bool)
    keep = []
    for i in order:
        if gone[i]:
            continue
        keep.append(i)
        gone |= inter[i] / (np.minimum(vol[i], vol) + 1e-10) > thresh
    return np.asarray(keep)


@pytest.mark.parametrize("thresh", [0.1, 0.4, 0.7])
def test_nms_equals_a_brute_force_reference(thresh):
    rng = np.random.default_rng(11)
    rays = rays_golden_spiral(32)
    centres = rng.uniform(-10, 40, (12, 3))
    pts = np.repeat(centres, 12, axis=0) + rng.normal(0, 1.5, (144, 3))
    d = rng.uniform(3, 6, (144, 32))
    d[::29] *= 3  # a few far larger candidates than the rest
    prob = rng.random(144)
    ref = _brute_greedy(d, pts, prob, rays, thresh)
    np.testing.assert_array_equal(non_maximum_suppression_3d(d, pts, prob, rays, thresh), ref)


def test_nms_does_not_depend_on_the_thread_count():
    import numba

    rng = np.random.default_rng(12)
    rays = rays_golden_spiral(48)
    pts = np.repeat(rng.uniform(0, 60, (40, 3)), 25, axis=0) + rng.normal(0, 1.5, (1000, 3))
    d = rng.uniform(4, 6, (1000, 48))
    prob = rng.random(1000)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = non_maximum_suppression_3d(d, pts, prob, rays, 0.4)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(non_maximum_suppression_3d(d, pts, prob, rays, 0.4), one)
    assert 40 <= len(one) <= 250


def test_the_rule_two_balls_and_the_smaller_volume():
    rays = rays_golden_spiral(64)
    d = np.full((2, 64), 5.0)
    pts = np.array([[10.0, 10, 10], [10, 10, 15]])
    vol = polyhedron_volumes(d[:1], rays)[0]
    ov = polyhedron_intersection_volumes(d[:1], pts[:1], d[1:], pts[1:], rays)[0] / vol
    assert 0.25 < ov < 0.35  # two balls of radius 5 at distance 5: about 0.31 of a ball
    prob = np.array([0.5, 0.7])
    assert non_maximum_suppression_3d(d, pts, prob, rays, ov - 1e-6).tolist() == [1]
    assert non_maximum_suppression_3d(d, pts, prob, rays, ov + 1e-6).tolist() == [1, 0]
    # a small polyhedron inside a large one: overlap / smaller volume = 1 (by IoU it would survive)
    d2 = np.array([[8.0] * 64, [2.0] * 64])
    assert non_maximum_suppression_3d(d2, pts[[0, 0]], np.array([0.9, 0.8]), rays, 0.99).tolist() == [0]
    assert non_maximum_suppression_3d(np.zeros((0, 64)), np.zeros((0, 3)), np.zeros(0), rays).tolist() == []


def test_bad_input_is_refused_in_one_line():
    rays = rays_golden_spiral(32)
    with pytest.raises(ValueError, match="non-negative"):
        non_maximum_suppression_3d(-np.ones((2, 32)), np.zeros((2, 3)), np.ones(2), rays)
    with pytest.raises(ValueError, match="NaN"):
        non_maximum_suppression_3d(np.full((2, 32), np.nan), np.zeros((2, 3)), np.ones(2), rays)
    with pytest.raises(ValueError, match=r"dist \(n, 32\)"):
        non_maximum_suppression_3d(np.ones((2, 16)), np.zeros((2, 3)), np.ones(2), rays)
    with pytest.raises(ValueError, match="nms_thresh"):
        non_maximum_suppression_3d(np.ones((2, 32)), np.zeros((2, 3)), np.ones(2), rays, 1.5)


def test_kept_sets_equal_the_original_stardist():
    """Held-out candidate sets (scripts/reference_models/make_nms3d.py): the original 0.9.2's kept indices.

    The original decides its last test by counting voxels of a rendering, this
    one by the exact volume, so pairs within about a voxel layer of the
    threshold may go either way: at least 99 % of the objects (kept by either)
    are kept by both.
    """
    z = np.load(FIXTURE)
    both = either = 0
    for name in ("iso", "aniso", "dense"):
        rays = Rays(z[f"{name}_vertices"], z[f"{name}_faces"])
        dist = z[f"{name}_dist"].astype(np.float32) / np.float32(8)
        keep = non_maximum_suppression_3d(dist, z[f"{name}_points"], z[f"{name}_prob"], rays,
                                          float(z[f"{name}_thresh"]))
        ours, orig = set(keep.tolist()), set(z[f"{name}_keep"].tolist())
        assert len(ours ^ orig) <= 0.03 * len(orig), name
        both += len(ours & orig)
        either += len(ours | orig)
    assert either > 250
    assert both / either >= 0.99


@pytest.mark.parametrize("name, n_rays, anisotropy", [("iso", 96, None), ("aniso", 64, (2.0, 1.0, 1.0))])
def test_golden_spiral_rays_are_the_originals(name, n_rays, anisotropy):
    """``rays_golden_spiral`` = the original's ``Rays_GoldenSpiral`` (stored in the fixture): same rays,
    same triangulation, same face order (``det < 0`` in (z, y, x)); volumes stay positive."""
    z = np.load(FIXTURE)
    rays = rays_golden_spiral(n_rays, anisotropy)
    np.testing.assert_allclose(rays.vertices, z[f"{name}_vertices"], rtol=0, atol=1e-7)
    np.testing.assert_array_equal(rays.faces, z[f"{name}_faces"])
    det = np.linalg.det(rays.vertices.astype(float)[rays.faces])
    assert (det < 0).all()
    d = np.random.default_rng(0).uniform(2, 6, (3, n_rays))
    vol = polyhedron_volumes(d, rays)
    # the original's volume, -sum(det of the scaled face vertices) / 6
    scaled = d[:, rays.faces, None] * rays.vertices.astype(float)[rays.faces][None]
    np.testing.assert_allclose(vol, -np.linalg.det(scaled).sum(axis=1) / 6, rtol=1e-9)
    assert (vol > 0).all()
