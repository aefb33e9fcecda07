"""Throughput of ``ij-bridge batch`` with 1 and 2 worker processes (and optionally Dask).

Generates N small calibrated images of nuclei-like blobs, runs the same macro over
them with ``--workers 1`` and ``--workers 2`` (each a fresh CLI process, so JVM and
model start-up count), checks that both runs give byte-identical outputs, and
prints images/s and the ratio. Two numbers per run:

* ``wall``: the whole command, start-up included (what a user waits for);
* ``steady``: files per second once every worker is up, from the completion
  times in the output records (first file of each worker excluded).

Usage::

    python scripts/bench_batch.py                     # 20 images, threshold macro
    python scripts/bench_batch.py --macro stardist    # StarDist 2D (torch), model loaded once per worker
    python scripts/bench_batch.py --n 40 --size 512 --workers 1 2 4
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

REPO = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("ij-bridge"))
MACROS = {
    "example": (REPO / "macros" / "batch_example.ijm").read_text(),
    "stardist": ('run("StarDist 2D (torch)", "model=[stardist_nuclei2d] normalize low=1 high=99.8 '
                 'probability=[auto] overlap=[auto] output=[Both] tiles=1 exclude=2 position=[Automatic]");\n'
                 'run("Measure Labels", "intensity=[" + getTitle() + "]");\n'),
}


def make_images(folder: Path, n: int, size: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        img = rng.normal(100, 8, (size, size))
        for _ in range(max(4, size * size // 2500)):
            cy, cx, r = rng.uniform(8, size - 8, 2).tolist() + [rng.uniform(4, 8)]
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += 300
        tifffile.imwrite(folder / f"img{i:03d}.tif", img.clip(0, 65535).astype(np.uint16), imagej=True,
                         resolution=(2.0, 2.0), metadata={"unit": "micron"})


def outputs_hash(out: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(out.rglob("*")):
        if p.is_file() and p.name not in (".ij-bridge.json", "summary.csv"):
            h.update(p.relative_to(out).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def steady_rate(out: Path) -> float:
    """Files/s after each worker's first file, from the records' finish times and durations."""
    recs = [json.loads(p.read_text()) for p in out.rglob(".ij-bridge.json")]
    by_worker: dict[str, list[float]] = {}
    for r in recs:
        by_worker.setdefault(r["worker"], []).append(float(r["seconds"]))
    # per worker: files after the first / their total processing time; summed over workers
    rate = 0.0
    for secs in by_worker.values():
        rest = secs[1:] if len(secs) > 1 else secs
        rate += len(rest) / max(sum(rest), 1e-9)
    return rate


def run(macro: Path, inp: Path, out: Path, workers: int) -> tuple[float, str, float]:
    t0 = time.perf_counter()
    r = subprocess.run([CLI, "batch", str(macro), "--input", str(inp), "--output", str(out),
                        "--workers", str(workers), "--quiet"], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"batch with {workers} workers failed:\n{r.stdout}\n{r.stderr}")
    return wall, outputs_hash(out), steady_rate(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20, help="number of images (default 20)")
    p.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    p.add_argument("--macro", choices=sorted(MACROS), default="example")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        make_images(tmp / "in", args.n, args.size)
        macro = tmp / f"{args.macro}.ijm"
        macro.write_text(MACROS[args.macro])
        print(f"{args.n} images {args.size}x{args.size}, macro '{args.macro}', {os.cpu_count()} CPU cores")
        results = {}
        for w in args.workers:
            wall, digest, steady = run(macro, tmp / "in", tmp / f"out{w}", w)
            results[w] = (wall, steady)
            print(f"--workers {w}: wall {wall:6.1f} s = {args.n / wall:5.2f} images/s (start-up included); "
                  f"steady {steady:5.2f} images/s; outputs {digest[:12]}")
            if w != args.workers[0]:
                ref = outputs_hash(tmp / f"out{args.workers[0]}")
                print(f"  outputs identical to --workers {args.workers[0]}: {digest == ref}")
        base = args.workers[0]
        for w in args.workers[1:]:
            print(f"ratio workers {w}/{base}: wall {results[base][0] / results[w][0]:.2f}x, "
                  f"steady {results[w][1] / results[base][1]:.2f}x")


if __name__ == "__main__":
    main()
