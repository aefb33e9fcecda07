"""StarDist geometry: star distances, object probabilities, rays, polygons, polyhedra."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from ij_bridge.stardist import (
    dist_to_coord, edt_prob, fill_label_holes, polygon_areas, polygons_to_label,
    polyhedra_to_label, polyhedron_volumes, ray_angles, rays_golden_spiral, star_dist,
    star_dist_2d, star_dist_3d,
)
from ij_bridge.stardist.geometry import check_label_image, inside_polyhedron


def _reference_star_dist(lbl: np.ndarray, n_rays: int) -> np.ndarray:
    """Per-pixel reference of the original definition (slow; small images only)."""
    out = np.zeros(lbl.shape + (n_rays,), np.float32)
    step = np.float32(2 * np.pi / n_rays)
    for i in range(lbl.shape[0]):
        for j in range(lbl.shape[1]):
            v = lbl[i, j]
            if v == 0:
                continue
            for k in range(n_rays):
                phi = np.float32(k * step)
                dy, dx = np.sin(phi), np.cos(phi)
                y = x = np.float32(0)
                while True:
                    y += dy
                    x += dx
                    ii, jj = int(np.rint(i + y)), int(np.rint(j + x))
                    if not (0 <= ii < lbl.shape[0] and 0 <= jj < lbl.shape[1]) or lbl[ii, jj] != v:
                        t = np.float32(0.5) / max(abs(dx), abs(dy))
                        y += (t - 1) * dy
                        x += (t - 1) * dx
                        out[i, j, k] = np.sqrt(x * x + y * y)
                        break
    return out


def test_single_pixel_is_its_square():
    lbl = np.zeros((7, 7), np.int32)
    lbl[3, 3] = 5
    d = star_dist_2d(lbl, 32)[3, 3]
    phi = ray_angles(32)
    expected = 0.5 / np.maximum(np.abs(np.sin(phi)), np.abs(np.cos(phi)))
    np.testing.assert_allclose(d, expected, rtol=1e-5)
    # exactly 0.5 along the axes (rays 0, 8, 16, 24)
    np.testing.assert_allclose(d[::8], 0.5, atol=1e-6)
    assert np.all(star_dist_2d(lbl, 32)[lbl == 0] == 0)


@pytest.mark.parametrize("side", [5, 7, 11])
def test_centre_of_odd_square(side):
    lbl = np.zeros((side + 6, side + 6), np.int32)
    lbl[3:3 + side, 3:3 + side] = 1
    c = 3 + side // 2
    d = star_dist_2d(lbl, 8)[c, c]
    # half side + 0.5 along the axes
    np.testing.assert_allclose(d[::2], side // 2 + 0.5, atol=1e-5)
    # diagonals: whole unit steps while inside, then back to the last pixel's border
    # (the definition's discretisation: k whole steps while round(k / sqrt 2) <= half side,
    # then sqrt(0.5) to the border of the last pixel)
    k = np.floor((side // 2 + 0.5) * np.sqrt(2))
    np.testing.assert_allclose(d[1::2], k + np.sqrt(0.5), atol=1e-4)


def test_image_border_is_an_edge():
    lbl = np.ones((9, 9), np.int32)
    d = star_dist_2d(lbl, 4)  # rays: +col, +row, -col, -row
    assert d[4, 0, 2] == pytest.approx(0.5)     # at the left border looking left
    assert d[4, 0, 0] == pytest.approx(8.5)     # looking right across the image
    assert d[0, 4, 3] == pytest.approx(0.5)     # top border looking up
    assert d[8, 4, 1] == pytest.approx(0.5)


def test_another_label_is_an_edge():
    lbl = np.zeros((5, 10), np.int32)
    lbl[:, :5] = 1
    lbl[:, 5:] = 2
    d = star_dist_2d(lbl, 4)
    assert d[2, 4, 0] == pytest.approx(0.5)
    assert d[2, 5, 2] == pytest.approx(0.5)
    assert d[2, 2, 0] == pytest.approx(2.5)


def test_matches_brute_force_reference_on_random_labels():
    rng = np.random.default_rng(1)
    lbl = ndi.label(ndi.gaussian_filter(rng.random((36, 44)), 2) > 0.5)[0]
    lbl[rng.random(lbl.shape) < 0.04] = 99  # speckles of another label
    for n in (8, 12):
        np.testing.assert_array_equal(star_dist_2d(lbl, n), _reference_star_dist(lbl, n))


def test_grid_subsamples_full_resolution():
    rng = np.random.default_rng(2)
    lbl = ndi.label(ndi.gaussian_filter(rng.random((41, 37)), 2) > 0.5)[0]
    full = star_dist_2d(lbl, 16)
    np.testing.assert_array_equal(star_dist_2d(lbl, 16, grid=(2, 3)), full[::2, ::3])
    np.testing.assert_array_equal(star_dist(lbl, 16), full)


def test_edt_prob_border_is_not_an_edge_and_objects_separate():
    lbl = np.zeros((10, 20), np.int32)
    lbl[:, :6] = 1          # touches the left, top and bottom border
    lbl[3:8, 6:12] = 2      # touches object 1
    p = edt_prob(lbl)
    assert p.dtype == np.float32 and p.max() <= 1 and p.min() >= 0
    assert np.all(p[lbl == 0] == 0)
    # object 1: the border is not an edge, so its maximum is at the left border column
    assert p[5, 0] == pytest.approx(1.0)
    assert p[5, 5] < p[5, 0]
    # object 2 ends at object 1: its pixel next to label 1 is an edge pixel
    assert p[5, 6] == pytest.approx(1 / 3)
    assert p[lbl == 2].max() == pytest.approx(1.0)


def test_fill_label_holes_warns_and_fills():
    lbl = np.zeros((12, 12), np.int32)
    lbl[2:9, 2:9] = 3
    lbl[5, 5] = 0
    with pytest.warns(UserWarning, match="filled holes in 1 object"):
        out = fill_label_holes(lbl)
    assert out[5, 5] == 3 and lbl[5, 5] == 0
    # no holes: no warning
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fill_label_holes(out)


@pytest.mark.parametrize("bad,match", [
    (np.array([[0.5, 1.0]]), "non-integer"),
    (np.array([[0, -1]]), "negative"),
    (np.array([[True, False]]), "boolean"),
])
def test_bad_label_images_are_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        check_label_image(bad)
    with pytest.raises(ValueError, match=match):
        star_dist_2d(bad, 8)


def test_polygons_round_trip_through_rendering():
    lbl = np.zeros((40, 40), np.int32)
    rr, cc = np.mgrid[:40, :40]
    lbl[(rr - 20) ** 2 + (cc - 18) ** 2 <= 8 ** 2] = 1
    d = star_dist_2d(lbl, 64)[20, 18]
    coord = dist_to_coord(d[None], np.array([[20, 18]]))
    assert coord.shape == (1, 2, 64)
    # ray 0 points along +col (x), ray 16 (of 64) along +row (y)
    assert coord[0, 1, 0] > 18 and coord[0, 0, 0] == pytest.approx(20)
    assert coord[0, 0, 16] > 20 and coord[0, 1, 16] == pytest.approx(18, abs=1e-5)
    out = polygons_to_label(coord, lbl.shape)
    inter = np.sum((out > 0) & (lbl > 0))
    union = np.sum((out > 0) | (lbl > 0))
    assert inter / union > 0.95
    import shapely
    poly = shapely.Polygon(coord[0].T)
    assert polygon_areas(coord)[0] == pytest.approx(poly.area)


def test_rendering_order_higher_prob_wins():
    coord = dist_to_coord(np.full((2, 16), 5.0), np.array([[10, 10], [10, 14]]))
    lbl = polygons_to_label(coord, (20, 25), prob=np.array([0.9, 0.3]))
    assert lbl[10, 12] == 1
    lbl = polygons_to_label(coord, (20, 25), prob=np.array([0.3, 0.9]))
    assert lbl[10, 12] == 2


def test_golden_spiral_rays():
    rays = rays_golden_spiral(96)
    assert rays.vertices.shape == (96, 3)
    np.testing.assert_allclose(np.linalg.norm(rays.vertices, axis=1), 1, atol=1e-6)
    assert len(rays.faces) == 2 * 96 - 4      # closed triangulated sphere
    # unit distances: the polyhedron approximates the unit ball
    v = polyhedron_volumes(np.ones((1, 96)), rays)[0]
    assert 0.9 * 4 / 3 * np.pi < v < 4 / 3 * np.pi
    # anisotropy: rays stay unit vectors in voxel space and crowd along z
    aniso = rays_golden_spiral(96, anisotropy=(4, 1, 1))
    np.testing.assert_allclose(np.linalg.norm(aniso.vertices, axis=1), 1, atol=1e-6)
    assert np.mean(np.abs(aniso.vertices[:, 0])) < np.mean(np.abs(rays.vertices[:, 0]))
    with pytest.raises(ValueError, match="anisotropy"):
        rays_golden_spiral(32, anisotropy=(1, 0, 1))


def test_star_dist_3d_ball_and_single_voxel():
    rays = rays_golden_spiral(32)
    lbl = np.zeros((9, 9, 9), np.int32)
    lbl[4, 4, 4] = 1
    d = star_dist_3d(lbl, rays)[4, 4, 4]
    np.testing.assert_allclose(d, 0.5 / np.abs(rays.vertices).max(axis=1), rtol=1e-5)
    zz, yy, xx = np.mgrid[:25, :25, :25]
    ball = (((zz - 12) ** 2 + (yy - 12) ** 2 + (xx - 12) ** 2) <= 8 ** 2).astype(np.int32)
    d = star_dist_3d(ball, rays)
    assert d.shape == (25, 25, 25, 32)
    assert np.all(np.abs(d[12, 12, 12] - 8.5) < 1.0)
    np.testing.assert_array_equal(star_dist_3d(ball, rays, grid=(1, 2, 2)), d[:, ::2, ::2])
    # rendering the centre's polyhedron gives back the ball
    out = polyhedra_to_label(d[12, 12, 12][None], np.array([[12, 12, 12]]), rays, ball.shape)
    iou = np.sum((out > 0) & (ball > 0)) / np.sum((out > 0) | (ball > 0))
    assert iou > 0.8   # 32 flat-faced rays under-fill a ball a little
    vol = polyhedron_volumes(d[12, 12, 12][None], rays)[0]
    assert abs(vol - out.sum()) / vol < 0.08


def test_inside_polyhedron_matches_exact_face_test():
    rays = rays_golden_spiral(40)
    rng = np.random.default_rng(0)
    dist = rng.uniform(3, 6, 40)
    p = rng.uniform(-6, 6, (3000, 3))
    # exact: in the cone of some face and on the inner side of its plane
    a = np.einsum("fij,nj->nfi", rays.inverse, p)
    in_cone = np.all(a >= -1e-9, axis=2)
    inside = np.any(in_cone & ((a / dist[rays.faces][None]).sum(axis=2) <= 1), axis=1)
    got = inside_polyhedron(p, dist, rays)
    assert np.mean(got == inside) > 0.995
