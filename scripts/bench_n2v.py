#!/usr/bin/env python
"""Benchmark: ij_bridge.n2v against CAREamics 0.3.5 on the same noisy real image.

Both get the same budget (gradient steps × batch × patch) on the same image:
``../shared/data/nuclei2d/train_left_img.tif`` scaled to 0–255 and corrupted
with Gaussian noise (σ = 25, seeded). Printed for both, in one run: PSNR
(data range 255), scale-invariant PSNR, training and prediction seconds
(wall clock, and CPU time of the process, which is less sensitive to other
load on a shared machine), and the 1-minute load average when each started.

CAREamics runs in its own virtual environment, ``.bench/careamics`` (git
ignored), which this script creates on first use: CAREamics 0.3.5 is installed
with ``--no-deps`` beside the CPU torch of this machine, plus its other
requirements; torchvision (needed only by CAREamics' LVAE code) does not
install beside a CPU torch, so the worker process stubs it out.

Usage::

    .venv/bin/python scripts/bench_n2v.py                  # both, 1000 steps
    .venv/bin/python scripts/bench_n2v.py --skip-careamics
    .venv/bin/python scripts/bench_n2v.py --steps 200 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "nuclei2d" / "train_left_img.tif"
VENV = ROOT / ".bench" / "careamics"
CAREAMICS_REQS = [
    "bioimageio-core>=0.9,<=0.11.0", "lightning>=2.2,<=2.6.6,!=2.6.2,!=2.6.3", "microssim<=0.0.5",
    "numpy<=2.4.6", "pillow<=13.0.0", "psutil<=7.2.2", "pydantic>=2.11,<2.12",  # bioimageio.spec 0.5.12 breaks on 2.14
    
    "pyyaml<=6.0.3,!=6.0.0", "scikit-image<=0.26.0", "tifffile<=2026.3.3", "torchmetrics<1.9.0",
    "zarr>=3,<4", "matplotlib<=3.11.2",
]

WORKER = r'''
import json, sys, time, types
import numpy as np
import torch
cfg = json.loads(sys.argv[1])
torch.set_num_threads(cfg["threads"])
import torchmetrics  # decides "torchvision absent" before the stub below exists
tv = types.ModuleType("torchvision"); tv.__version__ = "0+stub"
tr = types.ModuleType("torchvision.transforms"); fn = types.ModuleType("torchvision.transforms.functional")
tv.transforms = tr; tr.functional = fn
sys.modules.update({"torchvision": tv, "torchvision.transforms": tr,
                    "torchvision.transforms.functional": fn})
import careamics
from careamics import CAREamist
from careamics.config import create_n2v_config
noisy = np.load(cfg["noisy"])
conf = create_n2v_config(
    experiment_name="bench", data_type="array", axes="YX", patch_size=[cfg["patch"]] * 2,
    batch_size=cfg["batch"], num_epochs=cfg["epochs"], num_steps=cfg["steps_per_epoch"],
)
# CAREamics' epoch is one pass over its patch grid (32 patches = 2 batches for this image);
# its num_steps only caps that. Give it exactly the same number of gradient steps as ours.
tp = conf.training_config.trainer_params
tp.pop("limit_train_batches", None)
tp["max_epochs"] = -1
tp["max_steps"] = cfg["steps"]
torch.manual_seed(cfg["seed"])
cm = CAREamist(config=conf, work_dir=cfg["work"], enable_progress_bar=False)
t0, c0 = time.perf_counter(), time.process_time()
cm.train(train_data=noisy)
t_train, c_train = time.perf_counter() - t0, time.process_time() - c0
t0, c0 = time.perf_counter(), time.process_time()
pred = cm.predict(pred_data=noisy, axes="YX")
t_pred, c_pred = time.perf_counter() - t0, time.process_time() - c0
if isinstance(pred, tuple):  # 0.3.5: (list of arrays, list of source ids)
    pred = pred[0]
pred = np.asarray(pred[0] if isinstance(pred, list) else pred).squeeze()
np.save(cfg["out"], pred.astype(np.float32))
print("RESULT " + json.dumps({"train_s": t_train, "predict_s": t_pred, "train_cpu_s": c_train,
                              "predict_cpu_s": c_pred, "steps": int(cm.trainer.global_step),
                              "version": careamics.__version__}))
'''


def psnr(pred: np.ndarray, gt: np.ndarray, data_range: float = 255.0) -> float:
    """PSNR in dB with a fixed data range."""
    mse = float(np.mean((pred.astype(np.float64) - gt) ** 2))
    return 10 * np.log10(data_range**2 / mse)


def si_psnr(pred: np.ndarray, gt: np.ndarray) -> float:
    """Scale-invariant PSNR: ``pred`` mapped by the least-squares affine fit to
    ``gt`` first; data range = range of ``gt``."""
    p = pred.astype(np.float64).ravel()
    g = gt.astype(np.float64).ravel()
    a, b = np.polyfit(p, g, 1)
    return psnr(a * pred + b, gt, float(g.max() - g.min()))


def ensure_venv(log) -> Path:
    py = VENV / "bin" / "python"
    stamp = VENV / ".installed"
    if stamp.exists():
        return py
    log(f"creating {VENV} (CAREamics 0.3.5, no-deps install; a few minutes) ...")
    subprocess.run([shutil.which("python3") or "python3", "-m", "venv", str(VENV)], check=True)
    pip = [str(py), "-m", "pip", "install", "-q"]
    import torch

    subprocess.run(pip + [f"torch=={torch.__version__.split('+')[0]}"], check=True)
    subprocess.run(pip + ["--no-deps", "careamics==0.3.5"], check=True)
    subprocess.run(pip + CAREAMICS_REQS, check=True)
    stamp.write_text("ok\n")
    return py


def load_data(sigma: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    import tifffile

    if not DATA.exists():
        raise SystemExit(f"benchmark image not found: {DATA}")
    img = tifffile.imread(DATA).astype(np.float64)
    gt = (img - img.min()) / (img.max() - img.min()) * 255.0
    rng = np.random.default_rng(seed)
    noisy = gt + rng.normal(0.0, sigma, gt.shape)
    return gt.astype(np.float32), noisy.astype(np.float32)


def run_ours(noisy, args) -> tuple[np.ndarray, dict]:
    import torch

    from ij_bridge.n2v import N2V, N2VConfig

    torch.set_num_threads(args.threads)
    cfg = N2VConfig(axes="YX", patch_size=(args.patch, args.patch), batch_size=args.batch,
                    epochs=args.epochs, steps_per_epoch=args.steps // args.epochs, seed=args.seed,
                    variant=args.variant, lr_schedule=args.lr_schedule, learning_rate=args.lr)
    model = N2V(cfg, device="cpu")
    t0, c0 = time.perf_counter(), time.process_time()
    model.train(noisy, show_progress=False)
    t_train, c_train = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    pred = model.predict(noisy)
    t_pred, c_pred = time.perf_counter() - t0, time.process_time() - c0
    return pred, dict(train_s=t_train, predict_s=t_pred, train_cpu_s=c_train, predict_cpu_s=c_pred,
                      steps=len(model.history) * cfg.steps_per_epoch)


def run_careamics(noisy, args, log) -> tuple[np.ndarray, dict, str]:
    py = ensure_venv(log)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "noisy.npy", noisy)
        cfg = dict(noisy=str(Path(tmp) / "noisy.npy"), out=str(Path(tmp) / "pred.npy"),
                   work=str(Path(tmp) / "work"), patch=args.patch, batch=args.batch,
                   epochs=args.epochs, steps_per_epoch=args.steps // args.epochs,
                   steps=args.steps, threads=args.threads, seed=args.seed)
        (Path(tmp) / "worker.py").write_text(WORKER)
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        proc = subprocess.run([str(py), str(Path(tmp) / "worker.py"), json.dumps(cfg)],
                              capture_output=True, text=True, env=env, cwd=tmp)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"CAREamics worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        res = json.loads(lines[-1][7:])
        pred = np.load(cfg["out"])
    version = res.pop("version")
    return pred, res, version


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=1000, help="gradient steps (default 1000)")
    ap.add_argument("--epochs", type=int, default=10, help="epochs the steps are split into")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--sigma", type=float, default=25.0, help="Gaussian noise σ on 0–255")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads for both")
    ap.add_argument("--variant", default="N2V", choices=["N2V", "N2V2"])
    ap.add_argument("--lr-schedule", default="plateau", choices=["plateau", "cosine"],
                    help="our learning-rate schedule (CAREamics: its default)")
    ap.add_argument("--lr", type=float, default=4e-4,
                    help="our learning rate (default 4e-4, the published N2V; CAREamics 0.3.5 uses "
                    "torch's Adam default 1e-3)")
    ap.add_argument("--skip-careamics", action="store_true")
    ap.add_argument("--skip-ours", action="store_true", help="run CAREamics only")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    gt, noisy = load_data(args.sigma, args.seed)
    log(f"image {DATA.name} {gt.shape}, σ={args.sigma}; budget {args.steps} steps × batch "
        f"{args.batch} × patch {args.patch}², {args.threads} threads")
    nan = float("nan")
    rows = [dict(method="noisy input", psnr=psnr(noisy, gt), si_psnr=si_psnr(noisy, gt), train_s=nan,
                 predict_s=nan, train_cpu_s=nan, predict_cpu_s=nan, load=nan, steps=0)]
    from ij_bridge import __version__

    if not args.skip_ours:
        load = os.getloadavg()[0]
        pred, times = run_ours(noisy, args)
        rows.append(dict(method=f"ij_bridge.n2v {__version__} ({args.variant})", psnr=psnr(pred, gt),
                         si_psnr=si_psnr(pred, gt), load=load, **times))
        log(f"ours done: {rows[-1]}")
    if not args.skip_careamics:
        try:
            load = os.getloadavg()[0]
            cpred, times, ver = run_careamics(noisy, args, log)
            rows.append(dict(method=f"CAREamics {ver} (N2V)", psnr=psnr(cpred, gt),
                             si_psnr=si_psnr(cpred, gt), load=load, **times))
        except Exception as exc:  # report ours anyway
            log(f"CAREamics could not run: {exc}")
    print("\n| method | PSNR (dB, range 255) | SI-PSNR (dB) | train (s) | train CPU (s) | predict (s) "
          "| predict CPU (s) | steps | load avg at start |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['method']} | {r['psnr']:.2f} | {r['si_psnr']:.2f} | {r['train_s']:.1f} | "
              f"{r['train_cpu_s']:.1f} | {r['predict_s']:.2f} | {r['predict_cpu_s']:.2f} | "
              f"{r['steps']} | {r['load']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(dict(args={k: str(v) for k, v in vars(args).items()},
                                             rows=rows), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
