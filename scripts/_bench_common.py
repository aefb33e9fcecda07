"""Set-up shared by the benchmarks against the original StarDist 0.9.2 (TensorFlow).

Used by ``scripts/bench_stardist.py`` (2D) and ``scripts/bench_stardist3d.py`` (3D):

* :data:`TF_PRELUDE`: the head of every worker script that runs in the original's
  environment (its JSON ``cfg`` from ``argv[1]``, TensorFlow's thread pools set to
  ``cfg["threads"]``, a Keras callback timing each training step in wall and
  process-CPU seconds);
* :func:`original_python` / :func:`ensure_venv`: the interpreter of that environment;
* :func:`run_worker`: one worker run as a subprocess (log file, exit status checked);
* :func:`step_times`, :func:`load_avg`, :func:`set_thread_env`, :func:`thread_report`,
  :func:`write_markdown`: timing and reporting helpers.

Not a module of the package: the scripts import it from their own folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np

#: what the original's environment holds (``ensure_venv`` installs it)
ORIGINAL_REQS = ["tensorflow-cpu==2.15.1", "stardist==0.9.2", "csbdeep==0.8.2", "numpy<2"]

#: head of a worker script run by the original's Python; the rest of the worker follows it
TF_PRELUDE = r'''
import json, os, sys, time
cfg = json.loads(sys.argv[1])
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(cfg["threads"])
tf.config.threading.set_inter_op_parallelism_threads(cfg["threads"])
import stardist, csbdeep


def versions():
    return {"stardist": stardist.__version__, "tensorflow": tf.__version__, "csbdeep": csbdeep.__version__}


def tf_threads():
    return {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}


class StepTimer(tf.keras.callbacks.Callback):
    """Wall and process CPU time between consecutive batch ends within an epoch."""
    def __init__(self):
        super().__init__(); self.t = []; self.c = []; self._last = None
    def on_epoch_begin(self, epoch, logs=None):
        self._last = None
    def on_train_batch_end(self, batch, logs=None):
        now = (time.perf_counter(), time.process_time())
        if self._last is not None:
            self.t.append(now[0] - self._last[0]); self.c.append(now[1] - self._last[1])
        self._last = now


def train_timed(model, X, Y, Xv, Yv, augmenter, epochs, steps):
    """prepare_for_training, then train with a StepTimer: (the timer, the wall seconds of train)."""
    model.prepare_for_training()
    timer = StepTimer()
    model.callbacks.append(timer)
    t0 = time.perf_counter()
    model.train(X, Y, validation_data=(Xv, Yv), augmenter=augmenter, epochs=epochs, steps_per_epoch=steps)
    return timer, time.perf_counter() - t0


def step_medians(timer, warmup):
    """Median wall and CPU seconds per step, the first warmup steps dropped."""
    return {"step_s": float(np.median(timer.t[warmup:] or timer.t)),
            "step_cpu_s": float(np.median(timer.c[warmup:] or timer.c))}

'''


def original_python(venv: Path) -> Path:
    """The Python of an existing environment with the original StarDist, or ``SystemExit`` naming the fix."""
    py = Path(venv) / "bin" / "python"
    if not py.exists():
        raise SystemExit(f"no original StarDist environment at {venv}; create it with "
                         f"{' '.join(repr(r) for r in ORIGINAL_REQS)}, or pass --skip-original")
    return py


def ensure_venv(venv: Path, log: Callable[[str], object] = print) -> Path:
    """Create ``venv`` with the original StarDist (:data:`ORIGINAL_REQS`) if it is missing."""
    py = Path(venv) / "bin" / "python"
    check = [str(py), "-c", "import stardist, tensorflow, csbdeep; assert stardist.__version__ == '0.9.2'"]
    if py.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return py
    log(f"creating {venv} (tensorflow-cpu + stardist 0.9.2; downloads ~600 MB once)")
    base = "/usr/bin/python3.11" if Path("/usr/bin/python3.11").exists() else sys.executable
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", *ORIGINAL_REQS], check=True)
    subprocess.run(check, check=True)
    return py


def run_worker(py: Path, work: Path, script_name: str, source: str, cfg: dict, tag: str) -> dict:
    """Run ``source`` (a worker script) with the original's Python ``py`` and return its JSON result.

    The script is written to ``work/script_name`` and gets ``cfg`` (plus ``result``, the
    path of ``work/orig_{tag}.json``) as JSON in ``argv[1]``; its output goes to
    ``work/original_{tag}.log``. No GPU, ``OMP_NUM_THREADS = cfg["threads"]``, no
    ``PYTHONPATH`` (this environment's packages must not leak into the original's).

    Raises
    ------
    SystemExit
        The worker failed; the log's tail is printed to stderr.
    """
    script = work / script_name
    script.write_text(source)
    cfg = dict(cfg, result=str(work / f"orig_{tag}.json"))
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
               OMP_NUM_THREADS=str(cfg["threads"]))
    env.pop("PYTHONPATH", None)
    log = work / f"original_{tag}.log"
    with open(log, "w") as fh:
        r = subprocess.run([str(py), str(script), json.dumps(cfg)], env=env, stdout=fh,
                           stderr=subprocess.STDOUT, cwd=str(work))
    if r.returncode != 0:
        print(log.read_text()[-4000:], file=sys.stderr)
        raise SystemExit(f"original StarDist failed (exit {r.returncode}); log: {log}")
    return json.loads(Path(cfg["result"]).read_text())


def step_times(stamps: list[float], steps_per_epoch: int, warmup: int) -> np.ndarray:
    """Gaps between consecutive step-end stamps inside an epoch, the first ``warmup`` dropped."""
    st = np.diff(np.asarray(stamps))
    inside = (np.arange(1, len(stamps)) % steps_per_epoch) != 0
    st = st[inside]
    return st[warmup:] if len(st) > warmup else st


def load_avg() -> str:
    """The 1, 5 and 15 minute load averages as text ("?" where unknown)."""
    try:
        with open("/proc/loadavg") as fh:
            return " ".join(fh.read().split()[:3])
    except OSError:
        return "?"


def set_thread_env(threads: int) -> None:
    """``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` for this process and the workers it starts."""
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[k] = str(threads)


def thread_report() -> str:
    """The thread settings that shape a timing (environment variables and CPU count)."""
    keys = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")
    return ", ".join(f"{k}={os.environ.get(k, 'unset')}" for k in keys) + f"; {os.cpu_count()} logical CPUs"


def write_markdown(md: str, out: Path) -> None:
    """Print ``md`` and write it to ``out`` (``-``: print only), through a temporary sibling."""
    print()
    print(md)
    if str(out) == "-":
        return
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(md)
    os.replace(tmp, out)
    print(f"written to {out}")
