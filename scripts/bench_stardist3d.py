#!/usr/bin/env python
"""Benchmark StarDist 3D: ij_bridge.stardist (PyTorch) against the original StarDist 0.9.2 (TensorFlow).

Both get the same synthetic anisotropic stacks (:func:`ij_bridge.synthetic.synthetic_nuclei`,
z-step 2 x the pixel size, touching/overlapping nuclei, axial blur, Poisson + Gaussian
noise), percentile-normalised once, the same network (U-Net depth 2 as the original's 3D
default, ``--filters`` base filters, ``--head``-channel head; or ``--backbone resnet``), the
same rays (``--rays`` on a golden spiral for the anisotropy computed from the training
labels' extents, the original's ``calculate_extents`` rule), grid (1, 2, 2), the same budget
(epochs x steps x batch x patch, Adam 3e-4) and the same augmentation (YX flips and 90°
rotations, Z flips, intensity scale/shift). All scores are computed by one code
(``ij_bridge.metrics``) on the predicted label stacks.

Phases (``--phase``):

* ``quality``: per seed (``--seeds``) each trains once; the original (a subprocess) and ours
  (this process) train side by side, ``--threads`` threads each (default 1), the original's
  seeds one after the other in a second thread while ours run in the main one. Thresholds:
  each one's own ``optimize_thresholds`` on the validation stack over the same NMS
  thresholds (``--optimize-thresholds``; ``--opt-nms`` the NMS candidates, ``--opt-maxiter``
  caps the original's golden-section search per NMS threshold), else both use ``--prob`` /
  ``--nms``. Reported: F1 and accuracy at IoU 0.5 and 0.7 on the test stacks (per seed and
  mean), train s/step (median, warm-up and validation excluded; side by side, so noisy),
  predict s per test stack, threshold search seconds. The trained models stay in ``--work``
  (``models/orig_s{seed}``: the original's folder; ``ours_s{seed}_model``: ours).
* ``timing``: reuses the trained models of an earlier ``quality`` run in ``--work`` and
  times one framework at a time, in ``--rounds`` interleaved rounds (original, ours,
  original, ... for each of ``--timing-threads``): training s/step of a fresh model
  (``--timing-steps`` steps, ``warm-up`` steps dropped) and prediction s per stack of the
  trained seed-``--seeds[0]`` model (median of ``--pred-reps`` calls after a warm-up call, on
  test stack 0, ``--prob`` / ``--nms`` for both), wall and process CPU; load average before and
  after each run, thread settings.
* ``all``: quality, then timing.

``--merge WORK [WORK ...]`` only reports: quality runs of the same data and settings in several
``--work`` folders (e.g. one seed each, run side by side on a busy machine) as one table.

NMS at 10k / 100k 3D candidates is ``scripts/bench_nms.py --3d`` (the NMS section of
docs/benchmarks.md); ``--run-nms`` calls it at the end of the quality phase.

The original runs in ``--venv`` (default ``/work/venvs/stardist-tf``: tensorflow-cpu 2.15.1,
stardist 0.9.2) as a subprocess executing a script that this benchmark writes
(``scripts/_bench_common.py``: the set-up shared with ``bench_stardist.py``).

Usage::

    .venv/bin/python scripts/bench_stardist3d.py --phase quality --epochs 20 --steps 50 \\
        --optimize-thresholds --work .bench/stardist3d-real      # 3 seeds, one after the other
    .venv/bin/python scripts/bench_stardist3d.py --phase quality --epochs 20 --steps 50 \\
        --optimize-thresholds --seeds 1 --work .bench/stardist3d-real-s1   # one seed per process ...
    .venv/bin/python scripts/bench_stardist3d.py --merge .bench/stardist3d-real-s0 \\
        .bench/stardist3d-real-s1 .bench/stardist3d-real-s2             # ... merged into one table
    .venv/bin/python scripts/bench_stardist3d.py --phase timing --work .bench/stardist3d-real-s0
    .venv/bin/python scripts/bench_stardist3d.py --quick          # 1 seed, 2 x 5 steps, then timing
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import (TF_PRELUDE, load_avg, original_python, run_worker, set_thread_env,  # noqa: E402
                           step_times, thread_report, write_markdown)

ROOT = Path(__file__).resolve().parents[1]
VENV = Path("/work/venvs/stardist-tf")
WORK = ROOT / ".bench" / "stardist3d-run"
OUT_MD = ROOT / ".bench" / "stardist3d_results.md"
IOUS = (0.5, 0.7)

ORIGINAL_WORKER = TF_PRELUDE + r'''
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


def config(epochs, steps):
    aniso = tuple(cfg["anisotropy"])
    kw = dict(rays=Rays_GoldenSpiral(cfg["n_rays"], anisotropy=aniso), grid=tuple(cfg["grid"]),
              anisotropy=aniso, n_channel_in=1, use_gpu=False, backbone=cfg["backbone"],
              train_patch_size=tuple(cfg["patch"]), train_batch_size=cfg["batch"],
              train_epochs=epochs, train_steps_per_epoch=steps,
              train_learning_rate=3e-4, train_tensorboard=False)
    if cfg["backbone"] == "unet":
        kw.update(unet_n_depth=2, unet_n_filter_base=cfg["filters"], net_conv_after_unet=cfg["head"])
    else:
        kw.update(resnet_n_blocks=4, resnet_n_filter_base=cfg["filters"], net_conv_after_resnet=cfg["head"])
    return Config3D(**kw)


def timed_predict(model, xs, th, reps=1):
    """Label stacks of xs and the wall / CPU seconds of each call (after one warm-up call)."""
    model.predict_instances(xs[0], prob_thresh=th["prob"], nms_thresh=th["nms"])
    preds, wall, cpu = [], [], []
    for x in xs:
        for _ in range(reps):
            t1, c1 = time.perf_counter(), time.process_time()
            lbl = model.predict_instances(x, prob_thresh=th["prob"], nms_thresh=th["nms"])[0]
            wall.append(time.perf_counter() - t1); cpu.append(time.process_time() - c1)
        preds.append(lbl)
    return preds, wall, cpu


np.random.seed(cfg["seed"]); tf.random.set_seed(cfg["seed"])
(X, Y), (Xv, Yv), (Xt, Yt) = load("train"), load("val"), load("test")
out = {"versions": versions(), "tf_threads": tf_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
if cfg["mode"] == "quality":
    model = StarDist3D(config(cfg["epochs"], cfg["steps"]), name=f"orig_s{cfg['seed']}",
                       basedir=os.path.join(work, "models"))
    timer, out["train_s"] = train_timed(model, X, Y, Xv, Yv, augmenter, cfg["epochs"], cfg["steps"])
    t0 = time.perf_counter()
    if cfg["optimize"]:
        # cap: one evaluation of its search at the lowest probability it tries (max / 2, the most
        # candidates) times the evaluations must fit in opt_budget_s, else fewer evaluations
        prob, dist = model.predict(Xv[0])[:2]
        t1 = time.perf_counter()
        model._instances_from_prediction(Yv[0].shape, prob, dist, prob_thresh=float(prob.max()) / 2,
                                         nms_thresh=max(cfg["opt_nms"]))
        probe = time.perf_counter() - t1
        maxiter = cfg["opt_maxiter"]
        if probe * maxiter * len(cfg["opt_nms"]) > cfg["opt_budget_s"]:
            maxiter = max(3, int(cfg["opt_budget_s"] / (probe * len(cfg["opt_nms"]))))
        out.update(opt_probe_s=probe, opt_maxiter=maxiter)
        print(f"threshold search: one evaluation {probe:.2f} s, maxiter {maxiter}", flush=True)
        th = model.optimize_thresholds(Xv, Yv, nms_threshs=cfg["opt_nms"], optimize_kwargs={"maxiter": maxiter})
    else:
        th = {"prob": cfg["prob"], "nms": cfg["nms"]}
    out["thresholds_s"] = time.perf_counter() - t0
    preds, wall, cpu = timed_predict(model, Xt, th)
    np.savez_compressed(os.path.join(work, f"orig_s{cfg['seed']}_pred.npz"), *preds)
    out.update(**step_medians(timer, cfg["warmup"]),
               predict_s=float(np.median(wall)), predict_cpu_s=float(np.median(cpu)),
               thresholds={k: float(v) for k, v in dict(th).items()})
else:  # timing: a fresh model's training steps, then the trained model's prediction
    model = StarDist3D(config(1, cfg["timing_steps"]), name="orig_timing",
                       basedir=os.path.join(work, "models_timing"))
    timer, _ = train_timed(model, X, Y, Xv, Yv, augmenter, 1, cfg["timing_steps"])
    out.update(**step_medians(timer, cfg["warmup"]), step_all_s=list(timer.t))
    trained = StarDist3D(None, name=f"orig_s{cfg['seed']}", basedir=os.path.join(work, "models"))
    preds, wall, cpu = timed_predict(trained, Xt[:1], {"prob": cfg["prob"], "nms": cfg["nms"]},
                                     reps=cfg["pred_reps"])
    out.update(predict_s=float(np.median(wall)), predict_cpu_s=float(np.median(cpu)),
               predict_all_s=wall, predict_n_objects=int(preds[0].max()))
with open(cfg["result"], "w") as f:
    json.dump(out, f, indent=1)
'''


# --------------------------------------------------------------------------- data


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
    """Write ``work/data.npz`` (train / val / test stacks) and ``work/counts.json``; return the counts."""
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
    counts["shape"] = list(shape)
    (work / "counts.json").write_text(json.dumps(counts))
    return counts


def _load(work: Path, part: str):
    d = np.load(work / "data.npz")
    n = int(d[f"n_{part}"])
    return [d[f"X_{part}_{i}"] for i in range(n)], [d[f"Y_{part}_{i}"].astype(np.int32) for i in range(n)]


# --------------------------------------------------------------------------- our side


def _set_threads(n: int) -> dict:
    import numba
    import torch

    torch.set_num_threads(n)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    return {"torch": torch.get_num_threads(), "numba": numba.get_num_threads()}


def _our_model(cfg: dict, epochs: int, steps: int):
    from ij_bridge.stardist import StarDist3D, StarDistConfig

    kw = dict(ndim=3, n_rays=cfg["n_rays"], grid=tuple(cfg["grid"]), anisotropy=tuple(cfg["anisotropy"]),
              patch_size=tuple(cfg["patch"]), batch_size=cfg["batch"], epochs=epochs,
              steps_per_epoch=steps, learning_rate=3e-4, seed=cfg["seed"], backbone=cfg["backbone"],
              head_channels=cfg["head"], train_precision=cfg.get("precision", "float32"))
    if cfg["backbone"] == "unet":
        kw.update(unet_depth=2, unet_n_filters=cfg["filters"])
    else:
        kw.update(resnet_n_blocks=4, resnet_n_filters=cfg["filters"])
    return StarDist3D(StarDistConfig(**kw), device="cpu")


def _timed_predict(model, xs, th: dict, reps: int = 1):
    """As the worker's: label stacks and wall / CPU seconds per call, after one warm-up call."""
    model.predict_instances(xs[0], prob_thresh=th["prob"], nms_thresh=th["nms"], normalize=False)
    preds, wall, cpu = [], [], []
    for x in xs:
        for _ in range(reps):
            t1, c1 = time.perf_counter(), time.process_time()
            lbl = model.predict_instances(x, prob_thresh=th["prob"], nms_thresh=th["nms"], normalize=False)[0]
            wall.append(time.perf_counter() - t1)
            cpu.append(time.process_time() - c1)
        preds.append(lbl)
    return preds, wall, cpu


def _train_stamped(model, X, Y, validation_data=None):
    stamps: list[float] = []
    cstamps: list[float] = []

    def stamp(done, total, msg):
        stamps.append(time.perf_counter())
        cstamps.append(time.process_time())

    # the stacks are already normalised (percentiles 1, 99.8) as the original gets them; our
    # training normalises them again (the same percentiles: a no-op up to rounding)
    model.train(X, Y, validation_data=validation_data, show_progress=False, optimize_thresholds=False,
                progress=stamp)
    return stamps, cstamps


def run_ours(work: Path, cfg: dict) -> dict:
    """Our side in this process: ``cfg["mode"]`` is "quality" or "timing" (as the worker's)."""
    import torch

    from ij_bridge.stardist import StarDist3D, optimize_thresholds

    threads = _set_threads(cfg["threads"])
    (X, Y), (Xv, Yv), (Xt, _) = _load(work, "train"), _load(work, "val"), _load(work, "test")
    out: dict = {"versions": {"torch": torch.__version__}, "threads": threads}
    if cfg["mode"] == "quality":
        model = _our_model(cfg, cfg["epochs"], cfg["steps"])
        t0 = time.perf_counter()
        stamps, cstamps = _train_stamped(model, X, Y, (Xv, Yv))
        out["train_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if cfg["optimize"]:
            th = optimize_thresholds(model, Xv, Yv, nms_threshs=cfg["opt_nms"], normalize=False)
        else:
            th = {"prob": cfg["prob"], "nms": cfg["nms"]}
        model.thresholds = {"prob": float(th["prob"]), "nms": float(th["nms"])}
        out["thresholds_s"] = time.perf_counter() - t0
        n = cfg["epochs"] * cfg["steps"]
        preds, wall, cpu = _timed_predict(model, Xt, model.thresholds)
        np.savez_compressed(work / f"ours_s{cfg['seed']}_pred.npz", *preds)
        model.save(work / f"ours_s{cfg['seed']}_model", overwrite=True)
        out.update(step_s=float(np.median(step_times(stamps[:n], cfg["steps"], cfg["warmup"]))),
                   step_cpu_s=float(np.median(step_times(cstamps[:n], cfg["steps"], cfg["warmup"]))),
                   predict_s=float(np.median(wall)), predict_cpu_s=float(np.median(cpu)),
                   thresholds=dict(model.thresholds))
        return out
    model = _our_model(cfg, 1, cfg["timing_steps"])
    stamps, cstamps = _train_stamped(model, X, Y)
    n = cfg["timing_steps"]
    out.update(step_s=float(np.median(step_times(stamps[:n], n, cfg["warmup"]))),
               step_cpu_s=float(np.median(step_times(cstamps[:n], n, cfg["warmup"]))),
               step_all_s=list(np.diff(stamps[:n])))
    trained = StarDist3D.load(work / f"ours_s{cfg['seed']}_model", device="cpu")
    preds, wall, cpu = _timed_predict(trained, Xt[:1], {"prob": cfg["prob"], "nms": cfg["nms"]},
                                      reps=cfg["pred_reps"])
    out.update(predict_s=float(np.median(wall)), predict_cpu_s=float(np.median(cpu)), predict_all_s=wall,
               predict_n_objects=int(preds[0].max()))
    return out


def run_original(py: Path, work: Path, cfg: dict, tag: str) -> dict:
    return run_worker(py, work, "original_worker3d.py", ORIGINAL_WORKER, cfg, tag)


# --------------------------------------------------------------------------- evaluation / report


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
    args = [sys.executable, str(script), "--3d"] + (["--sizes", "10000"] if quick else [])
    r = subprocess.run(args, capture_output=True, text=True, cwd=str(ROOT), timeout=3600)
    tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-25:])
    return f"NMS (`{' '.join(['scripts/bench_nms.py'] + args[2:])}`, exit {r.returncode}):\n\n```\n{tail}\n```"


def _mean(vals) -> float:
    return float(np.mean(vals)) if len(vals) else float("nan")


def _setup_lines(cfg: dict, counts: dict) -> list[str]:
    return [f"Data: synthetic anisotropic stacks {tuple(counts['shape'])} (z-step 2 x pixel): "
            f"{counts['train']['stacks']} train ({counts['train']['objects']} nuclei), 1 validation "
            f"({counts['val']['objects']}), {counts['test']['stacks']} test ({counts['test']['objects']} nuclei); "
            f"anisotropy from the training labels {tuple(round(a, 3) for a in counts['anisotropy'])}.",
            f"Network and budget: {cfg['backbone']} backbone ({cfg['filters']} filters, {cfg['head']}-channel "
            f"head), {cfg['n_rays']} rays, grid {tuple(cfg['grid'])}; {cfg['epochs']} epochs x {cfg['steps']} "
            f"steps, batch {cfg['batch']}, patch {tuple(cfg['patch'])}, Adam 3e-4."]


def report_quality(res: dict, cfg: dict, counts: dict, cmd: str, load: dict, nms: str) -> str:
    seeds = cfg["seeds"]
    who = [w for w in ("original", "ours") if res.get(w)]
    th_how = (f"each one's own optimize_thresholds on the validation stack, NMS thresholds {cfg['opt_nms']} "
              f"(the original's golden-section search capped at {cfg['opt_maxiter']} evaluations per NMS "
              "threshold; ours: a 0.05 grid refined on 0.01)" if cfg["optimize"] else
              f"fixed for both (prob {cfg['prob']}, nms {cfg['nms']}; no threshold search)")
    lines = [f"Command: `{cmd}`", "",
             f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.machine()}, "
             f"{os.cpu_count()} logical CPUs, shared with other jobs: load average {load['start']} at the "
             f"start, {load['end']} at the end. Seeds {seeds}; the original and ours trained side by side, "
             f"{cfg['threads']} thread(s) each ({thread_report()}).", *_setup_lines(cfg, counts),
             f"Thresholds: {th_how}.", ""]
    if res.get("original"):
        v = next(iter(res["original"].values()))["versions"]
        lines += [f"Original: stardist {v['stardist']}, tensorflow {v['tensorflow']}, csbdeep {v['csbdeep']}; "
                  f"TF threads {next(iter(res['original'].values()))['tf_threads']}.", ""]
    two = len(who) == 2
    lines += ["| metric (test stacks) | " + " | ".join(who) + (" | ours / original |" if two else " |"),
              "| --- | " + " | ".join("---" for _ in who) + (" | --- |" if two else " |")]
    for t in IOUS:
        for k in ("f1", "accuracy"):
            vals = {w: [res["eval"][(w, s)][str(t)][k] for s in seeds] for w in who}
            cells = [f"{_mean(vals[w]):.3f} ({', '.join(f'{v:.3f}' for v in vals[w])})" for w in who]
            ratio = ""
            if two:
                ratio = (f" | {_mean(vals['ours']) / _mean(vals['original']):.2f}"
                         if _mean(vals["original"]) > 0 else " | -")
            lines.append(f"| {k} @ IoU {t}, mean (per seed) | " + " | ".join(cells) + ratio + " |")
    for key, name in (("step_s", "train s/step, wall (median; side by side)"),
                      ("step_cpu_s", "train s/step, process CPU (median)"),
                      ("train_s", "train wall s (incl. validation)"),
                      ("thresholds_s", "threshold search wall s"),
                      ("predict_s", "predict s per test stack, wall (median)"),
                      ("predict_cpu_s", "predict s per test stack, CPU (median)")):
        vals = {w: _mean([res[w][s][key] for s in seeds]) for w in who}
        ratio = f" | {vals['ours'] / vals['original']:.2f}" if two and vals["original"] > 0 else (" | -" if two else "")
        lines.append(f"| {name} | " + " | ".join(f"{vals[w]:.3f}" for w in who) + ratio + " |")
    lines += ["", "Objects predicted / true at IoU 0.5 per seed: " + "; ".join(
        f"{w}: " + ", ".join(f"{res['eval'][(w, s)]['0.5']['n_pred']}/{res['eval'][(w, s)]['0.5']['n_true']}"
                             for s in seeds) for w in who) + ".",
              "Thresholds (prob, nms) per seed: " + "; ".join(
        f"{w}: " + ", ".join(f"({res[w][s]['thresholds']['prob']:.2f}, {res[w][s]['thresholds']['nms']:.2f})"
                             for s in seeds) for w in who) + ".", ""]
    if cfg["optimize"] and res.get("original"):
        lines[-1:] = [f"The original's search per seed: one evaluation at its lowest probability (max / 2) took "
                      + ", ".join(f"{res['original'][s]['opt_probe_s']:.2f} s" for s in seeds)
                      + "; evaluations allowed per NMS threshold "
                      + ", ".join(str(res['original'][s]['opt_maxiter']) for s in seeds)
                      + f" (asked {cfg['opt_maxiter']}; cut when {cfg['opt_maxiter']} x {len(cfg['opt_nms'])} "
                      "evaluations would exceed "
                      f"{cfg['opt_budget_s']:.0f} s).", ""]
    if nms:
        lines += [nms, ""]
    return "\n".join(lines)


def merge_reports(works: list[Path], cmd: str) -> str:
    """One quality table of several quality runs (``--merge``): same data and settings, other seeds."""
    res: dict = {"original": {}, "ours": {}, "eval": {}}
    cfg = counts = None
    loads, cmds, X0 = [], [], None
    for w in works:
        r = json.loads((w / "results.json").read_text())
        c = {k: v for k, v in r["cfg"].items() if k not in ("seeds", "work")}
        if cfg is not None and c != {k: v for k, v in cfg.items() if k not in ("seeds", "work")}:
            raise SystemExit(f"{w}: its settings differ from {works[0]}'s; not merged")
        X = _load(w, "train")[0] + _load(w, "test")[0]
        if X0 is not None and not all(np.array_equal(a, b) for a, b in zip(X0, X)):
            raise SystemExit(f"{w}: its data differ from {works[0]}'s; not merged")
        cfg = cfg or dict(r["cfg"], seeds=[])
        counts = counts or json.loads((w / "counts.json").read_text())
        X0 = X
        for who in ("original", "ours"):
            for s, v in r[who].items():
                res[who][int(s)] = v
        for key, v in r["eval"].items():
            who, s = key.split("/s")
            res["eval"][(who, int(s))] = v
        cfg["seeds"] += r["cfg"]["seeds"]
        loads.append(r["load"])
        cmds.append(r.get("cmd", f"(--work {w})"))
    load = {"start": ", ".join(str(v["start"]) for v in loads), "end": ", ".join(str(v["end"]) for v in loads)}
    md = report_quality(res, cfg, counts, cmd, load, "")
    return md.replace(f"Command: `{cmd}`", f"Commands (run side by side): {'; '.join(f'`{c}`' for c in cmds)}; "
                      f"merged by `{cmd}`", 1)


def timing_phase(py: Path | None, work: Path, cfg: dict, rounds: int, thread_list: list[int],
                 skip_ours: bool = False, after_round=None) -> list[dict]:
    """Interleaved rounds: for each thread count, the original then ours; one framework at a time.

    ``after_round(runs)`` is called after each round (the report so far survives a stopped run).
    """
    runs = []
    for r in range(rounds):
        for n in thread_list:
            for who in (["original"] if py else []) + ([] if skip_ours else ["ours"]):
                before = load_avg()
                c = dict(cfg, mode="timing", threads=n, seed=cfg["seeds"][0])
                t0 = time.perf_counter()
                set_thread_env(n)
                res = run_original(py, work, c, f"timing_r{r}_t{n}") if who == "original" else run_ours(work, c)
                row = {**res, "round": r + 1, "who": who, "threads": n,
                       "settings": res.get("tf_threads") or res.get("threads"), "load_before": before,
                       "load_after": load_avg(), "run_s": time.perf_counter() - t0}
                runs.append(row)
                print(f"round {r + 1}, {n} thread(s), {who}: {row['step_s']:.4f} s/step "
                      f"(CPU {row['step_cpu_s']:.4f}), predict {row['predict_s']:.3f} s/stack "
                      f"({row['predict_n_objects']} objects); threads {row['settings']}; "
                      f"load {before} -> {row['load_after']}; "
                      f"run {row['run_s']:.0f} s", flush=True)
        (work / "timing.json").write_text(json.dumps(runs, indent=1, default=float))
        if after_round is not None:
            after_round(runs)
    set_thread_env(cfg["threads"])
    return runs


def report_timing(runs: list[dict], cfg: dict, counts: dict, cmd: str) -> str:
    rounds = max(r["round"] for r in runs)
    who = [w for w in ("original", "ours") if any(r["who"] == w for r in runs)]
    threads = sorted({r["threads"] for r in runs})
    o = next((r for r in runs if r["who"] == "original"), None)
    u = next((r for r in runs if r["who"] == "ours"), None)
    lines = [f"Command: `{cmd}`", "",
             f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.machine()}, "
             f"{os.cpu_count()} logical CPUs. {rounds} interleaved rounds (for each thread count: original, "
             f"then ours), one framework at a time; threads per run: TF intra/inter op and OMP_NUM_THREADS "
             f"(original), torch.set_num_threads and numba.set_num_threads (ours)"
             + (f"; e.g. original {o['tf_threads']}, OMP_NUM_THREADS={o['omp_num_threads']}" if o else "")
             + (f"; ours {u['settings']}" if u else "") + f"; OMP_WAIT_POLICY="
             f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}.",
             f"Load average (1, 5, 15 min) before → after each run: "
             + "; ".join(f"r{r['round']} {r['who']} {r['threads']}t: {r['load_before']} → {r['load_after']}"
                         for r in runs) + ".",
             *_setup_lines(cfg, counts),
             f"Training: a fresh model, {cfg['timing_steps']} steps in one epoch, the first {cfg['warmup']} "
             f"dropped, median of the rest. Prediction: the seed-{cfg['seeds'][0]} model of the quality run "
             f"on test stack 0 ({tuple(counts['shape'])}), prob {cfg['prob']} / nms {cfg['nms']} for both, "
             f"median of {cfg['pred_reps']} calls after a warm-up call, normalisation excluded.", "",
             "| measure | threads | " + " | ".join(f"round {i + 1}" for i in range(rounds))
             + " | median | ours / original |",
             "| --- | --- |" + " ---: |" * (rounds + 2)]
    for key, name in (("step_s", "train s/step, wall"), ("step_cpu_s", "train s/step, CPU"),
                      ("predict_s", "predict s/stack, wall"), ("predict_cpu_s", "predict s/stack, CPU")):
        for n in threads:
            med = {}
            for w in who:
                vals = [r[key] for r in runs if r["who"] == w and r["threads"] == n]
                med[w] = float(np.median(vals))
                ratio = (f"{med['ours'] / med['original']:.2f}" if w == "ours" and "original" in med else "")
                lines.append(f"| {name}, {w} | {n} | " + " | ".join(f"{v:.4f}" for v in vals)
                             + f" | {med[w]:.4f} | {ratio} |")
    lines += ["", "Objects in the timed prediction: " + "; ".join(
        f"{w} {sorted({r['predict_n_objects'] for r in runs if r['who'] == w})}" for w in who) + ".", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--phase", choices=("all", "quality", "timing"), default="all",
                    help="'timing' reuses the trained models of an earlier quality run in --work")
    ap.add_argument("--merge", type=Path, nargs="+", default=None, metavar="WORK",
                    help="only report: the quality runs in these --work folders (e.g. one seed each, run "
                         "side by side) as one table; they must share data and settings")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 2 epochs x 5 steps, 1 round")
    ap.add_argument("--epochs", type=int, default=None, help="default 20 (2 with --quick)")
    ap.add_argument("--steps", type=int, default=None, help="default 50 (5 with --quick)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--patch", type=int, nargs=3, default=[16, 32, 32])
    ap.add_argument("--shape", type=int, nargs=3, default=[24, 80, 80], help="stack size z y x")
    ap.add_argument("--rays", type=int, default=32)
    ap.add_argument("--backbone", default="unet", choices=["unet", "resnet"])
    ap.add_argument("--filters", type=int, default=16)
    ap.add_argument("--head", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1,
                    help="threads per framework in the quality phase (default 1: both train side by side)")
    ap.add_argument("--optimize-thresholds", action="store_true",
                    help="quality phase: each picks thresholds on the validation stack with its own "
                         "optimize_thresholds (default: both use --prob / --nms)")
    ap.add_argument("--opt-nms", type=float, nargs="+", default=[0.3, 0.4, 0.5],
                    help="NMS thresholds both threshold searches consider")
    ap.add_argument("--opt-maxiter", type=int, default=20,
                    help="the original's golden-section search: evaluations per NMS threshold (its default 20)")
    ap.add_argument("--opt-budget", type=float, default=600.0,
                    help="seconds the original's threshold search may take: when one evaluation at its lowest "
                         "probability times the evaluations exceeds it, fewer evaluations (at least 3)")
    ap.add_argument("--prob", type=float, default=0.5)
    ap.add_argument("--nms", type=float, default=0.4)
    ap.add_argument("--seeds", default=None, help="comma-separated (default 0,1,2; 0 with --quick)")
    ap.add_argument("--rounds", type=int, default=None, help="timing rounds (default 3; 1 with --quick)")
    ap.add_argument("--timing-threads", default="1,2", help="thread counts of the timing phase")
    ap.add_argument("--timing-steps", type=int, default=None, help="steps per timing run (default 30)")
    ap.add_argument("--pred-reps", type=int, default=None, help="timed predictions per run (default 5)")
    ap.add_argument("--omp-wait-policy", choices=("PASSIVE", "ACTIVE"), default=None,
                    help="OMP_WAIT_POLICY for both frameworks (set before torch starts; default: unset, "
                         "OpenMP's own). On an oversubscribed machine spinning OpenMP threads make 2-thread "
                         "steps many times slower; PASSIVE avoids that")
    ap.add_argument("--precision", choices=("float32", "bfloat16", "auto"), default="float32",
                    help="our StarDistConfig.train_precision (training only; prediction stays float32)")
    ap.add_argument("--skip-original", action="store_true")
    ap.add_argument("--skip-ours", action="store_true")
    ap.add_argument("--run-nms", action="store_true",
                    help="also run scripts/bench_nms.py --3d (10k and 100k candidates; long)")
    ap.add_argument("--skip-nms", action="store_true", help="(the default; kept for old command lines)")
    ap.add_argument("--venv", type=Path, default=VENV)
    ap.add_argument("--work", type=Path, default=WORK)
    ap.add_argument("--out", type=Path, default=OUT_MD, help="markdown file to write ('-' for none)")
    args = ap.parse_args(argv)
    if args.omp_wait_policy:
        if "torch" in sys.modules:
            raise SystemExit("--omp-wait-policy must be set before torch is imported")
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy

    set_thread_env(args.threads)
    t0 = time.perf_counter()
    work = args.work.resolve()
    q = args.quick
    cfg = {"epochs": args.epochs or (2 if q else 20), "steps": args.steps or (5 if q else 50),
           "batch": args.batch, "patch": list(args.patch), "n_rays": args.rays, "grid": [1, 2, 2],
           "backbone": args.backbone, "filters": args.filters, "head": args.head, "threads": args.threads,
           "warmup": 2 if q else 5, "optimize": bool(args.optimize_thresholds), "opt_nms": list(args.opt_nms),
           "opt_maxiter": args.opt_maxiter, "opt_budget_s": args.opt_budget, "prob": args.prob, "nms": args.nms,
           "seeds": [int(v) for v in (args.seeds or ("0" if q else "0,1,2")).split(",")],
           "timing_steps": args.timing_steps or (8 if q else 30), "pred_reps": args.pred_reps or (2 if q else 5),
           "precision": args.precision, "work": str(work)}
    cmd = (".venv/bin/python scripts/bench_stardist3d.py " + " ".join(argv)).strip()
    if args.merge:
        write_markdown(merge_reports(args.merge, cmd), args.out)
        return 0
    py = None if args.skip_original else original_python(args.venv)
    if args.phase == "timing":
        if not (work / "results.json").exists():
            raise SystemExit(f"{work} holds no quality run (results.json); run --phase quality --work {work} first")
        prev = json.loads((work / "results.json").read_text())["cfg"]
        keep = ("batch", "patch", "n_rays", "grid", "backbone", "filters", "head", "seeds", "epochs", "steps")
        cfg.update({k: prev[k] for k in keep})  # the network and data of the trained models
        if args.seeds:
            cfg["seeds"] = [int(v) for v in args.seeds.split(",")]
    if args.phase in ("all", "quality"):
        counts = prepare_data(work, tuple(args.shape), q)
    else:
        counts = json.loads((work / "counts.json").read_text())
    cfg["anisotropy"] = counts["anisotropy"]
    print(f"data in {work} ({time.perf_counter() - t0:.0f} s): {counts}", flush=True)
    mds = []
    if args.phase in ("all", "quality"):
        load = {"start": load_avg()}
        res: dict = {"original": {}, "ours": {}, "eval": {}}
        with ThreadPoolExecutor(1) as pool:  # the original's seeds in a second thread, ours here
            futs = {}
            if py is not None:
                for seed in cfg["seeds"]:
                    futs[seed] = pool.submit(run_original, py, work, dict(cfg, mode="quality", seed=seed),
                                             f"s{seed}")
            if not args.skip_ours:
                for seed in cfg["seeds"]:
                    print(f"seed {seed}: ij_bridge.stardist 3D ...", flush=True)
                    res["ours"][seed] = run_ours(work, dict(cfg, mode="quality", seed=seed))
                    res["eval"][("ours", seed)] = evaluate(work, "ours", seed)
                    print("  ours", seed, res["ours"][seed]["step_s"], res["ours"][seed]["thresholds"],
                          res["eval"][("ours", seed)], flush=True)
            for seed, fut in futs.items():
                res["original"][seed] = fut.result()
                res["eval"][("original", seed)] = evaluate(work, "orig", seed)
                print("  original", seed, res["original"][seed]["step_s"], res["original"][seed]["thresholds"],
                      res["eval"][("original", seed)], flush=True)
        nms = run_nms(q) if args.run_nms else ""
        load["end"] = load_avg()
        mds.append(report_quality(res, cfg, counts, cmd, load, nms))
        (work / "results.json").write_text(json.dumps(
            {"original": res["original"], "ours": res["ours"], "cfg": cfg, "load": load, "cmd": cmd,
             "eval": {f"{a}/s{b}": v for (a, b), v in res["eval"].items()}}, indent=1, default=float))
    if args.phase in ("all", "timing"):
        rounds = args.rounds or (1 if q else 3)
        threads = [int(v) for v in args.timing_threads.split(",") if v]

        def partial(runs):  # the rounds so far, in case the run is stopped
            if str(args.out) != "-":
                args.out.parent.mkdir(parents=True, exist_ok=True)
                tmp = args.out.with_name(args.out.name + ".tmp")
                note = f" (partial: {runs[-1]['round']} round(s) so far)"
                tmp.write_text("\n".join(mds + [report_timing(runs, cfg, counts, cmd + note)]))
                os.replace(tmp, args.out)

        runs = timing_phase(py, work, cfg, rounds, threads, skip_ours=args.skip_ours, after_round=partial)
        mds.append(report_timing(runs, cfg, counts, cmd))
    write_markdown("\n".join(mds), args.out)
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
