"""Screenshots of the ImageJ GUI for docs/commands.md, taken under a private Xvfb display.

Writes

* ``docs/img/stardist_dialog.png``: the dialog of *Plugins > IJ Bridge > StarDist 2D (torch)*,
  opened as the menu opens it (``IJ.doCommand``, the call behind a menu click) on a crop of
  the shared nuclei image, then cancelled;
* ``docs/img/stardist_result.png``: the same command run on that image: the image with the
  ROI Manager's outlines (*Show All*) beside the label image it made.

The windows are captured from the screen with ``java.awt.Robot``, so what is saved is what
ImageJ drew. Each PNG is written to a temporary sibling and renamed into place; existing
PNGs are replaced only with ``--force``.

Usage::

    .venv/bin/python scripts/screenshots.py [--output docs/img] [--force]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

REPO = Path(__file__).resolve().parents[1]
NUCLEI = REPO.parent / "shared" / "data" / "nuclei2d" / "train_left_img.tif"
COMMAND = "StarDist 2D (torch)"
FILES = ("stardist_dialog.png", "stardist_result.png")


def _sample(folder: Path) -> Path:
    """A 256 x 256 crop of the shared nuclei image (synthetic nuclei without it), as a TIFF."""
    if NUCLEI.is_file():
        img = tifffile.imread(NUCLEI)[:256, :256]
    else:
        from ij_bridge.synthetic import synthetic_nuclei

        img = np.asarray(synthetic_nuclei((256, 256), seed=0)[0])
    path = folder / "nuclei.tif"
    tifffile.imwrite(path, img, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "micron"})
    return path


def _wait(cond, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")


def _capture(jc, bounds, dest: Path) -> None:
    """Save the screen rectangle ``bounds`` (java.awt.Rectangle) as a PNG, atomically."""
    robot = jc("java.awt.Robot")()
    robot.waitForIdle()
    time.sleep(0.5)  # let the X server finish drawing
    picture = robot.createScreenCapture(bounds)
    tmp = dest.with_name(dest.name + ".tmp.png")
    if not jc("javax.imageio.ImageIO").write(picture, "png", jc("java.io.File")(str(tmp))):
        raise RuntimeError("no PNG writer in this Java")
    os.replace(tmp, dest)
    print(f"{dest}  {picture.getWidth()}x{picture.getHeight()} px, {dest.stat().st_size / 1024:.0f} KiB")


def _dialog(jc, title: str):
    for w in jc.Window.getWindows():
        if isinstance(w, jc.GenericDialog) and w.isShowing() and str(w.getTitle()) == title:
            return w
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=str(REPO / "docs" / "img"), help="folder for the PNGs")
    parser.add_argument("--force", action="store_true", help="replace existing PNGs")
    args = parser.parse_args(argv)
    out = Path(args.output)
    existing = [out / f for f in FILES if (out / f).exists()]
    if existing and not args.force:
        print(f"screenshots: {existing[0]} exists; pass --force to replace it", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)

    from ij_bridge.commands import install_commands
    from ij_bridge.commands.registry import run_command
    from ij_bridge.imagej._java import jc
    from ij_bridge.imagej.windows import close_all_images

    install_commands(mode="virtual")  # a private Xvfb display, never the user's
    IJ, WindowManager = jc.IJ, jc.WindowManager
    with tempfile.TemporaryDirectory(prefix="ij-bridge-screenshots-") as tmp:
        IJ.open(str(_sample(Path(tmp))))
        imp = _wait(WindowManager.getCurrentImage, 30, "the image window")
        win = imp.getWindow()
        win.setLocation(10, 10)

        # 1. the dialog, opened as a click on Plugins > IJ Bridge > StarDist 2D (torch) opens it
        IJ.doCommand(COMMAND)
        gd = _wait(lambda: _dialog(jc, COMMAND), 60, f"the {COMMAND} dialog")
        time.sleep(1.0)
        gd.toFront()
        # (no window manager: getBounds() can lag behind where the dialog was centred)
        _capture(jc, jc("java.awt.Rectangle")(gd.getLocationOnScreen(), gd.getSize()), out / FILES[0])
        cancel_button = gd.getButtons()[1]
        ActionEvent = jc("java.awt.event.ActionEvent")
        gd.actionPerformed(ActionEvent(cancel_button, ActionEvent.ACTION_PERFORMED, "Cancel"))
        _wait(lambda: _dialog(jc, COMMAND) is None, 30, "the dialog to close")

        # 2. a segmented result: the image with the ROI outlines, and the label image
        before = set(WindowManager.getIDList() or [])
        run_command(COMMAND, f"input=[{imp.getTitle()}] model=[stardist_nuclei2d] normalize output=[Both]")
        new = [i for i in (WindowManager.getIDList() or []) if i not in before]
        if len(new) != 1:
            raise RuntimeError(f"expected one new image (the label image), got {len(new)}")
        labels = WindowManager.getImage(new[0])
        manager = jc.RoiManager.getInstance()
        manager.setLocation(1200, 800)  # out of the picture
        WindowManager.setCurrentWindow(win)
        manager.runCommand(imp, "Show All without labels")
        lwin = labels.getWindow()
        lwin.setLocation(win.getX() + win.getWidth() + 10, win.getY())
        time.sleep(1.0)
        a, b = win.getBounds(), lwin.getBounds()
        union = a.union(b)
        _capture(jc, union, out / FILES[1])
        print(f"{manager.getCount()} ROIs; label image {str(labels.getTitle())!r}")
        close_all_images()
    sys.stdout.flush()
    os._exit(0)  # ImageJ's threads would keep the JVM waiting


if __name__ == "__main__":
    sys.exit(main())
