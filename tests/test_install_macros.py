"""``ij-bridge install-macros``: a stock ImageJ gains the StarDist/N2V steps through exec()."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tifffile

pytestmark = pytest.mark.imagej

REPO = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("ij-bridge"))
IJ_JAR = Path("/usr/share/java/ij.jar")
PIXEL = 0.5
STARDIST = ('run("StarDist 2D (ij-bridge)", "model=[stardist_nuclei2d] normalize low=1 high=99.8 '
            'probability=[auto] overlap=[auto] output=[Both] tiles=1 exclude=2 position=[Automatic] measure");')


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def cells(shared_data, tmp_path_factory) -> Path:
    """A crop of the shared nuclei image, calibrated at 0.5 micron per pixel."""
    img = tifffile.imread(shared_data / "nuclei2d" / "train_left_img.tif")[:200, :160]
    path = tmp_path_factory.mktemp("cells") / "cells.tif"
    tifffile.imwrite(path, img, imagej=True, resolution=(1 / PIXEL, 1 / PIXEL), metadata={"unit": "micron"})
    return path


@pytest.fixture(scope="module")
def imagej_folder(tmp_path_factory) -> Path:
    """A plain ImageJ folder (jars/ij.jar, plugins/, macros/) with the macros installed."""
    root = tmp_path_factory.mktemp("ImageJ")
    (root / "jars").mkdir()
    (root / "plugins").mkdir()
    (root / "jars" / "ij.jar").symlink_to(IJ_JAR)
    r = _cli("install-macros", str(root))
    assert r.returncode == 0, r.stderr
    return root


def _plain_imagej(folder: Path, macro: Path, display: str, timeout: float = 360,
                  temp: Path | None = None) -> subprocess.CompletedProcess:
    """`java -jar ij.jar -batch MACRO`; ``temp``: its temporary folder (getDirectory("temp"))."""
    env = dict(os.environ, DISPLAY=display)
    temp_option = [f"-Djava.io.tmpdir={temp}"] if temp is not None else []
    return subprocess.run(["java", f"-Dplugins.dir={folder}", *temp_option, "-jar", str(IJ_JAR), "-batch", str(macro)],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=folder)


def test_installed_files(imagej_folder, tmp_path):
    plugins = imagej_folder / "plugins" / "IJ Bridge"  # the sub-menu is the folder's name as it is
    names = sorted(p.name for p in plugins.iterdir())
    assert "StarDist_2D_(ij-bridge).ijm" in names and "N2V_Predict_(ij-bridge).ijm" in names
    text = (plugins / "StarDist_2D_(ij-bridge).ijm").read_text()
    exe = str(Path(CLI).resolve())
    assert f'exe = "{exe}";' in text or f'exe = "{CLI}";' in text
    assert os.path.isabs(text.split('exe = "', 1)[1].split('"', 1)[0])
    # the dialog carries the torch command's own labels, so its macro keys are the same
    for label in ('"model (folder, .zip or bundled name)"', '"normalize image (percentiles)"', '"low percentile"',
                  '"probability threshold (0-1, auto = the model\'s)"', '"output type"', '"position of ROIs in stacks"'):
        assert label in text
    assert (imagej_folder / "macros" / "toolsets" / "IJ Bridge.ijm").is_file()
    # a second install needs --force; a folder without plugins/ is refused
    r = _cli("install-macros", str(imagej_folder))
    assert r.returncode == 2 and "--force" in r.stderr
    assert _cli("install-macros", str(imagej_folder), "--force").returncode == 0
    r = _cli("install-macros", str(tmp_path))
    assert r.returncode == 2 and "no plugins folder" in r.stderr


def test_plain_imagej_batch_calls_the_cli(imagej_folder, cells, xvfb_display, tmp_path):
    """`java -jar ij.jar -batch`: the installed command runs StarDist + Measure Labels via exec()."""
    macro = tmp_path / "stardist.ijm"
    macro.write_text(
        f'open("{cells}");\n{STARDIST}\n'
        'print("nImages=" + nImages);\n'
        'selectImage("cells-labels");\n'
        'getPixelSize(unit, pw, ph); getStatistics(area, mean, min, max);\n'
        'print("labels max=" + max + " pixel=" + pw + " unit=" + unit + " bits=" + bitDepth());\n'
        'print("results=" + nResults + " area0=" + getResult("Area", 0));\n'
    )
    temp = tmp_path / "temp"
    temp.mkdir()
    r = _plain_imagej(imagej_folder, macro, xvfb_display, temp=temp)
    out = r.stdout
    assert r.returncode == 0, r.stderr + out
    n = int(out.split("labels max=")[1].split()[0])
    assert 5 <= n <= 40
    assert f"pixel={PIXEL} unit=micron" in out.replace("microns", "micron")
    assert "nImages=2" in out and "bits=16" in out
    # in -batch every macro has its own ROI Manager: the installed command reports what it loaded
    assert f"IJ Bridge: loaded image 'cells-labels' ({PIXEL} micron" in out.replace("microns", "micron")
    assert f"{n} ROIs in the ROI Manager; {n} rows in Results" in out
    assert f"results={n} " in out
    area0 = float(out.split("area0=")[1].split()[0])
    assert 0 < area0 < 200 * 160 * PIXEL**2  # calibrated µm², not pixels
    assert "StarDist 2D (torch):" in out  # the bridge's Log comes back too
    assert not list(temp.iterdir())  # the exchange folder is removed


def test_cli_errors_are_imagej_errors(imagej_folder, cells, xvfb_display, tmp_path):
    macro = tmp_path / "fails.ijm"
    macro.write_text(f'open("{cells}");\n'
                     'run("StarDist 2D (ij-bridge)", "model=[/no/such/model.zip] normalize output=[Both]");\n')
    r = _plain_imagej(imagej_folder, macro, xvfb_display)
    assert "IJ Bridge: StarDist 2D (torch) failed" in r.stdout
    assert "/no/such/model.zip" in r.stdout
    # an executable that is gone is named, and nothing hangs
    broken = tmp_path / "broken"
    shutil.copytree(imagej_folder, broken, symlinks=True)
    exe = str(Path(CLI).resolve())
    for f in (broken / "plugins" / "IJ Bridge").iterdir():
        f.write_text(f.read_text().replace(f'exe = "{exe}"', 'exe = "/nonexistent/bin/ij-bridge"')
                     .replace(f'exe = "{CLI}"', 'exe = "/nonexistent/bin/ij-bridge"'))
    r = _plain_imagej(broken, macro, xvfb_display, timeout=60)
    assert "the ij-bridge executable is missing" in r.stdout


def test_in_imagej_with_a_window_rois_results_and_errors(imagej_folder, cells, tmp_path):
    """An ImageJ with its main window (here the bridge's own, on a virtual display, using the
    ImageJ folder with the installed macros): results land in the caller's ROI Manager and
    Results, and a CLI error is an ImageJ error that stops the calling macro."""
    macro = tmp_path / "gui.ijm"
    macro.write_text(
        f'open("{cells}");\n{STARDIST}\n'
        'print("rois=" + roiManager("count") + " results=" + nResults + " images=" + nImages);\n'
        'run("StarDist 2D (ij-bridge)", "model=[/no/such/model.zip] normalize output=[Both]");\n'
        'print("not reached");\n'
    )
    r = subprocess.run([CLI, "macro", str(macro), "--imagej", str(imagej_folder), "--mode", "virtual"],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 1, r.stdout + r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("rois="))
    counts = dict(kv.split("=") for kv in line.split())
    assert int(counts["rois"]) == int(counts["results"]) > 0 and counts["images"] == "2"
    assert "not reached" not in r.stdout
    assert "StarDist 2D (torch) failed" in r.stderr and "/no/such/model.zip" in r.stderr


def test_an_earlier_ij_underscore_bridge_folder_is_replaced_with_force(tmp_path):
    """Installations before the menu was "IJ Bridge" wrote plugins/IJ_Bridge/: --force takes
    our files out of it (else every command would be listed twice), never a file of the user's."""
    root = tmp_path / "ImageJ"
    old = root / "plugins" / "IJ_Bridge"
    old.mkdir(parents=True)
    (old / "StarDist_2D_(ij-bridge).ijm").write_text("// old\n")
    (old / "N2V_Predict_(ij-bridge).ijm").write_text("// old\n")
    r = _cli("install-macros", str(root))
    assert r.returncode == 2 and "--force" in r.stderr and "IJ_Bridge" in r.stderr
    assert _cli("install-macros", str(root), "--force").returncode == 0
    assert not old.exists() and (root / "plugins" / "IJ Bridge" / "StarDist_2D_(ij-bridge).ijm").is_file()
    # a folder that holds something else stays, with that file
    old.mkdir()
    (old / "StarDist_2D_(ij-bridge).ijm").write_text("// old\n")
    (old / "Mine_.ijm").write_text("// the user's\n")
    assert _cli("install-macros", str(root), "--force").returncode == 0
    assert sorted(p.name for p in old.iterdir()) == ["Mine_.ijm"]


#: A plain ImageJ (ij.jar, its own main window, no ij-bridge in the JVM) with the Macro
#: Recorder open; the installed StarDist command is chosen from Plugins > IJ Bridge and its
#: dialog is OKed as a user would (the same AWT events as the clicks); prints a JSON summary.
RECORD_A_MENU_RUN = r"""
import json, os, sys, time
import jpype
import jpype.imports

folder, image, temp = sys.argv[1:4]
jpype.startJVM("-Djava.awt.headless=false", "-Dplugins.dir=" + folder, "-Djava.io.tmpdir=" + temp,
               "-Duser.language=en", "-Duser.country=US", classpath=["/usr/share/java/ij.jar"])
from java.awt import Toolkit, Window
from java.awt.event import ActionEvent
from ij import IJ, ImageJ, Menus, WindowManager
from ij.gui import GenericDialog
from ij.measure import ResultsTable
from ij.plugin.frame import Recorder, RoiManager

exchange = set()  # names of the exchange folders seen in the (private) temporary folder

def wait(cond, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        exchange.update(n for n in os.listdir(temp) if n.startswith("ij-bridge-"))
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    rec = Recorder.getInstance()
    print(json.dumps({"error": "timed out waiting for " + what, "recorded": str(rec.getText()) if rec else None}))
    sys.stdout.flush()
    os._exit(3)

def items(menu):
    return {str(menu.getItem(i).getLabel()): menu.getItem(i) for i in range(menu.getItemCount())}

ImageJ(ImageJ.STANDALONE).exitWhenQuitting(False)
IJ.open(image)
wait(lambda: WindowManager.getCurrentImage() is not None, 30, "the image")
Recorder()
rec = wait(Recorder.getInstance, 10, "the Recorder")
bar = Menus.getMenuBar()
plugins = next(bar.getMenu(i) for i in range(bar.getMenuCount()) if bar.getMenu(i).getLabel() == "Plugins")
submenus = [label for label in items(plugins) if "Bridge" in label]
item = items(items(plugins)[submenus[0]])["StarDist 2D (ij-bridge)"]
events = Toolkit.getDefaultToolkit().getSystemEventQueue()
events.postEvent(ActionEvent(item, ActionEvent.ACTION_PERFORMED, item.getActionCommand()))

def dialog():
    for w in Window.getWindows():
        if isinstance(w, GenericDialog) and w.isShowing() and str(w.getTitle()) == "StarDist 2D (ij-bridge)":
            return w

gd = wait(dialog, 60, "the dialog")
time.sleep(0.5)
for box in gd.getCheckboxes():
    if str(box.getLabel()).startswith("measure"):
        box.setState(True)
ok = gd.getButtons()[0]
events.postEvent(ActionEvent(ok, ActionEvent.ACTION_PERFORMED, ok.getLabel()))

def label_image():  # the image the command added (whatever its title)
    ids = list(WindowManager.getIDList() or [])
    return WindowManager.getImage(ids[-1]) if len(ids) >= 2 else None

def done():
    rm = RoiManager.getInstance()
    return (label_image() is not None and rm is not None and rm.getCount() > 0
            and ResultsTable.getResultsTable().size() > 0)

wait(done, 240, "the results")
time.sleep(1.0)
exchange.update(n for n in os.listdir(temp) if n.startswith("ij-bridge-"))
print(json.dumps({
    "submenus": submenus, "recorded": str(rec.getText()), "exchange": sorted(exchange),
    "left": sorted(n for n in os.listdir(temp) if n.startswith("ij-bridge-")),
    "labels_max": label_image().getStatistics().max,
    "rois": RoiManager.getInstance().getCount(), "results": ResultsTable.getResultsTable().size(),
}))
sys.stdout.flush()
os._exit(0)
"""


def test_recorded_menu_run_replays_in_batch(imagej_folder, cells, xvfb_display, tmp_path):
    """Plugins > IJ Bridge in a stock ImageJ, the Recorder's lines of a menu run, and their replay
    in `ImageJ -batch`: the same objects, ROIs and Results rows."""
    script = tmp_path / "record.py"
    script.write_text(RECORD_A_MENU_RUN)
    temp = tmp_path / "temp"
    temp.mkdir()
    r = subprocess.run([sys.executable, str(script), str(imagej_folder), str(cells), str(temp)],
                       capture_output=True, text=True, timeout=360, env=dict(os.environ, DISPLAY=xvfb_display), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    run = json.loads(r.stdout.strip().splitlines()[-1])
    assert run["submenus"] == ["IJ Bridge"]  # not "IJ_Bridge"
    # the exchange folder is named with the time in milliseconds (not 1.7962E12), and is removed
    assert run["exchange"] and all(re.fullmatch(r"ij-bridge-\d{13}-\d+", n) for n in run["exchange"]), run
    assert run["left"] == []
    # the Recorder holds the user-level line only: nothing of the exchange folder
    lines = [x for x in run["recorded"].splitlines() if x.strip() and not x.startswith("//")]
    assert len(lines) == 1 and lines[0].startswith('run("StarDist 2D (ij-bridge)", "model='), run["recorded"]
    assert lines[0].endswith(' measure");') and "ij-bridge-" not in lines[0]
    n = int(run["labels_max"])
    assert 5 <= n <= 40 and run["rois"] == n and run["results"] == n

    replay = tmp_path / "replay.ijm"
    replay.write_text(f'open("{cells}");\n' + run["recorded"] +
                      '\nselectImage(nImages); getStatistics(area, mean, min, max);\n'
                      'print("replayed labels max=" + max + " results=" + nResults);\n')
    r = _plain_imagej(imagej_folder, replay, xvfb_display)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"replayed labels max={n} results={n}" in r.stdout, r.stdout
    assert f"{n} ROIs in the ROI Manager; {n} rows in Results" in r.stdout  # -batch: the command's own
