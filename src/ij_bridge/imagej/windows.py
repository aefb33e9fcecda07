"""ImageJ's open images and windows: listing, finding by title, unique titles, reset.

Every function here needs a running ImageJ (:func:`ij_bridge.start`); before
that they raise :class:`ij_bridge.imagej._java.JVMNotStartedError`.

==========================  ====================================================
function                    what
==========================  ====================================================
:func:`image_ids`           ``WindowManager.getIDList()`` as a list (empty when none)
:func:`open_images`         the open ``ImagePlus`` objects, in ImageJ's order
:func:`open_titles`         their titles
:func:`image_by_title`      the image with that exact title (the newest of equals)
:func:`unique_title`        ``title``, or ``title-2``, ... if that title is open
:func:`close_all_images`    close every image without "save changes?" questions
:func:`roi_manager`         the ROI Manager (optionally created)
:func:`reset`               close images and tables, empty ROI Manager, Results, Log
==========================  ====================================================
"""

from __future__ import annotations

from typing import Any

from ._java import jc

__all__ = ["image_ids", "open_images", "open_titles", "image_by_title", "unique_title",
           "close_all_images", "roi_manager", "reset"]

#: Non-image windows that :func:`reset` empties instead of closing.
_KEPT_WINDOWS = ("Log", "Results")


def image_ids() -> list[int]:
    """The IDs of the open images (negative numbers), in ``WindowManager``'s order.

    Images shown in batch mode are included, as ``WindowManager.getIDList()``
    includes them. Sort by ``abs`` for the order in which they were created.
    """
    ids = jc.WindowManager.getIDList()
    return [int(i) for i in ids] if ids is not None else []


def open_images() -> list[Any]:
    """The open images (``ij.ImagePlus``), in ``WindowManager``'s order."""
    WindowManager = jc.WindowManager
    images = []
    for i in image_ids():
        imp = WindowManager.getImage(i)
        if imp is not None:  # closed between the two calls
            images.append(imp)
    return images


def open_titles() -> list[str]:
    """The titles of the open images, in ``WindowManager``'s order (duplicates kept)."""
    return [str(imp.getTitle()) for imp in open_images()]


def image_by_title(title: str) -> Any | None:
    """The open image titled exactly ``title``, or None.

    ImageJ allows two images of the same title; then the one opened last wins
    (``selectImage(title)`` in a macro picks the same one).
    """
    found = None
    for imp in open_images():
        if str(imp.getTitle()) == title:
            found = imp
    return found


def unique_title(title: str) -> str:
    """``title``, or ``title-2``, ``title-3``, ... when an image of that title is open.

    ImageJ itself never makes titles unique; a new result window named like an
    open one would make ``selectImage(title)`` ambiguous.
    """
    taken = set(open_titles())
    if title not in taken:
        return title
    k = 2
    while f"{title}-{k}" in taken:
        k += 1
    return f"{title}-{k}"


def close_all_images() -> int:
    """Close every image window without "save changes?" questions; return how many.

    Stack windows run a (non-daemon) slice-selector thread each, which keeps
    the JVM - and so Python - from exiting while the window is open.
    """
    n = 0
    for imp in open_images():
        imp.changes = False
        imp.close()
        n += 1
    return n


def roi_manager(create: bool = False) -> Any | None:
    """ImageJ's ROI Manager, or None when none is open and ``create`` is False.

    Raises
    ------
    HeadlessError
        In headless mode (the ROI Manager is a window); start ImageJ with
        ``mode="virtual"``.
    """
    from . import runtime

    runtime.require_display("The ROI Manager")
    RoiManager = jc.RoiManager
    rm = RoiManager.getInstance()
    if rm is None and create:
        rm = RoiManager()
    return rm


def reset() -> None:
    """Leave ImageJ as if it had just started: no images, tables, ROIs, Results or Log lines.

    Closes every image without a "save changes?" question (batch-mode images
    too, and batch mode is switched off), empties the ROI Manager and the
    Results table, closes the Results window and every other table window
    without asking, and clears the Log (its window stays open, empty).
    ImageJ's settings (Set Measurements, binary options, ...) are left as they are.
    """
    WindowManager = jc.WindowManager
    TextWindow = jc.TextWindow
    jc.Interpreter.batchMode = False
    close_all_images()
    WindowManager.setTempCurrentImage(None)
    rm = jc.RoiManager.getInstance()
    if rm is not None:
        rm.reset()
    jc.ResultsTable.getResultsTable().reset()
    frames = WindowManager.getNonImageWindows()
    for w in (list(frames) if frames is not None else []):
        if isinstance(w, TextWindow) and str(w.getTitle()) not in _KEPT_WINDOWS:
            w.close(False)
    results_window = WindowManager.getWindow("Results")
    if results_window is not None and isinstance(results_window, TextWindow):
        results_window.close(False)
    if jc.IJ.getInstance() is not None or WindowManager.getWindow("Log") is not None:
        jc.IJ.log("\\Clear")  # (without either, ImageJ would print the command to stdout)
