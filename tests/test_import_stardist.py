"""Models of the original StarDist (Keras) loaded without TensorFlow, checked against the
original's own predictions (fixtures made by scripts/reference_models/make_stardist.py)."""

from __future__ import annotations

import json
import shutil
import warnings
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from ij_bridge.metrics import matching
from ij_bridge.stardist import StarDist2D, StarDist3D
from ij_bridge.stardist.model import StarDistBase
from ij_bridge.stardist.original import OriginalModelError

REF = Path(__file__).parent / "fixtures" / "reference" / "stardist"
# 2d_keras3 was made under Keras 3 (TF 2.21): CSBDeep's legacy-HDF5 weights_best.h5 there
MODELS = ["2d_grid1", "2d_grid2", "2d_rgb_bn", "2d_keras3", "3d_resnet", "3d_unet"]
FORMATS = ["folder", "zip", "zip_top_folder", "bioimageio_h5", "bioimageio_zip"]


# ------------------------------------------------------------------------- helpers

def _zip_folder(src: Path, dst: Path, top: str | None = None, only=None) -> Path:
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(src.iterdir()):
            if f.is_file() and (only is None or f.name in only):
                zf.write(f, f"{top}/{f.name}" if top else f.name)
    return dst


def _bioimageio(src: Path, dst: Path, keras_weights: bool, as_zip: bool) -> Path:
    """A package laid out as stardist's export_bioimageio writes it: rdf.yaml with
    config.stardist (config, thresholds, weights) and stardist_weights.h5 attached; the
    weights entry is keras_hdf5 (mode="keras_hdf5") or the TF bundle (the default mode)."""
    import yaml

    folder = dst.with_suffix("") if as_zip else dst
    folder.mkdir(parents=True)
    shutil.copy(src / "weights_best.h5", folder / "stardist_weights.h5")
    cfg = json.loads((src / "config.json").read_text())
    th = json.loads((src / "thresholds.json").read_text())
    weights = ({"keras_hdf5": {"source": "stardist_weights.h5", "tensorflow_version": "2.15.1"}}
               if keras_weights else
               {"tensorflow_saved_model_bundle": {"source": "TF_SavedModel.zip",
                                                  "tensorflow_version": "2.15.1"}})
    rdf = {"format_version": "0.4.10", "type": "model", "name": f"tiny {src.name}",
           "weights": weights,
           "attachments": {"files": ["stardist_weights.h5"]},
           "config": {"stardist": {"stardist_version": "0.9.2", "thresholds": th,
                                   "weights": "stardist_weights.h5", "config": cfg}}}
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf))
    if not as_zip:
        return folder
    _zip_folder(folder, dst)
    shutil.rmtree(folder)
    return dst


def _make(fmt: str, name: str, tmp: Path) -> Path:
    src = REF / name
    if fmt == "folder":
        return src
    if fmt == "zip":
        return _zip_folder(src, tmp / f"{name}.zip", only={"config.json", "weights_best.h5", "thresholds.json"})
    if fmt == "zip_top_folder":
        return _zip_folder(src, tmp / f"{name}.zip", top=name,
                           only={"config.json", "weights_best.h5", "thresholds.json"})
    if fmt == "bioimageio_h5":
        return _bioimageio(src, tmp / f"{name}_bioimageio", keras_weights=True, as_zip=False)
    return _bioimageio(src, tmp / f"{name}_bioimageio.zip", keras_weights=False, as_zip=True)


def _check_against_reference(model, name: str) -> float:
    """prob to 1e-4, dist to 1e-3 px, same objects; returns the F1."""
    r = np.load(REF / name / "reference.npz")
    x = r["x"]
    prob, dist = model.predict(x, normalize=False)
    assert prob.shape == r["prob"].shape
    np.testing.assert_allclose(prob, r["prob"], rtol=0, atol=1e-4)
    assert tuple(dist.shape) == tuple(r["dist_shape"])
    got = dist.reshape(-1, dist.shape[-1])[r["dist_index"]]
    np.testing.assert_allclose(got, r["dist_values"], rtol=0, atol=1e-3)
    labels, _ = model.predict_instances(x, normalize=False)
    ref = r["labels"]
    assert ref.max() >= 10, "the fixture should hold a reasonable number of objects"
    m = matching(ref, labels, thresh=0.5)
    assert m.f1 >= (0.99 if model.ndim == 2 else 0.97), (m.f1, ref.max(), labels.max())
    return m.f1


# ---------------------------------------------------------------------- every format

@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", MODELS)
def test_original_model_reproduces_original_predictions(name, fmt, tmp_path):
    path = _make(fmt, name, tmp_path)
    klass = StarDist2D if name.startswith("2d") else StarDist3D
    model = klass.load(path, device="cpu")
    assert type(model) is klass
    th = json.loads((REF / name / "thresholds.json").read_text())
    assert model.thresholds == pytest.approx(th)
    _check_against_reference(model, name)
    prov = model.provenance
    assert prov["original_config"] == json.loads((REF / name / "config.json").read_text())
    assert len(prov["sha256"]) == 64
    if path.is_file():
        import hashlib

        assert prov["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_architectures_are_read_from_config():
    m = StarDistBase.load(REF / "3d_resnet", device="cpu")
    a = m.config.original
    assert a["backbone"] == "resnet" and a["resnet_n_blocks"] == 2 and a["n_rays"] == 24
    assert m.config.divisor == (1, 2, 2)  # the ResNet needs only the grid
    assert m.config.anisotropy == (2.0, 1.0, 1.0)
    m2 = StarDistBase.load(REF / "2d_rgb_bn", device="cpu")
    assert m2.config.n_channels == 3 and m2.config.original["unet_batch_norm"]
    assert m2.config.original["unet_kernel_size"] == [4, 4]  # even kernel: Keras pads more at the end


@pytest.mark.parametrize("name", ["3d_resnet", "3d_unet"])
def test_3d_rays_are_the_originals(name):
    r = np.load(REF / name / "reference.npz")
    if "rays_vertices" not in r:
        pytest.fail("fixture lacks the original's rays; run scripts/make_reference_models.py stardist")
    m = StarDist3D.load(REF / name, device="cpu")
    np.testing.assert_allclose(m.rays.vertices, r["rays_vertices"], atol=1e-6)
    # same triangles (orientation is each side's own convention)
    ours = {tuple(sorted(f)) for f in m.rays.faces.tolist()}
    theirs = {tuple(sorted(f)) for f in r["rays_faces"].tolist()}
    assert ours == theirs


def test_odd_sizes_and_tiles_match_untiled():
    m = StarDist2D.load(REF / "2d_grid2", device="cpu")
    x = np.load(REF / "2d_grid2" / "reference.npz")["x"][:90, :101]
    p1, d1 = m.predict(x, normalize=False)
    p2, d2 = m.predict(x, normalize=False, n_tiles=(2, 3))
    assert p1.shape == (45, 51)
    np.testing.assert_allclose(p2, p1, atol=1e-5)
    np.testing.assert_allclose(d2, d1, atol=1e-4)


# --------------------------------------------------------------------- choices, defaults

def test_weights_choice_and_h5_path(tmp_path):
    # a model folder with two weights files: weights_best.h5 and a changed copy as weights_last.h5
    src = _copy("2d_grid1", tmp_path)
    shutil.copy(REF / "2d_grid1" / "weights_best.h5", src / "weights_last.h5")
    with h5py.File(src / "weights_last.h5", "r+") as f:
        f["prob"]["prob/bias:0"][...] = f["prob"]["prob/bias:0"][...] + 1.0
    x = np.load(REF / "2d_grid1" / "reference.npz")["x"]
    best = StarDist2D.load(src, device="cpu").predict(x, normalize=False)[0]
    m = StarDist2D.load(src, device="cpu", weights="weights_last.h5")
    assert m.provenance["weights_file"] == "weights_last.h5"
    m2 = StarDist2D.load(src / "weights_last.h5", device="cpu")  # a path to the .h5 picks it too
    assert m2.provenance["weights_file"] == "weights_last.h5"
    last = m.predict(x, normalize=False)[0]
    np.testing.assert_array_equal(last, m2.predict(x, normalize=False)[0])
    assert last.mean() > best.mean() + 0.01  # the chosen file's weights (prob bias + 1) are used
    with pytest.raises(OriginalModelError, match="no weights file 'weights_now.h5'.*weights_best.h5"):
        StarDist2D.load(src, weights="weights_now.h5")
    # without weights_best.h5 the original takes weights_last.h5; so do we
    d = tmp_path / "m"
    d.mkdir()
    for n in ("config.json", "weights_last.h5", "thresholds.json"):
        shutil.copy(src / n, d / n)
    assert not (d / "weights_best.h5").exists()
    assert StarDist2D.load(d, device="cpu").provenance["weights_file"] == "weights_last.h5"


def test_missing_thresholds_use_the_originals_defaults_with_a_warning(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    for n in ("config.json", "weights_best.h5"):
        shutil.copy(REF / "2d_grid1" / n, d / n)
    with pytest.warns(UserWarning, match="no thresholds.json.*prob=0.5, nms=0.4"):
        m = StarDist2D.load(d, device="cpu")
    assert m.thresholds == {"prob": 0.5, "nms": 0.4}
    assert m.provenance["thresholds_from"] == "defaults"


def test_wrong_dimension_names_the_right_class():
    with pytest.raises(OriginalModelError, match="3D model.*StarDist3D.load"):
        StarDist2D.load(REF / "3d_unet")


# ----------------------------------------------------------- an ordinary ij-bridge model

def test_imported_model_trains_saves_and_loads(tmp_path):
    m = StarDist2D.load(REF / "2d_grid1", device="cpu")
    rng = np.random.default_rng(0)
    lbl = np.zeros((64, 64), np.int32)
    yy, xx = np.mgrid[:64, :64]
    for i, (cy, cx) in enumerate([(15, 15), (15, 45), (45, 20), (45, 48)]):
        lbl[(yy - cy) ** 2 + (xx - cx) ** 2 < 49] = i + 1
    img = (lbl > 0) + rng.normal(0, 0.1, lbl.shape)
    before = {k: v.clone() for k, v in m.net.state_dict().items()}
    hist = m.train([img], [lbl], epochs=1, steps_per_epoch=2, show_progress=False, optimize_thresholds=False)
    assert len(hist) == 1 and np.isfinite(hist["train_loss"].iloc[0])
    assert any(not np.array_equal(before[k].numpy(), v.numpy()) for k, v in m.net.state_dict().items())
    out = m.save(tmp_path / "trained.zip")
    back = StarDist2D.load(out, device="cpu")
    assert back.provenance["weights_file"] == "weights_best.h5"
    x = np.load(REF / "2d_grid1" / "reference.npz")["x"]
    np.testing.assert_array_equal(back.predict(x, normalize=False)[0], m.predict(x, normalize=False)[0])


# --------------------------------------------------------------------------------- CLI

class _Run:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def cli(capsys):
    """``ij-bridge ARGS`` in this process: (exit status, stdout, stderr)."""
    from ij_bridge.cli import main

    def run(*args):
        capsys.readouterr()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rc = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return _Run(rc, out, err)

    return run


@pytest.mark.parametrize("name,dst", [("2d_grid2", "m.zip"), ("3d_resnet", "m3")])
def test_cli_import_round_trip(name, dst, tmp_path, cli):
    src = _zip_folder(REF / name, tmp_path / "orig.zip", top="model",
                      only={"config.json", "weights_best.h5", "thresholds.json"})
    out = tmp_path / dst
    r = cli("stardist", "import", src, "--model", out)
    assert r.returncode == 0, r.stderr
    assert "imported" in r.stdout
    model = StarDistBase.load(out, device="cpu")
    assert model.config.original is not None
    prov = model.provenance
    import hashlib

    assert prov["source"] == str(src.resolve())
    assert prov["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert prov["original_config"]["n_rays"] == 24
    readme = (zipfile.ZipFile(out).read("README.md").decode() if out.suffix == ".zip"
              else (out / "README.md").read_text())
    assert prov["sha256"] in readme and str(src.resolve()) in readme
    _check_against_reference(model, name)
    # the destination exists now: a second import without --overwrite changes nothing
    r2 = cli("stardist", "import", src, "--model", out)
    assert r2.returncode != 0 and "exists" in r2.stderr and "--overwrite" in r2.stderr


def test_cli_predict_takes_an_original_model(tmp_path, cli):
    import tifffile

    x = np.load(REF / "2d_grid1" / "reference.npz")["x"]
    tifffile.imwrite(tmp_path / "img.tif", x.astype(np.float32))
    r = cli("stardist", "predict", "--model", REF / "2d_grid1", tmp_path / "img.tif", "--output",
             tmp_path / "out", "--no-normalize", "--quiet")
    assert r.returncode == 0, r.stderr
    lab = tifffile.imread(tmp_path / "out" / "img_labels.tif")
    ref = np.load(REF / "2d_grid1" / "reference.npz")["labels"]
    assert matching(ref, lab, thresh=0.5).f1 >= 0.99


# --------------------------------------------------------------------------- bad input

def _copy(name: str, tmp: Path, files=("config.json", "weights_best.h5", "thresholds.json")) -> Path:
    d = tmp / name
    d.mkdir()
    for n in files:
        shutil.copy(REF / name / n, d / n)
    return d


def _assert_cli_fails_cleanly(cli, src: Path, tmp: Path, *patterns: str) -> str:
    out = tmp / "out_model.zip"
    before = sorted(p.name for p in tmp.iterdir())
    r = cli("stardist", "import", src, "--model", out)
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()[-1]
    for pat in patterns:
        assert pat in err, (pat, err)
    assert not out.exists()
    assert sorted(p.name for p in tmp.iterdir()) == before  # nothing written, no temporary left
    return err


def test_h5_that_does_not_fit_its_config(tmp_path, cli):
    d = _copy("2d_grid1", tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    cfg["unet_n_filter_base"] = 16
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(OriginalModelError) as e:
        StarDist2D.load(d)
    msg = str(e.value)
    assert "weights_best.h5" in msg and "down_level_0_no_0" in msg
    assert "(3, 3, 1, 8)" in msg and "(3, 3, 1, 16)" in msg
    _assert_cli_fails_cleanly(cli, d, tmp_path, "down_level_0_no_0", "same model")


def test_h5_with_other_rays_and_of_another_model(tmp_path):
    d = _copy("2d_grid1", tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    cfg["n_rays"] = 32
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(OriginalModelError, match=r"layer 'dist' kernel shape \(1, 1, 16, 16\), expected "
                                                 r"\(1, 1, 16, 32\)"):
        StarDist2D.load(d)
    # the weights of another architecture (grid 2, depth 3) beside this config
    d2 = tmp_path / "mix"
    d2.mkdir()
    shutil.copy(REF / "2d_grid1" / "config.json", d2 / "config.json")
    shutil.copy(REF / "2d_grid1" / "thresholds.json", d2 / "thresholds.json")
    shutil.copy(REF / "2d_grid2" / "weights_best.h5", d2 / "weights_best.h5")
    with pytest.raises(OriginalModelError, match="does not fit"):
        StarDist2D.load(d2)


def test_real_keras3_files_are_refused_with_the_fix(tmp_path, cli):
    """Keras 3's own formats as Keras 3 wrote them (fixture 2d_keras3)."""
    src = REF / "2d_keras3"
    with pytest.raises(OriginalModelError, match=r"keras3_model\.keras is a Keras 3 '\.keras' model"):
        StarDist2D.load(src / "keras3_model.keras")
    with pytest.raises(OriginalModelError, match=r"keras3_native\.weights\.h5 is a Keras 3 '\.weights\.h5'"):
        StarDist2D.load(src / "keras3_native.weights.h5")
    # renamed: found by content
    shutil.copy(src / "keras3_model.keras", tmp_path / "model.zip")
    with pytest.raises(OriginalModelError, match=r"model\.zip is a Keras 3 '\.keras' archive"):
        StarDist2D.load(tmp_path / "model.zip")
    d = _copy("2d_keras3", tmp_path, files=("config.json", "thresholds.json"))
    shutil.copy(src / "keras3_native.weights.h5", d / "weights_best.h5")
    with pytest.raises(OriginalModelError, match=r"weights_best\.h5 is a Keras 3 '\.weights\.h5' file.*"
                                                 r"Keras 2 HDF5 format"):
        StarDist2D.load(d)
    _assert_cli_fails_cleanly(cli, tmp_path / "model.zip", tmp_path, "Keras 3", "model.zip")


def test_keras3_files_are_refused_with_the_fix(tmp_path, cli):
    k = tmp_path / "model.keras"
    with zipfile.ZipFile(k, "w") as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.3.3"}))
        zf.writestr("config.json", json.dumps({"class_name": "Functional"}))
        zf.writestr("model.weights.h5", b"")
    with pytest.raises(OriginalModelError, match=r"model\.keras is a Keras 3 '\.keras' model.*save_weights"):
        StarDist2D.load(k)
    d = _copy("2d_grid1", tmp_path, files=("config.json", "thresholds.json"))
    with h5py.File(d / "weights_best.weights.h5", "w") as f:  # Keras 3's own layout
        f.create_group("layers/down_level_0_no_0/vars").create_dataset("0", data=np.zeros((3, 3, 1, 8)))
    with pytest.raises(OriginalModelError, match=r"weights_best\.weights\.h5 is a Keras 3.*Keras 2 HDF5"):
        StarDist2D.load(d)
    with pytest.raises(OriginalModelError, match=r"Keras 3 '\.weights\.h5'"):
        StarDist2D.load(d / "weights_best.weights.h5")
    # the same layout under the old name: found by its content
    (d / "weights_best.weights.h5").rename(d / "weights_best.h5")
    with pytest.raises(OriginalModelError, match=r"weights_best\.h5 is a Keras 3 '\.weights\.h5' file"):
        StarDist2D.load(d)
    _assert_cli_fails_cleanly(cli, d, tmp_path, "Keras 3", "weights_best.h5")


def test_truncated_zip(tmp_path, cli):
    z = _zip_folder(REF / "2d_grid1", tmp_path / "orig.zip", only={"config.json", "weights_best.h5"})
    data = z.read_bytes()
    z.write_bytes(data[: len(data) // 2])
    with pytest.raises(OriginalModelError, match=r"orig\.zip is not a valid \.zip.*truncated or corrupt"):
        StarDist2D.load(z)
    _assert_cli_fails_cleanly(cli, z, tmp_path, "orig.zip", "truncated")


def test_bioimageio_package_of_another_family(tmp_path, cli):
    import yaml

    d = tmp_path / "n2v_pkg"
    d.mkdir()
    (d / "rdf.yaml").write_text(yaml.safe_dump({
        "format_version": "0.5.3", "type": "model", "name": "N2V something",
        "weights": {"pytorch_state_dict": {"source": "weights.pt"}},
        "config": {"n2v": {"means": [0.0]}}}))
    with pytest.raises(OriginalModelError, match=r"rdf\.yaml: a bioimage\.io package of another kind.*"
                                                 r"not a StarDist model"):
        StarDist2D.load(d)
    z = _zip_folder(d, tmp_path / "n2v_pkg.zip")
    _assert_cli_fails_cleanly(cli, z, tmp_path, "another kind", "N2V")


def test_cli_import_refuses_an_ij_bridge_model(tmp_path, cli):
    m = StarDist2D.load(REF / "2d_grid1", device="cpu")
    own = m.save(tmp_path / "own.zip")
    r = cli("stardist", "import", own, "--model", tmp_path / "again.zip")
    assert r.returncode != 0 and "needs no import" in r.stderr
    assert not (tmp_path / "again.zip").exists()


# the paper's 2D_dsb2018 config.json as the original repository ships it (an early version:
# no n_dim, axes, grid or backbone; the original fills in its defaults)
DSB2018_CONFIG = {"n_channel_in": 1, "n_rays": 32, "unet_n_depth": 3, "unet_kernel_size": [3, 3],
                  "unet_n_filter_base": 32, "net_input_shape": [None, None, 1], "train_dist_loss": "mae",
                  "train_epochs": 100, "train_steps_per_epoch": 400, "train_learning_rate": 0.0003,
                  "train_batch_size": 4, "train_tensorboard": True, "train_checkpoint": "weights_best.h5",
                  "train_reduce_lr": {"factor": 0.5, "patience": 10}}


def test_early_config_gets_the_originals_defaults(tmp_path):
    """An early config: 2D, grid 1, U-Net 3 x 32 filters, 2 convs per level, 128-wide features."""
    from ij_bridge.stardist.original import original_architecture

    a = original_architecture(DSB2018_CONFIG)
    assert (a["n_dim"], a["grid"], a["backbone"], a["unet_n_conv_per_depth"], a["net_conv_after_unet"]) \
        == (2, [1, 1], "unet", 2, 128)
    # a weights file in the Keras layout for that architecture (random values), loaded back exactly
    d = tmp_path / "dsb"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(DSB2018_CONFIG))
    (d / "thresholds.json").write_text(json.dumps({"prob": 0.4178, "nms": 0.5}))
    rng = np.random.default_rng(0)
    names = ["input"] + [f"down_level_{n}_no_{i}" for n in range(3) for i in range(2)] + ["middle_0", "middle_2"] \
        + [f"up_level_{n}_no_{i}" for n in (2, 1, 0) for i in (0, 2)] + ["features", "prob", "dist"]
    shapes = {}
    for n in range(3):
        shapes[f"down_level_{n}_no_0"] = (3, 3, 1 if n == 0 else 32 * 2 ** (n - 1), 32 * 2 ** n)
        shapes[f"down_level_{n}_no_1"] = (3, 3, 32 * 2 ** n, 32 * 2 ** n)
        shapes[f"up_level_{n}_no_0"] = (3, 3, 2 * 32 * 2 ** n, 32 * 2 ** n)
        shapes[f"up_level_{n}_no_2"] = (3, 3, 32 * 2 ** n, 32 * 2 ** max(0, n - 1))
    shapes.update(middle_0=(3, 3, 128, 256), middle_2=(3, 3, 256, 128), features=(3, 3, 32, 128),
                  prob=(1, 1, 128, 1), dist=(1, 1, 128, 32))
    with h5py.File(d / "weights_best.h5", "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in names])
        for n in names:
            g = f.create_group(n)
            wn = [] if n == "input" else [f"{n}/kernel:0".encode(), f"{n}/bias:0".encode()]
            g.attrs["weight_names"] = np.array(wn)
            if wn:
                g.create_dataset(f"{n}/kernel:0", data=rng.normal(0, 0.05, shapes[n]).astype(np.float32))
                g.create_dataset(f"{n}/bias:0", data=rng.normal(0, 0.05, shapes[n][-1]).astype(np.float32))
    m = StarDist2D.load(d, device="cpu")
    assert m.thresholds == {"prob": 0.4178, "nms": 0.5} and m.config.grid == (1, 1)
    with h5py.File(d / "weights_best.h5", "r") as f:
        k = f["down_level_1_no_0"]["down_level_1_no_0/kernel:0"][...]
    w = m.net.down[1][0].conv.weight.detach().numpy()
    np.testing.assert_array_equal(w, np.transpose(k, (3, 2, 0, 1)))
    assert m.predict(np.zeros((40, 56), np.float32), normalize=False)[0].shape == (40, 56)


def test_ij_bridge_bioimageio_export_is_not_an_original_package(tmp_path):
    m = StarDist2D.load(REF / "2d_grid2", device="cpu")
    x = np.load(REF / "2d_grid2" / "reference.npz")["x"].astype(np.float32)
    pkg = m.export_bioimageio(tmp_path / "pkg.zip", x)
    with pytest.raises(OriginalModelError, match="written by ij-bridge's export.*load the ij-bridge model"):
        StarDist2D.load(pkg)


@pytest.mark.imagej
def test_imagej_command_model_key_takes_an_original_model(ij):
    """``model=[original folder]`` in a macro: the same objects as the original's predict_instances."""
    import jpype

    from ij_bridge import from_imageplus, to_imageplus
    from ij_bridge.commands import install_commands, run_macro

    install_commands()
    run_macro('close("*");')
    r = np.load(REF / "2d_grid1" / "reference.npz")
    to_imageplus(r["x"].astype(np.float32), "ref").show()
    res = run_macro(f'selectImage("ref"); run("StarDist 2D (torch)", "model=[{REF / "2d_grid1"}] '
                    'output=[Label Image] exclude=0");')
    assert res.ok, res.error
    imp = jpype.JClass("ij.WindowManager").getImage("ref-labels")
    assert imp is not None
    labels = np.asarray(from_imageplus(imp).values)
    run_macro('close("*");')
    assert matching(r["labels"], labels, thresh=0.5).f1 >= 0.99
