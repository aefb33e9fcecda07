#!/usr/bin/env python
"""Benchmark StarDist 3D: ij_bridge.stardist (PyTorch) against the original StarDist 0.9.2 (TensorFlow).

Both get the same synthetic anisotropic stacks (:func:`ij_bridge.synthetic.synthetic_nuclei`,
z-step 2 x the pixel size, touching/overlapping nuclei, axial blur, Poisson + Gaussian
noise), the same normalisation, the same network (U-Net depth 2 as the original's 3D
default, ``--filters`` base filters, ``--head``-channel head; or ``--backbone resnet``),
the same rays (``--rays`` on a golden spiral for the anisotropy computed from the training
labels' extents, the original's ``calculate_extents`` rule), grid (1, 2, 2), the same
budget (epochs x steps x batch x patch, Adam 3e-4) and the same augmentation (YX flips and
90° rotations, Z flips, intensity scale/shift). Each trains once per seed (``--seeds``),
one after the other with the same thread count, and picks its thresholds on the validation
stack with its own ``optimize_thresholds`` (``--optimize-thresholds``; by default both use
the same fixed thresholds, ``--prob`` 0.5 and ``--nms`` 0.4). All scores are computed by one code
(``ij_bridge.metrics``) on the predicted label stacks.

Reported: F1 and accuracy at IoU 0.5 and 0.7 on the test stacks (per seed and mean), train
seconds per step (median, warm-up and validation excluded), prediction seconds per test stack
(median), the ratios ours / original, the load average and the thread settings. NMS at 10k /
100k 3D candidates: ``scripts/bench_nms.py --3d`` when it exists (helper script of the NMS work).

The original runs in ``--venv`` (default ``/work/venvs/stardist-tf``: tensorflow-cpu 2.15.1,
stardist 0.9.2) as a subprocess executing a script that this benchmark writes.

Usage::

    .venv/bin/python scripts/bench_stardist3d.py                  # 3 seeds, small budget
    .venv/bin/python scripts/bench_stardist3d.py --quick          # 1 seed, 2 x 5 steps
    .venv/bin/python scripts/bench_stardist.py --3d [options]     # the same
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VENV = Path("/work/venvs/stardist-tf")
WORK = ROOT / ".bench" / "stardist3d-run"
OUT_MD = ROOT / ".bench" / "stardist3d_results.md"
IOUS = (0.5, 0.7)

ORIGINAL_WORKER = r'''
import json, os, sys, time
cfg = json.loads(sys.argv[1])
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(cfg["threads"])
tf.config.threading.set_inter_op_parallelism_threads(cfg["threads"])
import stardist, csbdeep
from stardist import Rays_GoldenSpiral
from stardist.models import Config3D, StarDist3D

work = cfg["work"]
data = np.load(os.path.join(work, "data.npz"))


def load(part):
    n = int(data[f"n_{part}"])
    return [data[f"X_{part}_{i}"] for i in range(n)], [data[f"Y_{part}_{i}"] for i in range(n)]


def augmenter(x, y):
    # YX: transpose + flips (the 8 symmetries of the square), Z flip, intensity: as ours
    if np.random.rand() < 0.5:
        x, y = x.transpose(0, 2, 1), y.transpose(0, 2, 1)
    for ax in (1, 2, 0):
        if np.random.rand() < 0.5:
            x, y = np.flip(x, ax), np.flip(y, ax)
    x = x * np.random.uniform(0.6, 1.6) + np.random.uniform(-0.2, 0.2)
    return np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y)


class StepTimer(tf.keras.callbacks.Callback):
    def __init__(self):
        super().__init__(); self.t = []; self.c = []; self._last = None
    def on_epoch_begin(self, epoch, logs=None):
        self._last = None
    def on_train_batch_end(self, batch, logs=None):
        now = (time.perf_counter(), time.process_time())
        if self._last is not None:
            self.t.append(now[0] - self._last[0]); self.c.append(now[1] - self._last[1])
        self._last = now


np.random.seed(cfg["seed"]); tf.random.set_seed(cfg["seed"])
(X, Y), (Xv, Yv), (Xt, Yt) = load("train"), load("val"), load("test")
aniso = tuple(cfg["anisotropy"])
kw = dict(rays=Rays_GoldenSpiral(cfg["n_rays"], anisotropy=aniso), grid=tuple(cfg["grid"]),
          anisotropy=aniso, n_channel_in=1, use_gpu=False, backbone=cfg["backbone"],
          train_patch_size=tuple(cfg["patch"]), train_batch_size=cfg["batch"],
          train_epochs=cfg["epochs"], train_steps_per_epoch=cfg["steps"],
          train_learning_rate=3e-4, train_tensorboard=False)
if cfg["backbone"] == "unet":
    kw.update(unet_n_depth=2, unet_n_filter_base=cfg["filters"], net_conv_after_unet=cfg["head"])
else:
    kw.update(resnet_n_blocks=4, resnet_n_filter_base=cfg["filters"], net_conv_after_resnet=cfg["head"])
model = StarDist3D(Config3D(**kw), name=f"orig_s{cfg['seed']}", basedir=os.path.join(work, "models"))
model.prepare_for_training()
timer = StepTimer()
model.callbacks.append(timer)
t0 = time.perf_counter()
model.train(X, Y, validation_data=(Xv, Yv), augmenter=augmenter, epochs=cfg["epochs"],
            steps_per_epoch=cfg["steps"])
t_train = time.perf_counter() - t0
if cfg["optimize"]:
    th = model.optimize_thresholds(Xv, Yv)
else:
    th = {"prob": cfg["prob"], "nms": cfg["nms"]}
model.predict_instances(Xt[0], prob_thresh=th["prob"], nms_thresh=th["nms"])   # warm-up
preds, pred_s = [], []
for x in Xt:
    t1 = time.perf_counter()
    preds.append(model.predict_instances(x, prob_thresh=th["prob"], nms_thresh=th["nms"])[0])
    pred_s.append(time.perf_counter() - t1)
np.savez_compressed(os.path.join(work, f"orig_s{cfg['seed']}_pred.npz"), *preds)
steps = np.asarray(timer.t[cfg["warmup"]:] or timer.t)
steps_cpu = np.asarray(timer.c[cfg["warmup"]:] or timer.c)
out = {"versions": {"stardist": stardist.__version__, "tensorflow": tf.__version__,
                    "csbdeep": csbdeep.__version__},
       "step_s": float(np.median(steps)), "step_cpu_s": float(np.median(steps_cpu)), "train_s": t_train, "predict_s": float(np.median(pred_s)),
       "thresholds": {k: float(v) for k, v in th.items()},
       "threads": {"tf_intra": tf.config.threading.get_intra_op_parallelism_threads(),
                   "tf_inter": tf.config.threading.get_inter_op_parallelism_threads()}}
with open(cfg["result"], "w") as f:
    json.dump(out, f, indent=1)
'''


def _synthetic(seeds, shape):
    import warnings

    from ij_bridge.synthetic import synthetic_nuclei

    X, Y = [], []
    for s in seeds:
        rng = np.random.default_rng(10_000 + s)
        r0 = rng.uniform(5, 7)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x, y = synthetic_nuclei(shape, n_objects=int(rng.integers(25, 40)), radius=(r0, 1.4 * r0),
                                    seed=s, anisotropy=2.0, overlap=0.3, axial_blur=2.0,
                                    photons=float(rng.choice([100.0, 300.0])), noise=0.02)
        X.append(((x - np.percentile(x, 1)) / (np.percentile(x, 99.8) - np.percentile(x, 1))).astype(np.float32))
        Y.append(y.astype(np.uint16))
    return X, Y


def prepare_data(work: Path, shape, quick: bool) -> dict:
    from ij_bridge.stardist.augment import anisotropy_from_labels

    work.mkdir(parents=True, exist_ok=True)
    parts = {"train": range(0, 2 if quick else 4), "val": [100], "test": [200, 201] if quick else [200, 201, 202]}
    arrays, counts = {}, {}
    labels = {}
    for part, seeds in parts.items():
        X, Y = _synthetic(seeds, shape)
        labels[part] = Y
        arrays[f"n_{part}"] = np.asarray(len(X))
        for i, (x, y) in enumerate(zip(X, Y)):
            arrays[f"X_{part}_{i}"] = x
            arrays[f"Y_{part}_{i}"] = y
        counts[part] = {"stacks": len(X), "objects": int(sum(int(y.max()) for y in Y))}
    tmp = work / "data.tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, work / "data.npz")
    counts["anisotropy"] = list(anisotropy_from_labels([y.astype(np.int32) for y in labels["train"]]))
    return counts


def _load(work: Path, part: str):
    d = np.load(work / "data.npz")
    n = int(d[f"n_{part}"])
    return [d[f"X_{part}_{i}"] for i in range(n)], [d[f"Y_{part}_{i}"].astype(np.int32) for i in range(n)]


def run_ours(work: Path, cfg: dict) -> dict:
    import torch

    from ij_bridge.stardist import StarDist3D, StarDistConfig

    torch.set_num_threads(cfg["threads"])
    (X, Y), (Xv, Yv), (Xt, _) = _load(work, "train"), _load(work, "val"), _load(work, "test")
    kw = dict(ndim=3, n_rays=cfg["n_rays"], grid=tuple(cfg["grid"]), anisotropy=tuple(cfg["anisotropy"]),
              patch_size=tuple(cfg["patch"]), batch_size=cfg["batch"], epochs=cfg["epochs"],
              steps_per_epoch=cfg["steps"], learning_rate=3e-4, seed=cfg["seed"], backbone=cfg["backbone"],
              head_channels=cfg["head"])
    if cfg["backbone"] == "unet":
        kw.update(unet_depth=2, unet_n_filters=cfg["filters"])
    else:
        kw.update(resnet_n_blocks=4, resnet_n_filters=cfg["filters"])
    model = StarDist3D(StarDistConfig(**kw), device="cpu")
    stamps: list[tuple[int, float]] = []
    t0 = time.perf_counter()
    # the stacks are already normalised (percentiles 1, 99.8) as the original gets them; ours
    # normalises them again (the same percentiles: a no-op up to rounding)
    model.train(X, Y, validation_data=(Xv, Yv), show_progress=False, optimize_thresholds=cfg["optimize"],
                progress=lambda d, t, m: stamps.append((d, time.perf_counter(), time.process_time())))
    if not cfg["optimize"]:
        model.thresholds = {"prob": cfg["prob"], "nms": cfg["nms"]}
    t_train = time.perf_counter() - t0
    # step times within epochs (the validation between epochs excluded), warm-up dropped
    pairs = [(a, b) for a, b in zip(stamps, stamps[1:]) if (a[0] % cfg["steps"]) != 0]
    dt = [b[1] - a[1] for a, b in pairs]
    dc = [b[2] - a[2] for a, b in pairs]
    dt, dc = dt[cfg["warmup"]:] or dt, dc[cfg["warmup"]:] or dc
    model.predict_instances(Xt[0])
    preds, pred_s = [], []
    for x in Xt:
        t1 = time.perf_counter()
        preds.append(model.predict_instances(x)[0])
        pred_s.append(time.perf_counter() - t1)
    np.savez_compressed(work / f"ours_s{cfg['seed']}_pred.npz", *preds)
    return {"step_s": float(np.median(dt)), "step_cpu_s": float(np.median(dc)), "train_s": t_train, "predict_s": float(np.median(pred_s)),
            "thresholds": dict(model.thresholds), "threads": {"torch": torch.get_num_threads()}}


def run_original(py: Path, work: Path, cfg: dict) -> dict:
    script = work / "original_worker3d.py"
    script.write_text(ORIGINAL_WORKER)
    result = work / f"orig_s{cfg['seed']}.json"
    cfg = dict(cfg, result=str(result))
    env = dict(os.environ, OMP_NUM_THREADS=str(cfg["threads"]), CUDA_VISIBLE_DEVICES="")
    with open(work / f"orig_s{cfg['seed']}.log", "w") as fh:
        r = subprocess.run([str(py), str(script), json.dumps(cfg)], env=env, stdout=fh,
                           stderr=subprocess.STDOUT, cwd=str(work))
    if r.returncode != 0:
        raise RuntimeError(f"the original failed (exit {r.returncode}); see {work}/orig_s{cfg['seed']}.log")
    return json.loads(result.read_text())


def evaluate(work: Path, who: str, seed: int) -> dict:
    from ij_bridge.metrics import matching_dataset

    _, Yt = _load(work, "test")
    p = np.load(work / f"{who}_s{seed}_pred.npz")
    preds = [p[f"arr_{i}"].astype(np.int32) for i in range(len(Yt))]
    ms = matching_dataset(Yt, preds, thresh=list(IOUS))
    return {str(m.thresh): {"f1": float(m.f1), "accuracy": float(m.accuracy), "n_pred": int(m.n_pred),
                            "n_true": int(m.n_true)} for m in ms}


def run_nms(quick: bool) -> str:
    script = ROOT / "scripts" / "bench_nms.py"
    if not script.exists():
        return ("NMS at 10k / 100k 3D candidates: `scripts/bench_nms.py` does not exist in this checkout; "
                "not measured here.")
    args = [sys.executable, str(script), "--3d"] + (["--quick"] if quick else [])
    r = subprocess.run(args, capture_output=True, text=True, cwd=str(ROOT), timeout=1800)
    tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-25:])
    return f"NMS (`{' '.join(['scripts/bench_nms.py', '--3d'] + args[3:])}`, exit {r.returncode}):\n\n```\n{tail}\n```"


def report(res: dict, cfg: dict, counts: dict, cmd: str, load: dict, nms: str) -> str:
    seeds = cfg["seeds"]
    who = [w for w in ("original", "ours") if res.get(w)]

    def mean(vals):
        return float(np.mean(vals)) if vals else float("nan")

    lines = [f"Command: `{cmd}`", "",
             f"Data: synthetic anisotropic stacks {tuple(cfg['shape'])} (z-step 2 x pixel): "
             f"{counts['train']['stacks']} train ({counts['train']['objects']} nuclei), 1 validation, "
             f"{counts['test']['stacks']} test ({counts['test']['objects']} nuclei); anisotropy from the "
             f"training labels {tuple(round(a, 3) for a in cfg['anisotropy'])}.",
             f"Budget: {cfg['epochs']} epochs x {cfg['steps']} steps, batch {cfg['batch']}, patch "
             f"{tuple(cfg['patch'])}, {cfg['backbone']} backbone ({cfg['filters']} filters, {cfg['head']}-channel "
             f"head), {cfg['n_rays']} rays, grid {tuple(cfg['grid'])}; seeds {seeds}; {cfg['threads']} "
             f"threads each (torch.set_num_threads / TF intra+inter op, OMP_NUM_THREADS={cfg['threads']}), "
             "one framework at a time.",
             f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs, shared with other jobs (NOT "
             f"quiet): load average {load['start']} at the start, {load['end']} at the end.", ""]
    if res.get("original"):
        v = next(iter(res["original"].values()))["versions"]
        lines.append(f"Original: stardist {v['stardist']}, tensorflow {v['tensorflow']}, csbdeep {v['csbdeep']}.")
        lines.append("")
    lines += ["| metric (test stacks) | " + " | ".join(who) + (" | ours / original |" if len(who) == 2 else " |"),
              "| --- | " + " | ".join("---" for _ in who) + (" | --- |" if len(who) == 2 else " |")]
    for t in IOUS:
        for k in ("f1", "accuracy"):
            vals = {w: [res["eval"][(w, s)][str(t)][k] for s in seeds] for w in who}
            cells = [f"{mean(vals[w]):.3f} ({', '.join(f'{v:.2f}' for v in vals[w])})" for w in who]
            ratio = (f" | {mean(vals['ours']) / mean(vals['original']):.2f}" if len(who) == 2
                     and mean(vals["original"]) > 0 else (" | -" if len(who) == 2 else ""))
            lines.append(f"| {k} @ IoU {t}, mean (per seed) | " + " | ".join(cells) + ratio + " |")
    for key, name in (("step_s", "train s/step, wall (median)"), ("step_cpu_s", "train s/step, process CPU (median)"),
                      ("train_s", "train wall s (incl. validation)"),
                      ("predict_s", "predict s per stack (median)")):
        vals = {w: mean([res[w][s][key] for s in seeds]) for w in who}
        ratio = f" | {vals['ours'] / vals['original']:.2f}" if len(who) == 2 else ""
        lines.append(f"| {name} | " + " | ".join(f"{vals[w]:.3f}" for w in who) + ratio + " |")
    lines += ["", ("Thresholds chosen by each one's optimize_thresholds" if cfg["optimize"] else
                   "Thresholds fixed for both (no threshold search)") + " (prob, nms) per seed: " + "; ".join(
        f"{w}: " + ", ".join(f"({res[w][s]['thresholds']['prob']:.2f}, {res[w][s]['thresholds']['nms']:.2f})"
                             for s in seeds) for w in who), "", nms, ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 2 epochs x 5 steps")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--patch", type=int, nargs=3, default=[16, 32, 32])
    ap.add_argument("--shape", type=int, nargs=3, default=[24, 80, 80], help="stack size z y x")
    ap.add_argument("--rays", type=int, default=32)
    ap.add_argument("--backbone", default="unet", choices=["unet", "resnet"])
    ap.add_argument("--filters", type=int, default=16)
    ap.add_argument("--head", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1,
                    help="threads per framework (default 1: on a loaded machine torch's 2 OpenMP threads "
                         "spin-wait for each other and run several times slower than one)")
    ap.add_argument("--optimize-thresholds", action="store_true",
                    help="each picks thresholds on the validation stack with its own optimize_thresholds "
                         "(default: both use --prob / --nms; after a small budget the original's 3D "
                         "threshold search runs NMS on very many candidates and takes very long)")
    ap.add_argument("--prob", type=float, default=0.5)
    ap.add_argument("--nms", type=float, default=0.4)
    ap.add_argument("--seeds", default=None, help="comma-separated (default 0,1,2; 0 with --quick)")
    ap.add_argument("--skip-original", action="store_true")
    ap.add_argument("--skip-ours", action="store_true")
    ap.add_argument("--skip-nms", action="store_true")
    ap.add_argument("--venv", type=Path, default=VENV)
    ap.add_argument("--work", type=Path, default=WORK)
    ap.add_argument("--out", type=Path, default=OUT_MD, help="markdown file to write ('-' for none)")
    args = ap.parse_args(argv)

    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[k] = str(args.threads)
    load = {"start": tuple(round(v, 1) for v in os.getloadavg())}
    t0 = time.perf_counter()
    work = args.work.resolve()
    counts = prepare_data(work, tuple(args.shape), args.quick)
    cfg = {"epochs": args.epochs or (2 if args.quick else 3), "steps": args.steps or (5 if args.quick else 15),
           "batch": args.batch, "patch": list(args.patch), "shape": list(args.shape), "n_rays": args.rays,
           "grid": [1, 2, 2], "anisotropy": counts["anisotropy"], "backbone": args.backbone,
           "filters": args.filters, "head": args.head, "threads": args.threads, "warmup": 2,
           "optimize": bool(args.optimize_thresholds), "prob": args.prob, "nms": args.nms,
           "seeds": [int(v) for v in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")],
           "work": str(work)}
    print(f"data ready ({time.perf_counter() - t0:.0f} s): {counts}", flush=True)
    py = None if args.skip_original else args.venv / "bin" / "python"
    if py is not None and not py.exists():
        print(f"no original StarDist environment at {args.venv}; create it with tensorflow-cpu==2.15.1 "
              "stardist==0.9.2 csbdeep==0.8.2 'numpy<2', or pass --skip-original", file=sys.stderr)
        return 2
    res: dict = {"original": {}, "ours": {}, "eval": {}}
    for seed in cfg["seeds"]:
        if py is not None:
            print(f"seed {seed}: original StarDist 3D ...", flush=True)
            res["original"][seed] = run_original(py, work, dict(cfg, seed=seed))
            res["eval"][("original", seed)] = evaluate(work, "orig", seed)
            print("  ", res["original"][seed]["step_s"], res["eval"][("original", seed)], flush=True)
        if not args.skip_ours:
            print(f"seed {seed}: ij_bridge.stardist 3D ...", flush=True)
            res["ours"][seed] = run_ours(work, dict(cfg, seed=seed))
            res["eval"][("ours", seed)] = evaluate(work, "ours", seed)
            print("  ", res["ours"][seed]["step_s"], res["eval"][("ours", seed)], flush=True)
    nms = "NMS: skipped (--skip-nms)." if args.skip_nms else run_nms(args.quick)
    load["end"] = tuple(round(v, 1) for v in os.getloadavg())
    cmd = ".venv/bin/python scripts/bench_stardist3d.py " + " ".join(sys.argv[1:] if argv is None else argv)
    md = report(res, cfg, counts, cmd.strip(), load, nms)
    print()
    print(md)
    if str(args.out) != "-":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(md)
        print(f"written to {args.out}")
    (work / "results.json").write_text(json.dumps(
        {"original": res["original"], "ours": res["ours"], "cfg": cfg, "load": load,
         "eval": {f"{a}/s{b}": v for (a, b), v in res["eval"].items()}}, indent=1, default=float))
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
