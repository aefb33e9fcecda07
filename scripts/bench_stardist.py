#!/usr/bin/env python
"""Benchmark: ij_bridge.stardist (PyTorch) against the original StarDist 0.9.2 (TensorFlow).

Both implementations get the same data, the same normalisation, the same
network shape (U-Net depth 3, 32 filters, 128-channel head, 32 rays, grid
(2, 2)) and the same training budget (epochs × steps × batch 4 × patch 128,
learning rate 3e-4, flips/90° rotations/intensity augmentation), on CPU with
the same number of threads. Quality is measured over several training seeds
(``--seeds``; both frameworks train side by side, one thread each), because
at short budgets a single run mostly measures when it left the initial
plateau. Thresholds are optimised on the validation split
by each implementation's own ``optimize_thresholds``; all scores are computed
by one evaluation code (``ij_bridge.metrics``) on the saved label images, and
the original's own ``stardist.matching`` is run on its predictions as a
cross-check of our metrics.

Data sets
---------
* ``real``: ``../shared/data/nuclei2d`` (left half of a DSB 2018 field,
  512×256, 73 nuclei; the right half is withheld). Rows 0–255 train, rows
  256–383 validation, rows 384–511 test (objects cut by a split line stay in
  both parts, as cut objects).
* ``synthetic``: images from :func:`ij_bridge.synthetic.synthetic_nuclei`
  (256×256, crowded, touching/overlapping nuclei, Poisson + Gaussian noise):
  6 train, 2 validation, 4 test images (seeded).

Reported: F1 and accuracy (tp/(tp+fp+fn)) at IoU 0.5 and 0.7 on the test
parts; training seconds per step (median over steps, validation excluded) and
total training wall time; prediction seconds per 256×256 image (median of
repeats, thresholds fixed at prob 0.5 / nms 0.4 so that both do similar NMS
work); NMS seconds for 10k and 100k candidate polygons (identical candidates:
star distances of synthetic nuclei, jittered, on a grid-2 lattice).

The original runs in its own virtual environment, ``.bench/stardist-tf``
(git-ignored), created on first use with tensorflow-cpu 2.15.1, stardist 0.9.2,
csbdeep 0.8.2 and numpy < 2 from PyPI (about 1.8 GB on disk); it runs as a
subprocess executing a small script that this benchmark writes.

Usage::

    .venv/bin/python scripts/bench_stardist.py              # full run (20 epochs x 50 steps, seeds 0,1,2)
    .venv/bin/python scripts/bench_stardist.py --quick      # smoke run (2 x 10 steps)
    .venv/bin/python scripts/bench_stardist.py --skip-original --epochs 5
    .venv/bin/python scripts/bench_stardist.py --phase quality --skip-original --ours-init torch \
        --work .bench/ablation-torch                        # initialisation ablation
    .venv/bin/python scripts/bench_stardist.py --3d [...]   # StarDist 3D: scripts/bench_stardist3d.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_common  # noqa: E402  (set-up shared with bench_stardist3d.py)
from _bench_common import ORIGINAL_REQS, TF_PRELUDE, run_worker  # noqa: E402,F401
from _bench_common import load_avg as _load_avg, step_times as _step_times  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "nuclei2d"
VENV = ROOT / ".bench" / "stardist-tf"  # --venv: an existing one (e.g. /work/venvs/stardist-tf)
WORK = ROOT / ".bench" / "stardist-run"
OUT_MD = ROOT / ".bench" / "stardist_results.md"  # copied into docs/benchmarks.md by hand
IOUS = (0.5, 0.7)

# --------------------------------------------------------------------------- original side

ORIGINAL_WORKER = TF_PRELUDE + r'''
from stardist.models import Config2D, StarDist2D
from stardist.matching import matching_dataset
from stardist.nms import non_maximum_suppression_sparse

out = {"versions": versions(), "tf_threads": tf_threads()}
work = cfg["work"]
data = np.load(os.path.join(work, "data.npz"))


def augmenter(x, y):
    # flips and 90 degree rotations (same as ours), intensity scale/shift
    k = np.random.randint(4)
    x, y = np.rot90(x, k), np.rot90(y, k)
    for ax in (0, 1):
        if np.random.rand() < 0.5:
            x, y = np.flip(x, ax), np.flip(y, ax)
    x = x * np.random.uniform(0.6, 1.6) + np.random.uniform(-0.2, 0.2)
    return np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y)


def load(ds, part):
    n = int(data[f"{ds}_n_{part}"])
    return [data[f"{ds}_X_{part}_{i}"] for i in range(n)], [data[f"{ds}_Y_{part}_{i}"] for i in range(n)]


def config(epochs, steps):
    return Config2D(n_rays=32, grid=(2, 2), n_channel_in=1, use_gpu=False,
                    train_patch_size=(128, 128), train_batch_size=4,
                    train_epochs=epochs, train_steps_per_epoch=steps,
                    train_learning_rate=3e-4, train_tensorboard=False)


if cfg["mode"] == "quality":
    for ds in cfg["datasets"]:
        np.random.seed(cfg["seed"]); tf.random.set_seed(cfg["seed"])
        (X, Y), (Xv, Yv), (Xt, Yt) = load(ds, "train"), load(ds, "val"), load(ds, "test")
        model = StarDist2D(config(cfg["epochs"], cfg["steps"]), name=f"orig_{ds}_s{cfg['seed']}",
                           basedir=os.path.join(work, "models"))
        timer, t_train = train_timed(model, X, Y, Xv, Yv, augmenter, cfg["epochs"], cfg["steps"])
        t0 = time.perf_counter()
        th = model.optimize_thresholds(Xv, Yv)
        t_opt = time.perf_counter() - t0
        preds = [model.predict_instances(x, prob_thresh=th["prob"], nms_thresh=th["nms"])[0] for x in Xt]
        np.savez_compressed(os.path.join(work, f"orig_{ds}_s{cfg['seed']}_pred.npz"), *preds)
        ms = matching_dataset(Yt, preds, thresh=list(cfg["ious"]), show_progress=False)
        steps = np.asarray(timer.t[cfg["warmup"]:] or timer.t)
        out[ds] = {"step_s": float(np.median(steps)), "train_s": t_train, "thresholds_s": t_opt,
                   "thresholds": {k: float(v) for k, v in th.items()},
                   "own_matching": {str(t): m._asdict() for t, m in zip(cfg["ious"], ms)}}
        print(ds, json.dumps(out[ds]["step_s"]), flush=True)
else:
    # training steps (no validation inside the timed steps)
    np.random.seed(cfg["seed"]); tf.random.set_seed(cfg["seed"])
    (X, Y), (Xv, Yv) = load("real", "train"), load("real", "val")
    model = StarDist2D(config(1, cfg["timing_steps"]), name="orig_timing",
                       basedir=os.path.join(work, "models_timing"))
    timer, _ = train_timed(model, X, Y, Xv, Yv, augmenter, 1, cfg["timing_steps"])
    out.update(step_medians(timer, cfg["warmup"]))
    out["step_all_s"] = list(timer.t)
    if cfg.get("train_only"):  # --phase steps: training steps only
        with open(cfg["result"], "w") as f:
            json.dump(out, f, indent=1, default=float)
        sys.exit(0)
    # prediction on a 256x256 image with the model trained on synthetic data
    pm = model
    if os.path.exists(os.path.join(work, "models", f"orig_synthetic_s{cfg['seed']}", "weights_best.h5")):
        pm = StarDist2D(None, name=f"orig_synthetic_s{cfg['seed']}", basedir=os.path.join(work, "models"))
    img = data["timing_image"]
    pm.predict_instances(img, prob_thresh=0.5, nms_thresh=0.4)
    reps, cpu = [], []
    for _ in range(cfg["pred_reps"]):
        t1, c1 = time.perf_counter(), time.process_time()
        lbl, _ = pm.predict_instances(img, prob_thresh=0.5, nms_thresh=0.4)
        reps.append(time.perf_counter() - t1); cpu.append(time.process_time() - c1)
    out["predict_s"] = float(np.median(reps))
    out["predict_cpu_s"] = float(np.median(cpu))
    out["predict_n_objects"] = int(lbl.max())
    w = np.load(os.path.join(work, "nms10k.npz"))
    non_maximum_suppression_sparse(w["dist"][:500], w["prob"][:500], w["points"][:500], nms_thresh=0.4)
    for name in cfg["nms_sets"]:
        c = np.load(os.path.join(work, f"{name}.npz"))
        t1, c1 = time.perf_counter(), time.process_time()
        pts, pr, di, inds = non_maximum_suppression_sparse(c["dist"], c["prob"], c["points"], nms_thresh=0.4)
        out[name] = {"nms_s": time.perf_counter() - t1, "nms_cpu_s": time.process_time() - c1,
                     "kept": int(len(inds))}
        print(name, out[name], flush=True)

with open(cfg["result"], "w") as f:
    json.dump(out, f, indent=1, default=float)
'''


def ensure_venv(log=print) -> Path:
    """Create ``.bench/stardist-tf`` with the original StarDist if it is missing."""
    return _bench_common.ensure_venv(VENV, log)


# --------------------------------------------------------------------------- data


def _normalize(x: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(x, (1.0, 99.8))
    return ((x.astype(np.float32) - lo) / (hi - lo + 1e-20)).astype(np.float32)


def _nms_candidates(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` candidate polygons at the density a grid-2 StarDist prediction produces."""
    from ij_bridge.stardist import edt_prob, star_dist_2d
    from ij_bridge.synthetic import synthetic_nuclei

    # ~1 candidate per 4 foreground pixels: size the image so that n fit
    side = int(np.ceil(np.sqrt(n * 4 / 0.28) / 64) * 64)
    n_obj = int(side * side * 0.28 / (np.pi * 9**2))
    _, lbl = synthetic_nuclei((side, side), n_objects=n_obj, radius=(6, 12), overlap=0.4, seed=seed)
    dist = star_dist_2d(lbl, 32, grid=(2, 2))
    prob = edt_prob(lbl)[::2, ::2]
    rng = np.random.default_rng(seed)
    ind = np.argwhere(prob > 0)
    sel = rng.choice(len(ind), size=min(n, len(ind)), replace=False)
    ind = ind[np.sort(sel)]
    d = dist[ind[:, 0], ind[:, 1]] * rng.uniform(0.85, 1.15, (len(ind), 32)).astype(np.float32)
    p = np.clip(prob[ind[:, 0], ind[:, 1]] + rng.normal(0, 0.05, len(ind)), 0.01, 1).astype(np.float32)
    return {"dist": np.maximum(d, 0.5).astype(np.float32), "prob": p,
            "points": (ind * 2).astype(np.int64)}


def prepare_data(work: Path, quick: bool) -> dict[str, int]:
    import tifffile

    from ij_bridge.synthetic import synthetic_nuclei

    work.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    img = _normalize(tifffile.imread(DATA / "train_left_img.tif"))
    lbl = tifffile.imread(DATA / "train_left_mask.tif").astype(np.int32)
    if img.shape != (512, 256):
        raise RuntimeError(f"unexpected shape of {DATA}: {img.shape}")

    def relabel(y):
        from skimage.segmentation import relabel_sequential
        return relabel_sequential(y)[0].astype(np.int32)

    splits = {"train": (0, 256), "val": (256, 384), "test": (384, 512)}
    for part, (a, b) in splits.items():
        arrays[f"real_X_{part}_0"] = img[a:b].copy()
        arrays[f"real_Y_{part}_0"] = relabel(lbl[a:b])
        arrays[f"real_n_{part}"] = np.array(1)
    counts = {"real": {p: int(arrays[f"real_Y_{p}_0"].max()) for p in splits}}
    n_syn = {"train": 6, "val": 2, "test": 4}
    counts["synthetic"] = {}
    for part, n in n_syn.items():
        tot = 0
        for i in range(n):
            seed = {"train": 100, "val": 200, "test": 300}[part] + i
            x, y = synthetic_nuclei((256, 256), n_objects=55, radius=(6, 12), overlap=0.4, seed=seed)
            arrays[f"synthetic_X_{part}_{i}"] = _normalize(x)
            arrays[f"synthetic_Y_{part}_{i}"] = y
            tot += int(y.max())
        arrays[f"synthetic_n_{part}"] = np.array(n)
        counts["synthetic"][part] = tot
    arrays["timing_image"] = arrays["synthetic_X_test_0"]
    np.savez(work / "data.npz", **arrays)
    for name, n in (("nms10k", 10_000), ("nms100k", 100_000)):
        if quick and n > 10_000:
            continue
        np.savez(work / f"{name}.npz", **_nms_candidates(n))
    return counts


def _load(work: Path, ds: str, part: str):
    d = np.load(work / "data.npz")
    n = int(d[f"{ds}_n_{part}"])
    return [d[f"{ds}_X_{part}_{i}"] for i in range(n)], [d[f"{ds}_Y_{part}_{i}"] for i in range(n)]


# --------------------------------------------------------------------------- our side


def _our_config(cfg: dict, epochs: int, steps: int):
    from ij_bridge.stardist import StarDistConfig

    return StarDistConfig(n_rays=32, grid=(2, 2), patch_size=(128, 128), batch_size=4, epochs=epochs,
                          steps_per_epoch=steps, learning_rate=3e-4, seed=cfg["seed"],
                          train_precision=cfg.get("precision", "float32"))


INIT_VARIANTS = {
    "default": "the package's: Glorot-uniform kernels, zero biases, output biases at the data's priors",
    "glorot": "Glorot-uniform kernels, zero biases, no prior output biases",
    "torch+priors": "PyTorch's default layer initialisation, output biases at the data's priors",
    "torch": "PyTorch's default layer initialisation, no prior output biases (the code before the change)",
}


def _ablate_init(model, variant: str, seed: int) -> None:
    """Initialisation ablation (``--ours-init``): undo parts of the package's initialisation."""
    import torch

    if variant not in INIT_VARIANTS:
        raise SystemExit(f"--ours-init must be one of {sorted(INIT_VARIANTS)}, got {variant!r}")
    if variant.startswith("torch"):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for m in model.net.modules():
                if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d)):
                    m.reset_parameters()
    if variant in ("torch", "glorot"):
        model._fresh_weights = False  # train() then leaves the output biases alone


def run_ours(work: Path, cfg: dict) -> dict:
    """Our side, in this process: ``cfg["mode"]`` is "quality" or "timing"."""
    import torch

    from ij_bridge import stardist as sd

    torch.set_num_threads(cfg["threads"])
    out: dict = {"versions": {"torch": torch.__version__}}
    if cfg["mode"] == "quality":
        for ds in cfg["datasets"]:
            X, Y = _load(work, ds, "train")
            Xv, Yv = _load(work, ds, "val")
            Xt, _ = _load(work, ds, "test")
            model = sd.StarDist2D(_our_config(cfg, cfg["epochs"], cfg["steps"]), device="cpu")
            _ablate_init(model, cfg.get("ours_init", "default"), cfg["seed"])
            stamps: list[float] = []
            t0 = time.perf_counter()
            model.train(X, Y, validation_data=(Xv, Yv), show_progress=False, optimize_thresholds=False,
                        progress=lambda done, total, msg: stamps.append(time.perf_counter()))
            t_train = time.perf_counter() - t0
            t0 = time.perf_counter()
            th = sd.optimize_thresholds(model, Xv, Yv, normalize=False)
            t_opt = time.perf_counter() - t0
            preds = [model.predict_instances(x, prob_thresh=th["prob"], nms_thresh=th["nms"],
                                             normalize=False)[0] for x in Xt]
            np.savez_compressed(work / f"ours_{ds}_s{cfg['seed']}_pred.npz", *preds)
            model.save(work / f"ours_{ds}_s{cfg['seed']}_model", overwrite=True)
            steps = _step_times(stamps[: cfg["epochs"] * cfg["steps"]], cfg["steps"], cfg["warmup"])
            out[ds] = {"step_s": float(np.median(steps)), "train_s": t_train, "thresholds_s": t_opt,
                       "thresholds": {k: float(v) for k, v in th.items()}}
            print("ours", ds, out[ds]["step_s"], flush=True)
        return out

    X, Y = _load(work, "real", "train")
    model = sd.StarDist2D(_our_config(cfg, 1, cfg["timing_steps"]), device="cpu")
    stamps, cstamps = [], []

    def stamp(done, total, msg):
        stamps.append(time.perf_counter())
        cstamps.append(time.process_time())

    model.train(X, Y, show_progress=False, optimize_thresholds=False, progress=stamp)
    out["step_s"] = float(np.median(_step_times(stamps, cfg["timing_steps"], cfg["warmup"])))
    out["step_cpu_s"] = float(np.median(_step_times(cstamps, cfg["timing_steps"], cfg["warmup"])))
    out["torch_threads"] = torch.get_num_threads()
    if cfg.get("train_only"):  # --phase steps: training steps only
        return out
    pm = model
    if (work / f"ours_synthetic_s{cfg['seed']}_model").exists():
        pm = sd.StarDist2D.load(work / f"ours_synthetic_s{cfg['seed']}_model", device="cpu")
    img = np.load(work / "data.npz")["timing_image"]
    pm.predict_instances(img, prob_thresh=0.5, nms_thresh=0.4, normalize=False)
    reps, cpu = [], []
    for _ in range(cfg["pred_reps"]):
        t1, c1 = time.perf_counter(), time.process_time()
        lbl, _ = pm.predict_instances(img, prob_thresh=0.5, nms_thresh=0.4, normalize=False)
        reps.append(time.perf_counter() - t1)
        cpu.append(time.process_time() - c1)
    out["predict_s"] = float(np.median(reps))
    out["predict_cpu_s"] = float(np.median(cpu))
    out["predict_n_objects"] = int(lbl.max())
    from ij_bridge.stardist.geometry import dist_to_coord
    from ij_bridge.stardist.nms import non_maximum_suppression

    w = np.load(work / "nms10k.npz")  # warm-up: loads the compiled NMS kernels from numba's cache
    non_maximum_suppression(dist_to_coord(w["dist"][:500], w["points"][:500]), w["prob"][:500], 0.4,
                            centres=w["points"][:500])
    for name in cfg["nms_sets"]:
        c = np.load(work / f"{name}.npz")
        t1, c1 = time.perf_counter(), time.process_time()
        keep = non_maximum_suppression(dist_to_coord(c["dist"], c["points"]), c["prob"], 0.4,
                                       centres=c["points"])
        out[name] = {"nms_s": time.perf_counter() - t1, "nms_cpu_s": time.process_time() - c1,
                     "kept": int(len(keep))}
        print("ours", name, out[name], flush=True)
    return out


def run_original(py: Path, work: Path, cfg: dict, tag: str) -> dict:
    return run_worker(py, work, "original_worker.py", ORIGINAL_WORKER, cfg, tag)


# --------------------------------------------------------------------------- evaluation / report


def evaluate(work: Path, who: str, ds: str, seed: int) -> dict[str, dict]:
    from ij_bridge.metrics import matching_dataset

    _, Yt = _load(work, ds, "test")
    f = np.load(work / f"{who}_{ds}_s{seed}_pred.npz")
    preds = [f[f"arr_{i}"] for i in range(len(f.files))]
    ms = matching_dataset(Yt, preds, thresh=list(IOUS))
    return {str(t): m.to_dict() for t, m in zip(IOUS, ms)}


def _fmt(x, nd=3):
    return "–" if x is None else f"{x:.{nd}f}"


def _median_rounds(rounds: list[dict], key: str, sub: str | None = None):
    vals = [(r[key][sub] if sub else r[key]) for r in rounds if key in r]
    return float(np.median(vals)) if vals else None


def _seed_scores(res: dict, who: str, ds: str, t: float, key: str) -> list[float]:
    return [v[str(t)][key] for (w, d, _), v in sorted(res["eval"].items(), key=lambda kv: kv[0][2])
            if w == who and d == ds]


def report(res: dict, cfg: dict, counts: dict, cmd: str) -> str:
    qo, qu = res.get("quality_original") or {}, res.get("quality_ours") or {}
    to, tu = res.get("timing_original", []), res.get("timing_ours", [])
    seeds = sorted(set(qo) | set(qu))
    lines = ["## StarDist 2D: ij_bridge (PyTorch) vs. original StarDist 0.9.2 (TensorFlow)", ""]
    lines.append(f"Command: `{cmd}`  ")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines.append(f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: "
                 f"{os.cpu_count()} CPU cores ({platform.machine()}), no GPU; timings with {cfg['threads']} "
                 f"thread(s) per framework, one framework at a time (load average at the end {load:.2f}).  ")
    vers = [", ".join(f"{k} {v}" for k, v in q[seeds[0]]["versions"].items()) for q in (qo, qu) if q]
    if vers:
        lines.append("Versions: " + "; ".join(vers) + ".  ")
    lines.append(f"Training budget (both): {cfg['epochs']} epochs × {cfg['steps']} steps, batch 4, patch "
                 "128×128, 32 rays, grid (2, 2), U-Net depth 3 / 32 filters, lr 3e-4, flips + rot90 + "
                 "intensity augmentation, seeds "
                 f"{', '.join(map(str, seeds)) or '–'} (both frameworks train side by side, "
                 f"{cfg.get('quality_threads', 1)} thread each); thresholds optimised on the validation "
                 "split by each implementation's own optimiser.  ")
    if cfg.get("ours_init", "default") != "default":
        lines.append(f"**Ablation**: our side initialised with `--ours-init {cfg['ours_init']}`: "
                     f"{INIT_VARIANTS[cfg['ours_init']]}.  ")
    lines.append(f"Objects (train/val/test): real {counts['real']}, synthetic {counts['synthetic']}. "
                 f"Timings: median over {len(tu) or len(to)} interleaved rounds (original, ours, original, ...).")
    lines.append("")
    lines.append("| measure | data | original | ours | ours / original |")
    lines.append("| --- | --- | ---: | ---: | ---: |")

    def row(name, ds, a, b, nd=3):
        r = (b / a) if (a and b is not None) else None
        lines.append(f"| {name} | {ds} | {_fmt(a, nd)} | {_fmt(b, nd)} | {_fmt(r, 2) if r else '–'} |")

    def mean(v):
        return float(np.mean(v)) if v else None

    for ds in cfg["datasets"]:
        for t in IOUS:
            for key in ("f1", "accuracy"):
                row(f"{key} @ IoU {t}, mean over {len(seeds)} seed{'s' if len(seeds) != 1 else ''}", ds,
                    mean(_seed_scores(res, "original", ds, t, key)), mean(_seed_scores(res, "ours", ds, t, key)))
    if to or tu:
        for kind, suffix in (("wall", "_s"), ("CPU", "_cpu_s")):
            row(f"training s / step ({kind})", "real", _median_rounds(to, "step" + suffix),
                _median_rounds(tu, "step" + suffix), 4)
            row(f"prediction s / 256×256 image ({kind})", "synthetic", _median_rounds(to, "predict" + suffix),
                _median_rounds(tu, "predict" + suffix), 4)
            for name in cfg["nms_sets"]:
                n = "10k" if name == "nms10k" else "100k"
                row(f"NMS s, {n} candidates ({kind})", "synthetic", _median_rounds(to, name, "nms" + suffix),
                    _median_rounds(tu, name, "nms" + suffix), 3)
    for ds in cfg["datasets"]:
        if qo or qu:
            row("training wall s, whole budget incl. validation (mean)", ds,
                mean([q[ds]["train_s"] for q in qo.values()]), mean([q[ds]["train_s"] for q in qu.values()]), 1)
            row("threshold optimisation s (mean)", ds, mean([q[ds]["thresholds_s"] for q in qo.values()]),
                mean([q[ds]["thresholds_s"] for q in qu.values()]), 1)
    lines.append("")
    if seeds:
        lines.append("Per seed, F1 @ IoU 0.5 / 0.7 (original → ours):")
        lines.append("")
        lines.append("| data | " + " | ".join(f"seed {sd}" for sd in seeds) + " |")
        lines.append("| --- |" + " ---: |" * len(seeds))
        for ds in cfg["datasets"]:
            cells = []
            for sd in seeds:
                o = res["eval"].get(("original", ds, sd)); u = res["eval"].get(("ours", ds, sd))
                f = lambda e, t: _fmt(e[str(t)]["f1"], 2) if e else "–"  # noqa: E731
                cells.append(f"{f(o, 0.5)}/{f(o, 0.7)} → {f(u, 0.5)}/{f(u, 0.7)}")
            lines.append(f"| {ds} | " + " | ".join(cells) + " |")
        lines.append("")
    notes = []
    for name in cfg["nms_sets"]:
        if to and tu:
            notes.append(f"{name}: kept {to[0][name]['kept']} (original) vs {tu[0][name]['kept']} (ours)")
    if to and tu:
        notes.append(f"objects in the timed prediction: {to[0]['predict_n_objects']} (original) vs "
                     f"{tu[0]['predict_n_objects']} (ours)")
    for ds in cfg["datasets"]:
        for sd in seeds[:1]:
            if sd in qo:
                a = qo[sd][ds]["own_matching"]["0.5"]["f1"]
                b = res["eval"][("original", ds, sd)]["0.5"]["f1"]
                notes.append(f"metrics cross-check ({ds}, seed {sd}): stardist.matching F1@0.5 {a:.4f} vs "
                             f"ij_bridge.metrics {b:.4f} on the same predictions")
    if notes:
        lines.append("Notes: " + "; ".join(notes) + ".")
        lines.append("")
    lines += [
        "How it was measured:",
        "",
        "- Data: `real` = `../shared/data/nuclei2d` (512×256, the left half of a DSB 2018 field; the right "
        "half is withheld): rows 0–255 train, 256–383 validation, 384–511 test. `synthetic` = "
        "`ij_bridge.synthetic.synthetic_nuclei` 256×256 images with 55 touching/overlapping nuclei, "
        "Poisson + Gaussian noise (6 train / 2 validation / 4 test, fixed seeds). Images are "
        "percentile-normalised (1, 99.8) once and given to both implementations.",
        "- Scores: F1 and accuracy = tp/(tp+fp+fn) pooled over the test images, computed by "
        "`ij_bridge.metrics.matching_dataset` for both (cross-checked against `stardist.matching` above).",
        f"- Training s/step: a separate 1-epoch run of {cfg['timing_steps']} steps on the real training "
        "split per round; median wall time between consecutive optimisation steps (batch sampling and "
        "augmentation included), after a warm-up.",
        "- Prediction: median of repeated `predict_instances` on one 256×256 synthetic image with the "
        "model trained on synthetic data, prob 0.5 / nms 0.4 for both, normalisation excluded, after a "
        "warm-up call.",
        "- wall = elapsed time; CPU = CPU time of the whole process (all its threads), which is less "
        "sensitive to other jobs on a shared machine but counts threads that spin while waiting.",
        "- NMS: the same candidate polygons for both (star distances of synthetic nuclei on a grid-2 "
        "lattice, jittered by ±15 %, probabilities from the distance transform plus noise), nms_thresh 0.4: "
        "the original's `non_maximum_suppression_sparse` vs. our `dist_to_coord` + "
        "`non_maximum_suppression`.",
        "",
        "Ratios below 1 in the time rows and above 1 in the quality rows favour ours. The real "
        "test split is small (one 128×256 crop, 26 objects): at short budgets its scores depend on "
        "when a run leaves the initial plateau, so they vary by tens of points between seeds for "
        "both implementations; compare means over seeds, not single runs.",
    ]
    return "\n".join(lines) + "\n"


def steps_phase(py: Path | None, work: Path, cfg: dict, rounds: int, precisions: list[str],
                skip_ours: bool = False) -> str:
    """Training s/step only, interleaved per round: original, then ours in each precision.

    Each run is a fresh process for the original (TensorFlow) and a fresh model here (ours),
    one epoch of ``cfg["timing_steps"]`` steps on the real training image, the first
    ``cfg["warmup"]`` steps dropped. Returns a markdown table with the ratios of the
    medians over rounds and the per-round ratios (each against that round's original).
    """
    runs: list[dict] = []
    for r in range(rounds):
        row: dict = {"round": r + 1, "load_before": _load_avg()}
        if py:
            o = run_original(py, work, dict(cfg, mode="timing", train_only=True, seed=cfg["seeds"][0]),
                             f"steps{r}")
            row["original"] = o
            print(f"round {r + 1}: original {o['step_s']:.4f} s/step (TF threads {o.get('tf_threads')}), "
                  f"load {_load_avg()}", flush=True)
        if not skip_ours:
            for prec in precisions:
                u = run_ours(work, dict(cfg, mode="timing", train_only=True, seed=cfg["seeds"][0],
                                        precision=prec))
                row[prec] = u
                print(f"round {r + 1}: ours {prec} {u['step_s']:.4f} s/step (torch threads "
                      f"{u['torch_threads']}), load {_load_avg()}", flush=True)
        row["load_after"] = _load_avg()
        runs.append(row)
    (work / "steps.json").write_text(json.dumps(runs, indent=1, default=float))
    import torch

    who = (["original"] if py else []) + ([] if skip_ours else precisions)
    lines = [f"Training s/step, {cfg['timing_steps']} steps per run ({cfg['warmup']} warm-up steps dropped), "
             f"{rounds} interleaved rounds ({', '.join(who)}), {cfg['threads']} thread(s) per framework "
             f"(torch.get_num_threads() = {runs[-1].get(precisions[0], {}).get('torch_threads', '-')}; "
             f"TF intra/inter op = {runs[-1].get('original', {}).get('tf_threads', '-')}; OMP_NUM_THREADS="
             f"{os.environ.get('OMP_NUM_THREADS')}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}). {os.cpu_count()} CPU cores; torch {torch.__version__}, "
             f"bfloat16 native: {_bf16()}. Load average per round (before → after): "
             + "; ".join(f"{r['load_before']} → {r['load_after']}" for r in runs) + ".", "",
             "| run | " + " | ".join(f"round {r['round']}" for r in runs) + " | median | / original |",
             "| --- |" + " ---: |" * (len(runs) + 2)]
    med = {w: float(np.median([r[w]["step_s"] for r in runs])) for w in who}
    for w in who:
        label = "original StarDist 0.9.2" if w == "original" else f"ours, train_precision={w}"
        cells = [f"{r[w]['step_s']:.4f}" for r in runs]
        ratio = f"{med[w] / med['original']:.2f}" if "original" in med else "-"
        lines.append(f"| {label} (wall s/step) | " + " | ".join(cells) + f" | {med[w]:.4f} | {ratio} |")
    cmed = {w: float(np.median([r[w]["step_cpu_s"] for r in runs])) for w in who}
    for w in who:  # process CPU time: less sensitive to other jobs on a shared machine
        label = "original StarDist 0.9.2" if w == "original" else f"ours, train_precision={w}"
        cells = [f"{r[w]['step_cpu_s']:.4f}" for r in runs]
        ratio = f"{cmed[w] / cmed['original']:.2f}" if "original" in cmed else "-"
        lines.append(f"| {label} (CPU s/step) | " + " | ".join(cells) + f" | {cmed[w]:.4f} | {ratio} |")
    if "original" in med:
        for w in who[1:]:
            cells = [f"{r[w]['step_s'] / r['original']['step_s']:.2f}" for r in runs]
            lines.append(f"| ours {w} / original, same round | " + " | ".join(cells) + " | | |")
    return "\n".join(lines)


def _bf16() -> bool:
    from ij_bridge.stardist.training import bf16_native

    return bf16_native()


def score_saved(work: Path, datasets: list[str]) -> int:
    """Print F1 at each IoU per seed, and the mean and sd over seeds, of the predictions saved in ``work``."""
    for who in ("ours", "orig"):
        for ds in datasets:
            seeds = sorted(int(f.name[len(f"{who}_{ds}_s"):-len("_pred.npz")])
                           for f in work.glob(f"{who}_{ds}_s*_pred.npz"))
            if not seeds:
                continue
            f1 = np.array([[evaluate(work, who, ds, sd)[str(t)]["f1"] for t in IOUS] for sd in seeds])
            print(f"\n{who}, {ds}: seeds {seeds}")
            for sd, row in zip(seeds, f1):
                print(f"  seed {sd}: " + ", ".join(f"F1@{t} {v:.3f}" for t, v in zip(IOUS, row)))
            sdev = f1.std(axis=0, ddof=1) if len(seeds) > 1 else np.full(len(IOUS), np.nan)
            print("  mean: " + ", ".join(f"F1@{t} {m:.3f} (sd {e:.3f})"
                                          for t, m, e in zip(IOUS, f1.mean(axis=0), sdev)))
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--3d" in argv:  # StarDist 3D: scripts/bench_stardist3d.py takes the other options
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import bench_stardist3d

        return bench_stardist3d.main([a for a in argv if a != "--3d"])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 epochs x 10 steps, 10k NMS only")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ours-init", default="default", choices=sorted(INIT_VARIANTS),
                    help="initialisation ablation for our side of the quality phase (default: the package's)")
    ap.add_argument("--quality-threads", type=int, default=1,
                    help="threads per framework in the quality phase, where both train side by side "
                         "(default 1)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds (default 3)")
    ap.add_argument("--phase", choices=("all", "quality", "timing", "steps", "score"), default="all",
                    help="'timing' reuses the quality results of an earlier run in --work; 'steps': "
                         "training s/step only, original and ours in each --step-precisions, interleaved; "
                         "'score': F1 per seed, mean and sd of the test predictions already saved in --work "
                         "(e.g. of a quality run stopped part way)")
    ap.add_argument("--precision", default="float32", choices=("float32", "bfloat16", "auto"),
                    help="our StarDistConfig.train_precision in the quality and timing phases")
    ap.add_argument("--step-precisions", default="float32,bfloat16",
                    help="our train_precisions timed by --phase steps (comma-separated)")
    ap.add_argument("--timing-steps", type=int, default=None, help="steps per timing run (default 60)")
    ap.add_argument("--omp-wait-policy", choices=("PASSIVE", "ACTIVE"), default=None,
                    help="OMP_WAIT_POLICY for both frameworks (set before torch/TF start). On a shared, "
                         "oversubscribed machine the default spinning makes torch's 2-thread steps several "
                         "times slower; PASSIVE avoids that")
    ap.add_argument("--venv", type=Path, default=None,
                    help="an existing venv with stardist 0.9.2 + TF (default .bench/stardist-tf, created)")
    ap.add_argument("--datasets", default="real,synthetic")
    ap.add_argument("--seeds", default=None,
                    help="training seeds for the quality phase, comma-separated (default 0,1,2; 0 with --quick); "
                         "scores are reported per seed and as a mean")
    ap.add_argument("--skip-original", action="store_true")
    ap.add_argument("--skip-ours", action="store_true")
    ap.add_argument("--work", type=Path, default=WORK)
    ap.add_argument("--out", type=Path, default=OUT_MD, help="markdown file to write ('-' for none)")
    args = ap.parse_args(argv)

    epochs = args.epochs or (2 if args.quick else 20)
    steps = args.steps or (10 if args.quick else 50)
    cfg = {"epochs": epochs, "steps": steps, "threads": args.threads,
           "seeds": [int(v) for v in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")],
           "datasets": [d for d in args.datasets.split(",") if d], "ious": list(IOUS),
           "warmup": 3 if args.quick else 10, "pred_reps": 3 if args.quick else 5,
           "timing_steps": args.timing_steps or (20 if args.quick else 60), "precision": args.precision,
           "nms_sets": ["nms10k"] if args.quick else ["nms10k", "nms100k"], "work": str(args.work)}
    rounds = args.rounds or (1 if args.quick else 3)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[k] = str(args.threads)
    if args.omp_wait_policy:
        if "torch" in sys.modules:
            raise SystemExit("--omp-wait-policy must be set before torch is imported")
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy
    t0 = time.perf_counter()
    work: Path = args.work.resolve()
    cfg["work"] = str(work)
    if args.phase == "score":
        return score_saved(work, cfg["datasets"])
    qfile = work / "quality.json"
    if args.phase in ("all", "quality") or not (work / "data.npz").exists():
        print(f"preparing data in {work} ...", flush=True)
        counts = prepare_data(work, args.quick)
        (work / "counts.json").write_text(json.dumps(counts))
        print(f"data ready ({time.perf_counter() - t0:.1f} s): {counts}", flush=True)
    counts = json.loads((work / "counts.json").read_text())
    py = None if args.skip_original else (args.venv / "bin" / "python" if args.venv else ensure_venv())
    if args.phase == "steps":
        md = steps_phase(py, work, cfg, rounds, [p for p in args.step_precisions.split(",") if p],
                         skip_ours=args.skip_ours)
        cmd = ".venv/bin/python scripts/bench_stardist.py " + " ".join(sys.argv[1:] if argv is None else argv)
        md = f"Command: `{cmd.strip()}`\n\n" + md
        _bench_common.write_markdown(md, args.out)
        print(f"total {time.perf_counter() - t0:.0f} s")
        return 0

    res: dict = {"eval": {}}
    seeds = cfg["seeds"]
    qt = cfg["quality_threads"] = args.quality_threads
    cfg["ours_init"] = args.ours_init
    if args.phase in ("all", "quality"):
        res["quality_original"], res["quality_ours"] = {}, {}
        for seed in seeds:
            # the original (a subprocess) and ours (this process) train side by side, one thread each
            # by default: the quality comparison needs equal budgets, not equal wall clocks
            with ThreadPoolExecutor(1) as pool:
                fut = None
                if py:
                    print(f"quality, seed {seed}: original StarDist ...", flush=True)
                    fut = pool.submit(run_original, py, work, dict(cfg, mode="quality", seed=seed, threads=qt),
                                      f"quality_s{seed}")
                if not args.skip_ours:
                    print(f"quality, seed {seed}: ij_bridge.stardist ...", flush=True)
                    res["quality_ours"][seed] = run_ours(work, dict(cfg, mode="quality", seed=seed, threads=qt))
                    res["quality_ours"][seed]["threads"] = qt
                if fut is not None:
                    res["quality_original"][seed] = fut.result()
                    res["quality_original"][seed]["threads"] = qt
        qfile.write_text(json.dumps({k: {str(sd): v for sd, v in res[k].items()}
                                     for k in ("quality_original", "quality_ours")}, default=float))
    elif qfile.exists():
        res.update({k: {int(sd): v for sd, v in d.items()} for k, d in json.loads(qfile.read_text()).items()})
    for who, key in (("original", "quality_original"), ("ours", "quality_ours")):
        for seed in res.get(key, {}):
            for ds in cfg["datasets"]:
                res["eval"][(who, ds, seed)] = evaluate(work, "orig" if who == "original" else "ours", ds, seed)

    if args.phase in ("all", "timing"):
        res["timing_original"], res["timing_ours"] = [], []
        for r in range(rounds):
            print(f"timing round {r + 1}/{rounds} ...", flush=True)
            if py:
                res["timing_original"].append(run_original(py, work, dict(cfg, mode="timing", seed=seeds[0]),
                                                           f"timing{r}"))
            if not args.skip_ours:
                res["timing_ours"].append(run_ours(work, dict(cfg, mode="timing", seed=seeds[0])))

    cmd = ".venv/bin/python scripts/bench_stardist.py " + " ".join(sys.argv[1:] if argv is None else argv)
    md = report(res, cfg, counts, cmd.strip())
    _bench_common.write_markdown(md, args.out)
    (work / "results.json").write_text(json.dumps(
        {**{k: v for k, v in res.items() if k != "eval"},
         "eval": {f"{a}/{b}/s{c}": v for (a, b, c), v in res["eval"].items()}, "cfg": cfg}, indent=1, default=float))
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
