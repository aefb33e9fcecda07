"""StarDist 3D training for real (CI-sized): augmentation, anisotropy, ResNet, quality, the bundled model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ij_bridge.metrics import matching_dataset
from ij_bridge.stardist import StarDist3D, StarDistConfig
from ij_bridge.stardist import augment as aug
from ij_bridge.stardist.geometry import edt_prob, rays_golden_spiral, star_dist_3d

from conftest import synthetic_set

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("two_torch_threads")]


def _stacks(seeds, shape=(16, 48, 48), n=10, radius=(5, 7), anisotropy=2.0):
    return synthetic_set(seeds, shape, n, radius=radius, anisotropy=anisotropy, overlap=0.2,
                         axial_blur=2.0)


def _transform_dirs(dirs: np.ndarray, ops) -> np.ndarray:
    """The directions u with L(u) = dirs, L the linear part of the transform ``ops``."""
    d = dirs.copy()
    for op in reversed(ops):   # each operation is its own inverse
        if op == "t":
            d = d[:, [0, 2, 1]]
        else:
            d[:, {"z": 0, "y": 1, "x": 2}[op]] *= -1
    return d


def test_compiled_star_distances_equal_the_reference():
    _, Y = _stacks([0], shape=(12, 40, 40), n=8)
    rays = rays_golden_spiral(32, (2, 1, 1))
    for grid in [(1, 1, 1), (1, 2, 2)]:
        want = star_dist_3d(Y[0], rays, grid)
        got = aug.star_dist_3d_fast(Y[0], rays.vertices, grid)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("ops", [("t", "y"), ("t", "x"), ("y", "x"), ("z",), ("t", "y", "x", "z")])
def test_a_transformed_labels_targets_are_the_transformed_targets(ops):
    """Star distances of the transformed label image equal the original's along the carried rays,
    moved by the same transform (exactly: the marching rule is symmetric); so do the probabilities."""
    _, Y = _stacks([1], shape=(12, 40, 40), n=8)
    y = Y[0]
    rays = rays_golden_spiral(32, (2, 1, 1))
    moved = np.ascontiguousarray(aug.apply_transform(y, ops))
    d_moved = aug.star_dist_3d_fast(moved, rays.vertices)                      # (z, y, x, R)
    d_orig = aug.star_dist_3d_fast(y, _transform_dirs(rays.vertices, ops))    # along L^-1 rays
    np.testing.assert_allclose(d_moved, aug.apply_transform(d_orig, ops), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(edt_prob(moved, (2, 1, 1)), aug.apply_transform(edt_prob(y, (2, 1, 1)), ops),
                               atol=1e-6)


def test_sampled_patches_keep_image_labels_and_targets_together():
    """Each augmented patch: the image's objects are where the probability target is positive, the
    targets are those of the label patch cut from the transformed image, and the transforms vary."""
    _, Y = _stacks([2], shape=(16, 48, 48), n=10)
    y = Y[0]
    img = (y > 0).astype(np.float32)[None]                 # image = foreground mask
    cfg = StarDistConfig(ndim=3, n_rays=24, grid=(1, 2, 2), patch_size=(8, 32, 32), anisotropy=(2, 1, 1),
                         unet_depth=1, foreground_prob=1.0)
    model = StarDist3D(cfg, device="cpu")
    margin = aug.object_margin([y], cap=cfg.patch_size)
    assert all(m > 0 for m in margin)
    item = (img, y, np.flatnonzero(y), margin)
    rng = np.random.default_rng(0)
    seen, checked = set(), []
    for _ in range(24):
        state = rng.bit_generator.state
        x, p, d = aug.sample_patch_3d(model, item, rng)
        assert x.shape == (1, 8, 32, 32) and p.shape == (8, 16, 16) and d.shape == (24, 8, 16, 16)
        # the image went through the same transform as the labels (intensity: scale > 0, then shift)
        lo, hi = np.unique(x)[[0, -1]]
        fg_img = x[0] > (lo + hi) / 2
        np.testing.assert_array_equal(fg_img[:, ::2, ::2], p > 0)
        np.testing.assert_array_equal((d > 0).all(axis=0), p > 0)
        # replay the draw: the same box and transform, targets straight from the full labels
        r2 = np.random.default_rng()
        r2.bit_generator.state = state
        box = aug._choose_box(r2, y.shape, cfg.patch_size, item[2], cfg.foreground_prob)
        ops = aug.random_transform(r2, allow_transpose=True)
        seen.add(ops)
        moved = np.ascontiguousarray(aug.apply_transform(y, ops))
        lo_m, size_m, _ = aug.transform_box(box, cfg.patch_size, y.shape, ops)
        sl = tuple(slice(a, a + s) for a, s in zip(lo_m, size_m))
        sub = tuple(slice(a, a + s, g) for a, s, g in zip(lo_m, size_m, cfg.grid))
        want_d = np.moveaxis(aug.star_dist_3d_fast(moved, model.rays.vertices, cfg.grid, lo_m, size_m), -1, 0)
        np.testing.assert_allclose(d, want_d, atol=1e-5)
        # probabilities: those of the transformed stack for the objects that lie inside the box
        full_p = edt_prob(moved, cfg.anisotropy)[sub]
        lab = moved[sub]
        n_checked = 0
        for v in np.unique(moved[sl]):
            obj = np.argwhere(moved == v)
            if v and (obj.min(0) >= lo_m).all() and (obj.max(0) < np.add(lo_m, size_m)).all():
                np.testing.assert_allclose(p[lab == v], full_p[lab == v], atol=1e-6)
                n_checked += 1
        checked.append(n_checked)
    assert len(seen) >= 8                                  # most of the 16 transforms were drawn
    assert sum(checked) >= 5


@pytest.mark.parametrize("anisotropy", [(2, 1, 1), (2, 1, 1.05), (2, 1, 1.5), None])
def test_whole_stack_probabilities_give_the_per_patch_targets(anisotropy):
    """Training cuts each patch's probability from the whole stack's (computed once, and once more
    for the Y/X swap when rotations are allowed): the patches are bit for bit those whose targets
    are computed from the label patch, for equal, near-equal (rotations, swapped transform) and
    unequal (flips only) y/x voxel sizes."""
    X, Y = _stacks([6], shape=(16, 48, 48), n=12)
    y = Y[0]
    cfg = StarDistConfig(ndim=3, n_rays=24, grid=(1, 2, 2), patch_size=(8, 32, 32), anisotropy=anisotropy,
                         unet_depth=1)
    model = StarDist3D(cfg, device="cpu")
    probs = aug.object_probabilities(y, cfg)
    assert (True in probs) == (anisotropy is None or anisotropy[2] != 1.5)
    per_patch = (X[0][None].astype(np.float32), y, np.flatnonzero(y), aug.object_margin([y], cap=cfg.patch_size))
    r1, r2 = np.random.default_rng(5), np.random.default_rng(5)
    transposed = 0
    for _ in range(60):
        state = r1.bit_generator.state
        a = aug.sample_patch_3d(model, per_patch, r1)
        b = aug.sample_patch_3d(model, per_patch + (probs,), r2)
        for u, v in zip(a, b):
            assert u.dtype == v.dtype == np.float32
            np.testing.assert_array_equal(u, v)
        r3 = np.random.default_rng()
        r3.bit_generator.state = state
        aug._choose_box(r3, y.shape, cfg.patch_size, per_patch[2], cfg.foreground_prob)
        transposed += "t" in aug.random_transform(r3, allow_transpose=aug.allow_transpose(cfg))
    assert (transposed > 10) == (True in probs)


def test_rotations_only_for_square_pixels():
    rng = np.random.default_rng(0)
    assert not any("t" in aug.random_transform(rng, allow_transpose=False) for _ in range(50))
    _, Y = _stacks([3], shape=(16, 48, 48), n=10)
    y = Y[0]
    cfg = StarDistConfig(ndim=3, n_rays=16, patch_size=(8, 32, 32), anisotropy=(2, 1, 1.5), unet_depth=1)
    model = StarDist3D(cfg, device="cpu")
    item = ((y > 0).astype(np.float32)[None], y, np.flatnonzero(y), (4, 8, 8))
    rng = np.random.default_rng(1)
    for _ in range(10):   # y != x voxel size: no transposes, so every draw is reproducible with flips
        state = rng.bit_generator.state
        aug.sample_patch_3d(model, item, rng)
        r2 = np.random.default_rng()
        r2.bit_generator.state = state
        aug._choose_box(r2, y.shape, cfg.patch_size, item[2], cfg.foreground_prob)
        assert "t" not in aug.random_transform(r2, allow_transpose=False)


def test_anisotropy_from_the_labels_and_anisotropic_rays():
    """A fresh model takes the anisotropy from the training labels' extents (the original's
    calculate_extents rule), its rays are evenly spread in physical space, and an explicit value is kept."""
    X, Y = _stacks([4, 5], shape=(16, 48, 48), n=10, anisotropy=2.0)
    a = aug.anisotropy_from_labels(Y)
    assert 1.6 < a[0] < 2.4 and 0.85 < a[1] / a[2] < 1.15
    cfg = StarDistConfig(ndim=3, n_rays=32, patch_size=(8, 32, 32), batch_size=1, epochs=1,
                         steps_per_epoch=1, unet_depth=1)
    model = StarDist3D(cfg, device="cpu")
    assert model.config.anisotropy is None
    model.train(X, Y, show_progress=False)
    assert model.config.anisotropy == a
    np.testing.assert_allclose(model.rays.vertices, rays_golden_spiral(32, a).vertices)
    # physical directions (voxel direction x voxel size) of the warped rays are the isotropic spiral's
    phys = model.rays.vertices * np.asarray(a)
    phys /= np.linalg.norm(phys, axis=1, keepdims=True)
    np.testing.assert_allclose(phys, rays_golden_spiral(32).vertices, atol=1e-5)
    # the warped rays describe the anisotropic objects better than isotropic ones
    from ij_bridge.stardist.geometry import polyhedra_to_label

    y = Y[0]
    def recon_iou(rays):
        d = star_dist_3d(y, rays)
        ious = []
        for v in range(1, y.max() + 1):
            c = np.round(np.argwhere(y == v).mean(0)).astype(int)
            if y[tuple(c)] != v:
                continue
            r = polyhedra_to_label(d[tuple(c)][None], c[None], rays, y.shape) > 0
            m = y == v
            ious.append((r & m).sum() / (r | m).sum())
        return float(np.mean(ious))
    iso, an = recon_iou(rays_golden_spiral(32)), recon_iou(model.rays)
    assert an > iso, (an, iso)
    # an explicit anisotropy (also isotropic) is kept
    m2 = StarDist3D(StarDistConfig(**{**cfg.to_dict(), "anisotropy": (1, 1, 1)}), device="cpu")
    m2.train(X, Y, show_progress=False)
    assert m2.config.anisotropy == (1.0, 1.0, 1.0)


def test_config_checks_the_backbone():
    with pytest.raises(ValueError, match="backbone"):
        StarDistConfig(ndim=3, backbone="vgg")
    with pytest.raises(ValueError, match="resnet_n_blocks"):
        StarDistConfig(ndim=3, backbone="resnet", grid=(1, 4, 4), resnet_n_blocks=1)
    assert StarDistConfig(ndim=3, backbone="resnet", grid=(1, 2, 2)).divisor == (1, 2, 2)


def test_resnet_backbone_trains_and_round_trips(tmp_path):
    X, Y = _stacks([6, 7], shape=(16, 48, 48), n=10)
    cfg = StarDistConfig(ndim=3, n_rays=24, grid=(1, 2, 2), patch_size=(8, 32, 32), batch_size=2,
                         backbone="resnet", resnet_n_blocks=2, resnet_n_filters=8, head_channels=32,
                         epochs=4, steps_per_epoch=6, learning_rate=1e-3, seed=0)
    model = StarDist3D(cfg, device="cpu")
    from ij_bridge.nets.resnet import ResNet

    assert isinstance(model.net.unet, ResNet)
    hist = model.train(X[:1], Y[:1], show_progress=False)
    loss, dloss = list(hist["train_loss"]), list(hist["dist_loss"])
    print("resnet losses:", loss, dloss)
    assert loss[-1] < 0.95 * loss[0] and dloss[-1] < dloss[0], (loss, dloss)
    prob, dist = model.predict(X[1])
    assert prob.shape == (16, 24, 24) and dist.shape == (16, 24, 24, 24)
    # odd sizes are padded to the divisor (the grid) and cropped back
    labels, _ = model.predict_instances(X[1][:15, :47, :45])
    assert labels.shape == (15, 47, 45)
    model.save(tmp_path / "r3d")
    again = StarDist3D.load(tmp_path / "r3d")
    assert again.config.backbone == "resnet"
    np.testing.assert_allclose(again.predict(X[1])[0], prob, atol=1e-5)


def test_short_3d_training_reaches_stated_f1():
    """80 steps on 3 small anisotropic synthetic stacks: F1 at IoU 0.5 on unseen stacks >= 0.45.

    Measured 0.55 (20 nuclei in 2 test stacks; 2 threads). A CI-sized budget: the point is a real
    training through augmentation, per-patch targets, anisotropy and thresholds, not a good model
    (the bundled model's test below is the quality check).
    """
    X, Y = _stacks(range(3), shape=(16, 48, 48), n=10)
    Xv, Yv = _stacks([100], shape=(16, 48, 48), n=10)
    Xt, Yt = _stacks([200, 201], shape=(16, 48, 48), n=10)
    cfg = StarDistConfig(ndim=3, n_rays=32, grid=(1, 2, 2), patch_size=(16, 32, 32), batch_size=2,
                         unet_depth=2, unet_n_filters=16, head_channels=32, epochs=2, steps_per_epoch=40,
                         learning_rate=1e-3, seed=0)
    model = StarDist3D(cfg, device="cpu")
    hist = model.train(X, Y, validation_data=(Xv, Yv), show_progress=False)
    preds = [model.predict_instances(x)[0] for x in Xt]
    m = matching_dataset(Yt, preds, thresh=[0.5, 0.7])
    print("short 3D training:", list(hist["val_f1"]), model.thresholds, model.config.anisotropy, m)
    assert m[0].f1 >= 0.45, m


def test_the_bundled_3d_model_on_a_held_out_stack():
    """stardist_nuclei3d on a synthetic stack from seeds it never saw: F1 at IoU 0.5 >= 0.9 (measured 0.995)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    try:
        from train_bundled_model import synthetic_set_3d
    finally:
        sys.path.pop(0)
    model = StarDist3D.from_pretrained("stardist_nuclei3d")
    assert model.config.ndim == 3 and model.config.anisotropy is not None
    X, Y = synthetic_set_3d(1, 5000, shape=(32, 128, 128))
    labels, det = model.predict_instances(X[0])
    m = matching_dataset(Y, [labels], thresh=0.5)
    print("bundled 3D model:", m)
    assert m.f1 >= 0.9, m
