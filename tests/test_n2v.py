"""Noise2Void: masking, configuration, shapes, tiling, model files, bad input."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch
import xarray as xr

from ij_bridge.n2v import N2V, N2VConfig, StructMask
from ij_bridge.n2v.masking import (mask_batch, masked_mse, neighbour_offsets, stratified_coords,
                                   struct_offsets)


def _unique_batch(shape) -> torch.Tensor:
    """Every pixel a distinct value, so a value tells where it came from."""
    return torch.arange(int(np.prod(shape)), dtype=torch.float64).reshape(shape)


def _positions(x: torch.Tensor, values: torch.Tensor) -> np.ndarray:
    """(N, 2 + ndim) positions of ``values`` in a ``_unique_batch`` tensor ``x``."""
    return np.stack(np.unravel_index(values.long().numpy(), tuple(x.shape)), 1)


# ---------------------------------------------------------------------------- masking
@pytest.mark.parametrize("spatial,fraction", [((64, 64), 0.002), ((64, 64), 0.02), ((16, 32, 32), 0.002)])
def test_masked_fraction_matches_request(spatial, fraction):
    rng = np.random.default_rng(1)
    x = torch.zeros((64, 1) + spatial)
    m = mask_batch(x, rng, fraction, radius=3)
    got = m.index.numel() / x.numel()
    assert got == pytest.approx(fraction, rel=0.15)
    assert m.index.unique().numel() == m.index.numel()  # no pixel twice


def test_stratified_coords_spread_over_the_patch():
    rng = np.random.default_rng(0)
    pts = stratified_coords((64, 64), 200, 0.01, rng)
    assert pts[:, 1:].min() >= 0 and pts[:, 1:].max() < 64
    # every quadrant of every patch holds a masked pixel (stratification)
    quad = pts[:, 0] * 4 + (pts[:, 1] // 32) * 2 + pts[:, 2] // 32
    assert np.unique(quad).size == 200 * 4


@pytest.mark.parametrize("spatial,radius", [((32, 48), 5), ((12, 20, 24), 2)])
def test_uniform_replacement_from_neighbourhood_never_itself(spatial, radius):
    x = _unique_batch((4, 2) + spatial)
    m = mask_batch(x, np.random.default_rng(3), 0.05, radius=radius, strategy="uniform")
    centre = _positions(x, m.targets)
    src = _positions(x, m.inputs.reshape(-1)[m.index])
    assert np.array_equal(centre, _positions(x, x.reshape(-1)[m.index]))
    assert np.array_equal(src[:, :2], centre[:, :2])  # same patch, same channel
    d = np.abs(src[:, 2:] - centre[:, 2:])
    assert d.max() <= radius
    assert np.all(d.max(axis=1) >= 1)  # never the pixel itself
    # offsets cover the whole neighbourhood, not a corner of it
    assert d.max() == radius
    # pixels that were not masked are untouched
    keep = torch.ones(x.numel(), dtype=torch.bool)
    keep[m.index] = False
    assert torch.equal(m.inputs.reshape(-1)[keep], x.reshape(-1)[keep])


def test_median_replacement_is_neighbourhood_median_without_centre():
    rng = np.random.default_rng(5)
    x = torch.from_numpy(rng.normal(size=(8, 1, 40, 40)))
    r = 2
    m = mask_batch(x, np.random.default_rng(7), 0.02, radius=r, strategy="median")
    pos = np.stack(np.unravel_index(m.index.numpy(), tuple(x.shape)), 1)
    inner = np.all((pos[:, 2:] >= r) & (pos[:, 2:] < 40 - r), axis=1)
    assert inner.sum() > 20
    xn = x.numpy()
    for (b, c, y, xx), got in zip(pos[inner], m.inputs.reshape(-1)[m.index][inner].numpy()):
        box = xn[b, c, y - r:y + r + 1, xx - r:xx + r + 1].ravel()
        box = np.delete(box, box.size // 2)  # without the centre
        assert got == np.sort(box)[(box.size - 1) // 2]  # lower median, as torch
        assert got != xn[b, c, y, xx]


def test_loss_sees_only_masked_pixels():
    x = torch.randn(4, 1, 32, 32)
    m = mask_batch(x, np.random.default_rng(0), 0.01, radius=3)
    pred = x.clone().requires_grad_(True)
    loss = masked_mse(pred, m)
    assert float(loss.detach()) == 0.0
    pred2 = (x + 1.0).requires_grad_(True)
    loss2 = masked_mse(pred2, m)
    assert float(loss2.detach()) == pytest.approx(1.0)
    loss2.backward()
    nz = torch.nonzero(pred2.grad.reshape(-1)).squeeze(1)
    assert torch.equal(torch.sort(nz).values, torch.sort(m.index).values)


def test_struct_mask_geometry():
    h = struct_offsets(StructMask("horizontal", 5), 2)
    assert h.tolist() == [[0, -2], [0, -1], [0, 1], [0, 2]]
    v = struct_offsets(StructMask("vertical", 3), 3)
    assert v.tolist() == [[0, -1, 0], [0, 1, 0]]
    nb = neighbour_offsets((2, 2), StructMask("horizontal", 5))
    assert len(nb) == 25 - 1 - 4
    assert not np.any((nb[:, 0] == 0))  # the whole centre row is the line
    with pytest.raises(ValueError, match="odd"):
        StructMask("horizontal", 4)
    with pytest.raises(ValueError, match="horizontal"):
        StructMask("diagonal", 5)


@pytest.mark.parametrize("direction,axis", [("horizontal", -1), ("vertical", -2)])
def test_struct_mask_scrambles_only_the_line(direction, axis):
    x = _unique_batch((6, 1, 48, 48))
    sm = StructMask(direction, 5)
    m = mask_batch(x, np.random.default_rng(2), 0.005, radius=4, strategy="uniform", struct=sm)
    changed = torch.nonzero(m.inputs.reshape(-1) != x.reshape(-1)).squeeze(1).numpy()
    pos = np.stack(np.unravel_index(m.index.numpy(), tuple(x.shape)), 1)
    allowed = set(m.index.tolist())
    for p in pos:
        for s in (-2, -1, 1, 2):
            q = p.copy()
            q[axis] += s
            if 0 <= q[axis] < 48:
                allowed.add(int(np.ravel_multi_index(tuple(q), tuple(x.shape))))
    assert set(changed.tolist()) <= allowed
    # most line pixels really changed (a random pick may hit the same value rarely)
    assert len(changed) > 0.9 * len(allowed)
    # the centre replacement never comes from the line
    src = _positions(x, m.inputs.reshape(-1)[m.index])
    d = src[:, 2:] - pos[:, 2:]
    other = -1 if axis == -2 else -2
    on_line = (d[:, other] == 0) & (np.abs(d[:, axis]) <= 2)
    assert not on_line.any()


# ---------------------------------------------------------------------------- config
def test_config_defaults_and_json_round_trip():
    c = N2VConfig()
    assert c.patch_size == (64, 64) and c.masked_fraction == 0.002 and c.neighborhood_radius == 5
    assert c.unet_depth == 2 and c.unet_filters == 32 and c.unet_kernel_size == 3
    assert c.learning_rate == 1e-3 and c.validation_fraction > 0 and c.precision == "float32"
    c3 = N2VConfig(axes="ZYX")
    assert c3.patch_size == (32, 64, 64) and c3.ndim == 3
    s = N2VConfig(variant="structN2V", struct_mask={"direction": "vertical", "span": 7}, seed=3)
    back = N2VConfig.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s and isinstance(back.struct_mask, StructMask)


@pytest.mark.parametrize("kw,msg", [
    (dict(variant="N3V"), "variant"),
    (dict(variant="structN2V"), "struct_mask"),
    (dict(struct_mask=StructMask()), "only used"),
    (dict(patch_size=(30, 64)), "multiples"),
    (dict(axes="YQ"), "axes"),
    (dict(axes="ZYX", patch_size=(64, 64)), "3 values"),
    (dict(masked_fraction=0.0), "masked_fraction"),
])
def test_config_rejects_bad_values(kw, msg):
    with pytest.raises(ValueError, match=msg):
        N2VConfig(**kw)


# ---------------------------------------------------------------------------- models
def _tiny(axes="YX", **kw) -> N2VConfig:
    patch = (8, 16, 16) if "Z" in axes else (16, 16)
    base = dict(axes=axes, patch_size=patch, batch_size=2, epochs=2, steps_per_epoch=2,
                unet_filters=4, neighborhood_radius=2, masked_fraction=0.02)
    base.update(kw)
    return N2VConfig(**base)


def _noisy(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(100, 10, shape)).astype(np.float32)


@pytest.fixture(scope="module")
def model2d():
    m = N2V(_tiny(), device="cpu")
    m.train(_noisy((40, 48)), show_progress=False)
    return m


def test_history_and_best_checkpoint(model2d):
    h = model2d.history
    assert list(h.columns[:4]) == ["epoch", "train_loss", "val_loss", "lr"]
    assert len(h) == 2 and np.all(np.isfinite(h["val_loss"]))
    assert h["best"].sum() == 1
    assert h.loc[h["best"], "val_loss"].iloc[0] == h["val_loss"].min()


@pytest.mark.parametrize("axes,shape", [("YX", (37, 53)), ("CYX", (2, 30, 41)), ("YXC", (30, 41, 3)),
                                        ("ZYX", (9, 21, 19)), ("TZCYX", (2, 9, 2, 17, 20))])
def test_shapes_and_dtype(axes, shape):
    n_ch = shape[axes.index("C")] if "C" in axes else 1
    m = N2V(_tiny(axes=axes), device="cpu")
    m.train(_noisy(shape), show_progress=False)
    assert m.config.n_channels == n_ch
    out = m.predict(_noisy(shape, 1))
    assert out.shape == shape and out.dtype == np.float32 and np.all(np.isfinite(out))


def test_xarray_in_xarray_out(model2d):
    img = xr.DataArray(_noisy((3, 35, 44)), dims=("t", "y", "x"),
                       coords={"y": np.arange(35) * 0.2, "x": np.arange(44) * 0.2, "t": [0.0, 5, 10]},
                       attrs={"units": {"x": "µm", "y": "µm", "t": "s"}}, name="cells")
    out = model2d.predict(img)
    assert isinstance(out, xr.DataArray) and out.dims == img.dims and out.name == "cells"
    assert out.attrs == img.attrs and out.dtype == np.float32
    for d in img.dims:
        np.testing.assert_array_equal(out[d].values, img[d].values)
    # each frame is denoised on its own: same as predicting it alone
    np.testing.assert_allclose(out.values[1], model2d.predict(img.values[1]), atol=1e-5)


def test_channel_order_is_respected():
    """YXC and CYX give the same result for the same data (channels not mixed up)."""
    data = np.stack([_noisy((30, 32), 0), _noisy((30, 32), 1) * 3])
    a = N2V(_tiny(axes="CYX"), device="cpu")
    a.train(data, show_progress=False)
    out_c = a.predict(data)
    out_last = a.predict(np.moveaxis(data, 0, -1), axes="YXC")
    np.testing.assert_array_equal(np.moveaxis(out_last, -1, 0), out_c)
    assert abs(out_c[1].mean() - 300) < abs(out_c[1].mean() - 100)  # per-channel normalisation


@pytest.mark.parametrize("tile", [16, (20, 24), 7])
def test_tiled_equals_untiled_2d(model2d, tile):
    img = _noisy((83, 101), 4)
    full = model2d.predict(img)
    tiled = model2d.predict(img, tile_shape=tile)
    np.testing.assert_allclose(tiled, full, rtol=0, atol=1e-4 * np.abs(full).max())


def test_tiled_equals_untiled_3d_and_n2v2():
    m = N2V(_tiny(axes="ZYX", variant="N2V2"), device="cpu")
    m.train(_noisy((12, 24, 24)), show_progress=False)
    img = _noisy((11, 45, 38), 2)
    full = m.predict(img)
    tiled = m.predict(img, tile_shape=(8, 16, 16))
    np.testing.assert_allclose(tiled, full, rtol=0, atol=1e-4 * np.abs(full).max())


def test_tta_shape_and_close(model2d):
    img = _noisy((33, 47), 3)
    a = model2d.predict(img)
    b = model2d.predict(img, tta=True)
    assert b.shape == a.shape and b.dtype == np.float32
    assert np.abs(a - b).mean() < 0.5 * np.abs(a - img).mean()


def test_progress_callback(model2d):
    calls = []
    model2d.predict(_noisy((40, 40)), tile_shape=16, progress=lambda d, t, msg: calls.append((d, t)))
    assert calls[-1][0] == calls[-1][1] == 9


@pytest.mark.parametrize("name", ["model_dir", "model.zip"])
def test_save_load_bit_identical(model2d, tmp_path, name):
    path = model2d.save(tmp_path / name)
    loaded = N2V.load(path, device=model2d.device)
    assert loaded.config == model2d.config
    img = _noisy((50, 61), 9)
    assert np.array_equal(loaded.predict(img), model2d.predict(img))
    meta_file = path / "n2v_model.json" if path.is_dir() else None
    meta = json.loads(meta_file.read_text() if meta_file else zipfile.ZipFile(path).read("n2v_model.json"))
    assert meta["ij_bridge_version"] and len(meta["normalization"]["mean"]) == 1
    assert meta["config"]["n_channels"] == 1


def test_load_rejects_missing_and_corrupt(model2d, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        N2V.load(tmp_path / "nothing.zip")
    folder = model2d.save(tmp_path / "m")
    (folder / "weights.pt").unlink()
    with pytest.raises(FileNotFoundError, match="weights.pt is missing"):
        N2V.load(folder)
    z = model2d.save(tmp_path / "m.zip")
    raw = z.read_bytes()
    (tmp_path / "trunc.zip").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="corrupt|zip"):
        N2V.load(tmp_path / "trunc.zip")
    folder = model2d.save(tmp_path / "m2")
    w = bytearray((folder / "weights.pt").read_bytes())
    w[-20] ^= 0xFF
    (folder / "weights.pt").write_bytes(bytes(w))
    with pytest.raises(ValueError, match="checksum"):
        N2V.load(folder)
    (folder / "n2v_model.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt"):
        N2V.load(folder)
    (folder / "n2v_model.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="not an ij-bridge N2V model"):
        N2V.load(folder)


def test_same_seed_same_weights_other_seed_differs():
    img = _noisy((40, 40))

    def weights(seed):
        m = N2V(_tiny(seed=seed), device="cpu")
        m.train(img, show_progress=False)
        return [v.clone() for v in m.net.state_dict().values()]

    a, b, c = weights(7), weights(7), weights(8)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("image,axes,msg", [
    (np.zeros((40, 40), np.float32) + 3, "YX", "constant"),
    (np.where(np.eye(40) > 0, np.nan, 1.0).astype(np.float32), "YX", "NaN"),
    (_noisy((10, 40)), "YX", "larger than the image"),
    (_noisy((4, 40, 40)), "YX", "3 dimensions"),
    (_noisy((12, 40, 40)), "ZYX", "do not fit a 2D"),
])
def test_bad_training_input_rejected_before_training(image, axes, msg):
    m = N2V(_tiny(), device="cpu")
    with pytest.raises(ValueError, match=msg):
        m.train(image if axes == "YX" else xr.DataArray(image, dims=("z", "y", "x")),
                show_progress=False)
    assert m.net is None  # nothing was built or trained


def test_bad_prediction_input(model2d):
    with pytest.raises(ValueError, match="channel"):
        model2d.predict(_noisy((2, 30, 30)), axes="CYX")
    with pytest.raises(ValueError, match="2D"):
        model2d.predict(xr.DataArray(_noisy((5, 30, 30)), dims=("z", "y", "x")))
    with pytest.raises(ValueError, match="xarray dims"):
        model2d.predict(xr.DataArray(_noisy((30, 30)), dims=("height", "width")))
    with pytest.raises(RuntimeError, match="not trained"):
        N2V(_tiny()).predict(_noisy((30, 30)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_training_is_deterministic_and_matches_cpu_prediction(tmp_path):
    img = _noisy((48, 48))
    models = []
    for _ in range(2):
        m = N2V(_tiny(seed=3), device="cuda")
        m.train(img, show_progress=False)
        models.append(m)
    a, b = (list(m.net.state_dict().values()) for m in models)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    test = _noisy((70, 90), 5)
    gpu = models[0].predict(test)
    np.testing.assert_allclose(models[0].predict(test, tile_shape=24), gpu, atol=1e-3)
    cpu = N2V.load(models[0].save(tmp_path / "m.zip"), device="cpu").predict(test)
    np.testing.assert_allclose(cpu, gpu, atol=1e-2)
    assert models[0].device.type == "cuda" and N2V(_tiny()).device.type == "cuda"


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_bioimageio_export_reproduces_test_output(model2d, tmp_path):
    img = _noisy((45, 70), 6)
    path = model2d.export_bioimageio(tmp_path / "bmz.zip", img, name="test model")
    with zipfile.ZipFile(path) as zf:
        rdf = json.loads(zf.read("rdf.yaml"))  # JSON is valid YAML
        for name in ("weights.pt", "weights_torchscript.pt", "test_input.npy",
                     "test_output.npy", "README.md", "cover.png"):
            assert name in zf.namelist()
        import io
        x = np.load(io.BytesIO(zf.read("test_input.npy")))
        y = np.load(io.BytesIO(zf.read("test_output.npy")))
        ts = torch.jit.load(io.BytesIO(zf.read("weights_torchscript.pt")))
    assert rdf["type"] == "model" and rdf["format_version"].startswith("0.5")
    assert x.shape == (1, 1, 44, 68) and y.shape == x.shape  # cropped to multiples of 4
    pre = rdf["inputs"][0]["preprocessing"][0]["kwargs"]
    post = rdf["outputs"][0]["postprocessing"][0]["kwargs"]
    with torch.no_grad():
        raw = ts(torch.from_numpy((x - pre["mean"]) / pre["std"]).float()).numpy()
    np.testing.assert_allclose(raw * post["gain"] + post["offset"], y, rtol=1e-5, atol=1e-3)


def test_automatic_tiling_when_memory_is_short(model2d, monkeypatch):
    import ij_bridge.n2v.model as model_mod

    img = _noisy((90, 70), 8)
    full = model2d.predict(img)
    calls = []
    monkeypatch.setattr(model_mod, "_memory_budget", lambda device: 4.0 * 4 * 10 * 40 * 40)
    tiled = model2d.predict(img, progress=lambda d, t, m: calls.append(t))
    assert calls[-1] > 1  # it did split the image
    np.testing.assert_allclose(tiled, full, rtol=0, atol=1e-4 * np.abs(full).max())


def test_rgb_samples_are_channels():
    """ij_bridge.io names RGB samples ``s``: they are channels, not independent images."""
    rgb = np.stack([_noisy((32, 40), i) * (i + 1) for i in range(3)], -1)
    m = N2V(_tiny(axes="YXC"), device="cpu")
    m.train(xr.DataArray(rgb, dims=("y", "x", "s")), show_progress=False)
    assert m.config.n_channels == 3
    out = m.predict(xr.DataArray(rgb, dims=("y", "x", "s")))
    assert out.dims == ("y", "x", "s") and out.shape == rgb.shape
    with pytest.raises(ValueError, match="same axis twice"):
        m.predict(xr.DataArray(rgb[None], dims=("c", "y", "x", "s")))


def test_few_images_each_keep_training_and_give_a_validation_band():
    """2-5 images at the default 10 % hold out no whole image: every image gives a band (none is dropped)."""
    m = N2V(_tiny(), device="cpu")
    samples = [np.full((1, 40, 64), i, np.float32) for i in range(3)]
    train, val = m._split(samples)
    assert len(train) == 3 and len(val) == 3
    assert sorted(float(t[0, 0, 0]) for t in train) == [0.0, 1.0, 2.0]
    for t, v in zip(train, val):
        assert t.shape[-2] == v.shape[-2] == 40 and t.shape[-1] + v.shape[-1] == 64
        assert v.shape[-1] >= 16  # at least one patch wide


def test_too_small_for_a_validation_band_warns_naming_the_python_and_cli_options():
    """An image of one patch cannot give a band: validation falls back to the training image, and
    the warning names both ways to pass held-out images (``validation=`` and the CLI's ``--val``)."""
    m = N2V(_tiny(), device="cpu")
    samples = [np.zeros((1, 16, 16), np.float32)]
    with pytest.warns(UserWarning, match=r"validation=.*--val IMAGE"):
        train, val = m._split(samples)
    assert train is samples and val is samples
