"""Headless batch runs of an ImageJ macro over a folder of files.

For every input file the runner

1. opens it in ImageJ (``IJ.openImage``); a file ImageJ cannot read (empty,
   truncated or corrupt TIFF, unsupported format) is recorded as failed with
   the reader's message;
2. runs the macro with the file as the active image and every IJ Bridge
   command installed (:func:`ij_bridge.commands.run_macro`: errors, dialogs
   nobody can answer and time-outs are caught and recorded);
3. saves what is open afterwards into ``OUTPUT/<relative folder>/<file stem>/``:

   =========================  ===============================================
   ``<image title>.tif``      every open image, as an ImageJ TIFF written by
                              ImageJ itself (calibration, overlay, LUTs kept);
                              an image extension in the title is dropped
   ``rois.zip``               the ROI Manager, if it holds ROIs
   ``results.csv``            the Results table, if it has rows (full precision)
   ``<table title>.csv``      every other open table (e.g. ``Summary.csv``)
   ``log.txt``                what the macro wrote to the Log, if anything
   *files the macro saved*    anything the macro wrote into its output folder
   ``.ij-bridge.json``        the completion record (status, error, outputs)
   =========================  ===============================================

   The folder is assembled in a staging area and moved into place in one
   rename, completion record included, so a killed run never leaves a folder
   that looks done. Two inputs whose stems collide in one folder
   (``a.tif``, ``a.png``) get ``a_tif/`` and ``a_png/``;
4. resets ImageJ (images, ROI Manager, Results, tables, Log) for the next file.

``OUTPUT/summary.csv`` lists every file: ``input, status, error, messages,
seconds, outputs, output_dir, resumed, worker`` (written atomically, also
during the run, where unfinished files say ``pending``).

The macro's ``getArgument()`` is an options string in ImageJ's own format::

    input=[/abs/path/in/sub/a.tif] output=[/abs/path/to/staging/folder/] name=[a] arg=[--arg value]

read a value with ``call("ij.Macro.getValue", getArgument(), "output", "")``
(a value with an unmatched bracket, such as a file named ``x].tif``, comes
single-quoted, ``input='/abs/x].tif'``, which ``Macro.getValue`` reads too);
files the macro saves under ``output`` become part of that file's outputs.

Parallel runs
-------------
``workers=N`` (also N = 1) starts N worker processes (``python -m ij_bridge.batch
--worker``), each with its own JVM and its own virtual display; ImageJ and the
commands (and any model a command caches) stay loaded from file to file. A
worker that dies (a JVM crash) is replaced and the file it held is recorded as
failed, so one bad file never ends the batch. When ImageJ already runs in the
calling process (a notebook), one-worker runs use that ImageJ instead
(``in_process``). ``scheduler=ADDRESS`` sends the files to a Dask distributed cluster
instead: each Dask worker process starts one ImageJ on its first file and
keeps it (see ``docs/batch.md``).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from . import cancel
from .io import default_file_mode

__all__ = [
    "BatchError", "FileResult", "BatchReport", "Task", "plan_batch", "run_batch",
    "ImageJSession", "save_open_state", "reset_imagej", "RECORD_NAME", "SUMMARY_NAME",
]

RECORD_NAME = ".ij-bridge.json"
SUMMARY_NAME = "summary.csv"
STAGING_NAME = ".ij-bridge-staging"
LOCK_NAME = ".ij-bridge.lock"
SUMMARY_COLUMNS = ["input", "status", "error", "messages", "seconds", "outputs", "output_dir",
                   "resumed", "worker"]
# extensions dropped from image titles when naming the saved TIFF
_IMAGE_EXTENSIONS = {
    ".tif", ".tiff", ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".zip", ".czi", ".nd2", ".lif",
    ".lsm", ".dcm", ".dicom", ".fits", ".fit", ".pgm", ".raw", ".ome", ".ics", ".ids", ".avi",
    ".txt", ".csv", ".jp2", ".ims", ".oib", ".oif", ".vsi", ".svs",
}
# appended to the user's macro: images and ROIs made in batch mode would vanish
# when the macro ends in batch mode; this shows them so they can be saved.
_EPILOGUE = '\n;if (is("Batch Mode")) setBatchMode("exit and display");\n'


class BatchError(ValueError):
    """A batch run that cannot start (bad folders, pattern, macro); the message names the fix."""


# =========================================================================== plan
@dataclass
class Task:
    """One input file of a batch run (JSON-serialisable, sent to workers)."""

    input: str            # absolute path of the input file
    relative: str         # its path relative to the input folder (POSIX separators)
    output_dir: str       # absolute path of its output folder
    output_root: str      # the batch's output folder
    macro: str            # macro source code
    macro_sha256: str
    macro_name: str
    arg: str = ""
    timeout: float | None = None
    into_existing: bool = False  # may write into a folder holding things ij-bridge did not write
    exit_ok: bool = False  # exit("message") is a normal end, not a failure


@dataclass
class FileResult:
    """The outcome for one input file (one row of ``summary.csv``)."""

    input: str
    status: str                      # "ok", "failed" or "pending"
    error: str = ""
    messages: str = ""
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)
    output_dir: str = ""
    resumed: bool = False
    worker: str = ""

    def row(self) -> dict[str, Any]:
        d = asdict(self)
        d["outputs"] = ";".join(self.outputs)
        d["seconds"] = f"{self.seconds:.3f}"
        return d


@dataclass
class BatchReport:
    """What :func:`run_batch` did."""

    results: list[FileResult]
    summary: Path
    seconds: float

    @property
    def n_ok(self) -> int:
        return sum(r.status == "ok" for r in self.results)

    @property
    def n_failed(self) -> int:
        return sum(r.status == "failed" for r in self.results)

    @property
    def n_resumed(self) -> int:
        return sum(r.resumed for r in self.results)


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _own_record(folder: Path) -> dict | None:
    """The completion record in ``folder`` if it is one of ours (a JSON object with our keys)."""
    try:
        rec = json.loads((folder / RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or not {"status", "outputs", "macro_sha256"} <= set(rec):
        return None
    return rec


def _plain_names(names: Any) -> set[str]:
    """The entries of a record's ``outputs`` that are plain names inside the folder (never a path)."""
    if not isinstance(names, list):
        return set()
    return {n for n in names if isinstance(n, str) and n not in ("", ".", "..", RECORD_NAME)
            and "/" not in n and "\\" not in n and n == Path(n).name}


def existing_output(folder: str | os.PathLike) -> tuple[str, list[str]]:
    """What stands at an output folder: ``("absent"|"empty"|"ours"|"foreign"|"file", names)``.

    ``"ours"``: it holds our completion record and only what that record lists,
    so the batch may replace it as a whole. ``"foreign"``: it holds things
    ij-bridge did not write (``names``: those entries); it is never replaced
    or deleted, and is written into only with ``into_existing``.
    """
    folder = Path(folder)
    if not os.path.lexists(folder):
        return "absent", []
    if folder.is_symlink() or not folder.is_dir():
        return "file", [folder.name]
    names = sorted(os.listdir(folder))
    if not names:
        return "empty", []
    rec = _own_record(folder)
    if rec is None:
        return "foreign", names
    extra = [n for n in names if n != RECORD_NAME and n not in _plain_names(rec.get("outputs"))]
    return ("foreign", extra) if extra else ("ours", [])


def _check_existing_outputs(tasks: list["Task"], out: Path, into_existing: bool) -> None:
    """Before any work: every output folder must be absent, empty or one of ours (or ``into_existing``)."""
    problems = []
    for t in tasks:
        target = Path(t.output_dir)
        for parent in [p for p in target.relative_to(out).parents if str(p) != "."]:
            if (out / parent).exists() and not (out / parent).is_dir():
                raise BatchError(f"{str(out / parent)!r} is a file where the batch needs a folder for "
                                 f"{t.relative!r}; move it away or choose another output folder")
        kind, names = existing_output(target)
        if kind == "file":
            raise BatchError(f"{str(target)!r} is a file where the batch needs the output folder of "
                             f"{t.relative!r}; move it away or choose another output folder")
        if kind == "foreign" and not into_existing:
            shown = ", ".join(names[:3]) + (f" (+{len(names) - 3} more)" if len(names) > 3 else "")
            problems.append(f"{str(target)!r} (holds {shown})")
    summary = out / SUMMARY_NAME
    if summary.exists() and not into_existing:
        try:
            with open(summary, encoding="utf-8", errors="replace") as fh:
                first = fh.readline()
        except OSError:
            first = ""
        if not first.startswith("input,status"):
            problems.append(f"{str(summary)!r} (not a summary written by ij-bridge)")
    if problems:
        raise BatchError(
            f"{len(problems)} output folder(s) or file(s) exist that ij-bridge did not write, e.g. "
            f"{problems[0]}; they are never replaced or deleted: choose another --output, move them "
            "away, or pass --into-existing (into_existing=True) to write into them (files of the "
            "names the batch writes are replaced, nothing else is removed)")


def _safe_name(text: str, fallback: str) -> str:
    name = re.sub(r"[^\w.\-+=,() ]+", "_", text).strip(" .")
    return name or fallback


def plan_batch(macro: str | os.PathLike, input_dir: str | os.PathLike, output_dir: str | os.PathLike,
               pattern: str = "*", *, arg: str = "", timeout: float | None = None,
               into_existing: bool = False, exit_ok: bool = False) -> list[Task]:
    """Check the arguments of a batch run and list its files, before any work starts.

    Parameters
    ----------
    macro : path
        The ``.ijm`` macro file.
    input_dir, output_dir : path
        Input folder (never written to) and output folder (created if needed).
    pattern : str
        Glob relative to ``input_dir`` (``"*.tif"``; ``"**/*.tif"`` for sub-folders).
        Hidden files (a name starting with ``.``) and folders are skipped.
    arg : str
        Passed to the macro as ``arg=[...]`` in ``getArgument()``.
    timeout : float, optional
        Seconds after which one file's macro is stopped (and the file failed with
        ``time limit``); a running IJ Bridge command stops at its next step.
    exit_ok : bool
        Treat the macro's ``exit("message")`` as a normal end; by default the
        file fails with the message as its error.
    into_existing : bool
        Allow output folders (and a ``summary.csv``) that hold things ij-bridge
        did not write, and an output folder that contains the input folder:
        the batch then writes into them, replacing files of the names it
        writes and removing nothing else.

    Returns
    -------
    list of Task
        In sorted order of the relative paths.

    Raises
    ------
    BatchError
        Missing folders or macro, output folder equal to or inside the input
        folder (or, without ``into_existing``, one that contains it), a
        read-only output folder, an existing output folder that ij-bridge did
        not write (without ``into_existing``), no matching files.
    """
    macro_path = Path(macro).expanduser()
    if not macro_path.is_file():
        raise BatchError(f"macro file {str(macro_path)!r} does not exist")
    try:
        code = macro_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BatchError(f"macro file {str(macro_path)!r} is not UTF-8 text: {exc}") from None
    inp = Path(input_dir).expanduser().resolve()
    if not inp.is_dir():
        raise BatchError(f"input folder {str(inp)!r} does not exist or is not a folder")
    out = Path(output_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise BatchError(f"output {str(out)!r} exists and is not a folder")
    if _is_within(out, inp):
        raise BatchError(
            f"the output folder {str(out)!r} is {'the input folder' if out == inp else 'inside the input folder'} "
            f"{str(inp)!r}; the batch never writes into its input: choose an output folder outside it"
        )
    if _is_within(inp, out) and not into_existing:
        raise BatchError(
            f"the output folder {str(out)!r} contains the input folder {str(inp)!r}: the batch would write "
            "its folders and summary.csv beside your data; choose an output folder apart from the input, "
            "or pass --into-existing (into_existing=True) to write there anyway")
    from .model_files import DestinationError, check_output_folder

    try:
        check_output_folder(out, option="output folder")
    except DestinationError as exc:
        raise BatchError(str(exc)) from None
    if not pattern or Path(pattern).is_absolute() or ".." in Path(pattern).parts:
        raise BatchError(f"--pattern {pattern!r} must be a glob relative to the input folder, e.g. '*.tif'")
    files = sorted(
        p for p in inp.glob(pattern)
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(inp).parts)
    )
    if not files:
        raise BatchError(f"no files match {pattern!r} in {str(inp)!r}")
    # output folders: <relative folder>/<stem>, or <stem>_<ext> where stems collide
    keys = [(p.relative_to(inp).parent, p.stem) for p in files]
    counts: dict[tuple[Path, str], int] = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    sha = hashlib.sha256(code.encode("utf-8")).hexdigest()
    tasks = []
    for p, (parent, stem) in zip(files, keys):
        name = stem if counts[(parent, stem)] == 1 else f"{stem}_{p.suffix.lstrip('.')}"
        name = _safe_name(name, "file")
        target = (out / parent / name)
        if _is_within(target, inp) or _is_within(inp, target):
            raise BatchError(f"the output folder for {p.name!r} would be {str(target)!r}, which overlaps "
                             f"the input folder {str(inp)!r}; choose an output folder apart from the input")
        try:  # every value must reach the macro whole (a file named x].tif is quoted, not cut)
            macro_argument(str(p), str(target) + os.sep, name, arg)
        except ValueError as exc:
            raise BatchError(f"{p.name!r} or --arg cannot be passed to the macro: {exc}") from None
        tasks.append(Task(
            input=str(p), relative=p.relative_to(inp).as_posix(), output_dir=str(target),
            output_root=str(out), macro=code, macro_sha256=sha, macro_name=macro_path.name,
            arg=arg, timeout=timeout, into_existing=into_existing, exit_ok=exit_ok,
        ))
    _check_existing_outputs(tasks, out, into_existing)
    return tasks


def macro_argument(input: str, output: str, name: str, arg: str) -> str:
    """The macro's ``getArgument()``: ``input=[...] output=[...] name=[...] arg=[...]``.

    Values are quoted so that ``ij.Macro.getValue`` gives each back whole: ``[...]``,
    or ``'...'`` for a value with an unmatched bracket (a file named ``x].tif``).

    Raises
    ------
    ValueError
        For a value that ImageJ's options cannot carry (see
        :func:`ij_bridge.commands.registry.quote_option`).
    """
    from .commands.registry import _imagej_value, quote_option

    values = {"input": input, "output": output, "name": name, "arg": arg}
    text = " ".join(f"{k}={quote_option(v)}" for k, v in values.items())
    for key, value in values.items():  # a folder named "output=x" would shadow the real output=
        if _imagej_value(text, key) != value:
            culprit = next((v for k, v in values.items() if k != key and f"{key}=" in v), value)
            raise ValueError(f"{culprit!r} contains '{key}=', which ImageJ's Macro.getValue would "
                             f"take for the {key} value; rename it")
    return text


def _input_stamp(path: str) -> dict[str, int]:
    st = os.stat(path)
    return {"input_size": int(st.st_size), "input_mtime_ns": int(st.st_mtime_ns)}


def read_record(task: Task) -> dict | None:
    """The completion record of ``task``'s output folder, or None."""
    try:
        return json.loads((Path(task.output_dir) / RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_done(task: Task) -> dict | None:
    """The record if ``task`` finished OK with the same macro and unchanged input, else None."""
    rec = read_record(task)
    if not rec or rec.get("status") != "ok" or rec.get("macro_sha256") != task.macro_sha256:
        return None
    try:
        stamp = _input_stamp(task.input)
    except OSError:
        return None
    if any(rec.get(k) != v for k, v in stamp.items()):
        return None
    return rec


# =========================================================================== ImageJ side
def _j(name: str):
    import jpype

    return jpype.JClass(name)


def reset_imagej() -> None:
    """Close every image and table, empty the ROI Manager, Results and Log.

    Images are closed without a "save changes?" question; the Log window stays
    open but empty. ImageJ's settings (Set Measurements, binary options) are
    left as the macro set them.
    """
    WindowManager = _j("ij.WindowManager")
    Interpreter = _j("ij.macro.Interpreter")
    IJ = _j("ij.IJ")
    Interpreter.batchMode = False
    ids = WindowManager.getIDList()
    for i in (list(ids) if ids is not None else []):
        imp = WindowManager.getImage(int(i))
        if imp is not None:
            imp.changes = False
            imp.close()
    WindowManager.setTempCurrentImage(None)
    rm = _j("ij.plugin.frame.RoiManager").getInstance()
    if rm is not None:
        rm.reset()
    _j("ij.measure.ResultsTable").getResultsTable().reset()
    TextWindow = _j("ij.text.TextWindow")
    frames = WindowManager.getNonImageWindows()
    for w in (list(frames) if frames is not None else []):
        if isinstance(w, TextWindow) and str(w.getTitle()) not in ("Log", "Results"):
            w.close(False)
    results_window = WindowManager.getWindow("Results")
    if results_window is not None and isinstance(results_window, TextWindow):
        results_window.close(False)
    IJ.log("\\Clear")


def _ensure_roi_manager() -> None:
    """Create the (unseen) ROI Manager, so that batch-mode macros use it, not a hidden one."""
    RoiManager = _j("ij.plugin.frame.RoiManager")
    if RoiManager.getInstance() is None:
        RoiManager()


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

    RoiEncoder = _j("ij.io.RoiEncoder")
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
    from .imagej.tables import results_to_dataframe
    from .io import write_table

    folder = Path(folder)
    WindowManager = _j("ij.WindowManager")
    FileSaver = _j("ij.io.FileSaver")
    written: list[str] = []
    used = {p.name.lower() for p in folder.iterdir()}
    used |= {"rois.zip", "results.csv", "log.txt", RECORD_NAME}
    ids = WindowManager.getIDList()
    for i in sorted((int(x) for x in ids) if ids is not None else [], key=abs):
        imp = WindowManager.getImage(i)
        if imp is None:
            continue
        name = _unique(_image_file_name(str(imp.getTitle())), used)
        IJ = _j("ij.IJ")
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
    rm = _j("ij.plugin.frame.RoiManager").getInstance()
    if rm is not None:
        data = _roi_zip_bytes(rm)
        if data is not None:
            (folder / "rois.zip").write_bytes(data)
            written.append("rois.zip")
    ResultsTable = _j("ij.measure.ResultsTable")
    rt = ResultsTable.getResultsTable()
    if rt is not None and int(rt.size()) > 0:
        write_table(folder / "results.csv", results_to_dataframe(rt))
        written.append("results.csv")
    TextWindow = _j("ij.text.TextWindow")
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
        field = _j("ij.IJ").class_.getDeclaredField("macroInterpreter")
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
    from .commands.runner import closing_dialogs

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
        from .commands import install_commands
        from .imagej import runtime

        if mode == "headless":
            raise BatchError("batch runs need a (virtual) display in ImageJ 1.x: use mode 'virtual' (needs Xvfb)")
        if not runtime.is_started():
            runtime.start(imagej, mode=mode)
        install_commands()
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.lock = threading.RLock()

    # -- one file -----------------------------------------------------------
    def _open(self, path: str):
        IJ = _j("ij.IJ")
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

    def process(self, task: Task | dict) -> dict:
        """Process one file: open, run the macro, save, publish the output folder.

        Returns the completion record (a dict, also written as ``.ij-bridge.json``).
        """
        if isinstance(task, dict):
            task = Task(**task)
        with self.lock:
            return self._process(task)

    def _process(self, task: Task) -> dict:
        from .commands import run_macro

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
                from .commands.runner import closing_dialogs

                with closing_dialogs() as dialogs:  # no dialog may wait while the file opens
                    reset_imagej()
                    imp, error = self._open(task.input)
                    error = error or ""
                    if imp is not None:
                        _ensure_roi_manager()
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


def _fix_modes(folder: Path) -> None:
    """Give files the permissions of a plain ``open()`` (temporary files are created 0600)."""
    mode = default_file_mode()
    for p in folder.iterdir():
        if p.is_file():
            with contextlib.suppress(OSError):
                os.chmod(p, mode)


def _publish(staging: Path, final: Path, *, into_existing: bool = False) -> None:
    """Move the finished staging folder to ``final``.

    ``final`` absent: one rename. ``final`` one of ours (our record and only
    what it lists): exchanged in one step (the old one is then removed).
    ``final`` empty, or foreign with ``into_existing``: the new entries are
    moved into it, replacing the old record's outputs and files of the same
    names; the record goes last, so a killed run never leaves a folder that
    looks done. A foreign folder without ``into_existing`` raises
    :class:`BatchError` and is not touched.
    """
    from .model_files import replace_path

    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise BatchError(f"{str(final.parent)!r} is a file, not a folder") from None
    kind, names = existing_output(final)
    if kind == "absent":
        replace_path(staging, final)
        return
    if kind == "ours":
        replace_path(staging, final, overwrite=True)
        return
    if kind == "file" or (kind == "foreign" and not into_existing):
        raise BatchError(f"{str(final)!r} holds {', '.join(names[:3])}, which ij-bridge did not write; "
                         "it is never replaced (pass --into-existing to write into it)")
    old = _own_record(final)
    new = sorted(n for n in os.listdir(staging) if n != RECORD_NAME)
    for n in new:  # a folder of the same name that we did not write is never replaced
        target = final / n
        if target.is_dir() and not target.is_symlink() and (old is None or n not in _plain_names(old.get("outputs"))):
            raise BatchError(f"{str(target)!r} is a folder that ij-bridge did not write, where the batch "
                             f"would save {n!r}; move it away")
    with contextlib.suppress(FileNotFoundError):
        (final / RECORD_NAME).unlink()  # from here on the folder does not look done
    if old is not None:
        for n in _plain_names(old.get("outputs")) - set(new):  # stale outputs of our earlier run
            p = final / n
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
    for n in new:
        replace_path(staging / n, final / n, overwrite=True)
    replace_path(staging / RECORD_NAME, final / RECORD_NAME, overwrite=True)
    with contextlib.suppress(OSError):
        staging.rmdir()


# =========================================================================== executors
def _result_from_record(task: Task, rec: dict, resumed: bool = False) -> FileResult:
    msgs = rec.get("messages") or []
    return FileResult(
        input=task.relative, status=rec.get("status", "failed"), error=rec.get("error", "") or "",
        messages=" | ".join(" ".join(str(m).split()) for m in msgs), seconds=float(rec.get("seconds", 0.0)),
        outputs=list(rec.get("outputs", [])), output_dir=task.output_dir, resumed=resumed,
        worker=rec.get("worker", ""),
    )


def _failed(task: Task, error: str, worker: str = "", seconds: float = 0.0) -> FileResult:
    return FileResult(input=task.relative, status="failed", error=error, seconds=seconds,
                      output_dir=task.output_dir, worker=worker)


def _run_inline(tasks: list[Task], on_result: Callable[[int, FileResult], None], imagej: str | None,
                mode: str) -> None:
    from .imagej.runtime import HeadlessError, ImageJNotFoundError

    try:
        session = ImageJSession(imagej, mode)
    except (ImageJNotFoundError, HeadlessError) as exc:
        raise BatchError(str(exc)) from None
    stop = ""
    for i, task in enumerate(tasks):
        cancel.check()
        if stop:
            on_result(i, _not_run(task, stop))
            continue
        rec = session.process(task)
        stop = rec.get("stop", "")
        on_result(i, _result_from_record(task, rec))


#: seconds a worker may take to start ImageJ before it is killed
WORKER_STARTUP_LIMIT = 300.0
#: seconds past a file's --timeout before its worker is killed (the worker stops the
#: macro itself at the time limit; this is for a worker stuck in Java); the
#: environment variable IJ_BRIDGE_BATCH_GRACE overrides it
WORKER_GRACE = 30.0


class _WorkerTimeLimit(RuntimeError):
    """A worker did not answer within its file's time limit (it was killed)."""


class _WorkerProcess:
    """A ``python -m ij_bridge.batch --worker`` child: JSON lines in, JSON lines out.

    The worker first writes ``{"ready": true}`` once ImageJ runs, then one
    record per task. A reader thread queues its lines so that :meth:`call` can
    wait with a time limit and kill a worker that does not answer.
    """

    def __init__(self, index: int, imagej: str | None, mode: str, log_dir: Path, threads: int) -> None:
        self.index = index
        self.log_path = log_dir / f"worker-{index}.log"
        cmd = [sys.executable, "-m", "ij_bridge.batch", "--worker", "--mode", mode]
        if imagej:
            cmd += ["--imagej", str(imagej)]
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, str(threads))
        env["IJ_BRIDGE_TORCH_THREADS"] = env.get("IJ_BRIDGE_TORCH_THREADS", str(threads))
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                     text=True, bufsize=1, env=env)
        self.ready = False
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, name=f"ij-bridge worker-{index} reader", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                self._lines.put(line)
        except (OSError, ValueError):  # pragma: no cover - the pipe closed under us
            pass
        self._lines.put("")  # end of output: the worker exited

    def log_tail(self, n: int = 1500) -> str:
        try:
            data = self.log_path.read_bytes()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""
        return " ".join(data.split())

    def _next_reply(self, limit: float | None) -> str:
        try:
            return self._lines.get(timeout=limit)
        except queue.Empty:
            self.kill()
            raise _WorkerTimeLimit(limit) from None

    def call(self, task: Task) -> dict:
        """Send ``task``, wait for its record; kill the worker if it takes too long."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(asdict(task)) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it died: the reader reports the end of its output
        grace = float(os.environ.get("IJ_BRIDGE_BATCH_GRACE", WORKER_GRACE))
        limit = None if task.timeout is None else float(task.timeout) + grace
        while True:
            if not self.ready:
                try:
                    line = self._next_reply(WORKER_STARTUP_LIMIT)
                except _WorkerTimeLimit:
                    raise RuntimeError(f"worker process {self.proc.pid} did not start ImageJ within "
                                       f"{WORKER_STARTUP_LIMIT:g} s and was killed") from None
            else:
                try:
                    line = self._next_reply(limit)
                except _WorkerTimeLimit:
                    raise _WorkerTimeLimit(
                        f"time limit: the file ran past --timeout {task.timeout:g} s and its worker did "
                        f"not stop it within {grace:g} s more; the worker (pid {self.proc.pid}) was killed "
                        "and replaced") from None
            if not line:
                rc = self.proc.wait()
                raise RuntimeError(f"worker process {self.proc.pid} died (exit status {rc}) while processing "
                                   f"the file; its last output: {self.log_tail()}")
            reply = json.loads(line)
            if "fatal" in reply:
                raise RuntimeError(reply["fatal"])
            if reply.get("ready"):
                self.ready = True
                continue
            return reply

    def kill(self) -> None:
        """End the worker now (its JVM goes with it, its virtual display on a parent-death signal)."""
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.proc.stdin:
                self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()
        self._log.close()


def _not_run(task: Task, why: str) -> FileResult:
    return _failed(task, f"not run: {why}")


def _run_pool(tasks: list[Task], on_result: Callable[[int, FileResult], None], imagej: str | None,
              mode: str, workers: int) -> None:
    todo: queue.Queue = queue.Queue()
    for item in enumerate(tasks):
        todo.put(item)
    done: queue.Queue = queue.Queue()
    threads = max(1, (os.cpu_count() or 1) // workers)
    log_dir = Path(tempfile.mkdtemp(prefix="ij-bridge-workers-"))
    fatal: list[str] = []   # no worker can start: the other files are not run
    stop: list[str] = []    # a file's macro changed its input: the batch stops
    closing: list[bool] = []  # the coordinator was interrupted: start nothing more
    live: dict[int, _WorkerProcess] = {}

    def drive(index: int) -> None:
        worker = None
        try:
            while True:
                try:
                    i, task = todo.get_nowait()
                except queue.Empty:
                    return
                if closing:
                    return
                if fatal or stop:
                    done.put((i, _not_run(task, (fatal or stop)[0])))
                    continue
                if worker is None:
                    worker = _WorkerProcess(index, imagej, mode, log_dir, threads)
                    live[index] = worker
                t0 = time.perf_counter()
                try:
                    rec = worker.call(task)
                    if rec.get("stop"):
                        stop.append(rec["stop"])
                    done.put((i, _result_from_record(task, rec)))
                except Exception as exc:  # noqa: BLE001 - the worker died or was killed: record, replace it
                    text = str(exc)
                    done.put((i, _failed(task, text, f"worker-{index}", time.perf_counter() - t0)))
                    worker.close()
                    worker = None
                    live.pop(index, None)
                    if "could not start" in text:
                        fatal.append(text)
        finally:
            if worker is not None:
                worker.close()
            live.pop(index, None)

    drivers = [threading.Thread(target=drive, args=(k,), daemon=True) for k in range(workers)]
    for t in drivers:
        t.start()
    received = 0
    try:
        while received < len(tasks):
            try:
                i, res = done.get(timeout=0.2)
            except queue.Empty:
                cancel.check()  # Ctrl-C, SIGTERM (ij_bridge.cancel): stop the batch
                continue
            received += 1
            on_result(i, res)
    except BaseException:  # Ctrl-C, SIGTERM: the workers end with the coordinator
        closing.append(True)
        for _ in range(2):  # a driver may have been starting a worker meanwhile
            for w in list(live.values()):
                w.kill()
            for t in drivers:
                t.join(5)
        raise
    for t in drivers:
        t.join()
    shutil.rmtree(log_dir, ignore_errors=True)


# -- Dask -------------------------------------------------------------------
_DASK_SESSION: ImageJSession | None = None
_DASK_LOCK = threading.Lock()


def dask_process(task: dict, imagej: str | None = None, mode: str = "virtual") -> dict:
    """Process one file in a Dask worker process (one ImageJ per process, kept between files)."""
    global _DASK_SESSION
    with _DASK_LOCK:  # ImageJ's state is global: one file at a time per process
        if _DASK_SESSION is None:
            _DASK_SESSION = ImageJSession(imagej, mode)
        return _DASK_SESSION.process(task)


def _run_dask(tasks: list[Task], on_result: Callable[[int, FileResult], None], imagej: str | None,
              mode: str, scheduler: Any) -> None:
    try:
        from dask.distributed import Client, as_completed
    except ImportError:  # pragma: no cover - depends on the environment
        raise BatchError("--scheduler needs Dask: pip install 'ij-bridge[dask]' "
                         "(or pip install 'dask[distributed]')") from None
    own = isinstance(scheduler, str)
    try:
        client = Client(scheduler, timeout="30s") if own else scheduler
    except OSError as exc:
        raise BatchError(f"cannot reach the Dask scheduler at {scheduler!r}: {exc}") from None
    try:
        futures, index = [], {}
        for i, task in enumerate(tasks):
            key = f"ij-bridge-{hashlib.sha1(task.output_dir.encode()).hexdigest()[:16]}-{uuid.uuid4().hex[:8]}"
            fut = client.submit(dask_process, asdict(task), imagej, mode, key=key, pure=False)
            futures.append(fut)
            index[fut.key] = i
        reported: set[int] = set()
        for fut in as_completed(futures):
            i = index[fut.key]
            task = tasks[i]
            try:
                rec = fut.result()
                reported.add(i)
                on_result(i, _result_from_record(task, rec))
            except Exception as exc:  # noqa: BLE001 - a task error or a killed worker
                reported.add(i)
                on_result(i, _failed(task, f"Dask task failed: {type(exc).__name__}: {exc}"))
                continue
            cancel.check()
            if rec.get("stop"):  # its macro changed its input: run no further file
                client.cancel([f for f in futures if index[f.key] not in reported])
                for j in range(len(tasks)):
                    if j not in reported:
                        on_result(j, _not_run(tasks[j], rec["stop"]))
                break
    finally:
        if own:
            client.close()


# =========================================================================== coordinator
class _OutputLock:
    """An exclusive lock on the output folder (released by the OS if the run is killed)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_NAME
        self.fh = None

    def __enter__(self) -> "_OutputLock":
        self.fh = open(self.path, "a+")
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no locking
            return self
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.close()
            raise BatchError(f"another ij-bridge batch is writing to {str(self.path.parent)!r}; "
                             "wait for it to finish or choose another output folder") from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(f"{os.getpid()}\n")
        self.fh.flush()
        return self

    def __exit__(self, *exc) -> None:
        if self.fh is not None:
            self.fh.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


def write_summary(path: Path, results: Sequence[FileResult]) -> None:
    """Write ``summary.csv`` atomically (temporary file, then rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=SUMMARY_COLUMNS)
            w.writeheader()
            for r in results:
                w.writerow(r.row())
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def run_batch(
    macro: str | os.PathLike,
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    pattern: str = "*",
    resume: bool = False,
    workers: int = 1,
    scheduler: Any = None,
    arg: str = "",
    timeout: float | None = None,
    imagej: str | None = None,
    mode: str = "virtual",
    progress: Callable[[int, int, str], None] | None = None,
    show_progress: bool = True,
    in_process: bool | None = None,
    into_existing: bool = False,
    exit_ok: bool = False,
) -> BatchReport:
    """Run an ImageJ macro over every matching file of a folder (see the module docs).

    Parameters
    ----------
    macro : path
        The ``.ijm`` macro; it starts with the file open as the active image.
    input_dir, output_dir : path
        Input folder (read only) and output folder.
    pattern : str
        Glob of input files relative to ``input_dir`` (default ``"*"``).
    resume : bool
        Skip files whose output folder holds an OK completion record made by
        the same macro from the same (size, mtime) input. Failed files are redone.
    workers : int
        Number of ImageJ worker processes side by side. A worker that crashes (a JVM
        killed by a bad file) is replaced and its file recorded as failed.
    in_process : bool, optional
        Use the ImageJ of this process instead of worker processes (only with
        ``workers=1``). Default: True when ImageJ already runs in this process (a
        notebook that started it), else False.
    scheduler : str or dask.distributed.Client, optional
        Run on a Dask distributed cluster (scheduler address or client).
    arg : str
        Extra text for the macro (``arg=[...]`` in ``getArgument()``).
    timeout : float, optional
        Stop one file's macro after this many seconds: the file fails with
        ``time limit`` and the batch goes on. A running IJ Bridge command stops
        at its next step; a worker that still does not answer
        :data:`WORKER_GRACE` seconds later is killed and replaced.
    exit_ok : bool
        Treat ``exit("message")`` in the macro as a normal end (default: the
        file fails, with the message as its error).
    imagej, mode
        ImageJ location and display mode for the ImageJ processes.
    progress : callable, optional
        ``progress(done, total, message)`` after each file.
    show_progress : bool
        Show a tqdm progress bar (with ETA) on stderr.
    into_existing : bool
        Write into output folders that hold things ij-bridge did not write
        (and into an output folder that contains the input folder). Without
        it such folders are an error before any work starts. Either way an
        output folder is replaced as a whole only when it holds our completion
        record and nothing else, and nothing ij-bridge did not write is deleted.

    Returns
    -------
    BatchReport
        Per-file results, the summary path and the wall time.
    """
    if workers < 1:
        raise BatchError(f"--workers must be at least 1, got {workers}")
    if workers > 1 and scheduler is not None:
        raise BatchError("give either --workers or --scheduler (Dask decides the workers)")
    if mode == "headless":
        raise BatchError("batch runs need a (virtual) display in ImageJ 1.x: use --mode virtual (needs Xvfb)")
    if timeout is not None and timeout <= 0:
        raise BatchError(f"--timeout must be positive, got {timeout}")
    if in_process is None:
        from .imagej import runtime

        in_process = workers == 1 and scheduler is None and runtime.is_started()
    if in_process and (workers > 1 or scheduler is not None):
        raise BatchError("in_process=True runs one file at a time in this process: use workers=1, no scheduler")
    t0 = time.perf_counter()
    tasks = plan_batch(macro, input_dir, output_dir, pattern, arg=arg, timeout=timeout,
                       into_existing=into_existing, exit_ok=exit_ok)
    out = Path(tasks[0].output_root)
    out.mkdir(parents=True, exist_ok=True)
    summary = out / SUMMARY_NAME
    results: list[FileResult] = [FileResult(input=t.relative, status="pending", output_dir=t.output_dir)
                                 for t in tasks]
    with _OutputLock(out):
        shutil.rmtree(out / STAGING_NAME, ignore_errors=True)  # left by a killed run
        todo_idx = []
        for i, task in enumerate(tasks):
            rec = is_done(task) if resume else None
            if rec is not None:
                results[i] = _result_from_record(task, rec, resumed=True)
            else:
                todo_idx.append(i)
        todo = [tasks[i] for i in todo_idx]
        write_summary(summary, results)
        bar = None
        if show_progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), unit="file", desc="ij-bridge batch", dynamic_ncols=True,
                       file=sys.stderr)
            if len(todo) < len(tasks):
                bar.write(f"resuming: {len(tasks) - len(todo)} of {len(tasks)} files already done")
        state = {"done": 0, "failed": 0, "last_write": time.monotonic()}

        def on_result(j: int, res: FileResult) -> None:
            i = todo_idx[j]
            results[i] = res
            state["done"] += 1
            state["failed"] += res.status != "ok"
            if bar is not None:
                bar.set_postfix(failed=state["failed"], refresh=False)
                bar.update(1)
            if progress is not None:
                progress(state["done"], len(todo), f"{res.input}: {res.status}")
            if time.monotonic() - state["last_write"] > 2.0:
                write_summary(summary, results)
                state["last_write"] = time.monotonic()

        try:
            if todo:
                if scheduler is not None:
                    _run_dask(todo, on_result, imagej, mode, scheduler)
                elif in_process:
                    _run_inline(todo, on_result, imagej, mode)
                else:
                    _run_pool(todo, on_result, imagej, mode, min(workers, len(todo)))
        finally:
            if bar is not None:
                bar.close()
            write_summary(summary, results)
            with contextlib.suppress(OSError):
                (out / STAGING_NAME).rmdir()
    return BatchReport(results=results, summary=summary, seconds=time.perf_counter() - t0)


# =========================================================================== worker entry
def _worker_main(argv: Sequence[str]) -> int:
    """``python -m ij_bridge.batch --worker``: process JSON-line tasks from stdin."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m ij_bridge.batch")
    p.add_argument("--worker", action="store_true", required=True)
    p.add_argument("--imagej", default=None)
    p.add_argument("--mode", default="virtual")
    args = p.parse_args(argv)
    # a Ctrl-C in the terminal reaches the whole process group: the coordinator
    # answers it and ends the workers itself
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # the protocol owns the real stdout; anything else printed goes to stderr
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    threads = os.environ.get("IJ_BRIDGE_TORCH_THREADS")
    if threads:
        import torch

        torch.set_num_threads(max(1, int(threads)))
    try:
        session = ImageJSession(args.imagej, args.mode)
    except Exception as exc:  # noqa: BLE001 - tell the coordinator, then stop
        message = f"a worker could not start ImageJ: {type(exc).__name__}: {exc}"
        for _ in sys.stdin:
            proto.write(json.dumps({"fatal": message}) + "\n")
            proto.flush()
        return 1
    proto.write(json.dumps({"ready": True}) + "\n")
    proto.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        task = Task(**json.loads(line))
        rec = session.process(task)
        proto.write(json.dumps(rec) + "\n")
        proto.flush()
    return 0


if __name__ == "__main__":  # pragma: no cover - the worker process
    sys.exit(_worker_main(sys.argv[1:]))
