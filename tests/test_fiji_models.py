"""The StarDist Fiji plugin's model names resolve to its own models (ij_bridge.stardist.fiji_models).

A FAKE Fiji installation is built per test: Fiji.app/jars/StarDist_-0.3.0.jar, a
zip holding a reference model's ``export_TF()`` zip at the resource path the
plugin uses (models/2D/dsb2018_heavy_augment.zip, ...).
"""

from __future__ import annotations

import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ij_bridge.commands.registry import CommandError
from ij_bridge.stardist import StarDist2D
from ij_bridge.stardist.fiji_models import (ENV_FIJI, ENV_MODELS, FIJI_MODELS, fallback_note,
                                            find_plugin_jars, resolve_fiji_model)

REF = Path(__file__).resolve().parent / "fixtures" / "reference" / "stardist"
FIXTURE = REF / "2d_grid1"
VERSATILE = "Versatile (fluorescent nuclei)"


def fake_fiji(root: Path, resources: dict[str, Path], version: str = "0.3.0",
              where: str = "jars") -> Path:
    """Fiji.app with a StarDist plugin jar holding ``resources`` (resource path → file)."""
    app = root / "Fiji.app"
    (app / where).mkdir(parents=True)
    (app / "plugins").mkdir(exist_ok=True)
    with zipfile.ZipFile(app / where / f"StarDist_-{version}.jar", "w") as jar:
        jar.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
        jar.writestr("de/csbdresden/stardist/StarDist2D.class", b"\xca\xfe\xba\xbe")
        jar.writestr("plugins.config", "Plugins>StarDist, \"-\", null\n")
        for res, src in resources.items():
            jar.write(src, res)
    return app


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(ENV_FIJI, raising=False)
    monkeypatch.delenv(ENV_MODELS, raising=False)


def test_plugin_table():
    """The plugin's names, resources and thresholds (StarDist2DModel.java)."""
    assert set(FIJI_MODELS) == {VERSATILE, "Versatile (H&E nuclei)", "DSB 2018 (from StarDist 2D paper)"}
    v = FIJI_MODELS[VERSATILE]
    assert (v.resource, v.prob_thresh, v.nms_thresh) == ("models/2D/dsb2018_heavy_augment.zip", 0.479071, 0.3)
    he = FIJI_MODELS["Versatile (H&E nuclei)"]
    assert (he.resource, he.prob_thresh, he.nms_thresh) == ("models/2D/he_heavy_augment.zip", 0.692478, 0.3)


def test_resolves_from_the_plugin_jar(tmp_path, monkeypatch):
    app = fake_fiji(tmp_path, {FIJI_MODELS[VERSATILE].resource: FIXTURE / "TF_SavedModel.zip"})
    ref = resolve_fiji_model(VERSATILE, fiji=app)
    assert ref is not None and ref.origin == "Fiji"
    assert ref.location == f"{app / 'jars' / 'StarDist_-0.3.0.jar'}!/models/2D/dsb2018_heavy_augment.zip"
    assert resolve_fiji_model("Versatile (H&E nuclei)", fiji=app) is None  # not in this jar
    monkeypatch.setenv(ENV_FIJI, str(app))  # the environment variable does the same
    assert resolve_fiji_model(VERSATILE) == ref
    assert resolve_fiji_model("2D_versatile_fluo") == ref  # the Python name too


def test_newest_jar_wins_and_plugins_folder(tmp_path):
    app = fake_fiji(tmp_path, {FIJI_MODELS[VERSATILE].resource: FIXTURE / "TF_SavedModel.zip"},
                    version="0.2.0", where="plugins")
    (app / "jars").mkdir()
    with zipfile.ZipFile(app / "jars" / "StarDist_-0.10.1.jar", "w") as jar:
        jar.write(FIXTURE / "TF_SavedModel.zip", FIJI_MODELS[VERSATILE].resource)
    jars = find_plugin_jars(app)
    assert [j.name for j in jars] == ["StarDist_-0.10.1.jar", "StarDist_-0.2.0.jar"]
    assert "0.10.1" in resolve_fiji_model(VERSATILE, fiji=app).location


def test_model_from_the_jar_predicts_like_the_original(tmp_path):
    app = fake_fiji(tmp_path, {FIJI_MODELS[VERSATILE].resource: FIXTURE / "TF_SavedModel.zip"})
    loc = resolve_fiji_model(VERSATILE, fiji=app).location
    from ij_bridge.stardist.savedmodel import load_stardist_savedmodel

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the plugin's thresholds: no "no thresholds" warning
        model = load_stardist_savedmodel(loc, fiji_model=FIJI_MODELS[VERSATILE])
    assert model.thresholds == {"prob": 0.479071, "nms": 0.3}
    assert model.provenance["fiji_model"] == VERSATILE and "!/" in model.provenance["source"]
    ref = np.load(FIXTURE / "reference.npz")
    prob, _ = model.predict(ref["x"], normalize=False)
    assert np.abs(prob - ref["prob"]).max() < 1e-4


def test_models_folder(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(FIXTURE / "TF_SavedModel.zip", folder / "dsb2018_paper.zip")
    shutil.copytree(REF / "2d_grid2", folder / "2D_versatile_fluo")  # the original's model folder
    monkeypatch.setenv(ENV_MODELS, str(folder))
    dsb = resolve_fiji_model("DSB 2018 (from StarDist 2D paper)")
    assert dsb.location == str(folder / "dsb2018_paper.zip") and dsb.is_savedmodel
    fluo = resolve_fiji_model(VERSATILE)
    assert fluo.location == str(folder / "2D_versatile_fluo") and not fluo.is_savedmodel
    assert resolve_fiji_model("Versatile (H&E nuclei)") is None


def test_missing_places_and_fallback_note(tmp_path):
    with pytest.raises(FileNotFoundError, match="Fiji installation"):
        resolve_fiji_model(VERSATILE, fiji=tmp_path / "nowhere" / "Fiji.app")
    with pytest.raises(FileNotFoundError, match="models folder"):
        resolve_fiji_model(VERSATILE, models=tmp_path / "nowhere")
    assert resolve_fiji_model(VERSATILE) is None  # nothing named: not found, no error
    assert resolve_fiji_model("my model") is None
    note = fallback_note(VERSATILE, "stardist_nuclei2d")
    assert "results will differ from Fiji's" in note and ENV_FIJI in note and ENV_MODELS in note


def test_load_model_key_resolves_and_logs(tmp_path, monkeypatch):
    """The "StarDist 2D (torch)" model key: a Fiji name runs that model, the Log says which."""
    from ij_bridge.commands.stardist import load_model

    lines: list[str] = []
    # not found: the bundled stand-in, and the Log says so and how to point at the real one
    m = load_model(VERSATILE, 2, log=lines.append)
    assert "stardist_nuclei2d" in lines[-1] and "results will differ" in lines[-1]
    assert m.config.original is None
    with pytest.raises(CommandError, match=ENV_FIJI):
        load_model("Versatile (H&E nuclei)", 2)  # no stand-in for H&E
    app = fake_fiji(tmp_path, {FIJI_MODELS[VERSATILE].resource: FIXTURE / "TF_SavedModel.zip"})
    m = load_model(VERSATILE, 2, fiji=str(app), log=lines.append)
    assert "StarDist_-0.3.0.jar!/models/2D/dsb2018_heavy_augment.zip" in lines[-1]
    assert m.thresholds == {"prob": 0.479071, "nms": 0.3} and m.config.original is not None
    monkeypatch.setenv(ENV_FIJI, str(app))
    assert load_model(VERSATILE, 2) is m  # cached per file version
    with pytest.raises(CommandError, match="3D model"):
        load_model(VERSATILE, 3)


@pytest.mark.imagej
def test_recorded_fiji_line_runs_the_plugins_model(clean_imagej, tmp_path, monkeypatch):
    """A recorded Command From Macro line with modelChoice runs the model from Fiji's jar."""
    import tifffile

    from ij_bridge.commands import run_macro

    app = fake_fiji(tmp_path, {FIJI_MODELS[VERSATILE].resource: FIXTURE / "TF_SavedModel.zip"})
    monkeypatch.setenv(ENV_FIJI, str(app))
    ref = np.load(FIXTURE / "reference.npz")
    p_th, n_th = (f"{float(v):.6f}" for v in ref["thresholds"])  # a weak model: its own thresholds
    img = tmp_path / "cells.tif"
    tifffile.imwrite(img, (ref["x"] * 1000).astype(np.float32), imagej=True)
    args = ("'input':'cells.tif', 'modelChoice':'Versatile (fluorescent nuclei)', 'normalizeInput':'true', "
            "'percentileBottom':'1.0', 'percentileTop':'99.8', 'probThresh':'%s', "
            "'nmsThresh':'%s', 'outputType':'Both', 'nTiles':'1', 'excludeBoundary':'0', "
            "'roiPosition':'Automatic', 'verbose':'false', 'showCsbdeepProgress':'false', "
            "'showProbAndDist':'false'") % (p_th, n_th)
    res = run_macro(f'open("{img}");\n'
                    f'run("Command From Macro", "command=[de.csbdresden.stardist.StarDist2D], '
                    f'args=[{args}], process=[false]");\n'
                    'print("rois=" + roiManager("count"));')
    assert res.ok, res.error
    assert "dsb2018_heavy_augment.zip" in res.output and "results will differ" not in res.output
    n = int(res.output.split("rois=")[1].split()[0])
    from ij_bridge.stardist.savedmodel import load_stardist_savedmodel

    model = load_stardist_savedmodel(resolve_fiji_model(VERSATILE).location,
                                     fiji_model=FIJI_MODELS[VERSATILE])
    labels, _ = model.predict_instances(ref["x"] * 1000, normalize=True, percentiles=(1.0, 99.8),
                                        prob_thresh=float(p_th), nms_thresh=float(n_th))
    assert n == labels.max() > 5
    # the dialog's own keys: model=[<Fiji name>] and fiji=[Fiji.app] (no environment variable)
    monkeypatch.delenv(ENV_FIJI)
    res = run_macro(f'open("{img}");\n'
                    f'run("StarDist 2D (torch)", "model=[{VERSATILE}] fiji=[{app}] probability={p_th} '
                    f'overlap={n_th} normalize low=1 high=99.8 output=[ROI Manager] exclude=0");\n'
                    'print("rois=" + roiManager("count"));')
    assert res.ok, res.error
    assert "StarDist_-0.3.0.jar!/models/2D/dsb2018_heavy_augment.zip" in res.output
    assert int(res.output.split("rois=")[1].split()[0]) == n
    res = run_macro(f'open("{img}");\n'
                    f'run("StarDist 2D (torch)", "model=[{VERSATILE}] output=[ROI Manager]");')
    assert res.ok, res.error  # not found: the bundled stand-in, and the Log says so plainly
    assert "results will differ from Fiji's" in res.output and ENV_FIJI in res.output


def test_python_load_and_cli_predict(tmp_path, monkeypatch):
    """StarDist2D.load and `ij-bridge stardist predict --model NAME --fiji Fiji.app`."""
    import subprocess
    import sys

    import tifffile

    app = fake_fiji(tmp_path, {FIJI_MODELS[VERSATILE].resource: FIXTURE / "TF_SavedModel.zip"})
    with pytest.raises(FileNotFoundError, match=ENV_FIJI):
        StarDist2D.load(VERSATILE)  # nothing named: says how to point at the models
    monkeypatch.setenv(ENV_FIJI, str(app))
    m = StarDist2D.load(VERSATILE)
    assert m.thresholds == {"prob": 0.479071, "nms": 0.3} and "StarDist_-0.3.0.jar" in m.source
    monkeypatch.delenv(ENV_FIJI)
    ref = np.load(FIXTURE / "reference.npz")
    img = tmp_path / "cells.tif"
    tifffile.imwrite(img, ref["x"])
    cli = str(Path(sys.executable).with_name("ij-bridge"))
    r = subprocess.run([cli, "stardist", "predict", str(img), "--model", VERSATILE, "--fiji", str(app),
                        "--no-normalize", "--prob", str(float(ref["thresholds"][0])), "--output",
                        str(tmp_path / "out"), "--quiet"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "dsb2018_heavy_augment.zip" in r.stderr
    labels = tifffile.imread(tmp_path / "out" / "cells_labels.tif")
    expect, _ = m.predict_instances(ref["x"], normalize=False, prob_thresh=float(ref["thresholds"][0]))
    assert labels.max() == expect.max() > 5
