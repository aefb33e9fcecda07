"""Tests for ij_bridge.synthetic."""

from __future__ import annotations

import numpy as np
import pytest

from ij_bridge.metrics import matching
from ij_bridge.synthetic import add_gaussian_noise, add_poisson_noise, noisy_image, synthetic_nuclei


def test_2d_outputs_and_determinism():
    img, lbl = synthetic_nuclei((128, 160), n_objects=20, seed=3)
    assert img.shape == lbl.shape == (128, 160)
    assert img.dtype == np.float32 and lbl.dtype == np.int32
    ids = np.unique(lbl)
    assert ids[0] == 0 and np.array_equal(ids[1:], np.arange(1, len(ids)))  # consecutive labels
    assert 15 <= len(ids) - 1 <= 20
    img2, lbl2 = synthetic_nuclei((128, 160), n_objects=20, seed=3)
    assert np.array_equal(img, img2) and np.array_equal(lbl, lbl2)
    img3, _ = synthetic_nuclei((128, 160), n_objects=20, seed=4)
    assert not np.array_equal(img, img3)
    # objects are brighter than background
    assert img[lbl > 0].mean() > img[lbl == 0].mean() + 0.3


def test_objects_are_single_pieces_with_plausible_size():
    from skimage.measure import label

    _, lbl = synthetic_nuclei((256, 256), n_objects=60, radius=(6, 10), overlap=0.4, seed=1)
    n = lbl.max()
    pieces = label(lbl, connectivity=1)
    assert pieces.max() == n  # each label one connected piece
    areas = np.bincount(lbl.ravel())[1:]
    assert areas.min() >= 8
    assert np.median(areas) > np.pi * 5**2


def test_overlap_creates_touching_objects():
    def touching(lbl):
        # pixels whose right neighbour is a different object
        a, b = lbl[:, :-1], lbl[:, 1:]
        return np.count_nonzero((a > 0) & (b > 0) & (a != b))

    _, apart = synthetic_nuclei((200, 200), n_objects=30, overlap=0.0, seed=2)
    _, crowded = synthetic_nuclei((200, 200), n_objects=30, overlap=0.5, seed=2)
    assert touching(apart) == 0
    assert touching(crowded) > 0


def test_3d_anisotropy():
    img, lbl = synthetic_nuclei((24, 64, 64), n_objects=8, radius=(7, 9), anisotropy=2.0, seed=0)
    assert img.shape == lbl.shape == (24, 64, 64)
    assert lbl.max() >= 6
    from scipy import ndimage as ndi

    for sl in ndi.find_objects(lbl):
        if sl is None:
            continue
        ext = [s.stop - s.start for s in sl]
        # round in physical space: z extent is about half the y/x extent (in slices)
        if 0 < sl[0].start and sl[0].stop < 24 and all(0 < s.start for s in sl[1:]):
            assert ext[0] < 0.75 * max(ext[1], ext[2])


def test_ground_truth_matches_itself_and_noise_levels():
    clean, lbl = synthetic_nuclei((64, 64), n_objects=6, noise=0, photons=None, seed=5)
    noisy, lbl2 = synthetic_nuclei((64, 64), n_objects=6, noise=0.1, photons=50, seed=5)
    assert np.array_equal(lbl, lbl2)  # noise does not change the objects
    assert matching(lbl, lbl2).f1 == 1.0
    assert np.std(noisy - clean) > 0.05


def test_noise_helpers():
    x = np.full((200, 200), 0.5, np.float32)
    g = add_gaussian_noise(x, 0.1, seed=0)
    assert g.dtype == np.float32 and abs(g.std() - 0.1) < 0.005
    assert np.array_equal(g, add_gaussian_noise(x, 0.1, seed=0))
    p = add_poisson_noise(x, photons=100, seed=0)
    assert abs(p.mean() - 0.5) < 0.01 and abs(p.var() - 0.5 / 100) < 0.001
    n = noisy_image(x, sigma=0.05, photons=100, seed=1)
    assert n.shape == x.shape and n.dtype == np.float32


def test_bad_arguments():
    with pytest.raises(ValueError, match="shape"):
        synthetic_nuclei((10,))
    with pytest.raises(ValueError, match="radius"):
        synthetic_nuclei(radius=(5, 2))
    with pytest.raises(ValueError, match="overlap"):
        synthetic_nuclei(overlap=1.0)
    with pytest.warns(UserWarning, match="only"):
        synthetic_nuclei((32, 32), n_objects=50, radius=(8, 8), overlap=0.0)


def test_3d_axial_blur_and_attenuation():
    """A longer axial PSF smooths along z only; attenuation dims the deep slices; labels stay the same."""
    kw = dict(n_objects=12, radius=(5, 7), seed=3, anisotropy=2.0, noise=0.0, photons=None, texture=0.0,
              background=0.0)
    a, la = synthetic_nuclei((24, 48, 48), **kw)
    b, lb = synthetic_nuclei((24, 48, 48), axial_blur=3.0, **kw)
    c, lc = synthetic_nuclei((24, 48, 48), attenuation=1.0, **kw)
    np.testing.assert_array_equal(la, lb)
    np.testing.assert_array_equal(la, lc)
    dz = lambda im: np.abs(np.diff(im, axis=0)).mean()     # noqa: E731
    dy = lambda im: np.abs(np.diff(im, axis=1)).mean()     # noqa: E731
    assert dz(b) < 0.8 * dz(a) and abs(dy(b) - dy(a)) < 0.35 * dy(a)
    np.testing.assert_allclose(c[0], a[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(c[-1], a[-1] * np.exp(-23 / 24), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="axial_blur"):
        synthetic_nuclei((8, 16, 16), axial_blur=0)
