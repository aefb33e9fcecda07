"""``ij-bridge imagej [FILES]``: the ImageJ window with the IJ Bridge menu, run for real.

Each test starts the launcher as its own process on a private Xvfb display (its
DISPLAY), as a user's desktop would give it, and reads what that ImageJ shows.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from ij_bridge.commands import builtin_commands
from ij_bridge.commands.registry import DEFAULT_MENU

pytestmark = pytest.mark.imagej

REPO = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("ij-bridge"))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = [folder / "nuclei.tif", folder / "second image.tif"]
    for p in paths:
        tifffile.imwrite(p, rng.integers(0, 4000, (64, 48), dtype=np.uint16), imagej=True)
    return paths


def _menu_commands() -> list[str]:
    return sorted(n for n, c in builtin_commands().items() if c.menu == DEFAULT_MENU)


def _launch(*args: str, display: str | None, timeout: float = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("DISPLAY", None)
    if display:
        env["DISPLAY"] = display
    return subprocess.run([CLI, "imagej", *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)


@pytest.mark.parametrize("how", ["menu", "window"])
def test_menu_files_and_quit(xvfb_display, images, how):
    """The real menu bar holds every command under Plugins > IJ Bridge, the files are open, and
    File > Quit (or closing the ImageJ window) ends the process with status 0."""
    t0 = time.monotonic()
    r = _launch("--check", *map(str, images), "--quit-with", how, display=xvfb_display)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("ij-bridge: ImageJ 1.") and f"on display {xvfb_display}," in lines[0]
    menu = sorted(x.removeprefix("menu: Plugins > IJ Bridge > ") for x in lines if x.startswith("menu: "))
    assert menu == _menu_commands() and "StarDist 2D (torch)" in menu
    assert f"{len(menu)} commands in Plugins > IJ Bridge" in lines[0]
    assert [x for x in lines if x.startswith("image: ")] == ["image: nuclei.tif", "image: second image.tif"]
    assert time.monotonic() - t0 < 170


def test_blocks_while_imagej_runs_and_a_signal_ends_it(xvfb_display, images):
    env = dict(os.environ, DISPLAY=xvfb_display)
    proc = subprocess.Popen([CLI, "imagej", str(images[0])], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=REPO)
    try:
        first = proc.stdout.readline()  # printed once the window, the menu and the image are there
        assert "commands in Plugins > IJ Bridge; quit ImageJ (File > Quit) to end" in first, first
        time.sleep(3)
        assert proc.poll() is None  # still running: it returns only when ImageJ is quit
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 143
        assert "terminated: ImageJ closed without saving" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_virtual_display_without_display(images, tmp_path):
    """--virtual: a private Xvfb; a file ImageJ cannot open is one line, not an error box that
    nobody could close there."""
    junk = tmp_path / "notes.xyz"
    junk.write_bytes(b"\x00\x01 not an image")
    r = _launch(str(images[0]), str(junk), "--virtual", "--check", display=None)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "image: nuclei.tif" in r.stdout and "menu: Plugins > IJ Bridge > StarDist 2D (torch)" in r.stdout
    assert [x for x in r.stdout.splitlines() if x.startswith("image: ")] == ["image: nuclei.tif"]
    assert "notes.xyz' is not a file type this ImageJ opens; not opened" in r.stderr


def test_no_display_and_bad_files_are_one_line(tmp_path, images):
    t0 = time.monotonic()
    r = _launch(str(images[0]), display=None, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "DISPLAY is not set" in r.stderr and "--virtual" in r.stderr
    r = _launch(str(tmp_path / "missing.tif"), "--virtual", display=None, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "missing.tif' does not exist" in r.stderr
    assert time.monotonic() - t0 < 30  # refused before any JVM or display starts
    # a DISPLAY that no X server answers
    free = next(n for n in range(4711, 4800) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    r = _launch(str(images[0]), display=f":{free}", timeout=120)
    assert r.returncode == 2 and r.stdout == "", r.stderr
    assert r.stderr.count("\n") == 1 and f"cannot open the display ':{free}'" in r.stderr


def test_screenshots_script(tmp_path):
    """scripts/screenshots.py captures the dialog and a result from the (virtual) screen."""
    from skimage.io import imread

    script = REPO / "scripts" / "screenshots.py"
    r = subprocess.run([sys.executable, str(script), "--output", str(tmp_path)], capture_output=True, text=True,
                       timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    dialog = imread(tmp_path / "stardist_dialog.png")[..., :3]
    result = imread(tmp_path / "stardist_result.png")[..., :3]
    for name in ("stardist_dialog.png", "stardist_result.png"):
        assert (tmp_path / name).stat().st_size < 200 * 1024
    # the dialog: light grey panel with dark text, as tall as its dozen fields
    assert dialog.shape[0] > 300 and dialog.shape[1] > 400
    assert np.median(dialog) > 180 and (dialog.max(axis=2) < 60).mean() > 0.005
    # the result: yellow ROI outlines on the image, and the label image's colours
    yellow = (result[..., 0] > 200) & (result[..., 1] > 200) & (result[..., 2] < 80)
    assert yellow.sum() > 200
    assert int(r.stdout.split(" ROIs;")[0].split()[-1]) > 5
    # existing PNGs are replaced only when asked
    r = subprocess.run([sys.executable, str(script), "--output", str(tmp_path)], capture_output=True, text=True,
                       timeout=60, cwd=REPO)
    assert r.returncode == 2 and "--force" in r.stderr
