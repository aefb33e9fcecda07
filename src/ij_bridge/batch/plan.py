"""Planning and records of a batch run: no Java, no ImageJ.

The files of a run (:func:`plan_batch`, :class:`Task`), what each gave
(:class:`FileResult`, :class:`BatchReport`), the completion record
``.ij-bridge.json`` of an output folder (:func:`read_record`, :func:`is_done`),
``summary.csv`` (:func:`write_summary`), and the checks and moves that keep
output folders safe (:func:`existing_output`, the staging folder's move into
place, the lock on the output folder).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..io import default_file_mode

__all__ = [
    "BatchError", "Task", "FileResult", "BatchReport", "plan_batch", "macro_argument",
    "existing_output", "read_record", "is_done", "write_summary",
    "RECORD_NAME", "SUMMARY_NAME", "STAGING_NAME", "LOCK_NAME", "SUMMARY_COLUMNS",
]

RECORD_NAME = ".ij-bridge.json"
SUMMARY_NAME = "summary.csv"
STAGING_NAME = ".ij-bridge-staging"
LOCK_NAME = ".ij-bridge.lock"
SUMMARY_COLUMNS = ["input", "status", "error", "messages", "seconds", "outputs", "output_dir",
                   "resumed", "worker"]


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
    from ..model_files import DestinationError, check_output_folder

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
    from ..commands.registry import _imagej_value, quote_option

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
    from ..model_files import replace_path

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



def _not_run(task: Task, why: str) -> FileResult:
    return _failed(task, f"not run: {why}")



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

