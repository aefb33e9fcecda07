"""The ImageJ side of a batch run: one ImageJ that processes files one after the other.

:class:`ImageJSession` opens a file (:meth:`ImageJSession.open_image`), runs
the macro on it, saves what is open afterwards (:func:`save_open_state`) and
publishes the output folder; :func:`reset_imagej` leaves ImageJ empty for the
next file. Java classes come from :data:`ij_bridge.imagej._java.jc`, open
images and windows from :mod:`ij_bridge.imagej.windows`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ..imagej import windows
from ..imagej._java import jc
from .plan import (RECORD_NAME, STAGING_NAME, BatchError, Task, _fix_modes, _input_stamp, _publish,
                   _safe_name, macro_argument)

__all__ = ["ImageJSession", "save_open_state", "reset_imagej", "ensure_roi_manager", "check_readable"]

# extensions dropped from image titles when naming the saved TIFF
_IMAGE_EXTENSIONS = {
    ".tif", ".tiff", ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".zip", ".czi", ".nd2", ".lif",
    ".lsm", ".dcm", ".dicom", ".fits", ".fit", ".pgm", ".raw", ".ome", ".ics", ".ids", ".avi",
    ".txt", ".csv", ".jp2", ".ims", ".oib", ".oif", ".vsi", ".svs",
}
# appended to the user's macro: images and ROIs made in batch mode would vanish
# when the macro ends in batch mode; this shows them so they can be saved.
_EPILOGUE = '\n;if (is("Batch Mode")) setBatchMode("exit and display");\n'


# =========================================================================== ImageJ side
def reset_imagej() -> None:
    """Close every image and table, empty the ROI Manager, Results and Log.

    Images are closed without a "save changes?" question; the Log window stays
    open but empty. ImageJ's settings (Set Measurements, binary options) are
    left as the macro set them.
    """
    windows.reset()


def ensure_roi_manager() -> None:
    """Create the (unseen) ROI Manager, so that batch-mode macros use it, not a hidden one."""
    windows.roi_manager(create=True)


_ensure_roi_manager = ensure_roi_manager  # the name cli/batch.py used before ensure_roi_manager


def _unique(name: str, used: set[str]) -> str:
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    candidate, n = name, 1
    while candidate.lower() in used:
        n += 1
        candidate = f"{stem}-{n}.{ext}" if ext else f"{stem}-{n}"
    used.add(candidate.lower())
    return candidate


def _image_file_name(title: str) -> str:
    name = _safe_name(title, "image")
    stem, suffix = os.path.splitext(name)
    if suffix.lower() in _IMAGE_EXTENSIONS and stem:
        name = stem
    return name + ".tif"


def _roi_zip_bytes(rm) -> bytes | None:
    import zipfile

    RoiEncoder = jc.RoiEncoder
    n = int(rm.getCount())
    if n == 0:
        return None
    rois = rm.getRoisAsArray()
    buf = io.BytesIO()
    used: set[str] = set()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(n):
            label = str(rm.getName(i)) if rm.getName(i) is not None else f"roi-{i + 1:04d}"
            data = RoiEncoder.saveAsByteArray(rois[i])
            if data is None:
                raise RuntimeError(f"ImageJ could not encode ROI {label!r}")
            # a fixed time stamp: the same ROIs give the same bytes on every run
            info = zipfile.ZipInfo(_unique(_safe_name(label, f"roi-{i + 1:04d}") + ".roi", used),
                                   date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, bytes(data))
    return buf.getvalue()


def save_open_state(folder: str | os.PathLike, *, log_text: str = "") -> list[str]:
    """Save every open image, the ROI Manager, Results and other tables into ``folder``.

    Images go through ImageJ's own TIFF writer (``FileSaver.saveAsTiff``), which keeps
    calibration, overlay and display settings; ROIs are encoded by ImageJ
    (``RoiEncoder``) into ``rois.zip``; tables are written with full precision by
    :func:`ij_bridge.io.write_table`. Nothing is written for empty state.

    Parameters
    ----------
    folder : path
        Existing folder (a staging folder: files are written in place).
    log_text : str
        Written to ``log.txt`` when not empty.

    Returns
    -------
    list of str
        The file names written, in the order written.
    """
    from ..imagej.tables import results_to_dataframe
    from ..io import write_table

    folder = Path(folder)
    WindowManager = jc.WindowManager
    FileSaver = jc.FileSaver
    written: list[str] = []
    used = {p.name.lower() for p in folder.iterdir()}
    used |= {"rois.zip", "results.csv", "log.txt", RECORD_NAME}
    for i in sorted(windows.image_ids(), key=abs):
        imp = WindowManager.getImage(i)
        if imp is None:
            continue
        name = _unique(_image_file_name(str(imp.getTitle())), used)
        IJ = jc.IJ
        _forget_macro_interpreter()
        IJ.getErrorMessage()  # forget older errors
        IJ.redirectErrorMessages(True)  # a failed save goes to the Log, not a dialog
        try:
            saved = bool(FileSaver(imp).saveAsTiff(str(folder / name)))
            why = None if saved else IJ.getErrorMessage()
        finally:
            IJ.redirectErrorMessages(False)  # (this also clears the error message)
        if not saved:
            why = f": {' '.join(str(why).split())}" if why is not None else ""
            with contextlib.suppress(OSError):
                (folder / name).unlink()  # a partial file
            raise RuntimeError(f"ImageJ could not save the image {str(imp.getTitle())!r} as TIFF{why}")
        written.append(name)
    rm = jc.RoiManager.getInstance()
    if rm is not None:
        data = _roi_zip_bytes(rm)
        if data is not None:
            (folder / "rois.zip").write_bytes(data)
            written.append("rois.zip")
    ResultsTable = jc.ResultsTable
    rt = ResultsTable.getResultsTable()
    if rt is not None and int(rt.size()) > 0:
        write_table(folder / "results.csv", results_to_dataframe(rt))
        written.append("results.csv")
    TextWindow = jc.TextWindow
    frames = WindowManager.getNonImageWindows()
    for w in (list(frames) if frames is not None else []):
        if not isinstance(w, TextWindow):
            continue
        title = str(w.getTitle())
        if title in ("Log", "Results"):
            continue
        table = w.getResultsTable()
        if table is None or int(table.size()) == 0:
            continue
        name = _unique(_safe_name(title, "table") + ".csv", used)
        if name.lower().endswith(".csv.csv"):
            name = _unique(name[:-4], used)
        write_table(folder / name, results_to_dataframe(table))
        written.append(name)
    if log_text.strip():
        (folder / "log.txt").write_text(log_text.rstrip("\n") + "\n", encoding="utf-8")
        written.append("log.txt")
    return written


def _forget_macro_interpreter() -> None:
    """Clear ``IJ.macroInterpreter``, which a macro stopped inside ``run()`` leaves set.

    While it is set, ``IJ.error`` hands its message to that (finished) macro
    instead of recording it, and the reason of a failed save would be lost.
    """
    try:
        field = jc.IJ.class_.getDeclaredField("macroInterpreter")
        field.setAccessible(True)
        field.set(None, None)
    except Exception:  # pragma: no cover - another ImageJ version
        pass


def _save_without_dialogs(folder: Path, log_text: str) -> list[str]:
    """:func:`save_open_state`, with every ImageJ dialog closed and turned into an error.

    ImageJ answers a failed save (a full disk, a permission) with an error
    dialog that would wait forever for a click nobody can give on a virtual
    display. Its errors are redirected to the Log, and a watcher closes any
    dialog that still opens; either way the file fails with the message.
    """
    from ..commands.runner import closing_dialogs

    with closing_dialogs() as dialog_errors:
        written = save_open_state(folder, log_text=log_text)
    if dialog_errors:
        raise RuntimeError("ImageJ reported while saving: " + " | ".join(" ".join(e.split())
                                                                        for e in dialog_errors))
    return written


def check_readable(path: str | os.PathLike) -> str | None:
    """Why a file cannot be an image, from a cheap look at it; None when it may be one.

    Catches what ImageJ would open silently as garbage: empty files and TIFFs
    whose pixel data run past the end of the file (ImageJ reads those as zeros).
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return "empty file (0 bytes)"
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head[:4] not in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return None
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.pages:
                return "corrupt TIFF: no image in the file (tifffile)"
            for index, page in enumerate(tif.pages):
                offsets = getattr(page, "dataoffsets", ()) or ()
                counts = getattr(page, "databytecounts", ()) or ()
                for off, cnt in zip(offsets, counts):
                    if off + cnt > size:
                        return (f"truncated TIFF: the pixel data of image {index + 1} end at byte "
                                f"{off + cnt}, but the file has only {size} bytes (tifffile)")
    except Exception as exc:  # noqa: BLE001 - any reader failure is the message
        return f"corrupt TIFF: {exc} (tifffile)"
    return None



class ImageJSession:
    """One ImageJ in this process that processes batch files one after the other.

    Parameters
    ----------
    imagej : str, optional
        ImageJ location (see :func:`ij_bridge.start`).
    mode : str
        Display mode for a JVM that is not running yet; ``"virtual"`` (default)
        keeps windows off any screen. Ignored when ImageJ already runs.
    """

    def __init__(self, imagej: str | None = None, mode: str = "virtual") -> None:
        from ..commands import install_commands
        from ..imagej import runtime

        if mode == "headless":
            raise BatchError("batch runs need a (virtual) display in ImageJ 1.x: use mode 'virtual' (needs Xvfb)")
        if not runtime.is_started():
            runtime.start(imagej, mode=mode)
        install_commands()
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.lock = threading.RLock()

    # -- one file -----------------------------------------------------------
    def open_image(self, path: str) -> tuple[Any, str | None]:
        """Open ``path`` in ImageJ (not shown): ``(ImagePlus, None)``, or ``(None, why not)``.

        A file that cannot be an image (:func:`check_readable`) is not handed
        to ImageJ; the reader's errors go to the Log, never to a dialog.
        """
        IJ = jc.IJ
        reason = check_readable(path)
        if reason is not None:
            return None, reason
        import jpype

        IJ.redirectErrorMessages(True)  # the reader's error goes to the Log, not a dialog
        IJ.getErrorMessage()
        try:
            imp = IJ.openImage(path)
        except jpype.JException as exc:
            return None, f"ImageJ could not open the file: {exc.getClass().getSimpleName()}: {exc.getMessage()}"
        finally:
            IJ.redirectErrorMessages(False)
        message = IJ.getErrorMessage()
        if imp is None:
            text = " ".join(str(message).split()) if message is not None else \
                "ImageJ does not recognise this file as an image (unsupported format)"
            return None, f"ImageJ could not open the file: {text}"
        if int(imp.getWidth()) == 0 or int(imp.getHeight()) == 0:
            return None, (f"not an image: ImageJ read {int(imp.getWidth())}x{int(imp.getHeight())} "
                          "pixels from it")
        return imp, None

    _open = open_image  # the name cli/batch.py used before open_image

    def process(self, task: Task | dict) -> dict:
        """Process one file: open, run the macro, save, publish the output folder.

        Returns the completion record (a dict, also written as ``.ij-bridge.json``).
        """
        if isinstance(task, dict):
            task = Task(**task)
        with self.lock:
            return self._process(task)

    def _process(self, task: Task) -> dict:
        from ..commands import run_macro

        t0 = time.perf_counter()
        root = Path(task.output_root)
        staging = root / STAGING_NAME / f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        staging.mkdir(parents=True)
        status, error, messages, outputs = "failed", "", [], []
        stop = ""
        try:
            stamp = _input_stamp(task.input)
        except OSError as exc:
            stamp = {}
            error = f"cannot read the input file: {exc}"
        log_text = ""
        try:
            if not error:
                from ..commands.runner import closing_dialogs

                with closing_dialogs() as dialogs:  # no dialog may wait while the file opens
                    reset_imagej()
                    imp, error = self.open_image(task.input)
                    error = error or ""
                    if imp is not None:
                        ensure_roi_manager()
                        imp.show()
                if dialogs and not error:
                    imp, error = None, "ImageJ reported while opening the file: " + " | ".join(
                        " ".join(d.split()) for d in dialogs)
                if imp is not None:
                    arg = macro_argument(task.input, f"{staging}{os.sep}", Path(task.output_dir).name,
                                         task.arg)
                    result = run_macro(task.macro + _EPILOGUE, arg, timeout=task.timeout,
                                       exit_ok=task.exit_ok)
                    log_text = result.output
                    messages = list(result.messages)
                    changed = _input_stamp(task.input) != stamp if os.path.exists(task.input) else True
                    if changed:
                        error = (f"macro {task.macro_name} changed or removed its input file (e.g. with "
                                 "run(\"Save\")); save results into the output folder instead. The batch "
                                 "stopped here, so that it does not change the other inputs too")
                        stop = f"the batch stopped at {task.relative}, whose input the macro changed"
                    elif result.cancelled == "time limit":
                        error = (f"time limit: the macro ran past --timeout {task.timeout:g} s and was "
                                 "stopped; nothing of this file was saved")
                    elif result.ok:
                        outputs = sorted(p.name for p in staging.iterdir())  # saved by the macro
                        outputs += _save_without_dialogs(staging, log_text)
                        status = "ok"
                    else:
                        error = f"macro {task.macro_name} failed: {result.error}"
        except Exception as exc:  # noqa: BLE001 - recorded, the batch goes on
            error = f"{type(exc).__name__}: {exc}"
        finally:
            with contextlib.suppress(Exception):
                reset_imagej()
        if status != "ok":
            # keep nothing half-made; the Log helps to see why
            for p in staging.iterdir():
                if p.is_dir():
                    shutil.rmtree(p)
                else:
                    p.unlink()
            outputs = []
            if log_text.strip():
                try:
                    (staging / "log.txt").write_text(log_text.rstrip("\n") + "\n", encoding="utf-8")
                    outputs = ["log.txt"]
                except OSError:  # a full disk: the record matters more
                    with contextlib.suppress(OSError):
                        (staging / "log.txt").unlink()
        record = {
            "input": task.relative,
            "status": status,
            "error": error,
            "messages": messages,
            "seconds": round(time.perf_counter() - t0, 4),
            "outputs": outputs,
            "macro": task.macro_name,
            "macro_sha256": task.macro_sha256,
            "worker": self.worker,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **stamp,
        }
        if stop:
            record["stop"] = stop
        try:
            (staging / RECORD_NAME).write_text(json.dumps(record, indent=1), encoding="utf-8")
        except OSError as exc:  # e.g. the disk is full: report it, publish nothing
            shutil.rmtree(staging, ignore_errors=True)
            record.update(status="failed", outputs=[],
                          error=(record["error"] + "; " if record["error"] else "")
                          + f"cannot write into the output folder: {exc}")
            return record
        _fix_modes(staging)
        try:
            _publish(staging, Path(task.output_dir), into_existing=task.into_existing)
        except (BatchError, OSError) as exc:  # e.g. a folder that appeared meanwhile: never replaced
            shutil.rmtree(staging, ignore_errors=True)
            record.update(status="failed", outputs=[],
                          error=f"outputs not saved into {task.output_dir}: {exc}")
        return record

