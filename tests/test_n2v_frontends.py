"""The same N2V use case through the three front ends gives the same result.

``ij-bridge n2v`` (CLI), the ImageJ commands "N2V Train (torch)" / "N2V Predict
(torch)" and the Python API (:mod:`ij_bridge.workflows.n2v`) all run
:func:`ij_bridge.workflows.n2v.train` and :func:`~ij_bridge.workflows.n2v.denoise`:
on one calibrated z-stack, trained as 2D slices with the same seed, they give the
same weights, and denoising with one model gives bit-identical images with the
input's calibration. The model is tiny (2 steps of batch 2).
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from ij_bridge.cli import main
from ij_bridge.io import imread
from ij_bridge.workflows import n2v as wf

pytestmark = [pytest.mark.imagej, pytest.mark.slow]

PIXEL, SPACING = 0.25, 0.7


@pytest.fixture()
def stack(tmp_path):
    """A noisy 3-slice calibrated z-stack (16-bit ImageJ TIFF) in its own folder."""
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[:40, :48]
    clean = 200 + 100 * (((yy - 20) ** 2 + (xx - 24) ** 2) < 100)
    data = np.stack([clean + rng.normal(0, 20, clean.shape) for _ in range(3)]).clip(0, 65535)
    src = tmp_path / "in"
    src.mkdir()
    path = src / "stack.tif"
    tifffile.imwrite(path, data.astype(np.uint16), imagej=True, resolution=(1 / PIXEL, 1 / PIXEL),
                     metadata={"axes": "ZYX", "spacing": SPACING, "unit": "micron"})
    return path


@pytest.fixture()
def imagej(ij):
    from ij_bridge.commands import install_commands, run_macro

    install_commands()
    run_macro('close("*");')
    yield ij
    run_macro('close("*");')


def _macro(code: str) -> None:
    from ij_bridge.commands import run_macro

    r = run_macro(code)
    assert r.ok, r.error


def _window(title: str):
    import jpype

    imp = jpype.JClass("ij.WindowManager").getImage(title)
    assert imp is not None, f"no image {title!r}"
    return imp


def test_cli_command_and_api_train_and_denoise_identically(imagej, stack, tmp_path):
    from ij_bridge import from_imageplus

    torch.set_num_threads(min(2, torch.get_num_threads()))
    # --- training: the same settings and seed in each front end's own words
    cli_model, cmd_model, api_model = (tmp_path / f"{k}.zip" for k in ("cli", "cmd", "api"))
    assert main(["n2v", "train", str(stack), "--model", str(cli_model), "--2d", "--epochs", "1",
                 "--steps", "2", "--batch-size", "2", "--patch-size", "32", "--seed", "0",
                 "--quiet"]) == 0
    _macro(f'open("{stack}"); run("N2V Train (torch)", "training=stack.tif model=[{cmd_model}] '
           'epochs=1 steps=2 batch=2 patch=32 radius=5 variant=N2V mode=2D");')
    _, history = wf.train(imread(stack), model_path=api_model, slices_as_samples=True, epochs=1,
                          steps_per_epoch=2, batch_size=2, patch_size=(32, 32), seed=0)
    assert len(history) == 1
    models = [wf.load_model(p) for p in (cli_model, cmd_model, api_model)]
    ref = models[2]
    assert ref.config.ndim == 2  # slices are samples: a 2D model
    for m in models[:2]:
        assert m.config.to_dict() == ref.config.to_dict()
        np.testing.assert_array_equal(m.mean, ref.mean)
        np.testing.assert_array_equal(m.std, ref.std)
        for (k, a), b in zip(m.net.state_dict().items(), ref.net.state_dict().values()):
            assert torch.equal(a, b), k

    # --- denoising with one model
    out = tmp_path / "out"
    assert main(["n2v", "predict", "--model", str(api_model), str(stack), "--output", str(out),
                 "--2d", "--quiet"]) == 0
    by_cli = imread(out / "stack.tif")
    _macro(f'selectImage("stack.tif"); run("N2V Predict (torch)", "model=[{api_model}] tiles=1");')
    by_command = from_imageplus(_window("stack-denoised"))
    by_api = wf.denoise(imread(stack), api_model, slices_as_samples=True)

    for name, res in (("CLI", by_cli), ("command", by_command), ("API", by_api)):
        assert res.dims == ("z", "y", "x") and res.dtype == np.float32, name
        np.testing.assert_array_equal(res.values, by_api.values, err_msg=name)
        assert float(res.x[1] - res.x[0]) == pytest.approx(PIXEL), name
        assert float(res.z[1] - res.z[0]) == pytest.approx(SPACING), name
        assert res.attrs["units"]["x"] in ("micron", "µm"), name
    # slice by slice: each slice alone gives what it gives in the stack
    first = wf.denoise(imread(stack)[0], api_model)
    np.testing.assert_array_equal(first.values, by_api.values[0])
    # and the input was denoised, not copied
    assert not np.array_equal(by_api.values, imread(stack).values.astype(np.float32))
