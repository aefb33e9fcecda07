"""The commands' dialogs as a user at the menu meets them (real ImageJ under Xvfb): the model
choice (bundled models, the Fiji plugin's names, recent models, From file...), what the Recorder
records from it, the recent-models file, and the "done in" time and remaining time of a run.

A test opens a dialog the way a menu click does (``IJ.doCommand``: a new thread, a real
``GenericDialog``), reads its widgets and presses OK with a real ``ActionEvent``.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import write_stardist_training_set

from ij_bridge.commands import Integer, command, install_commands, run_macro
from ij_bridge.workflows import models as wm

REPO = Path(__file__).resolve().parents[1]
BUNDLED_2D = REPO / "src" / "ij_bridge" / "models" / "stardist_nuclei2d"
REF = REPO / "tests" / "fixtures" / "reference" / "stardist" / "2d_grid1"
VERSATILE = "Versatile (fluorescent nuclei)"
FIJI_NAMES = ["Versatile (fluorescent nuclei)", "Versatile (H&E nuclei)", "DSB 2018 (from StarDist 2D paper)"]


@pytest.fixture()
def config(tmp_path, monkeypatch) -> Path:
    """A fresh user config folder (the recent-models list lives there)."""
    folder = tmp_path / "config"
    monkeypatch.setenv(wm.ENV_CONFIG_DIR, str(folder))
    return folder


# --------------------------------------------------------------------------- no Java
def test_model_choices_list_bundled_fiji_recent_and_from_file(config, tmp_path):
    assert wm.model_choices("stardist2d", "stardist_nuclei2d") == [
        "stardist_nuclei2d", *FIJI_NAMES, wm.FROM_FILE]
    assert wm.model_choices("n2v") == [wm.FROM_FILE]
    assert all(n not in wm.model_choices("stardist3d") for n in FIJI_NAMES)  # the plugin's are 2D
    m1, m2 = tmp_path / "m1.zip", tmp_path / "m2"
    m1.write_bytes(b"PK")
    m2.mkdir()
    assert wm.remember_model("n2v", m1) and wm.remember_model("n2v", str(m2))
    assert wm.remember_model("n2v", m1)  # again: moves to the front, not twice
    assert wm.recent_models("n2v") == [str(m1), str(m2)]
    assert wm.model_choices("n2v") == [str(m1), str(m2), wm.FROM_FILE]
    assert wm.preselected_model("n2v", wm.model_choices("n2v")) == str(m1)
    assert wm.recent_models("stardist2d") == []  # each kind has its own list
    shutil.rmtree(m2)  # a model that is gone is no longer offered
    assert wm.model_choices("n2v") == [str(m1), wm.FROM_FILE]
    data = json.loads((config / wm.RECENT_FILE).read_text())
    assert data["n2v"] == [str(m1), str(m2)] and data["version"] == 1
    assert [p.name for p in config.iterdir()] == [wm.RECENT_FILE]  # no temporary file left
    for i in range(wm.MAX_RECENT + 3):
        wm.remember_model("stardist2d", f"model number {i}")  # names that are no paths: kept, not listed
    assert len(json.loads((config / wm.RECENT_FILE).read_text())["stardist2d"]) == wm.MAX_RECENT
    assert wm.chosen_model_path(BUNDLED_2D / "config.json") == str(BUNDLED_2D)


def test_a_config_folder_that_cannot_be_written_fails_nothing(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the config folder should be")
    monkeypatch.setenv(wm.ENV_CONFIG_DIR, str(blocker / "ij-bridge"))
    lines: list[str] = []
    assert wm.remember_model("n2v", tmp_path, log=lines.append) is False
    assert len(lines) == 1 and "not saved" in lines[0] and str(blocker) in lines[0]
    assert wm.recent_models("n2v") == [] and wm.model_choices("n2v") == [wm.FROM_FILE]
    monkeypatch.setenv(wm.ENV_CONFIG_DIR, str(tmp_path / "damaged"))
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / wm.RECENT_FILE).write_text("{not json")
    assert wm.recent_models("stardist2d") == []  # a damaged file reads as empty ...
    assert wm.remember_model("stardist2d", VERSATILE)  # ... and is replaced by a good one
    assert wm.recent_models("stardist2d") == [VERSATILE]


def test_default_config_folder_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv(wm.ENV_CONFIG_DIR, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert wm.recent_models_file() == tmp_path / "ij-bridge" / "recent_models.json"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert wm.recent_models_file() == Path.home() / ".config" / "ij-bridge" / "recent_models.json"


# --------------------------------------------------------------------------- Java helpers
def _jclass(name):
    import jpype

    return jpype.JClass(name)


def _find_window(match, timeout: float = 30):
    Window = _jclass("java.awt.Window")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for w in Window.getWindows():
            if w.isShowing():
                found = match(w)
                if found is not None:
                    return found
        time.sleep(0.05)
    raise AssertionError("the window did not open")


def _dialog(title: str, timeout: float = 30):
    GenericDialog = _jclass("ij.gui.GenericDialog")
    return _find_window(lambda w: w if isinstance(w, GenericDialog) and str(w.getTitle()) == title
                        else None, timeout)


def _file_chooser(timeout: float = 30):
    JFileChooser = _jclass("javax.swing.JFileChooser")
    Container = _jclass("java.awt.Container")

    def inside(c):
        if isinstance(c, JFileChooser):
            return c
        if isinstance(c, Container):
            for k in c.getComponents():
                found = inside(k)
                if found is not None:
                    return found
        return None

    return _find_window(inside, timeout)


def _items(choice) -> list[str]:
    return [str(choice.getItem(i)) for i in range(choice.getItemCount())]


def _press_ok(gd) -> None:
    ActionEvent = _jclass("java.awt.event.ActionEvent")
    gd.actionPerformed(ActionEvent(gd.getButtons()[0], ActionEvent.ACTION_PERFORMED, "OK"))


def _close(gd) -> None:
    """Close the dialog with its window's close box (Cancel)."""
    WindowEvent = _jclass("java.awt.event.WindowEvent")
    gd.dispatchEvent(WindowEvent(gd, WindowEvent.WINDOW_CLOSING))


def _status() -> str:
    return str(_jclass("ij.ImageJ").getStatusBarText())


def _wait_until_done(name: str, timeout: float = 120) -> str:
    """Wait until the command's run ended; its final status line ('' after an error)."""
    from ij_bridge.commands import registry

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = _status()
        if status.startswith((f"{name}: done in", f"{name}: canceled")):
            return status
        if registry.last_error.command == name and registry.last_error.when > _wait_until_done.since:
            raise AssertionError(f"{name} failed: {registry.last_error.message}")
        time.sleep(0.05)
    raise AssertionError(f"{name} did not finish; status {status!r}")


_wait_until_done.since = 0.0


def _open_dialog(name: str):
    """Run ``name`` as a menu click does and return its dialog."""
    _jclass("ij.IJ").showStatus("")
    _wait_until_done.since = time.time()
    _jclass("ij.IJ").doCommand(name)
    return _dialog(name)


@pytest.fixture()
def installed(clean_imagej):
    install_commands()
    _jclass("ij.IJ").log("\\Clear")
    return clean_imagej


def _show_cells(title: str = "cells"):
    from ij_bridge.imagej.images import to_imageplus

    x = np.load(REF / "reference.npz")["x"].astype(np.float32) * 1000
    imp = to_imageplus(x, title)
    imp.show()
    return imp


def _log() -> str:
    return str(_jclass("ij.IJ").getLog() or "")


@pytest.fixture()
def recorder():
    rec = _jclass("ij.plugin.frame.Recorder")(False)
    yield rec
    rec.close()


def _recorded(rec, name: str) -> list[str]:
    return [ln for ln in str(rec.getText()).splitlines() if f'run("{name}"' in ln]


# --------------------------------------------------------------------------- StarDist
@pytest.mark.imagej
def test_stardist_dialog_offers_the_models_and_records_the_fiji_name(installed, config, recorder,
                                                                    tmp_path, monkeypatch):
    from test_fiji_models import fake_fiji

    from ij_bridge.stardist.fiji_models import ENV_FIJI, FIJI_MODELS

    app = fake_fiji(tmp_path, {FIJI_MODELS[VERSATILE].resource: REF / "TF_SavedModel.zip"})
    monkeypatch.setenv(ENV_FIJI, str(app))
    _show_cells()
    gd = _open_dialog("StarDist 2D (torch)")
    model = gd.getChoices().get(1)  # after the image
    assert _items(model) == ["stardist_nuclei2d", *FIJI_NAMES, wm.FROM_FILE]
    assert str(model.getSelectedItem()) == "stardist_nuclei2d"
    model.select(VERSATILE)
    gd.getChoices().get(2).select("ROI Manager")
    _press_ok(gd)
    _wait_until_done("StarDist 2D (torch)")
    log = _log()
    assert "StarDist_-0.3.0.jar!/models/2D/dsb2018_heavy_augment.zip" in log  # the plugin's own model ran
    line = _recorded(recorder, "StarDist 2D (torch)")
    assert len(line) == 1 and f"model=[{VERSATILE}]" in line[0], recorder.getText()
    assert wm.recent_models("stardist2d") == [VERSATILE]
    # the recorded line replays, and ends with the same ROIs
    n = int(_jclass("ij.plugin.frame.RoiManager").getInstance().getCount())
    assert n > 3
    r = run_macro(line[0] + '\nprint("rois=" + roiManager("count"));')
    assert r.ok, r.error
    assert f"rois={n}" in r.output
    # the next dialog shows the model used last
    gd = _open_dialog("StarDist 2D (torch)")
    assert str(gd.getChoices().get(1).getSelectedItem()) == VERSATILE
    _close(gd)
    _wait_until_done("StarDist 2D (torch)")


@pytest.mark.imagej
def test_stardist_from_file_opens_a_chooser_and_records_the_path(installed, config, recorder, tmp_path):
    model_dir = tmp_path / "my nuclei model"
    shutil.copytree(BUNDLED_2D, model_dir)
    _show_cells()
    gd = _open_dialog("StarDist 2D (torch)")
    gd.getChoices().get(1).select(wm.FROM_FILE)
    gd.getChoices().get(2).select("ROI Manager")
    _press_ok(gd)
    chooser = _file_chooser()
    assert "choose the model" in str(chooser.getDialogTitle())
    File = _jclass("java.io.File")
    chooser.setSelectedFile(File(str(model_dir / "config.json")))  # inside the folder: the folder
    chooser.approveSelection()
    _wait_until_done("StarDist 2D (torch)")
    assert f"model {model_dir}," in _log()  # the chosen model is the one that ran
    # ImageJ's open dialogs start where this one ended
    assert Path(str(_jclass("ij.io.OpenDialog").getDefaultDirectory())) == model_dir
    line = _recorded(recorder, "StarDist 2D (torch)")
    assert len(line) == 1 and f"model=[{model_dir}]" in line[0], recorder.getText()
    assert wm.recent_models("stardist2d") == [str(model_dir)]
    gd = _open_dialog("StarDist 2D (torch)")  # now listed, and chosen first
    items = _items(gd.getChoices().get(1))
    assert items == ["stardist_nuclei2d", *FIJI_NAMES, str(model_dir), wm.FROM_FILE]
    assert str(gd.getChoices().get(1).getSelectedItem()) == str(model_dir)
    # From file... and Cancel in the chooser cancel the command: nothing runs, nothing recorded
    gd.getChoices().get(1).select(wm.FROM_FILE)
    _press_ok(gd)
    _file_chooser().cancelSelection()
    assert _wait_until_done("StarDist 2D (torch)") == "StarDist 2D (torch): canceled"
    assert len(_recorded(recorder, "StarDist 2D (torch)")) == 1


@pytest.mark.imagej
def test_macro_model_values_are_any_name_or_path(installed, config, tmp_path, monkeypatch):
    from ij_bridge.stardist.fiji_models import ENV_FIJI, ENV_MODELS

    folder = tmp_path / "models"
    shutil.copytree(BUNDLED_2D, folder / "2D_versatile_fluo")  # the Python name, in a models folder
    monkeypatch.delenv(ENV_FIJI, raising=False)
    monkeypatch.setenv(ENV_MODELS, str(folder))
    _show_cells()
    r = run_macro(f'run("StarDist 2D (torch)", "model=[{VERSATILE}] output=[ROI Manager]");')
    assert r.ok, r.error
    assert str(folder / "2D_versatile_fluo") in r.output and "results will differ" not in r.output
    elsewhere = tmp_path / "not listed anywhere"
    shutil.copytree(BUNDLED_2D, elsewhere)
    r = run_macro(f'run("StarDist 2D (torch)", "model=[{elsewhere}] output=[ROI Manager]");')
    assert r.ok, r.error  # a path that no list holds
    assert wm.recent_models("stardist2d") == [str(elsewhere), VERSATILE]  # macro runs count as use
    r = run_macro('run("StarDist 2D (torch)", "model=[no such model] output=[ROI Manager]");')
    assert not r.ok and "StarDist model not found: no such model" in r.error


# --------------------------------------------------------------------------- N2V
@pytest.mark.imagej
def test_n2v_predict_dialog_offers_the_trained_model(installed, config, recorder, tmp_path):
    from ij_bridge.imagej.images import to_imageplus

    rng = np.random.default_rng(0)
    noisy = to_imageplus(rng.normal(0, 1, (48, 48)).astype(np.float32), "noisy")
    noisy.show()
    gd = _open_dialog("N2V Predict (torch)")
    assert _items(gd.getChoices().get(0)) == [wm.FROM_FILE]  # nothing trained yet
    _close(gd)
    _wait_until_done("N2V Predict (torch)")
    model = tmp_path / "n2v model.zip"
    r = run_macro(f'selectImage("noisy"); run("N2V Train (torch)", "model=[{model}] epochs=1 steps=2 '
                  'batch=2 patch=16");')
    assert r.ok, r.error
    gd = _open_dialog("N2V Predict (torch)")
    choice = gd.getChoices().get(0)
    assert _items(choice) == [str(model), wm.FROM_FILE]
    assert str(choice.getSelectedItem()) == str(model)
    _press_ok(gd)
    _wait_until_done("N2V Predict (torch)")
    assert _jclass("ij.WindowManager").getImage("noisy-denoised") is not None
    line = _recorded(recorder, "N2V Predict (torch)")
    assert len(line) == 1 and f"model=[{model}]" in line[0]


@pytest.mark.imagej
def test_runs_succeed_when_the_recent_list_cannot_be_written(installed, tmp_path, monkeypatch):
    from ij_bridge.imagej.images import to_imageplus

    blocker = tmp_path / "config-is-a-file"
    blocker.write_text("")
    monkeypatch.setenv(wm.ENV_CONFIG_DIR, str(blocker / "ij-bridge"))
    rng = np.random.default_rng(1)
    to_imageplus(rng.normal(0, 1, (48, 48)).astype(np.float32), "noisy").show()
    model = tmp_path / "m.zip"
    r = run_macro(f'run("N2V Train (torch)", "model=[{model}] epochs=1 steps=1 batch=2 patch=16");\n'
                  f'run("N2V Predict (torch)", "model=[{model}]");')
    assert r.ok, r.error
    assert model.is_file() and "the list of recent models was not saved" in r.output


# --------------------------------------------------------------------------- time
TIMED: list[float] = []


@command("IJB Dialog Timed Work", params=[Integer("steps", 4, minimum=1),
                                          Integer("ms", 150, minimum=0, label="ms per step")],
         menu=None)
def _timed_work(ctx, steps, ms):
    t0 = time.perf_counter()
    for i in range(steps):
        time.sleep(ms / 1000)
        ctx.progress(i + 1, steps, f"step {i + 1}")
    TIMED.append(time.perf_counter() - t0)


@pytest.mark.imagej
def test_done_time_counts_the_work_not_the_dialog(installed):
    gd = _open_dialog("IJB Dialog Timed Work")
    time.sleep(2.0)  # the user reads the dialog
    gd.getNumericFields().get(0).setText("2")
    _press_ok(gd)
    status = _wait_until_done("IJB Dialog Timed Work")
    shown = float(re.fullmatch(r"IJB Dialog Timed Work: done in ([\d.]+) s", status).group(1))
    assert TIMED[-1] >= 0.3
    assert abs(shown - TIMED[-1]) < 0.3 and shown < 1.5, (status, TIMED[-1])


@pytest.mark.imagej
def test_long_runs_show_the_time_left(installed, monkeypatch):
    from ij_bridge.commands.registry import CommandContext

    monkeypatch.setattr(CommandContext, "log_interval", 0.0)
    monkeypatch.setattr(CommandContext, "eta_after", 0.4)
    statuses: list[str] = []
    IJ = _jclass("ij.IJ")
    original = CommandContext.progress

    def progress(self, done, total, message=""):
        original(self, done, total, message)
        statuses.append(_status())

    monkeypatch.setattr(CommandContext, "progress", progress)
    r = run_macro('run("IJB Dialog Timed Work", "steps=10 ms=150");')
    assert r.ok, r.error
    lines = [ln for ln in r.output.splitlines() if "] step" in ln]
    assert len(lines) == 10
    assert "left" not in lines[0] and "left" not in lines[-1]  # too early to say; done
    found = [re.fullmatch(r"IJB Dialog Timed Work: \[(\d+)/10\] step \d+, (\d+) s left", ln)
             for ln in lines[3:-1]]
    assert all(found), lines
    for m in found:  # about 0.15 s for each step still to do, rounded up
        left = (10 - int(m.group(1))) * 0.15
        assert left - 0.5 <= int(m.group(2)) <= left + 1.5, lines
    assert any(re.fullmatch(r"IJB Dialog Timed Work: step \d+ \(\d+ s left\)", s) for s in statuses), statuses
    del IJ


@pytest.mark.imagej
def test_a_trained_stardist_model_is_offered_next(installed, config, tmp_path):
    images, masks = write_stardist_training_set(tmp_path)
    model = tmp_path / "trained"
    r = run_macro(f'run("StarDist Train (torch)", "images=[{images}] masks=[{masks}] '
                  f'model=[{model}] epochs=1 steps=1 patch=32 rays=8");')
    assert r.ok, r.error
    assert wm.recent_models("stardist2d") == [str(model)] and wm.recent_models("stardist3d") == []
    _show_cells()
    gd = _open_dialog("StarDist 2D (torch)")
    assert _items(gd.getChoices().get(1)) == ["stardist_nuclei2d", *FIJI_NAMES, str(model), wm.FROM_FILE]
    assert str(gd.getChoices().get(1).getSelectedItem()) == str(model)
    _close(gd)
    _wait_until_done("StarDist 2D (torch)")


def test_a_default_model_that_is_not_installed_is_not_offered(config):
    assert wm.model_choices("stardist3d", "no_such_bundled_model") == [
        *wm.bundled_model_names("stardist3d"), wm.FROM_FILE]
    items = wm.model_choices("n2v", "")
    assert wm.preselected_model("n2v", items, "") == wm.FROM_FILE


@pytest.mark.imagej
def test_stardist_3d_dialog_offers_3d_models_only(installed, config):
    _jclass("ij.IJ").createImage("stack", "8-bit black", 32, 32, 4).show()
    gd = _open_dialog("StarDist 3D (torch)")
    items = _items(gd.getChoices().get(1))
    assert items == [*wm.bundled_model_names("stardist3d"), wm.FROM_FILE]
    assert not set(items) & set(FIJI_NAMES) and "stardist_nuclei2d" not in items
    _close(gd)
    assert _wait_until_done("StarDist 3D (torch)") == "StarDist 3D (torch): canceled"
