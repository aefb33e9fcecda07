"""StarDist training for real (CI-sized): 2D quality, reproducibility, 3D smoke test."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from ij_bridge.metrics import matching_dataset
from ij_bridge.stardist import StarDist2D, StarDist3D, StarDistConfig, optimize_thresholds
from ij_bridge.synthetic import synthetic_nuclei

from conftest import synthetic_set

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("two_torch_threads")]


def _data(seeds, shape=(128, 128), n=14):
    return synthetic_set(seeds, shape, n, radius=(6, 10))


def test_short_2d_training_reaches_stated_f1(tmp_path):
    """150 steps on 4 synthetic images: F1 at IoU 0.5 on unseen images >= 0.7."""
    X, Y = _data(range(4))
    Xv, Yv = _data([100])
    Xt, Yt = _data([200, 201])
    cfg = StarDistConfig(n_rays=16, patch_size=(64, 64), batch_size=4, epochs=6, steps_per_epoch=25,
                         learning_rate=1e-3, seed=0)
    model = StarDist2D(cfg, device="cpu")
    calls = []
    hist = model.train(X, Y, validation_data=(Xv, Yv), show_progress=False,
                       progress=lambda d, t, m: calls.append((d, t)), checkpoint=tmp_path / "ckpt")
    assert (150, 150) in calls and [c for c in calls if c[1] == 150] == [(i, 150) for i in range(1, 151)]
    assert len(hist) == 6 and list(hist["epoch"]) == [1, 2, 3, 4, 5, 6]   # a table, one row per epoch
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]
    assert hist["best"].sum() == 1
    best = int(hist.loc[hist["best"], "epoch"].item())
    assert best == model.history["best_epoch"][0]
    assert hist["val_accuracy"].iloc[best - 1] == hist["val_accuracy"].max()
    # thresholds were optimised on the validation data and are used by default
    assert set(model.thresholds) == {"prob", "nms"} and model.thresholds["nms"] in (0.3, 0.4, 0.5)
    preds = [model.predict_instances(x)[0] for x in Xt]
    m = matching_dataset(Yt, preds, thresh=0.5)
    print("short training:", hist["val_f1"].tolist(), model.thresholds, m)
    assert m.f1 >= 0.7, m
    # the checkpoint holds the best weights and the optimised thresholds
    again = StarDist2D.load(tmp_path / "ckpt")
    assert again.thresholds == model.thresholds
    np.testing.assert_array_equal(again.predict_instances(Xt[0])[0], preds[0])
    png = model.plot_history(tmp_path / "history.png")
    assert png.stat().st_size > 1000
    # re-optimising gives a valid result and stores it
    th = optimize_thresholds(model, Xv, Yv, nms_threshs=(0.3, 0.5))
    assert 0 < th["prob"] < 1 and th["nms"] in (0.3, 0.5)
    assert model.thresholds == {"prob": th["prob"], "nms": th["nms"]}


def test_training_is_reproducible():
    X, Y = _data([7], shape=(64, 64), n=6)
    cfg = StarDistConfig(n_rays=8, patch_size=(32, 32), batch_size=2, epochs=1, steps_per_epoch=3,
                         seed=3)
    a = StarDist2D(cfg, device="cpu")
    b = StarDist2D(cfg, device="cpu")
    ha = a.train(X, Y, show_progress=False)
    hb = b.train(X, Y, show_progress=False)
    assert ha["train_loss"].tolist() == hb["train_loss"].tolist()
    for (k, va), vb in zip(a.net.state_dict().items(), b.net.state_dict().values()):
        assert torch.equal(va, vb), k
    c = StarDist2D(StarDistConfig(**{**cfg.to_dict(), "seed": 4, "extra": {}}), device="cpu")
    hc = c.train(X, Y, show_progress=False)
    assert hc["train_loss"].tolist() != ha["train_loss"].tolist()


def test_fresh_model_starts_at_the_data_priors_and_a_loaded_one_continues(tmp_path):
    from ij_bridge.stardist import edt_prob, star_dist_2d

    X, Y = _data([11], shape=(64, 64), n=6)
    cfg = StarDistConfig(n_rays=8, patch_size=(32, 32), batch_size=2, epochs=1, steps_per_epoch=1,
                         learning_rate=1e-12, seed=0)
    model = StarDist2D(cfg, device="cpu")
    model.train(X, Y, show_progress=False)
    # after one step at a negligible learning rate the biases are the priors of the targets
    p = edt_prob(Y[0])[::2, ::2]
    d = star_dist_2d(Y[0], 8, grid=(2, 2))
    want_p = np.log(p.mean() / (1 - p.mean()))
    want_d = (d * p[..., None]).sum((0, 1)) / p.sum()
    assert model.net.out_prob.bias.item() == pytest.approx(want_p, abs=1e-4)
    np.testing.assert_allclose(model.net.out_dist.bias.detach().numpy(), want_d, rtol=1e-4)
    assert 2 < want_d.mean() < 10                     # about the nuclei's radius, in pixels
    # a loaded (trained) model keeps its weights when training continues: no re-initialisation
    model.save(tmp_path / "m")
    again = StarDist2D.load(tmp_path / "m")
    before = again.net.out_dist.bias.detach().clone()
    X2, Y2 = _data([12], shape=(64, 64), n=12)       # other data, other priors
    again.train(X2, Y2, show_progress=False)
    np.testing.assert_allclose(again.net.out_dist.bias.detach().numpy(), before.numpy(), atol=1e-6)


def test_augmented_targets_equal_targets_of_the_transformed_labels():
    """Every flip/transpose of a sampled patch carries distances that match star_dist_2d of the
    transformed label image (rays permuted correctly), and probabilities that match edt_prob."""
    from ij_bridge.stardist import edt_prob, star_dist_2d

    _, Y = _data([13], shape=(64, 64), n=8)
    y = Y[0]
    cfg = StarDistConfig(n_rays=16, grid=(2, 2), patch_size=(64, 64), batch_size=16, seed=1)
    model = StarDist2D(cfg, device="cpu")
    data = []
    p, d = model._targets(y, (1, 1))
    data.append((y[None].astype(np.float32), p.astype(np.float32), d.astype(np.float32), np.flatnonzero(y)))
    xb, pb, db = model._sample_batch(data, np.random.default_rng(0))
    transforms = {}
    for t in range(4):
        for tr in (False, True):
            lab = np.rot90(y, t)
            lab = lab.T if tr else lab
            transforms[(t, tr)] = np.ascontiguousarray(lab)
    seen = set()
    for i in range(len(pb)):
        got_p = pb[i, 0].numpy()
        hits = [key for key, lab in transforms.items()
                if np.allclose(edt_prob(lab)[::2, ::2], got_p, atol=1e-6)]
        assert hits, f"patch {i} is no symmetry of the labels"
        lab = transforms[hits[0]]
        want = np.moveaxis(star_dist_2d(lab, 16, grid=(2, 2)), -1, 0)
        close = np.abs(db[i].numpy() - want) < 1e-3
        assert close.mean() > 0.995, (hits[0], close.mean())
        seen.add(hits[0])
    assert len(seen) >= 5                              # the batch covered most of the 8 symmetries


def test_labels_with_holes_are_filled_with_a_warning():
    X, Y = _data([9], shape=(64, 64), n=5)
    y = Y[0].copy()
    lab = y.max()
    rr, cc = np.nonzero(y == lab)
    # punch a hole in the middle of the last object
    r, c = int(np.median(rr)), int(np.median(cc))
    y[r, c] = 0
    cfg = StarDistConfig(n_rays=8, patch_size=(32, 32), batch_size=1, epochs=1, steps_per_epoch=1)
    with pytest.warns(UserWarning, match="filled holes"):
        StarDist2D(cfg, device="cpu").train(X, [y], show_progress=False)


def test_3d_training_smoke(tmp_path):
    X, Y = [], []
    for s in range(2):
        x, y = synthetic_nuclei((16, 40, 40), n_objects=5, radius=(5, 7), seed=s)
        X.append(x)
        Y.append(y)
    cfg = StarDistConfig(ndim=3, n_rays=24, grid=(1, 2, 2), patch_size=(16, 32, 32), batch_size=2,
                         epochs=2, steps_per_epoch=3, unet_pool=(1, 2, 2), seed=0)
    model = StarDist3D(cfg, device="cpu")
    hist = model.train(X[:1], Y[:1], validation_data=(X[1:], Y[1:]), show_progress=False,
                       optimize_thresholds=False)
    assert len(hist["val_f1"]) == 2 and np.isfinite(hist["train_loss"]).all()
    labels, det = model.predict_instances(X[1], prob_thresh=0.45)
    assert labels.shape == (16, 40, 40) and labels.dtype == np.int32
    n = len(det["prob"])
    assert det["dist"].shape == (n, 24) and det["points"].shape == (n, 3)
    assert det["rays_vertices"].shape == (24, 3)
    model.save(tmp_path / "m3d.zip")
    again = StarDist3D.load(tmp_path / "m3d.zip")
    np.testing.assert_allclose(again.predict(X[1])[0], model.predict(X[1])[0], atol=1e-5)
    np.testing.assert_array_equal(again.rays.faces, model.rays.faces)


def test_bfloat16_training_reaches_stated_f1_and_is_reproducible():
    """train_precision="bfloat16": the same 150-step budget as the float32 test reaches F1@0.5 >= 0.7.

    The weights stay float32, two runs with one seed give the same weights, and
    they differ from a float32 run (the option changes the arithmetic).
    """
    from ij_bridge.stardist.training import training_dtype

    X, Y = _data(range(4))
    Xv, Yv = _data([100])
    Xt, Yt = _data([200, 201])
    kw = dict(n_rays=16, patch_size=(64, 64), batch_size=4, epochs=6, steps_per_epoch=25,
              learning_rate=1e-3, seed=0)
    cfg = StarDistConfig(**kw, train_precision="bfloat16")
    assert training_dtype(cfg, torch.device("cpu")) == torch.bfloat16
    assert training_dtype(StarDistConfig(**kw), torch.device("cpu")) is None
    model = StarDist2D(cfg, device="cpu")
    hist = model.train(X, Y, validation_data=(Xv, Yv), show_progress=False)
    assert np.isfinite(hist["train_loss"]).all()
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]
    assert all(p.dtype == torch.float32 for p in model.net.parameters())
    preds = [model.predict_instances(x)[0] for x in Xt]
    m = matching_dataset(Yt, preds, thresh=0.5)
    print("bfloat16 short training:", hist["val_f1"].tolist(), model.thresholds, m)
    assert m.f1 >= 0.7, m
    # seeded bfloat16 runs are reproducible; and differ from float32
    X1, Y1 = _data([7], shape=(64, 64), n=6)
    small = dict(n_rays=8, patch_size=(32, 32), batch_size=2, epochs=1, steps_per_epoch=3, seed=3)
    a = StarDist2D(StarDistConfig(**small, train_precision="bfloat16"), device="cpu")
    b = StarDist2D(StarDistConfig(**small, train_precision="bfloat16"), device="cpu")
    f = StarDist2D(StarDistConfig(**small), device="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ha, hb, hf = (m_.train(X1, Y1, show_progress=False) for m_ in (a, b, f))
    # where the CPU has no bfloat16 arithmetic, each bfloat16 training (not the float32 one) says
    # that it is emulated, and names the fix
    from ij_bridge.device import EmulatedBfloat16Warning, bf16_native
    emulated = [str(w.message) for w in caught if issubclass(w.category, EmulatedBfloat16Warning)]
    assert len(emulated) == (0 if bf16_native() else 2), emulated
    assert all("train_precision='auto'" in m_ for m_ in emulated)
    assert ha["train_loss"].tolist() == hb["train_loss"].tolist()
    for (k, va), vb in zip(a.net.state_dict().items(), b.net.state_dict().values()):
        assert torch.equal(va, vb), k
    assert ha["train_loss"].tolist() != hf["train_loss"].tolist()


def test_train_precision_is_checked_and_saved(tmp_path):
    with pytest.raises(ValueError, match="train_precision"):
        StarDistConfig(train_precision="float16")
    cfg = StarDistConfig(n_rays=8, patch_size=(32, 32), train_precision="auto")
    assert StarDistConfig.from_dict(cfg.to_dict()).train_precision == "auto"
