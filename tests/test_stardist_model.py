"""StarDist models: prediction, tiling, inputs, model files, errors (no training here)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ij_bridge.metrics import matching
from ij_bridge.stardist import StarDist2D, StarDist3D, StarDistConfig, bundled_models
from ij_bridge.stardist.model import StarDistBase, normalize_percentiles
from ij_bridge.synthetic import synthetic_nuclei



@pytest.fixture(scope="module")
def bundled():
    torch.set_num_threads(2)
    return StarDist2D.from_pretrained("stardist_nuclei2d", device="cpu")


@pytest.fixture(scope="module")
def nuclei(shared_data):
    import tifffile
    return (tifffile.imread(shared_data / "nuclei2d" / "train_left_img.tif"),
            tifffile.imread(shared_data / "nuclei2d" / "train_left_mask.tif").astype(np.int32))


def test_bundled_model_is_listed_and_small(bundled):
    assert "stardist_nuclei2d" in bundled_models()
    folder = Path(bundled.source)
    size = sum(f.stat().st_size for f in folder.iterdir())
    assert size <= 5 * 2**20
    meta = json.loads((folder / "config.json").read_text())
    assert meta["weights_dtype"] == "float16"
    assert bundled.thresholds == meta["thresholds"]
    assert (folder / "README.md").is_file()


def test_bundled_model_on_held_out_real_nuclei(bundled, nuclei):
    img, lbl = nuclei
    labels, details = bundled.predict_instances(img[384:])
    m = matching(lbl[384:], labels, thresh=0.5)
    assert m.f1 > 0.85, m   # README: 0.898
    n = len(details["prob"])
    assert details["coord"].shape == (n, 2, 32)
    assert details["points"].shape == (n, 2)
    assert np.all(np.diff(details["prob"]) <= 0)          # sorted by probability
    assert np.all(details["prob"] >= bundled.thresholds["prob"])
    assert labels.dtype == np.int32 and labels.shape == (128, 256)
    assert set(np.unique(labels)) - {0} <= set(range(1, n + 1))
    # the polygon of object i encloses the centre point of object i
    i = 0
    r, c = details["points"][i]
    assert labels[r, c] == i + 1


def test_tiled_equals_untiled(bundled):
    x, _ = synthetic_nuclei((136, 120), n_objects=14, seed=5)
    prob, dist = bundled.predict(x)
    assert prob.shape == (68, 60) and dist.shape == (68, 60, 32)
    lbl, det = bundled.predict_instances(x)
    assert lbl.max() > 5
    for n_tiles in [(2, 2), (1, 3)]:
        p2, d2 = bundled.predict(x, n_tiles=n_tiles)
        np.testing.assert_allclose(p2, prob, atol=1e-5)
        np.testing.assert_allclose(d2, dist, atol=1e-3)
        l2, det2 = bundled.predict_instances(x, n_tiles=n_tiles)
        np.testing.assert_array_equal(l2, lbl)
    with pytest.raises(ValueError, match="n_tiles"):
        bundled.predict(x, n_tiles=(0, 2))


def test_thresholds_change_results(bundled):
    x, y = synthetic_nuclei((128, 128), n_objects=15, seed=8)
    lo, _ = bundled.predict_instances(x, prob_thresh=0.2)
    hi, _ = bundled.predict_instances(x, prob_thresh=0.95)
    assert lo.max() >= hi.max()
    _, det_default = bundled.predict_instances(x)
    _, det_none = bundled.predict_instances(x, nms_thresh=1.0)
    # overlap / smaller area never exceeds 1: nms_thresh=1 suppresses nothing
    assert len(det_none["prob"]) > len(det_default["prob"])
    with pytest.raises(ValueError, match="thresholds"):
        bundled.predict_instances(x, prob_thresh=1.5)


def test_normalisation_options(bundled):
    x, _ = synthetic_nuclei((96, 96), n_objects=8, seed=3)
    raw = (np.clip(x, 0, None) * 3000 + 100).astype(np.uint16)
    a, _ = bundled.predict_instances(raw)
    b, _ = bundled.predict_instances(normalize_percentiles(raw, 1, 99.8), normalize=False)
    np.testing.assert_array_equal(a, b)
    c, _ = bundled.predict_instances(raw, percentiles=(0.5, 99.9))
    d, _ = bundled.predict_instances(normalize_percentiles(raw, 0.5, 99.9), normalize=False)
    np.testing.assert_array_equal(c, d)


def test_xarray_input_equals_numpy(bundled):
    import xarray as xr

    x, _ = synthetic_nuclei((96, 112), n_objects=8, seed=4)
    a, _ = bundled.predict_instances(x)
    da = xr.DataArray(x.T, dims=("x", "y"), coords={"x": np.arange(112) * 0.3})
    b, _ = bundled.predict_instances(da)
    np.testing.assert_array_equal(a, b)
    da1 = xr.DataArray(x[None], dims=("t", "y", "x"))
    np.testing.assert_array_equal(bundled.predict_instances(da1)[0], a)
    with pytest.raises(ValueError, match="extra dims"):
        bundled.predict_instances(xr.DataArray(np.stack([x, x]), dims=("t", "y", "x")))


def test_bad_inputs_are_rejected_before_work(bundled):
    with pytest.raises(ValueError, match="channel"):
        bundled.predict_instances(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        bundled.predict_instances(np.zeros((4, 64, 64, 1), np.float32))
    with pytest.raises(ValueError, match="numeric"):
        bundled.predict_instances(np.array([["a", "b"], ["c", "d"]]))
    m = StarDist2D(StarDistConfig(patch_size=(64, 64), epochs=1, steps_per_epoch=1), device="cpu")
    x = np.zeros((64, 64), np.float32)
    y = np.zeros((64, 64), np.int32)
    with pytest.raises(ValueError, match="pair up"):
        m.train([x, x], [y])
    with pytest.raises(ValueError, match="differ"):
        m.train([x], [np.zeros((64, 63), np.int32)])
    with pytest.raises(ValueError, match="smaller than patch_size"):
        m.train([x[:48]], [y[:48]])
    with pytest.raises(ValueError, match="non-integer"):
        m.train([x], [y + 0.5])
    with pytest.raises(ValueError, match="negative"):
        m.train([x], [y - 1])
    with pytest.raises(ValueError, match="channel"):
        m.train([np.zeros((64, 64, 2))], [y])


def test_config_validation():
    with pytest.raises(ValueError, match="powers of two"):
        StarDistConfig(grid=(3, 3))
    with pytest.raises(ValueError, match="divisible"):
        StarDistConfig(patch_size=(100, 100))
    with pytest.raises(ValueError, match="percentiles"):
        StarDistConfig(percentiles=(99, 1))
    with pytest.raises(ValueError, match="ndim=3"):
        StarDist3D(StarDistConfig())
    c = StarDistConfig(ndim=3)
    assert c.n_rays == 96 and c.grid == (1, 2, 2)
    assert StarDistConfig.from_dict(c.to_dict()) == c


def test_channels(tmp_path):
    m = StarDist2D(n_channels=2, device="cpu")
    x = np.random.default_rng(0).random((64, 80, 2)).astype(np.float32)
    prob, dist = m.predict(x)
    assert prob.shape == (32, 40) and dist.shape == (32, 40, 32)
    lbl, det = m.predict_instances(x, prob_thresh=0.99)
    assert lbl.shape == (64, 80)
    with pytest.raises(ValueError, match="expects 2"):
        m.predict(x[..., 0])


def test_save_load_round_trip(tmp_path, bundled):
    x, _ = synthetic_nuclei((96, 96), n_objects=10, seed=6)
    ref, _ = bundled.predict_instances(x)
    bundled.thresholds = dict(bundled.thresholds)
    for target, half in [(tmp_path / "m", False), (tmp_path / "m.zip", False), (tmp_path / "h.zip", True)]:
        bundled.save(target, half=half)
        m2 = StarDist2D.load(target, device="cpu")
        assert m2.thresholds == bundled.thresholds
        assert m2.config == bundled.config
        out, _ = m2.predict_instances(x)
        np.testing.assert_array_equal(out, ref)   # the bundled weights are fp16 already
    assert isinstance(StarDistBase.load(tmp_path / "m"), StarDist2D)
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["format"] == "ij-bridge-stardist" and meta["ij_bridge_version"]
    assert meta["normalization"]["percentiles"] == [1.0, 99.8]


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        StarDist2D.load(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        StarDist2D.load(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt"):
        StarDist2D.load(bad)
    (tmp_path / "x.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="valid .zip"):
        StarDist2D.load(tmp_path / "x.zip")
    m = StarDist2D(patch_size=(64, 64), device="cpu")
    m.save(tmp_path / "ok")
    (tmp_path / "ok" / "weights.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="weights.pt does not match the SHA-256 checksum.*corrupt"):
        StarDist2D.load(tmp_path / "ok")
    cfg = json.loads((tmp_path / "ok" / "config.json").read_text())
    del cfg["weights_sha256"]  # a model saved before checksums: torch itself finds the garbage
    (tmp_path / "ok" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="weights.pt is corrupt"):
        StarDist2D.load(tmp_path / "ok")
    (tmp_path / "ok" / "weights.pt").unlink()
    with pytest.raises(FileNotFoundError, match="weights.pt"):
        StarDist2D.load(tmp_path / "ok")
    m.save(tmp_path / "ok.zip")
    with pytest.raises(ValueError, match="StarDist3D.load|StarDist2D.load"):
        StarDist3D.load(tmp_path / "ok.zip")
    with zipfile.ZipFile(tmp_path / "nocfg.zip", "w") as zf:
        zf.writestr("weights.pt", b"")
    with pytest.raises(FileNotFoundError, match="config.json"):
        StarDist2D.load(tmp_path / "nocfg.zip")


def test_auto_tiles_when_memory_is_short(bundled, monkeypatch):
    import ij_bridge.stardist.model as mod

    x, _ = synthetic_nuclei((96, 640), n_objects=40, seed=9)
    ref = bundled.predict(x)[0]
    calls = []
    orig = mod.StarDistBase._forward_padded

    def spy(self, t):
        calls.append(t.shape)
        return orig(self, t)

    monkeypatch.setattr(mod, "_memory_budget", lambda device: 6.5e7)
    monkeypatch.setattr(mod.StarDistBase, "_forward_padded", spy)
    out = bundled.predict(x)[0]
    assert len(calls) == 2                # it tiled, along the long axis
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_bioimageio_export_reproduces_the_maps(tmp_path, bundled):
    x, _ = synthetic_nuclei((80, 100), n_objects=8, seed=13)
    out = bundled.export_bioimageio(tmp_path / "pkg.zip", x)
    with zipfile.ZipFile(out) as zf:
        rdf = json.loads(zf.read("rdf.yaml"))
        ts = torch.jit.load(io.BytesIO(zf.read("weights_torchscript.pt")))
        t_in = np.load(io.BytesIO(zf.read("test_input.npy")))
        t_out = np.load(io.BytesIO(zf.read("test_output.npy")))
    assert rdf["format_version"].startswith("0.5") and rdf["config"]["stardist"]["thresholds"] == bundled.thresholds
    # full resolution, as the original's export: prob at every grid-th pixel (zero between)
    assert t_in.shape == (1, 1, 80, 96) and t_out.shape == (1, 33, 80, 96)
    prob, dist = bundled.predict(t_in[0, 0])
    np.testing.assert_allclose(t_out[0, 0, ::2, ::2], prob, atol=1e-4)
    assert not t_out[0, 0, 1::2].any() and not t_out[0, 0, :, 1::2].any()
    np.testing.assert_allclose(np.maximum(np.moveaxis(t_out[0, 1:, ::2, ::2], 0, -1), 0), dist, atol=1e-3)
    np.testing.assert_array_equal(t_out[0, 1:, 1::2, 1::2], t_out[0, 1:, ::2, ::2])
    lo, hi = np.percentile(t_in, (1, 99.8))
    again = ts(torch.from_numpy(((t_in - lo) / (hi - lo)).astype(np.float32))).detach().numpy()
    np.testing.assert_allclose(again, t_out, atol=1e-4)


@pytest.mark.parametrize("ndim", [2, 3])
def test_the_joined_output_layers_equal_the_two_1x1_convolutions(ndim):
    """The network computes its two 1x1 output layers as one matrix product; in every memory
    layout the outputs and the gradients are those of the two layers applied separately."""
    cfg = StarDistConfig(ndim=ndim, n_rays=16 if ndim == 2 else 24, unet_depth=1, unet_n_filters=8,
                         head_channels=16, grid=(2, 2) if ndim == 2 else (1, 2, 2))
    net = (StarDist2D if ndim == 2 else StarDist3D)(cfg, device="cpu").net
    with torch.no_grad():  # non-zero biases (a fresh network has zeros)
        net.out_prob.bias.normal_()
        net.out_dist.bias.normal_()
    shape = (2, 1, 16, 16) if ndim == 2 else (2, 1, 8, 16, 16)
    x0 = torch.randn(shape)
    fmt = torch.channels_last if ndim == 2 else torch.channels_last_3d
    for x in (x0.contiguous(memory_format=fmt), x0.contiguous(), x0.transpose(-1, -2)):
        for fmt_net in (fmt, torch.contiguous_format):
            net.to(memory_format=fmt_net)
            net.zero_grad()
            p, d = net(x)
            (p.sum() + (d * d).sum()).backward()
            got = [p, d] + [net.out_prob.weight.grad.clone(), net.out_dist.weight.grad.clone()]
            net.zero_grad()
            h = net.head(net.unet(net.stem(x)))
            p2, d2 = net.out_prob(h), net.out_dist(h)
            (p2.sum() + (d2 * d2).sum()).backward()
            want = [p2, d2, net.out_prob.weight.grad, net.out_dist.weight.grad]
            for g, w in zip(got, want):
                assert g.shape == w.shape
                torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
