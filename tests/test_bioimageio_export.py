"""bioimage.io export: packages written by ``ij-bridge stardist/n2v export`` pass bioimageio.core's own test.

The validator is the optional extra ``ij-bridge[bioimageio]``, which ``make venv`` (and so CI)
installs. Without it these tests fail with a message naming the fix; they are never skipped.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import torch

from ij_bridge.cli import main
from ij_bridge.io import imwrite
from ij_bridge.n2v import N2V, N2VConfig
from ij_bridge.stardist import StarDist2D, StarDist3D, StarDistConfig
from ij_bridge.synthetic import synthetic_nuclei

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def test_model():
    try:
        from bioimageio.core import test_model as tm
    except ImportError as exc:
        pytest.fail(f"bioimageio.core is not installed ({exc}); run `make venv`, which installs the "
                    "validator extra (pip install -e '.[bioimageio]')", pytrace=False)
    return tm


def _passes(test_model, path):
    summary = test_model(str(path))
    failed = [(d.name, [e.msg[:300] for e in d.errors]) for d in summary.details if d.status != "passed"]
    assert summary.status == "passed", failed
    ran = {d.name for d in summary.details}
    for fmt in ("pytorch_state_dict", "torchscript"):  # both weight formats reproduced the test output
        assert f"Reproduce test outputs from test inputs ({fmt})" in ran, sorted(ran)
    return summary


def _members(path):
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _npy(data):
    return np.load(io.BytesIO(data))


def test_stardist_cli_export_passes_test_model_and_reproduces_the_instances(tmp_path, test_model, capsys):
    """The bundled (trained) model through the CLI; the package alone gives ij-bridge's objects."""
    x, _ = synthetic_nuclei((64, 96), n_objects=10, radius=(5.0, 9.0), seed=5)
    img = (np.clip(x, 0, None) * 2000 + 50).astype(np.uint16)
    imwrite(tmp_path / "test.tif", img)
    pkg = tmp_path / "nuclei_bioimageio.zip"
    args = ["stardist", "export", "--model", "stardist_nuclei2d", "--test-image", str(tmp_path / "test.tif"),
            "--output", str(pkg), "--authors", "A. Author, B. Author"]
    assert main(args) == 0
    assert "bioimageio test" in capsys.readouterr().out
    _passes(test_model, pkg)

    files = _members(pkg)
    rdf = json.loads(files["rdf.yaml"])
    model = StarDist2D.from_pretrained("stardist_nuclei2d", device="cpu")
    sd = rdf["config"]["stardist"]
    assert sd["thresholds"] == model.thresholds and sd["n_rays"] == 32 and sd["grid"] == [2, 2]
    assert sd["config"]["n_rays"] == 32 and sd["config"]["grid"] == [2, 2] and sd["config"]["n_dim"] == 2
    assert sd["postprocessing_macro"] in files and "StarDist2DNMS" in files[sd["postprocessing_macro"]].decode()
    assert [a["name"] for a in rdf["authors"]] == ["A. Author", "B. Author"]
    assert rdf["covers"] == ["cover.png"] and files["cover.png"][:4] == b"\x89PNG"
    assert "# Validation" in files["README.md"].decode() and rdf["license"] == "CC-BY-4.0"
    arch = rdf["weights"]["pytorch_state_dict"]["architecture"]
    assert arch["import_from"] == "ij_bridge.stardist.bioimageio"

    # a consumer with only the package: scale_range, TorchScript, then NMS with config.stardist
    t_in = _npy(files["test_input.npy"]).astype(np.float64)
    assert t_in.shape == (1, 1, 64, 96)
    lo, hi = np.percentile(t_in[0, 0], (1, 99.8))
    ts = torch.jit.load(io.BytesIO(files["weights_torchscript.pt"]))
    with torch.no_grad():
        out = ts(torch.from_numpy(((t_in - lo) / (hi - lo + 1e-6)).astype(np.float32))).numpy()[0]
    g = sd["grid"]
    prob, dist = out[0, ::g[0], ::g[1]], np.moveaxis(out[1:, ::g[0], ::g[1]], 0, -1)
    labels, _ = model._instances(prob, dist, t_in.shape[2:], sd["thresholds"]["prob"], sd["thresholds"]["nms"])
    want, details = model.predict_instances(t_in[0, 0])
    assert len(details["prob"]) >= 5
    np.testing.assert_array_equal(labels, want)

    # an existing package is replaced only when asked
    before = pkg.read_bytes()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert pkg.read_bytes() == before
    assert main(args + ["--overwrite", "--name", "renamed"]) == 0
    assert json.loads(_members(pkg)["rdf.yaml"])["name"] == "renamed"


def test_n2v_cli_export_passes_test_model(tmp_path, test_model, capsys):
    rng = np.random.default_rng(0)
    noisy = rng.normal(100, 10, (48, 64)).astype(np.float32)
    cfg = N2VConfig(axes="YX", patch_size=(16, 16), batch_size=2, epochs=1, steps_per_epoch=3,
                    unet_filters=4, neighborhood_radius=2, masked_fraction=0.02)
    m = N2V(cfg, device="cpu")
    m.train(noisy, show_progress=False)
    m.save(tmp_path / "n2v.zip")
    imwrite(tmp_path / "noisy.tif", noisy)
    pkg = tmp_path / "n2v_pkg"  # a folder this time
    assert main(["n2v", "export", "--model", str(tmp_path / "n2v.zip"), "--test-image",
                 str(tmp_path / "noisy.tif"), "--output", str(pkg)]) == 0
    assert (pkg / "rdf.yaml").is_file() and (pkg / "weights_torchscript.pt").is_file()
    _passes(test_model, pkg / "rdf.yaml")
    rdf = json.loads((pkg / "rdf.yaml").read_text())
    assert rdf["weights"]["pytorch_state_dict"]["architecture"]["callable"] == "n2v_network"
    y = np.load(pkg / "test_output.npy")[0, 0]
    np.testing.assert_allclose(y, m.predict(noisy[:48, :64]), rtol=1e-5, atol=1e-4 * np.ptp(y))
    # a folder we did not write is never replaced, even with --overwrite
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    capsys.readouterr()
    assert main(["n2v", "export", "--model", str(tmp_path / "n2v.zip"), "--test-image",
                 str(tmp_path / "noisy.tif"), "--output", str(tmp_path / "mine"), "--overwrite"]) == 2
    assert "never replaced" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_stardist3d_and_n2v2_multichannel_packages_pass(tmp_path, test_model):
    """TorchScript of the 3D StarDist net and of N2V2's blur-pool U-Net (two channels)."""
    m3 = StarDist3D(StarDistConfig(ndim=3, n_rays=16, grid=(1, 2, 2), unet_depth=1, unet_n_filters=4,
                                   head_channels=8), device="cpu")
    x3, _ = synthetic_nuclei((16, 40, 40), n_objects=3, radius=(4.0, 6.0), seed=2)
    p3 = m3.export_bioimageio(tmp_path / "sd3.zip", x3)
    _passes(test_model, p3)
    sd = json.loads(_members(p3)["rdf.yaml"])["config"]["stardist"]
    assert len(sd["rays"]["vertices"]) == 16 and sd["grid"] == [1, 2, 2]

    rng = np.random.default_rng(1)
    noisy = rng.normal(50, 5, (2, 40, 48)).astype(np.float32)
    n2 = N2V(N2VConfig(axes="CYX", variant="N2V2", patch_size=(16, 16), batch_size=2, epochs=1,
                       steps_per_epoch=2, unet_filters=4, neighborhood_radius=2, masked_fraction=0.02),
             device="cpu")
    n2.train(noisy, show_progress=False)
    p2 = n2.export_bioimageio(tmp_path / "n2v2.zip", noisy, axes="CYX")
    _passes(test_model, p2)
    pre = json.loads(_members(p2)["rdf.yaml"])["inputs"][0]["preprocessing"][0]["kwargs"]
    assert pre["axis"] == "channel" and len(pre["mean"]) == 2


def test_imported_n2v2_round_trip_cli(tmp_path, test_model):
    """`n2v import` of the original's N2V2 model, then `n2v export`: its own U-Net (blur-pool) traces."""
    from pathlib import Path

    src = Path(__file__).parent / "fixtures" / "reference" / "n2v" / "n2v2_2d"
    ref = np.load(src / "reference.npz")
    imwrite(tmp_path / "in.tif", ref["input"].astype(np.float32))
    assert main(["n2v", "import", str(src), "--model", str(tmp_path / "imported.zip")]) == 0
    pkg = tmp_path / "n2v2_bioimageio.zip"
    assert main(["n2v", "export", "--model", str(tmp_path / "imported.zip"), "--test-image",
                 str(tmp_path / "in.tif"), "--output", str(pkg)]) == 0
    _passes(test_model, pkg)
    files = _members(pkg)
    rdf = json.loads(files["rdf.yaml"])
    prov = rdf["config"]["ij_bridge"]["provenance"]
    assert prov["source_path"].endswith("n2v2_2d") and len(prov["weights"]["sha256"]) == 64
    assert rdf["config"]["ij_bridge"]["n2v_config"]["original_net"]["family"] == "n2v"
    # the package's output is the original n2v's own prediction
    out = _npy(files["test_output.npy"])[0, 0]
    assert out.shape == ref["output"].shape == (48, 48)  # a multiple of the divisor: not cropped
    np.testing.assert_allclose(out, ref["output"], atol=1e-4 * np.ptp(ref["output"]))


def test_imported_stardist3d_resnet_round_trip_cli(tmp_path, test_model):
    """`stardist import` of the original's 3D ResNet model, then `stardist export`: its net traces."""
    from pathlib import Path

    import xarray as xr

    src = Path(__file__).parent / "fixtures" / "reference" / "stardist" / "3d_resnet"
    ref = np.load(src / "reference.npz")
    x = ref["x"].astype(np.float32)
    imwrite(tmp_path / "stack.tif", xr.DataArray(x, dims=("z", "y", "x")))
    assert main(["stardist", "import", str(src), "--model", str(tmp_path / "imported.zip")]) == 0
    pkg = tmp_path / "resnet3d_bioimageio.zip"
    assert main(["stardist", "export", "--model", str(tmp_path / "imported.zip"), "--test-image",
                 str(tmp_path / "stack.tif"), "--output", str(pkg)]) == 0
    _passes(test_model, pkg)
    files = _members(pkg)
    sd = json.loads(files["rdf.yaml"])["config"]["stardist"]
    original = json.loads((src / "config.json").read_text())
    assert sd["config"]["backbone"] == original["backbone"] == "resnet"
    assert sd["thresholds"] == pytest.approx(json.loads((src / "thresholds.json").read_text()))
    assert len(sd["rays"]["vertices"]) == original["n_rays"]
    assert sd["provenance"]["source_path"].endswith("3d_resnet")
    out = _npy(files["test_output.npy"])
    assert out.shape == (1, 1 + original["n_rays"]) + x.shape  # full resolution, as the original's export


def test_stardist3d_resnet_export_then_import_rebuilds_the_network(tmp_path):
    """config.stardist.config names the ResNet and its parameters (the original's resnet_* keys);
    import_bioimageio rebuilds the network from them alone and predicts as the exported model."""
    from ij_bridge.stardist.bioimageio import import_bioimageio

    # every backbone field away from its default, so that a rebuild from defaults would not fit
    cfg = StarDistConfig(ndim=3, n_rays=20, grid=(1, 2, 2), anisotropy=(2.0, 1.0, 1.0), backbone="resnet",
                         resnet_n_blocks=3, resnet_n_filters=6, resnet_kernel_size=5,
                         resnet_n_conv_per_block=2, head_channels=12, patch_size=(8, 32, 32), batch_size=1,
                         epochs=1, steps_per_epoch=3, percentiles=(2.0, 99.5))
    m = StarDist3D(cfg, device="cpu")
    x, y = synthetic_nuclei((16, 48, 48), n_objects=6, radius=(5.0, 8.0), seed=3, anisotropy=2.0)
    m.train([x], [y], show_progress=False, optimize_thresholds=False)  # weights away from the initialisation
    prob, _ = m.predict(x)
    m.thresholds = {"prob": float(np.quantile(prob, 0.99)), "nms": 0.3}  # a few dozen candidates
    pkg = m.export_bioimageio(tmp_path / "resnet3d", x)

    rdf = json.loads((pkg / "rdf.yaml").read_text())
    keys = rdf["config"]["stardist"]["config"]
    assert rdf["config"]["stardist"]["network"] == "StarDistNet"
    assert keys["backbone"] == "resnet" and not any(k.startswith("unet_") for k in keys)
    assert (keys["resnet_n_blocks"], keys["resnet_n_filter_base"], keys["resnet_kernel_size"],
            keys["resnet_n_conv_per_block"], keys["net_conv_after_resnet"]) == (3, 6, [5, 5, 5], 2, 12)

    back = import_bioimageio(pkg / "rdf.yaml", device="cpu")
    c = back.config
    assert type(back) is StarDist3D and c.original is None
    assert (c.backbone, c.resnet_n_blocks, c.resnet_n_filters, c.resnet_kernel_size, c.resnet_n_conv_per_block,
            c.head_channels, c.n_rays, c.grid, c.anisotropy, c.percentiles) == (
        "resnet", 3, 6, 5, 2, 12, 20, (1, 2, 2), (2.0, 1.0, 1.0), (2.0, 99.5))
    assert back.thresholds == m.thresholds
    np.testing.assert_array_equal(back.rays.vertices, m.rays.vertices)
    np.testing.assert_array_equal(back.rays.faces, m.rays.faces)
    for a, b in zip(m.predict(x), back.predict(x)):
        np.testing.assert_array_equal(a, b)
    want, det = m.predict_instances(x)
    got, _ = back.predict_instances(x)
    assert len(det["prob"]) >= 2
    np.testing.assert_array_equal(got, want)

    # a description that does not fit the weights: one line naming the file, nothing loaded
    keys["resnet_n_blocks"] = 2
    (pkg / "rdf.yaml").write_text(json.dumps(rdf))
    with pytest.raises(ValueError, match=r"weights\.pt does not fit the network that .*config\.stardist\.config"):
        import_bioimageio(pkg, device="cpu")


def test_imported_original_resnet_export_then_import_predicts_the_same(tmp_path):
    """A model of the original StarDist (3D ResNet, Keras padding) exported and imported again:
    config.stardist.network says it is the original's architecture, which is rebuilt."""
    from pathlib import Path

    from ij_bridge.stardist.bioimageio import import_bioimageio

    src = Path(__file__).parent / "fixtures" / "reference" / "stardist" / "3d_resnet"
    x = np.load(src / "reference.npz")["x"].astype(np.float32)
    m = StarDist3D.load(src, device="cpu")
    pkg = m.export_bioimageio(tmp_path / "orig_resnet3d.zip", x)
    back = import_bioimageio(pkg, device="cpu")
    assert json.loads(_members(pkg)["rdf.yaml"])["config"]["stardist"]["network"] == "OriginalStarDistNet"
    assert back.config.original["backbone"] == "resnet" and back.thresholds == m.thresholds
    for a, b in zip(m.predict(x), back.predict(x)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back.predict_instances(x)[0], m.predict_instances(x)[0])
