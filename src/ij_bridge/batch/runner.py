"""The coordinator of a batch run: :func:`run_batch` plans, skips what is done, runs the rest, writes the summary."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

from .. import cancel
from .plan import (STAGING_NAME, SUMMARY_NAME, BatchError, BatchReport, FileResult, Task, _not_run,
                   _OutputLock, _result_from_record, is_done, plan_batch, write_summary)
from .dask import _run_dask
from .pool import _run_pool
from .session import ImageJSession

__all__ = ["run_batch"]

def _run_inline(tasks: list[Task], on_result: Callable[[int, FileResult], None], imagej: str | None,
                mode: str) -> None:
    from ..imagej.runtime import HeadlessError, ImageJNotFoundError

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
        :data:`~ij_bridge.batch.pool.WORKER_GRACE` seconds later is killed and replaced.
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
        from ..imagej import runtime

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

