"""Batch runs on a Dask distributed cluster: one ImageJ per Dask worker process, kept between files."""

from __future__ import annotations

import hashlib
import threading
import uuid
from dataclasses import asdict
from typing import Any, Callable

from .. import cancel
from .plan import BatchError, FileResult, Task, _failed, _not_run, _result_from_record
from .session import ImageJSession

__all__ = ["dask_process"]

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

