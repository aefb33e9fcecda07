#!/usr/bin/env python
"""Benchmark: whole-slide-sized StarDist 2D prediction in bounded memory (issue 14 item 3).

For each size (default 8192² and 20,000²) a uint16 image of synthetic nuclei
(:func:`ij_bridge.synthetic.synthetic_nuclei`, drawn in 2048² tiles, about
1,400 nuclei per tile: ~22,400 at 8192²) is written as an uncompressed
memory-mappable TIFF under ``--tmp`` (default /tmp) and deleted afterwards.
Then, one job at a time, each in its own process:

* **ours**: ``ij_bridge.stardist.big.predict_instances_big`` (labels into a
  memory-mapped TIFF, staged),
* **original**: StarDist 0.9.2's ``predict_instances_big`` (TensorFlow 2.15,
  the venv ``--original-python``, default /work/venvs/stardist-tf) with
  ``block_size=2048``, ``min_overlap=64``, its default ``context``, labels
  into a memory-mapped TIFF (``labels_out``).

Both run the SAME weights: the small reference model made by the original
(``tests/fixtures/reference/stardist/2d_grid2``: U-Net depth 3, 8 filters,
24 rays, grid 2; ours imports it with ``ij_bridge.stardist.original``) and its
optimised thresholds. Both get the same normalisation: percentiles 1 / 99.8
of the same regular subsample of the whole image
(``ij_bridge.stardist.big.normalization_percentiles``); the original reads its
blocks through a small lazy wrapper that normalises each block it reads.

Measured per job: wall time and peak RSS of the process
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``, read by the job at its end),
the number of objects; and, on the 8192² image, the agreement of the two
label images on a 2048² crop (F1 at IoU 0.5). Ratios are ours / original.
The load average and thread settings are printed: the machine may be shared.

Usage::

    .venv/bin/python scripts/bench_big.py                       # 8192² and 20000²
    .venv/bin/python scripts/bench_big.py --sizes 8192 --skip-original
    .venv/bin/python scripts/bench_big.py --n2v 64 2048          # N2V, 64 planes of 2048²

With ``--n2v PLANES SIZE`` it measures N2V instead: a noisy uint16 TYX stack,
denoised by the CLI's plane-by-plane path (``workflows.big.denoise_file_big``)
and by the whole-stack path (``N2V.predict`` on the array, then ``io.imwrite``),
each in its own process; peak RSS, times, and whether the outputs are identical.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "tests" / "fixtures" / "reference" / "stardist" / "2d_grid2"
TILE = 2048
NUCLEI_PER_TILE = 1400
SYNTH = dict(radius=(4, 8), texture=0.0, overlap=0.0, background=0.2, intensity=(0.8, 1.0),
             elongation=0.3, irregularity=0.05, noise=0.1, photons=None)


def make_image(path: Path, size: int, seed: int = 0) -> None:
    """A ``size``² uint16 memory-mappable TIFF of synthetic nuclei, drawn tile by tile."""
    import tifffile

    sys.path.insert(0, str(ROOT / "src"))
    from ij_bridge.synthetic import synthetic_nuclei

    out = tifffile.memmap(path, shape=(size, size), dtype=np.uint16, photometric="minisblack",
                          bigtiff=size * size * 2 > 2 ** 31)
    k = 0
    for r in range(0, size, TILE):
        for c in range(0, size, TILE):
            h, w = min(TILE, size - r), min(TILE, size - c)
            n = max(1, int(NUCLEI_PER_TILE * h * w / TILE ** 2))
            img, _ = synthetic_nuclei((h, w), n_objects=n, seed=seed * 100_000 + k, **SYNTH)
            out[r:r + h, c:c + w] = (np.clip(img + 0.5, 0, None) * 20000).clip(0, 65535).astype(np.uint16)
            k += 1
        out.flush()
    del out


# ----------------------------------------------------------------------------- jobs

OURS = r"""
import json, os, resource, sys, time
t0 = time.perf_counter()
cfg = json.loads(sys.argv[1])
import torch
torch.set_num_threads(cfg["threads"])
from ij_bridge.stardist import StarDist2D
from ij_bridge.stardist.big import predict_instances_big
model = StarDist2D.load(cfg["model"])
t1 = time.perf_counter()
kw = dict(cfg.get("ours_kwargs") or {})
labels, det = predict_instances_big(model, cfg["image"], cfg["out"], **kw)
t2 = time.perf_counter()
print(json.dumps(dict(wall=t2 - t1, wall_total=t2 - t0, cpu=time.process_time(),
                      rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
                      n=int(len(det["prob"])), block=list(det["block_size"]), margin=det["margin"],
                      stride=det["percentiles_stride"], threads=torch.get_num_threads(),
                      seconds=det["seconds"])))
"""

ORIGINAL = r"""
import json, os, resource, sys, time
t0 = time.perf_counter()
cfg = json.loads(sys.argv[1])
import numpy as np, tifffile
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(cfg["threads"])
tf.config.threading.set_inter_op_parallelism_threads(cfg["threads"])
from stardist.models import StarDist2D
model = StarDist2D(None, name=os.path.basename(cfg["model"]), basedir=os.path.dirname(cfg["model"]))
img = tifffile.memmap(cfg["image"], mode="r")
lo, hi = np.float32(cfg["lo"]), np.float32(cfg["hi"])

class Normalized:  # normalises each block as it is read (same percentiles as ours)
    def __init__(self, a):
        self.a, self.shape, self.ndim, self.dtype = a, a.shape, a.ndim, np.dtype(np.float32)
    def __getitem__(self, sl):
        return ((np.asarray(self.a[sl], np.float32) - lo) / max(hi - lo, 1e-20)).astype(np.float32)

out = tifffile.memmap(cfg["out"], shape=img.shape, dtype=np.int32, photometric="minisblack",
                      bigtiff=img.size * 4 > 2 ** 31)
t1 = time.perf_counter()
labels, polys = model.predict_instances_big(Normalized(img), axes="YX", block_size=cfg["block"],
                                            min_overlap=cfg["min_overlap"], context=None,
                                            labels_out=out, show_progress=False)
out.flush()
t2 = time.perf_counter()
print(json.dumps(dict(wall=t2 - t1, wall_total=t2 - t0, cpu=time.process_time(),
                      rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
                      n=int(len(polys["prob"])))))
"""


N2V_JOB = r"""
import json, os, resource, sys, time
cfg = json.loads(sys.argv[1])
import numpy as np, torch
torch.set_num_threads(cfg["threads"])
from ij_bridge.n2v import N2V
model = N2V.load(cfg["model"])
t1 = time.perf_counter()
if cfg["kind"] == "n2v-big":  # the CLI's blockwise path: plane by plane into a staged TIFF
    from ij_bridge.workflows.big import denoise_file_big
    denoise_file_big(cfg["image"], model, cfg["out"])
else:  # the whole stack in memory, then written
    import tifffile
    from ij_bridge.io import imwrite
    x = tifffile.imread(cfg["image"])
    y = model.predict(x, axes="TYX")
    imwrite(cfg["out"], y, dims="tyx")
t2 = time.perf_counter()
print(json.dumps(dict(wall=t2 - t1, cpu=time.process_time(), n=0,
                      rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20)))
"""


def make_stack(path: Path, planes: int, size: int) -> None:
    """A ``planes`` × ``size``² uint16 TYX ImageJ TIFF of noisy synthetic nuclei, written plane by plane."""
    import tifffile

    rng = np.random.default_rng(0)
    sys.path.insert(0, str(ROOT / "src"))
    from ij_bridge.synthetic import synthetic_nuclei

    base, _ = synthetic_nuclei((size, size), n_objects=int(NUCLEI_PER_TILE * size * size / TILE ** 2),
                               seed=7, **SYNTH)
    base = np.clip(base + 0.5, 0, None) * 20000
    out = tifffile.memmap(path, shape=(planes, size, size), dtype=np.uint16, imagej=True,
                          metadata={"axes": "TYX"})
    for t in range(planes):
        out[t] = (base + rng.normal(0, 2000, base.shape)).clip(0, 65535).astype(np.uint16)
    out.flush()
    del out


def bench_n2v(planes: int, size: int, threads: int, tmp: str) -> int:
    """Peak memory of N2V prediction of a TYX stack: plane by plane vs the whole stack in memory."""
    import tifffile

    model = ROOT / "tests" / "fixtures" / "reference" / "n2v" / "n2v_2d"
    work = Path(tempfile.mkdtemp(prefix="ij-bridge-bench-big-n2v-", dir=tmp))
    try:
        img = work / "stack.tif"
        make_stack(img, planes, size)
        gib_in, gib_out = img.stat().st_size / 2 ** 30, planes * size * size * 4 / 2 ** 30
        print(f"\n## N2V: {planes} x {size} x {size} uint16 TYX stack ({gib_in:.2f} GiB; 32-bit result "
              f"{gib_out:.2f} GiB), model {model.name}", flush=True)
        res = {}
        for kind in ("n2v-big", "n2v-whole"):
            cfg = dict(kind=kind, image=str(img), out=str(work / f"{kind}.tif"), model=str(model), threads=threads)
            load = os.getloadavg()[0]
            r = run_job(kind, cfg, sys.executable)
            res[kind] = r
            print(f"{kind:10s} wall {r['wall']:7.1f} s  CPU {r['cpu']:7.1f} s  peak RSS {r['rss_gb']:5.2f} GB  "
                  f"(load {load:.2f})", flush=True)
        a = tifffile.memmap(work / "n2v-big.tif", mode="r")
        b = tifffile.memmap(work / "n2v-whole.tif", mode="r")
        same = all(np.array_equal(a[t], b[t]) for t in range(planes))
        del a, b
        o, r = res["n2v-whole"], res["n2v-big"]
        print(f"ratio plane-by-plane / whole stack: peak RSS {r['rss_gb'] / o['rss_gb']:.2f}x, wall "
              f"{r['wall'] / o['wall']:.2f}x; outputs identical: {same}", flush=True)
        return 0 if same else 1
    finally:
        for f in work.iterdir():
            f.unlink()
        work.rmdir()


def run_job(kind: str, cfg: dict, python: str) -> dict:
    script = {"ours": OURS, "original": ORIGINAL}.get(kind, N2V_JOB)
    env = dict(os.environ, OMP_NUM_THREADS=str(cfg["threads"]), MKL_NUM_THREADS=str(cfg["threads"]),
               TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT / "src"))
    p = subprocess.run([python, "-c", script, json.dumps(cfg)], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{kind} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def crop_f1(a: Path, b: Path, size: int = 2048) -> float:
    import tifffile

    sys.path.insert(0, str(ROOT / "src"))
    from ij_bridge.metrics import matching

    la = np.array(tifffile.memmap(a, mode="r")[:size, :size])
    lb = np.array(tifffile.memmap(b, mode="r")[:size, :size])
    return float(matching(la, lb, thresh=0.5).f1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[8192, 20000])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--block", type=int, default=2048, help="the original's block_size")
    ap.add_argument("--min-overlap", type=int, default=64, help="the original's min_overlap")
    ap.add_argument("--ours-block", type=int, default=None, help="our block_size (default: auto)")
    ap.add_argument("--skip-original", action="store_true")
    ap.add_argument("--original-python", default="/work/venvs/stardist-tf/bin/python")
    ap.add_argument("--tmp", default="/tmp")
    ap.add_argument("--model", default=str(MODEL))
    ap.add_argument("--n2v", type=int, nargs=2, metavar=("PLANES", "SIZE"), default=None,
                    help="instead: N2V prediction of a PLANES x SIZE x SIZE stack, plane by plane (the CLI's "
                         "blockwise path) against the whole stack in memory; peak RSS of each")
    args = ap.parse_args(argv)
    if args.n2v:
        print(f"# bench_big --n2v: {os.cpu_count()} CPU cores, load average "
              f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} at start; {args.threads} threads", flush=True)
        return bench_n2v(args.n2v[0], args.n2v[1], args.threads, args.tmp)

    sys.path.insert(0, str(ROOT / "src"))
    from ij_bridge.stardist.big import normalization_percentiles, open_image

    rows = []
    print(f"# bench_big: {platform.node()}, {os.cpu_count()} CPU cores, load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} at start; {args.threads} threads per job "
          f"(torch.set_num_threads / TF intra+inter op / OMP_NUM_THREADS); model {args.model}", flush=True)
    for size in args.sizes:
        work = Path(tempfile.mkdtemp(prefix="ij-bridge-bench-big-", dir=args.tmp))
        try:
            img = work / f"nuclei_{size}.tif"
            t = time.perf_counter()
            make_image(img, size)
            print(f"\n## {size} x {size} uint16 ({img.stat().st_size / 2 ** 30:.2f} GiB), made in "
                  f"{time.perf_counter() - t:.0f} s", flush=True)
            lo, hi, s = normalization_percentiles(open_image(img), 1.0, 99.8)
            base = dict(image=str(img), model=args.model, threads=args.threads)
            res = {}
            kw = {} if args.ours_block is None else {"block_size": args.ours_block}
            jobs = [("ours", sys.executable)] + ([] if args.skip_original else [("original", args.original_python)])
            for kind, py in jobs:  # one at a time: never two big jobs at once
                cfg = dict(base, out=str(work / f"labels_{kind}.tif"), ours_kwargs=kw,
                           lo=float(lo.ravel()[0]), hi=float(hi.ravel()[0]), block=args.block,
                           min_overlap=args.min_overlap)
                load = os.getloadavg()[0]
                r = run_job(kind, cfg, py)
                r["load"] = load
                res[kind] = r
                print(f"{kind:9s} wall {r['wall']:7.1f} s  CPU {r['cpu']:7.1f} s  peak RSS {r['rss_gb']:5.2f} GB  "
                      f"objects {r['n']}  "
                      f"(load {load:.2f}) {json.dumps({k: v for k, v in r.items() if k in ('block', 'margin', 'stride', 'seconds')})}",
                      flush=True)
            if "original" in res:
                o, r = res["original"], res["ours"]
                agree = crop_f1(work / "labels_ours.tif", work / "labels_original.tif") if size <= 8192 else None
                print(f"ratio ours/original: wall {r['wall'] / o['wall']:.2f}x, peak RSS "
                      f"{r['rss_gb'] / o['rss_gb']:.2f}x, CPU time {r['cpu'] / o['cpu']:.2f}x; objects {r['n']} vs {o['n']}"
                      + (f"; F1@0.5 between the two on a 2048² crop {agree:.3f}" if agree is not None else ""),
                      flush=True)
            rows.append((size, res))
        finally:
            for f in work.iterdir():
                f.unlink()
            work.rmdir()
    print("\n| image | run | wall s | CPU s | peak RSS GB | objects | load avg |\n|---|---|---|---|---|---|---|")
    for size, res in rows:
        for kind, r in res.items():
            name = "ours `predict_instances_big`" if kind == "ours" else "original `predict_instances_big` (blocks 2048)"
            print(f"| {size}² | {name} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['rss_gb']:.2f} | {r['n']} | "
                  f"{r['load']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
