"""Noise2Void trained for real (CI-sized): denoising must raise PSNR; CLI round trip."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile
import torch
from scipy import ndimage as ndi

from ij_bridge.cli import main
from ij_bridge.device import EmulatedBfloat16Warning
from ij_bridge.n2v import N2V, N2VConfig

pytestmark = pytest.mark.slow


def _clean(shape=(128, 128), seed=0) -> np.ndarray:
    """Blurred disks on a ramp: a noise-free synthetic fluorescence-like image."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = 40 + 0.3 * xx
    for _ in range(25):
        cy, cx, r = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(4, 12)
        img = img + rng.uniform(60, 150) * (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r)
    return ndi.gaussian_filter(img, 1.0)


def _psnr(a: np.ndarray, gt: np.ndarray) -> float:
    rng = gt.max() - gt.min()
    return float(10 * np.log10(rng**2 / np.mean((a.astype(np.float64) - gt) ** 2)))


def _config(**kw) -> N2VConfig:
    base = dict(patch_size=(32, 32), batch_size=8, epochs=5, steps_per_epoch=30, unet_filters=16,
                learning_rate=1e-3, seed=0)
    base.update(kw)
    return N2VConfig(**base)


def test_training_raises_psnr_by_3db():
    torch.set_num_threads(min(2, torch.get_num_threads()))
    gt = _clean()
    noisy = (gt + np.random.default_rng(1).normal(0, 30, gt.shape)).astype(np.float32)
    model = N2V(_config(), device="cpu")
    calls = []
    history = model.train(noisy, progress=lambda d, t, m: calls.append((d, t)), show_progress=False)
    assert calls[-1] == (150, 150) and len(calls) == 150
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    out = model.predict(noisy)
    gain = _psnr(out, gt) - _psnr(noisy, gt)
    assert gain >= 3.0, f"PSNR gain only {gain:.2f} dB"



def test_bfloat16_training_denoises_and_float32_differs():
    """precision="bfloat16" trains under autocast (weights stay float32) and gains >= 2.5 dB
    in 90 steps;
    "float32" gives other weights; "auto" is bfloat16 exactly on CPUs with native bfloat16."""
    from ij_bridge.n2v.config import bf16_native

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared CI machine: one thread per test process is fastest
    try:
        _bf16_checks(bf16_native)
    finally:
        torch.set_num_threads(threads)


def _bf16_checks(bf16_native) -> None:
    gt = _clean(seed=4)
    noisy = (gt + np.random.default_rng(5).normal(0, 30, gt.shape)).astype(np.float32)
    bf = N2V(_config(precision="bfloat16", epochs=3), device="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bf.train(noisy, show_progress=False)
    # a CPU without bfloat16 arithmetic emulates it (slower than float32): the user is told so
    emulated = [w for w in caught if issubclass(w.category, EmulatedBfloat16Warning)]
    assert len(emulated) == (0 if bf16_native() else 1), [str(w.message) for w in caught]
    if emulated:
        assert "precision='auto'" in str(emulated[0].message)
    assert all(p.dtype == torch.float32 for p in bf.net.parameters())
    out = bf.predict(noisy)
    assert out.dtype == np.float32
    gain = _psnr(out, gt) - _psnr(noisy, gt)
    assert gain >= 2.5, f"bfloat16 training: PSNR gain only {gain:.2f} dB"
    fp = N2V(_config(precision="float32", epochs=1, steps_per_epoch=3), device="cpu")
    fp.train(noisy, show_progress=False)
    bf1 = N2V(_config(precision="bfloat16", epochs=1, steps_per_epoch=3), device="cpu")
    bf1.train(noisy, show_progress=False)
    w32, w16 = fp.net.state_dict(), bf1.net.state_dict()
    assert any(not torch.equal(w32[k], w16[k]) for k in w32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EmulatedBfloat16Warning)  # float32 and auto never warn
        quick = N2V(_config(precision="auto", epochs=1, steps_per_epoch=1), device="cpu")
        quick.train(noisy, show_progress=False)
    auto = _config(precision="auto")
    assert auto.training_dtype("cpu") == (torch.bfloat16 if bf16_native() else None)
    assert auto.training_dtype("meta") is None and _config().training_dtype("cpu") is None
    with pytest.raises(ValueError, match="precision"):
        _config(precision="half")


def test_cli_train_and_predict_keep_calibration(tmp_path):
    gt = _clean((96, 96), seed=3)
    noisy = (gt + np.random.default_rng(2).normal(0, 30, gt.shape)).clip(0, 65535).astype(np.uint16)
    src = tmp_path / "in"
    src.mkdir()
    tifffile.imwrite(src / "cells.tif", noisy, imagej=True, resolution=(1 / 0.25, 1 / 0.25),
                     metadata={"unit": "micron", "axes": "YX"})
    model = tmp_path / "model.zip"
    rc = main(["n2v", "train", str(src / "cells.tif"), "--model", str(model), "--epochs", "2",
               "--steps", "10", "--batch-size", "4", "--patch-size", "32", "--quiet"])
    assert rc == 0 and model.is_file()
    out = tmp_path / "out"
    rc = main(["n2v", "predict", "--model", str(model), str(src), "--output", str(out), "--quiet"])
    assert rc == 0
    with tifffile.TiffFile(out / "cells.tif") as tf:
        data = tf.asarray()
        assert data.dtype == np.float32 and data.shape == noisy.shape
        num, den = tf.pages[0].tags["XResolution"].value
        assert den / num == pytest.approx(0.25)
        assert tf.imagej_metadata["unit"] in ("micron", "µm")
    # same result as the Python API with the saved model
    ref = N2V.load(model).predict(noisy.astype(np.float32))
    np.testing.assert_allclose(data, ref, rtol=1e-6, atol=1e-3)
    # user errors: exit status 2, nothing overwritten
    assert main(["n2v", "predict", "--model", str(model), str(src), "--output", str(out)]) == 2
    assert main(["n2v", "predict", "--model", str(tmp_path / "missing.zip"), str(src),
                 "--output", str(tmp_path / "o2")]) == 2
    assert main(["n2v", "train", str(src / "cells.tif"), "--model", str(tmp_path / "m2"),
                 "--patch-size", "128", "--quiet"]) == 2
    # a z-stack needs --2d with a 2D model; its slices are then denoised one by one
    stack_dir = tmp_path / "stack"
    stack_dir.mkdir()
    stack = np.stack([noisy, noisy[::-1]])
    tifffile.imwrite(stack_dir / "stack.tif", stack, imagej=True, resolution=(4, 4),
                     metadata={"axes": "ZYX", "spacing": 0.7, "unit": "micron"})
    assert main(["n2v", "predict", "--model", str(model), str(stack_dir), "--output",
                 str(tmp_path / "s_out"), "--quiet"]) == 2
    assert main(["n2v", "predict", "--model", str(model), str(stack_dir), "--output",
                 str(tmp_path / "s_out"), "--2d", "--quiet"]) == 0
    with tifffile.TiffFile(tmp_path / "s_out" / "stack.tif") as tf:
        assert tf.series[0].axes == "ZYX" and tf.imagej_metadata["spacing"] == pytest.approx(0.7)
        np.testing.assert_allclose(tf.asarray()[0], data, rtol=1e-6, atol=1e-3)
