"""The local worker pool of a batch run: worker processes, their time limits, their replacement.

Each worker is a ``python -m ij_bridge.batch --worker`` child with its own JVM
and virtual display (:func:`worker_main`); it reads JSON-line tasks on stdin
and answers one completion record per task. A worker that dies or does not
answer within its file's time limit is killed and replaced, and the file it
held is recorded as failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

from .. import cancel
from .plan import FileResult, Task, _failed, _not_run, _result_from_record
from .session import ImageJSession

__all__ = ["WORKER_STARTUP_LIMIT", "WORKER_GRACE", "worker_main"]

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



# =========================================================================== worker entry
def worker_main(argv: Sequence[str]) -> int:
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


_worker_main = worker_main  # its name before the batch package
