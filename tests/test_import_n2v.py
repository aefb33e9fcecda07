"""Models of the original n2v (juglab) load exactly; bad inputs get one clear error.

The fixtures in tests/fixtures/reference/n2v were trained and exported by n2v
0.3.3 itself (TensorFlow 2.15) with scripts/reference_models/make_n2v.py; beside
each model lies the original's own prediction of a small image.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from ij_bridge.cli import main
from ij_bridge.n2v import N2V
from ij_bridge.n2v.original import OriginalModelError, detect

REF = Path(__file__).parent / "fixtures" / "reference" / "n2v"
CAM = REF.parent / "careamics"
MODELS = sorted(p.name for p in REF.iterdir() if (p / "reference.npz").is_file())
TOL = 1e-4  # of the output's range

pytestmark = pytest.mark.filterwarnings("ignore:.*one U-Net per channel:UserWarning")


def _sources() -> list[tuple[str, str]]:
    out = []
    for name in MODELS:
        out += [(name, "folder"), (name, "h5")]
        if (REF / name / "tf_model.zip").is_file():
            out.append((name, "tf_model.zip"))
        if (REF / name / "graph_savedmodel.zip").is_file():
            out.append((name, "graph_savedmodel.zip"))
    out.append(("n2v_2d", "zip"))
    return out


def _path(name: str, fmt: str) -> Path:
    return {"folder": REF / name, "h5": REF / name / "weights_best.h5",
            "tf_model.zip": REF / name / "tf_model.zip", "zip": REF / f"{name}.zip",
            "graph_savedmodel.zip": REF / name / "graph_savedmodel.zip"}[fmt]


def _check(model: N2V, name: str) -> float:
    ref = np.load(REF / name / "reference.npz")
    out = model.predict(ref["input"], axes=str(ref["axes"]))
    assert out.shape == ref["output"].shape
    return float(np.abs(out - ref["output"]).max() / np.ptp(ref["output"]))


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_fixtures_cover_the_issue():
    assert {"n2v_2d", "n2v2_2d", "n2v_3d", "n2v_2d_2ch", "n2v_2d_joint"} <= set(MODELS)
    cfg = json.loads((REF / "n2v2_2d" / "config.json").read_text())
    assert cfg["blurpool"] and cfg["skip_skipone"] and cfg["n2v_manipulator"] == "median"
    assert json.loads((REF / "n2v_3d" / "config.json").read_text())["n_dim"] == 3
    size = sum(p.stat().st_size for p in REF.rglob("*") if p.is_file())
    assert size < 1.8e6


@pytest.mark.parametrize("name,fmt", _sources())
def test_reproduces_the_original(name, fmt):
    before = _tree_digest(REF)
    model = N2V.load(_path(name, fmt), device="cpu")
    err = _check(model, name)
    assert err <= TOL, f"{name} ({fmt}): max error {err:.2e} of the output range"
    assert model.provenance["format"] == ("n2v-savedmodel" if fmt.endswith("savedmodel.zip") or
                                          fmt == "tf_model.zip" else "n2v-keras-h5")
    assert model.provenance["original_config"] == json.loads((REF / name / "config.json").read_text())
    assert _tree_digest(REF) == before  # inputs are never written


@pytest.mark.parametrize("name", MODELS)
def test_sizes_the_network_cannot_take_are_padded_as_n2v_does(name):
    ref = np.load(REF / name / "reference.npz")
    model = N2V.load(REF / name, device="cpu")
    out = model.predict(ref["input_odd"], axes=str(ref["axes"]))
    rng = np.ptp(ref["output_odd"])
    assert out.shape == ref["output_odd"].shape
    assert np.abs(out - ref["output_odd"]).max() <= TOL * rng
    # tiles give the same result (the image is padded once, before tiling)
    tiled = model.predict(ref["input_odd"], axes=str(ref["axes"]), tile_shape=16)
    assert np.abs(tiled - ref["output_odd"]).max() <= TOL * rng


def test_packages_holding_config_and_weights(tmp_path):
    """A zip without a top-level folder, and a bioimage.io-style package (rdf.yaml, config.json,
    tf_model.zip at its root, as n2v's export_TF lays it out)."""
    flat = tmp_path / "flat.zip"
    with zipfile.ZipFile(flat, "w") as zf:
        for f in ("config.json", "weights_best.h5"):
            zf.write(REF / "n2v2_2d" / f, f)
    assert _check(N2V.load(flat, device="cpu"), "n2v2_2d") <= TOL
    pkg = tmp_path / "n2v.bioimage.io.zip"
    with zipfile.ZipFile(pkg, "w") as zf:
        zf.writestr("rdf.yaml", "format_version: 0.4.9\ntype: model\nname: n2v_2d\n"
                                "tags: [2d, unet, denoising, Noise2Void, tensorflow, napari]\n"
                                "weights:\n  tensorflow_saved_model_bundle:\n    source: tf_model.zip\n"
                                "attachments:\n  files: [config.json]\n")
        for f in ("config.json", "tf_model.zip"):
            zf.write(REF / "n2v_2d" / f, f)
    m = N2V.load(pkg, device="cpu")
    assert m.provenance["format"] == "n2v-savedmodel"
    assert _check(m, "n2v_2d") <= TOL


@pytest.mark.parametrize("name", ["cam_n2v_2d", "cam_n2v2_2ch"])
def test_careamics_models_reproduce_careamics(name, tmp_path):
    ref = np.load(CAM / name / "reference.npz")
    m = N2V.load(CAM / name / f"{name}_last.ckpt", device="cpu")
    out = m.predict(ref["input"], axes=str(ref["axes"]))
    assert np.abs(out - ref["output"]).max() <= TOL * np.ptp(ref["output"])
    assert m.provenance["format"] == "careamics-ckpt"
    assert m.config.original_net["family"] == "careamics"
    assert m.config.variant == ("N2V2" if "n2v2" in name else "N2V")
    # the CLI import writes an ij-bridge model that predicts the same
    assert main(["n2v", "import", str(CAM / name / f"{name}_last.ckpt"), "--model", str(tmp_path / "m.zip")]) == 0
    again = N2V.load(tmp_path / "m.zip", device="cpu")
    assert np.abs(again.predict(ref["input"], axes=str(ref["axes"])) - ref["output"]).max() <= \
        TOL * np.ptp(ref["output"])
    with zipfile.ZipFile(tmp_path / "m.zip") as zf:
        assert "CAREamics" in zf.read("README.md").decode()
    bmz = CAM / name / f"{name}.bioimage.io.zip"
    if bmz.is_file():  # CAREamics' own bioimage.io export of the same model
        b = N2V.load(bmz, device="cpu")
        assert b.provenance["format"] == "careamics-bioimageio"
        assert np.abs(b.predict(ref["input"], axes=str(ref["axes"])) - ref["output"]).max() <= \
            TOL * np.ptp(ref["output"])


def test_careamics_yaml_reader():
    """careamics.yaml as CAREamics writes it: nested mappings, lists of scalars and of mappings."""
    from ij_bridge.n2v.original import _simple_yaml

    with zipfile.ZipFile(CAM / "cam_n2v_2d" / "cam_n2v_2d.bioimage.io.zip") as zf:
        text = zf.read("careamics.yaml").decode()
    cfg = _simple_yaml(text, "careamics.yaml")
    ck = torch.load(CAM / "cam_n2v_2d" / "cam_n2v_2d_last.ckpt", map_location="cpu", weights_only=True)
    assert cfg["algorithm_config"] == ck["hyper_parameters"]["algorithm_config"]
    data = ck["datamodule_hyper_parameters"]["data_config"]
    assert cfg["data_config"]["normalization"] == data["normalization"]
    assert cfg["data_config"]["augmentations"] == data["augmentations"]
    assert cfg["data_config"]["patching"]["patch_size"] == [32, 32]
    with pytest.raises(OriginalModelError, match="cannot read line"):
        _simple_yaml("a: 1\n  - b\nc: [1, 2\n", "x.yaml")


def test_training_settings_carry_over():
    from ij_bridge.n2v.original import n2v_config_from_original

    cfg = json.loads((REF / "n2v_2d" / "config.json").read_text())
    c, mean, std = n2v_config_from_original(cfg)
    assert c.patch_size == tuple(cfg["n2v_patch_shape"]) and c.batch_size == cfg["train_batch_size"]
    assert c.masked_fraction == pytest.approx(cfg["n2v_perc_pix"] / 100)
    assert mean[0] == pytest.approx(float(cfg["means"][0])) and std[0] == pytest.approx(float(cfg["stds"][0]))
    cfg["structN2Vmask"] = [[0, 1, 1, 1, 1, 1, 0]]
    c, _, _ = n2v_config_from_original(cfg)
    assert c.variant == "structN2V" and c.struct_mask.direction == "horizontal" and c.struct_mask.span == 5
    cfg["structN2Vmask"] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    with pytest.warns(UserWarning, match="not a centred line"):
        c, _, _ = n2v_config_from_original(cfg)
    assert c.variant == "N2V"


def test_architecture_is_read_from_config():
    m = N2V.load(REF / "n2v2_2d", device="cpu")
    assert m.config.variant == "N2V2" and m.config.unet_depth == 3
    assert m.config.original_net["blurpool"] and m.config.original_net["skip_skipone"]
    bns = [mod for mod in m.net.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
    assert bns and all(b.eps == pytest.approx(1e-3) for b in bns)  # Keras' epsilon
    m3 = N2V.load(REF / "n2v_3d", device="cpu")
    assert m3.config.ndim == 3 and m3.config.original_net["residual"]
    j = N2V.load(REF / "n2v_2d_joint", device="cpu")
    assert len(j.net.branches) == 1 and not j.config.unet_batch_norm and j.config.n_channels == 2


def test_per_channel_nets_read_the_last_channel_like_n2v():
    """n2v's per-channel U-Nets all see the last channel; feeding each its own does not reproduce."""
    with pytest.warns(UserWarning, match="last channel"):
        m = N2V.load(REF / "n2v_2d_2ch", device="cpu")
    assert _check(m, "n2v_2d_2ch") <= TOL
    m.net.per_channel_input = "own"
    assert _check(m, "n2v_2d_2ch") > 100 * TOL


def test_imported_model_saves_loads_and_trains_on(tmp_path):
    m = N2V.load(REF / "n2v2_2d", device="cpu")
    m.save(tmp_path / "m.zip")
    again = N2V.load(tmp_path / "m.zip", device="cpu")
    assert _check(again, "n2v2_2d") <= TOL
    assert again.provenance["source"] == str((REF / "n2v2_2d").resolve())
    with zipfile.ZipFile(tmp_path / "m.zip") as zf:
        readme = zf.read("README.md").decode()
        meta = json.loads(zf.read("n2v_model.json"))
    assert "n2v" in readme and m.provenance["weights"]["sha256"] in readme
    assert meta["provenance"]["original_config"]["blurpool"] is True
    # continue training from the imported weights
    again.config = again.config.replace(epochs=1, steps_per_epoch=2, batch_size=2, patch_size=(16, 16),
                                         validation_fraction=0.0)
    w0 = [p.detach().clone() for p in again.net.parameters()]
    img = np.load(REF / "n2v2_2d" / "reference.npz")["input"]
    hist = again.train(img, show_progress=False)
    assert len(hist) == 1 and np.isfinite(hist.train_loss.iloc[0])
    assert any(not torch.equal(a, b) for a, b in zip(w0, again.net.parameters()))
    assert np.isfinite(again.predict(img)).all()


def test_cli_import_round_trip(tmp_path, capsys):
    dst = tmp_path / "imported"
    assert main(["n2v", "import", str(REF / "n2v_3d"), "--model", str(dst)]) == 0
    assert "n2v_3d" in capsys.readouterr().out
    assert (dst / "README.md").is_file() and (dst / "n2v_model.json").is_file()
    meta = json.loads((dst / "n2v_model.json").read_text())
    assert meta["provenance"]["weights"]["file"] == "weights_best.h5"
    assert meta["provenance"]["weights"]["sha256"] == hashlib.sha256(
        (REF / "n2v_3d" / "weights_best.h5").read_bytes()).hexdigest()
    assert _check(N2V.load(dst, device="cpu"), "n2v_3d") <= TOL
    # a zip source records its own sha256; an existing destination needs --overwrite
    assert main(["n2v", "import", str(REF / "n2v_2d.zip"), "--model", str(dst)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["n2v", "import", str(REF / "n2v_2d.zip"), "--model", str(dst), "--overwrite"]) == 0
    meta = json.loads((dst / "n2v_model.json").read_text())
    assert meta["provenance"]["sha256"] == hashlib.sha256((REF / "n2v_2d.zip").read_bytes()).hexdigest()
    # the predict command takes the original folder directly
    import tifffile

    ref = np.load(REF / "n2v_2d" / "reference.npz")
    tifffile.imwrite(tmp_path / "in.tif", ref["input"])
    assert main(["n2v", "predict", str(tmp_path / "in.tif"), "--model", str(REF / "n2v_2d"),
                 "--output", str(tmp_path / "out"), "--device", "cpu", "--quiet"]) == 0
    out = tifffile.imread(tmp_path / "out" / "in.tif")
    assert np.abs(out - ref["output"]).max() <= TOL * np.ptp(ref["output"])


# ----------------------------------------------------------------------------- bad input
def _keras3_weights(path: Path) -> None:
    """A weights file in Keras 3's layout (``layers/<name>/vars/<i>``, no layer_names)."""
    with h5py.File(path, "w") as f:
        g = f.create_group("layers").create_group("conv2d").create_group("vars")
        g["0"] = np.zeros((3, 3, 1, 4), np.float32)
        g["1"] = np.zeros(4, np.float32)
        f.create_group("vars")
        f.create_group("optimizer").create_group("vars")


def _bad_sources(tmp: Path) -> list[tuple[Path, list[str]]]:
    out = []
    # Keras 3 .weights.h5 beside a valid config
    d = tmp / "keras3"
    d.mkdir()
    shutil.copy(REF / "n2v_2d" / "config.json", d)
    _keras3_weights(d / "model.weights.h5")
    out.append((d / "model.weights.h5", ["Keras 3", "Keras 2"]))
    # Keras 3 .keras archive
    with zipfile.ZipFile(tmp / "model.keras", "w") as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.3.3"}))
        zf.writestr("config.json", json.dumps({"class_name": "Functional"}))
        _keras3_weights(tmp / "w.h5")
        zf.write(tmp / "w.h5", "model.weights.h5")
    out.append((tmp / "model.keras", ["Keras 3"]))
    # weights that do not fit the config (filters)
    d = tmp / "mismatch"
    shutil.copytree(REF / "n2v_2d", d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["unet_n_first"] = 8
    (d / "config.json").write_text(json.dumps(cfg))
    out.append((d, ["weights_best.h5", "channel_0down_level_0_no_0", "shape", "unet_n_first=8"]))
    # ... and depth
    d = tmp / "mismatch_depth"
    shutil.copytree(REF / "n2v_2d", d)
    cfg["unet_n_first"], cfg["unet_n_depth"] = 4, 3
    (d / "config.json").write_text(json.dumps(cfg))
    out.append((d, ["weights_best.h5", "missing", "unet_n_depth=3"]))
    # truncated zip
    data = (REF / "n2v_2d.zip").read_bytes()
    (tmp / "truncated.zip").write_bytes(data[: len(data) // 2])
    out.append((tmp / "truncated.zip", ["truncated", "again"]))
    # a truncated tf_model.zip beside its config
    d = tmp / "tf_trunc"
    d.mkdir()
    shutil.copy(REF / "n2v_2d" / "config.json", d)
    data = (REF / "n2v_2d" / "tf_model.zip").read_bytes()
    (d / "tf_model.zip").write_bytes(data[: len(data) - 4000])
    out.append((d / "tf_model.zip", ["tf_model.zip", "again"]))
    # a SavedModel without its normalisation
    d = tmp / "tf_alone"
    d.mkdir()
    shutil.copy(REF / "n2v_2d" / "tf_model.zip", d)
    out.append((d / "tf_model.zip", ["normalisation", "config.json"]))
    # a SavedModel of another graph (a StarDist export) beside an n2v config
    d = tmp / "tf_other"
    d.mkdir()
    shutil.copy(REF / "n2v_2d" / "config.json", d)
    shutil.copy(REF.parent / "stardist" / "2d_grid1" / "TF_SavedModel.zip", d / "tf_model.zip")
    out.append((d / "tf_model.zip", ["another kind", "n2v's U-Net"]))
    # the original StarDist's model folder
    shutil.copytree(REF.parent / "stardist" / "2d_grid1", tmp / "stardist_folder",
                    ignore=shutil.ignore_patterns("*.npz", "*.zip"))
    out.append((tmp / "stardist_folder", ["StarDist model, not N2V", "stardist import"]))
    # bioimage.io packages of other families
    with zipfile.ZipFile(tmp / "stardist.bioimage.io.zip", "w") as zf:
        zf.writestr("rdf.yaml", "format_version: 0.4.10\ntype: model\nconfig:\n  stardist:\n"
                                "    model_config: {n_rays: 32}\n")
    out.append((tmp / "stardist.bioimage.io.zip", ["StarDist", "stardist import"]))
    with zipfile.ZipFile(tmp / "careamics.zip", "w") as zf:
        zf.writestr("rdf.yaml", "format_version: 0.5.3\ntype: model\nname: n2v\n"
                                "tags: [careamics, denoising]\nweights:\n  pytorch_state_dict:\n"
                                "    source: weights.pth\n")
    out.append((tmp / "careamics.zip", ["CAREamics", "checkpoint instead"]))
    # a Lightning checkpoint that is not CAREamics'
    torch.save({"state_dict": {"model.final_conv.weight": torch.zeros(1, 32, 1, 1)},
                "pytorch-lightning_version": "2.4.0"}, tmp / "last.ckpt")
    out.append((tmp / "last.ckpt", ["not a CAREamics checkpoint", "hyper_parameters"]))
    # a truncated CAREamics checkpoint
    data = (CAM / "cam_n2v_2d" / "cam_n2v_2d_last.ckpt").read_bytes()
    (tmp / "cut.ckpt").write_bytes(data[: len(data) // 2])
    out.append((tmp / "cut.ckpt", ["truncated", "again"]))
    # a CAREamics checkpoint whose weights do not fit its config
    ck = torch.load(CAM / "cam_n2v_2d" / "cam_n2v_2d_last.ckpt", map_location="cpu", weights_only=True)
    ck["hyper_parameters"]["algorithm_config"]["model"]["num_channels_init"] = 16
    torch.save(ck, tmp / "mismatch.ckpt")
    out.append((tmp / "mismatch.ckpt", ["do not fit", "size mismatch"]))
    return out


def test_bad_inputs_one_clear_error_nothing_written(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for path, words in _bad_sources(src):
        before = _tree_digest(src)
        with pytest.raises(OriginalModelError) as ei:
            N2V.load(path, device="cpu")
        msg = str(ei.value)
        assert "\n" not in msg and str(path) in msg, msg
        for w in words:
            assert w in msg, (path.name, w, msg)
        dst = tmp_path / "out" / (path.stem + ".zip")
        assert main(["n2v", "import", str(path), "--model", str(dst)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and str(path) in err
        assert not dst.exists()
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
        assert _tree_digest(src) == before  # the source is left as it was


def test_own_models_are_not_taken_for_originals(tmp_path):
    m = N2V.load(REF / "n2v_2d", device="cpu")
    m.save(tmp_path / "own")
    assert detect(tmp_path / "own") is None and detect(REF / "n2v_2d") == "n2v"
    assert main(["n2v", "import", str(tmp_path / "own"), "--model", str(tmp_path / "x.zip")]) == 2
    assert not (tmp_path / "x.zip").exists()


@pytest.mark.imagej
def test_n2v_predict_command_takes_the_original_model(clean_imagej):
    """`N2V Predict (torch)` with model= an n2v folder gives the original's denoising."""
    import jpype

    from ij_bridge import from_imageplus, to_imageplus
    from ij_bridge.commands import install_commands, run_macro

    install_commands()
    ref = np.load(REF / "n2v2_2d" / "reference.npz")
    to_imageplus(ref["input"], "noisy").show()
    r = run_macro(f'selectImage("noisy"); run("N2V Predict (torch)", "model=[{REF / "n2v2_2d"}]");')
    assert r.ok, r.error
    out = jpype.JClass("ij.WindowManager").getImage("noisy-denoised")
    assert out is not None
    res = np.asarray(from_imageplus(out).values)
    assert np.abs(res - ref["output"]).max() <= TOL * np.ptp(ref["output"])
    r = run_macro(f'selectImage("noisy"); run("N2V Predict (torch)", "model=[{REF / "n2v_2d.zip"}x]");')
    assert not r.ok and "not found" in r.error
