#!/usr/bin/env python
"""Benchmark: ij_bridge.stardist (PyTorch) against the original StarDist 0.9.2 (TensorFlow).

Both implementations get the same data, the same normalisation, the same
network shape (U-Net depth 3, 32 filters, 128-channel head, 32 rays, grid
(2, 2)) and the same training budget (epochs × steps × batch 4 × patch 128,
learning rate 3e-4, flips/90° rotations/intensity augmentation), on CPU with
the same number of threads. Thresholds are optimised on the validation split
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

    .venv/bin/python scripts/bench_stardist.py              # full run (20 epochs x 50 steps)
    .venv/bin/python scripts/bench_stardist.py --quick      # smoke run (2 x 10 steps)
    .venv/bin/python scripts/bench_stardist.py --skip-original --epochs 5
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
DATA = ROOT.parent / "shared" / "data" / "nuclei2d"
VENV = ROOT / ".bench" / "stardist-tf"
WORK = ROOT / ".bench" / "stardist-run"
ORIGINAL_REQS = ["tensorflow-cpu==2.15.1", "stardist==0.9.2", "csbdeep==0.8.2", "numpy<2"]
OUT_MD = ROOT / "docs" / "benchmarks_stardist.md"
IOUS = (0.5, 0.7)

# --------------------------------------------------------------------------- original side

ORIGINAL_WORKER = r'''
import json, os, sys, time
cfg = json.loads(sys.argv[1])
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(cfg["threads"])
tf.config.threading.set_inter_op_parallelism_threads(cfg["threads"])
import stardist, csbdeep
from stardist.models import Config2D, StarDist2D
from stardist.matching import matching_dataset
from stardist.nms import non_maximum_suppression_sparse

out = {"versions": {"stardist": stardist.__version__, "tensorflow": tf.__version__,
                    "csbdeep": csbdeep.__version__}}
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


class StepTimer(tf.keras.callbacks.Callback):
    def __init__(self):
        super().__init__(); self.t = []
    def on_train_batch_begin(self, batch, logs=None):
        self._t0 = time.perf_counter()
    def on_train_batch_end(self, batch, logs=None):
        self.t.append(time.perf_counter() - self._t0)


for ds in cfg["datasets"]:
    np.random.seed(cfg["seed"]); tf.random.set_seed(cfg["seed"])
    X = [data[f"{ds}_X_train_{i}"] for i in range(int(data[f"{ds}_n_train"]))]
    Y = [data[f"{ds}_Y_train_{i}"] for i in range(int(data[f"{ds}_n_train"]))]
    Xv = [data[f"{ds}_X_val_{i}"] for i in range(int(data[f"{ds}_n_val"]))]
    Yv = [data[f"{ds}_Y_val_{i}"] for i in range(int(data[f"{ds}_n_val"]))]
    Xt = [data[f"{ds}_X_test_{i}"] for i in range(int(data[f"{ds}_n_test"]))]
    conf = Config2D(n_rays=32, grid=(2, 2), n_channel_in=1, use_gpu=False,
                    train_patch_size=(128, 128), train_batch_size=4,
                    train_epochs=cfg["epochs"], train_steps_per_epoch=cfg["steps"],
                    train_learning_rate=3e-4, train_tensorboard=False)
    model = StarDist2D(conf, name=f"orig_{ds}", basedir=os.path.join(work, "models"))
    model.prepare_for_training()
    timer = StepTimer()
    model.callbacks.append(timer)
    t0 = time.perf_counter()
    model.train(X, Y, validation_data=(Xv, Yv), augmenter=augmenter,
                epochs=cfg["epochs"], steps_per_epoch=cfg["steps"])
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    th = model.optimize_thresholds(Xv, Yv)
    t_opt = time.perf_counter() - t0
    preds = [model.predict_instances(x, prob_thresh=th["prob"], nms_thresh=th["nms"])[0] for x in Xt]
    np.savez_compressed(os.path.join(work, f"orig_{ds}_pred.npz"), *preds)
    Yt = [data[f"{ds}_Y_test_{i}"] for i in range(int(data[f"{ds}_n_test"]))]
    own = {str(t): m._asdict() for t, m in zip(cfg["ious"], matching_dataset(Yt, preds, thresh=list(cfg["ious"]), show_progress=False))}
    steps = np.asarray(timer.t[cfg["warmup"]:] or timer.t)
    # prediction time on a 256x256 image, fixed thresholds
    img = data["timing_image"]
    model.predict_instances(img, prob_thresh=0.5, nms_thresh=0.4)
    reps = []
    for _ in range(cfg["pred_reps"]):
        t1 = time.perf_counter(); lbl, _ = model.predict_instances(img, prob_thresh=0.5, nms_thresh=0.4)
        reps.append(time.perf_counter() - t1)
    out[ds] = {"step_s": float(np.median(steps)), "step_s_mean": float(steps.mean()),
               "n_steps": len(timer.t), "train_s": t_train, "thresholds_s": t_opt,
               "thresholds": {k: float(v) for k, v in th.items()}, "own_matching": own,
               "predict_s": float(np.median(reps)), "predict_n_objects": int(lbl.max())}
    print(ds, json.dumps(out[ds]["step_s"]), flush=True)

for name in cfg["nms_sets"]:
    c = np.load(os.path.join(work, f"{name}.npz"))
    reps = []
    for _ in range(cfg["nms_reps"]):
        t1 = time.perf_counter()
        pts, pr, di, inds = non_maximum_suppression_sparse(c["dist"], c["prob"], c["points"], nms_thresh=0.4)
        reps.append(time.perf_counter() - t1)
    out[name] = {"nms_s": float(np.median(reps)), "kept": int(len(inds))}
    print(name, out[name], flush=True)

with open(os.path.join(work, "orig_results.json"), "w") as f:
    json.dump(out, f, indent=1, default=float)
'''


def ensure_venv(log=print) -> Path:
    """Create ``.bench/stardist-tf`` with the original StarDist if it is missing."""
    py = VENV / "bin" / "python"
    check = [str(py), "-c", "import stardist, tensorflow, csbdeep; assert stardist.__version__ == '0.9.2'"]
    if py.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return py
    log(f"creating {VENV} (tensorflow-cpu + stardist 0.9.2; downloads ~600 MB once)")
    base = "/usr/bin/python3.11" if Path("/usr/bin/python3.11").exists() else sys.executable
    subprocess.run([base, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", *ORIGINAL_REQS], check=True)
    subprocess.run(check, check=True)
    return py


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


def run_ours(work: Path, cfg: dict) -> dict:
    import torch

    from ij_bridge import stardist as sd

    torch.set_num_threads(cfg["threads"])
    out: dict = {"versions": {"torch": torch.__version__}}
    for ds in cfg["datasets"]:
        X, Y = _load(work, ds, "train")
        Xv, Yv = _load(work, ds, "val")
        Xt, _ = _load(work, ds, "test")
        conf = sd.StarDistConfig(n_rays=32, grid=(2, 2), patch_size=(128, 128), batch_size=4,
                                 epochs=cfg["epochs"], steps_per_epoch=cfg["steps"],
                                 learning_rate=3e-4, seed=cfg["seed"])
        model = sd.StarDist2D(conf, device="cpu")
        stamps: list[float] = []
        t0 = time.perf_counter()
        model.train(X, Y, validation_data=(Xv, Yv), show_progress=False, optimize_thresholds=False,
                    progress=lambda done, total, msg: stamps.append(time.perf_counter()))
        t_train = time.perf_counter() - t0
        t0 = time.perf_counter()
        th = sd.optimize_thresholds(model, Xv, Yv, normalize=False)
        t_opt = time.perf_counter() - t0
        preds = [model.predict_instances(x, prob_thresh=th["prob"], nms_thresh=th["nms"], normalize=False)[0]
                 for x in Xt]
        np.savez_compressed(work / f"ours_{ds}_pred.npz", *preds)
        # per-step time: gaps between consecutive steps inside an epoch (validation excluded)
        st = np.diff(np.asarray(stamps[: cfg["epochs"] * cfg["steps"]]))
        per_epoch = np.arange(1, len(stamps[: cfg["epochs"] * cfg["steps"]]))
        inside = (per_epoch % cfg["steps"]) != 0
        steps = st[inside][cfg["warmup"]:] if inside.sum() > cfg["warmup"] else st
        img = np.load(work / "data.npz")["timing_image"]
        model.predict_instances(img, prob_thresh=0.5, nms_thresh=0.4, normalize=False)
        reps = []
        for _ in range(cfg["pred_reps"]):
            t1 = time.perf_counter()
            lbl, _ = model.predict_instances(img, prob_thresh=0.5, nms_thresh=0.4, normalize=False)
            reps.append(time.perf_counter() - t1)
        out[ds] = {"step_s": float(np.median(steps)), "step_s_mean": float(np.mean(steps)),
                   "n_steps": len(stamps), "train_s": t_train, "thresholds_s": t_opt,
                   "thresholds": {k: float(v) for k, v in th.items()},
                   "predict_s": float(np.median(reps)), "predict_n_objects": int(lbl.max())}
        print("ours", ds, out[ds]["step_s"], flush=True)
    from ij_bridge.stardist.geometry import dist_to_coord
    from ij_bridge.stardist.nms import non_maximum_suppression

    for name in cfg["nms_sets"]:
        c = np.load(work / f"{name}.npz")
        reps = []
        for _ in range(cfg["nms_reps"]):
            t1 = time.perf_counter()
            coord = dist_to_coord(c["dist"], c["points"])
            keep = non_maximum_suppression(coord, c["prob"], 0.4)
            reps.append(time.perf_counter() - t1)
        out[name] = {"nms_s": float(np.median(reps)), "kept": int(len(keep))}
        print("ours", name, out[name], flush=True)
    return out


# --------------------------------------------------------------------------- evaluation / report


def evaluate(work: Path, who: str, ds: str) -> dict[str, dict]:
    from ij_bridge.metrics import matching_dataset

    _, Yt = _load(work, ds, "test")
    f = np.load(work / f"{who}_{ds}_pred.npz")
    preds = [f[f"arr_{i}"] for i in range(len(f.files))]
    ms = matching_dataset(Yt, preds, thresh=list(IOUS))
    return {str(t): m.to_dict() for t, m in zip(IOUS, ms)}


def _fmt(x, nd=3):
    return "–" if x is None else f"{x:.{nd}f}"


def report(res: dict, cfg: dict, counts: dict, cmd: str) -> str:
    o, u = res.get("original"), res.get("ours")
    lines = ["## StarDist 2D: ij_bridge (PyTorch) vs. original StarDist 0.9.2 (TensorFlow)", ""]
    lines.append(f"Command: `{cmd}`  ")
    lines.append(f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: "
                 f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
                 f"{cfg['threads']} threads per framework, shared with other jobs, no GPU.  ")
    vers = []
    if o:
        vers.append(", ".join(f"{k} {v}" for k, v in o["versions"].items()))
    if u:
        vers.append(", ".join(f"{k} {v}" for k, v in u["versions"].items()))
    lines.append("Versions: " + "; ".join(vers) + ".  ")
    lines.append(f"Budget (both): {cfg['epochs']} epochs × {cfg['steps']} steps, batch 4, patch 128×128, "
                 "32 rays, grid (2, 2), U-Net depth 3 / 32 filters, lr 3e-4, flips + rot90 + intensity "
                 "augmentation; thresholds optimised on the validation split by each implementation.  ")
    lines.append(f"Objects (train/val/test): real {counts['real']}, synthetic {counts['synthetic']}.")
    lines.append("")
    lines.append("| measure | data | original | ours | ours / original |")
    lines.append("| --- | --- | ---: | ---: | ---: |")

    def row(name, ds, a, b, nd=3, ratio=True):
        r = (b / a) if (ratio and a and b is not None and a is not None) else None
        lines.append(f"| {name} | {ds} | {_fmt(a, nd)} | {_fmt(b, nd)} | {_fmt(r, 2) if r else '–'} |")

    for ds in cfg["datasets"]:
        for t in IOUS:
            for key in ("f1", "accuracy"):
                a = res["eval"].get(("original", ds), {}).get(str(t), {}).get(key)
                b = res["eval"].get(("ours", ds), {}).get(str(t), {}).get(key)
                row(f"{key} @ IoU {t}", ds, a, b)
    for ds in cfg["datasets"]:
        row("training s / step (median)", ds, o and o[ds]["step_s"], u and u[ds]["step_s"], 4)
        row("training wall s (incl. validation)", ds, o and o[ds]["train_s"], u and u[ds]["train_s"], 1)
        row("threshold optimisation s", ds, o and o[ds]["thresholds_s"], u and u[ds]["thresholds_s"], 1)
    ds0 = "synthetic" if "synthetic" in cfg["datasets"] else cfg["datasets"][0]
    row("prediction s / 256×256 image", ds0 + " model", o and o[ds0]["predict_s"], u and u[ds0]["predict_s"], 4)
    for name in cfg["nms_sets"]:
        n = "10k" if name == "nms10k" else "100k"
        row(f"NMS s, {n} candidates", "synthetic", o and o[name]["nms_s"], u and u[name]["nms_s"], 3)
    lines.append("")
    notes = []
    for ds in cfg["datasets"]:
        if o and u:
            notes.append(f"thresholds ({ds}): original prob {o[ds]['thresholds']['prob']:.3f} / nms "
                         f"{o[ds]['thresholds']['nms']:.2f}, ours prob {u[ds]['thresholds']['prob']:.3f} / nms "
                         f"{u[ds]['thresholds']['nms']:.2f}")
    for name in cfg["nms_sets"]:
        if o and u:
            notes.append(f"{name}: kept {o[name]['kept']} (original) vs {u[name]['kept']} (ours)")
    if o:
        for ds in cfg["datasets"]:
            a = o[ds]["own_matching"]["0.5"]["f1"]
            b = res["eval"][("original", ds)]["0.5"]["f1"]
            notes.append(f"metrics cross-check ({ds}): stardist.matching F1@0.5 {a:.4f} vs "
                         f"ij_bridge.metrics {b:.4f} on the same predictions")
    if notes:
        lines.append("Notes: " + "; ".join(notes) + ".")
        lines.append("")
    lines.append("Ratios below 1 in the time rows and above 1 in the quality rows favour ours. The real "
                 "test split is small (one 128×256 crop), so its scores move by several points between "
                 "runs; timings vary with the load of the shared machine.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 epochs x 10 steps, 10k NMS only")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--datasets", default="real,synthetic")
    ap.add_argument("--skip-original", action="store_true")
    ap.add_argument("--skip-ours", action="store_true")
    ap.add_argument("--work", type=Path, default=WORK)
    ap.add_argument("--out", type=Path, default=OUT_MD, help="markdown file to write ('-' for none)")
    args = ap.parse_args(argv)

    epochs = args.epochs or (2 if args.quick else 20)
    steps = args.steps or (10 if args.quick else 50)
    cfg = {"epochs": epochs, "steps": steps, "threads": args.threads, "seed": 0,
           "datasets": [d for d in args.datasets.split(",") if d], "ious": list(IOUS),
           "warmup": 3 if args.quick else 10, "pred_reps": 3 if args.quick else 7,
           "nms_reps": 1 if args.quick else 3,
           "nms_sets": ["nms10k"] if args.quick else ["nms10k", "nms100k"], "work": str(args.work)}
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[k] = str(args.threads)
    t0 = time.perf_counter()
    print(f"preparing data in {args.work} ...", flush=True)
    counts = prepare_data(args.work, args.quick)
    print(f"data ready ({time.perf_counter() - t0:.1f} s): {counts}", flush=True)

    res: dict = {"eval": {}}
    if not args.skip_original:
        py = ensure_venv()
        script = args.work / "original_worker.py"
        script.write_text(ORIGINAL_WORKER)
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
                   OMP_NUM_THREADS=str(args.threads))
        env.pop("PYTHONPATH", None)
        print("running the original StarDist ...", flush=True)
        log = args.work / "original.log"
        with open(log, "w") as fh:
            r = subprocess.run([str(py), str(script), json.dumps(cfg)], env=env, stdout=fh,
                               stderr=subprocess.STDOUT, cwd=str(args.work))
        if r.returncode != 0:
            print(log.read_text()[-4000:], file=sys.stderr)
            raise SystemExit(f"original StarDist failed (exit {r.returncode}); log: {log}")
        res["original"] = json.loads((args.work / "orig_results.json").read_text())
        for ds in cfg["datasets"]:
            res["eval"][("original", ds)] = evaluate(args.work, "orig", ds)
    if not args.skip_ours:
        print("running ij_bridge.stardist ...", flush=True)
        res["ours"] = run_ours(args.work, cfg)
        for ds in cfg["datasets"]:
            res["eval"][("ours", ds)] = evaluate(args.work, "ours", ds)

    cmd = ".venv/bin/python scripts/bench_stardist.py " + " ".join(sys.argv[1:] if argv is None else argv)
    md = report(res, cfg, counts, cmd.strip())
    print()
    print(md)
    if str(args.out) != "-":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(md)
        print(f"written to {args.out}")
    (args.work / "results.json").write_text(json.dumps(
        {**{k: v for k, v in res.items() if k != "eval"},
         "eval": {f"{a}/{b}": v for (a, b), v in res["eval"].items()}, "cfg": cfg}, indent=1, default=float))
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
