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
    .venv/bin/python scripts/bench_n2v.py --grid --threads 1 --steps 30 --batch 4 --stack
    .venv/bin/python scripts/bench_n2v.py --precision-steps 10 --threads 1   # float32 vs bfloat16 s/step

``--grid`` (issue 14): every image (nuclei, cell, camera, astronaut) x noise (Gaussian σ 10, 25,
50, Poisson–Gaussian) x training seed, optionally a 3D stack; ours in this process and CAREamics
in a persistent worker process train each pair at the same time; prints mean, min–max, worst
case, time ratios, the load average and the thread settings (docs/benchmarks.md). For each of our
runs it also predicts with the weights of the best validation epoch (our default) and of the last
epoch (CAREamics' choice for N2V), from the same training: columns ``psnr_best``/``psnr_last``.
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


# ---------------------------------------------------------------------------------------- grid
GRID_WORKER = r"""
import json, os, sys, time, types, tempfile
import numpy as np
import torch
torch.set_num_threads(int(sys.argv[1]))
import torchmetrics  # decides "torchvision absent" before the stub below exists
tv = types.ModuleType("torchvision"); tv.__version__ = "0+stub"
tr = types.ModuleType("torchvision.transforms"); fn = types.ModuleType("torchvision.transforms.functional")
tv.transforms = tr; tr.functional = fn
sys.modules.update({"torchvision": tv, "torchvision.transforms": tr,
                    "torchvision.transforms.functional": fn})
import careamics
from careamics import CAREamist
from careamics.config import create_n2v_config
print("READY " + json.dumps({"version": careamics.__version__, "threads": torch.get_num_threads()}),
      flush=True)
for line in sys.stdin:
    cfg = json.loads(line)
    noisy = np.load(cfg["noisy"])
    conf = create_n2v_config(experiment_name="bench", data_type="array", axes=cfg["axes"],
                             patch_size=list(cfg["patch"]), batch_size=cfg["batch"], num_epochs=10,
                             num_steps=max(1, cfg["steps"] // 10))
    tp = conf.training_config.trainer_params
    tp.pop("limit_train_batches", None)
    tp["max_epochs"] = -1
    tp["max_steps"] = cfg["steps"]
    torch.manual_seed(cfg["seed"])
    np.random.seed(cfg["seed"])
    cm = CAREamist(config=conf, work_dir=cfg["work"], enable_progress_bar=False)
    t0 = time.perf_counter()
    cm.train(train_data=noisy)
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = cm.predict(pred_data=noisy, axes=cfg["axes"])
    t_pred = time.perf_counter() - t0
    if isinstance(pred, tuple):
        pred = pred[0]
    pred = np.asarray(pred[0] if isinstance(pred, list) else pred).squeeze()
    np.save(cfg["out"], pred.astype(np.float32))
    print("RESULT " + json.dumps({"train_s": t_train, "predict_s": t_pred,
                                  "steps": int(cm.trainer.global_step)}), flush=True)
"""

#: the grid's 2D images (nuclei chose the learning-rate default; the others are held out)
GRID_IMAGES = ["nuclei", "cell", "camera", "astronaut"]
GRID_NOISES = ["g10", "g25", "g50", "pg"]


def grid_image(name: str) -> np.ndarray:
    """A clean image scaled to 0–255 (float64)."""
    import skimage.data as skd

    if name == "nuclei":
        import tifffile

        img = tifffile.imread(DATA).astype(np.float64)
    elif name == "cell":
        img = skd.cell().astype(np.float64)
    elif name == "camera":
        img = skd.camera().astype(np.float64)
    elif name == "astronaut":
        from skimage.color import rgb2gray

        img = rgb2gray(skd.astronaut()).astype(np.float64)
    elif name == "nuclei3d":
        from ij_bridge.synthetic import synthetic_nuclei

        img, _ = synthetic_nuclei((32, 96, 96), n_objects=25, radius=(5.0, 9.0), seed=3,
                                  noise=0.0, photons=None)
        img = img.astype(np.float64)
    else:
        raise ValueError(name)
    return (img - img.min()) / (img.max() - img.min()) * 255.0


def add_noise(gt: np.ndarray, noise: str, seed: int) -> np.ndarray:
    """Gaussian σ 10/25/50 on 0–255, or Poisson–Gaussian (30 photons at 255, read noise σ 5)."""
    rng = np.random.default_rng(seed)
    if noise.startswith("g"):
        return (gt + rng.normal(0.0, float(noise[1:]), gt.shape)).astype(np.float32)
    photons = 30.0 / 255.0
    return (rng.poisson(gt * photons) / photons + rng.normal(0.0, 5.0, gt.shape)).astype(np.float32)


def run_grid(args) -> int:
    """Both tools on every image × noise × seed, a pair at a time (ours in this process,
    CAREamics in a persistent worker process, the two at the same time)."""
    import torch

    from ij_bridge import __version__
    from ij_bridge.n2v import N2V, N2VConfig
    from ij_bridge.n2v.config import bf16_native

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    torch.set_num_threads(args.threads)
    env_threads = {k: os.environ.get(k, "-") for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    log(f"torch {torch.__version__}, torch threads {torch.get_num_threads()} (ours and CAREamics each), "
        f"env {env_threads}, CPU bfloat16 native: {bf16_native()}, load {os.getloadavg()}")
    py = ensure_venv(log)
    tmp = Path(tempfile.mkdtemp(prefix="bench_n2v_"))
    (tmp / "worker.py").write_text(GRID_WORKER)
    errlog = open(tmp / "careamics.log", "w")
    proc = subprocess.Popen([str(py), str(tmp / "worker.py"), str(args.threads)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=errlog, text=True, cwd=tmp,
                            env=dict(os.environ, PYTHONWARNINGS="ignore"))

    def read_line(prefix: str) -> dict:
        while True:
            ln = proc.stdout.readline()
            if not ln:
                raise RuntimeError(f"CAREamics worker died; see {tmp / 'careamics.log'}")
            if ln.startswith(prefix):
                return json.loads(ln[len(prefix):])

    ready = read_line("READY ")
    log(f"CAREamics {ready['version']} worker ready, threads {ready['threads']}")
    jobs = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for name in args.images:
            for noise in args.noises:
                jobs.append((name, noise, seed))
        if args.stack:
            for noise in args.noises_3d:
                jobs.append(("nuclei3d", noise, seed))
    rows = []
    t_start = time.perf_counter()
    out_json = args.json or (ROOT / ".bench" / "n2v_grid.json")
    out_json.parent.mkdir(parents=True, exist_ok=True)
    arms = [("ours", args.precision)] + ([("ours-fp32", "float32")] if args.fp32_seeds else [])
    for k, (name, noise, seed) in enumerate(jobs):
        gt = grid_image(name)
        if args.crop and gt.ndim == 2:  # the centre crop^2 (smaller images: shorter runs)
            y0, x0 = [max(0, (n - args.crop) // 2) for n in gt.shape]
            gt = gt[y0:y0 + args.crop, x0:x0 + args.crop]
        noisy = add_noise(gt, noise, 1000 + GRID_NOISES.index(noise) * 10 + len(name))
        is3d = gt.ndim == 3
        axes = "ZYX" if is3d else "YX"
        patch = tuple(args.patch_3d) if is3d else (args.patch, args.patch)
        batch = args.batch_3d if is3d else args.batch
        steps = args.steps_3d if is3d else args.steps
        np.save(tmp / "noisy.npy", noisy)
        load = os.getloadavg()[0]
        job = dict(noisy=str(tmp / "noisy.npy"), out=str(tmp / "pred.npy"), work=str(tmp / f"w{k}"),
                   axes=axes, patch=list(patch), batch=batch, steps=steps, seed=seed)
        proc.stdin.write(json.dumps(job) + "\n")
        proc.stdin.flush()
        base = dict(image=name, noise=noise, seed=seed, ndim=gt.ndim, steps=steps, batch=batch,
                    patch="x".join(map(str, patch)), load=load, noisy_psnr=psnr(noisy, gt))
        for arm, prec in arms:
            if arm == "ours-fp32" and seed >= args.fp32_seeds:
                continue
            ep = min(args.epochs, steps)
            cfg = N2VConfig(axes=axes, patch_size=patch, batch_size=batch, epochs=ep,
                            steps_per_epoch=max(1, steps // ep), seed=seed, precision=prec)
            model = N2V(cfg, device="cpu")
            snaps: list = []  # the weights at the end of every epoch (before its validation)

            def snap(done: int, total: int, msg: str, m=model, every=cfg.steps_per_epoch) -> None:
                if done % every == 0:
                    snaps.append({k: v.detach().clone() for k, v in m.net.state_dict().items()})

            t0 = time.perf_counter()
            hist = model.train(noisy, show_progress=False, progress=snap)
            t_train = time.perf_counter() - t0
            t0 = time.perf_counter()
            pred = model.predict(noisy)
            t_pred = time.perf_counter() - t0
            # the same training with the other choice of kept weights: best validation epoch, last
            alt = {}
            for which, i in (("best", int(np.nanargmin(hist.val_loss.to_numpy()))
                              if hist.val_loss.notna().any() else len(snaps) - 1),
                             ("last", len(snaps) - 1)):
                model.net.load_state_dict(snaps[i])
                model.net.eval()
                alt[f"psnr_{which}"] = psnr(model.predict(noisy), gt)
                alt[f"epoch_{which}"] = i + 1
            rows.append(dict(base, tool=arm, train_s=t_train, predict_s=t_pred, psnr=psnr(pred, gt),
                             **alt))
        res = read_line("RESULT ")
        cpred = np.load(tmp / "pred.npy")
        rows.append(dict(base, tool="careamics", train_s=res["train_s"], predict_s=res["predict_s"],
                         psnr=psnr(cpred, gt), careamics_steps=res["steps"]))
        shutil.rmtree(tmp / f"w{k}", ignore_errors=True)
        mine = [r for r in rows[-3:] if r["image"] == name and r["noise"] == noise and r["seed"] == seed]
        log(f"[{k + 1}/{len(jobs)} {time.perf_counter() - t_start:.0f}s load {load:.1f}] {name} {noise} "
            f"seed {seed}: " + ", ".join(
                f"{r['tool']} {r['psnr']:.2f} dB {r['train_s']:.1f}s"
                + (f" (best ep {r['epoch_best']} {r['psnr_best']:.2f}, last {r['psnr_last']:.2f})"
                   if "psnr_last" in r else "") for r in mine))
        out_json.write_text(json.dumps(dict(args={k2: str(v) for k2, v in vars(args).items()},
                                            version=__version__, careamics=ready["version"],
                                            threads=torch.get_num_threads(), env=env_threads,
                                            bf16_native=bf16_native(), rows=rows), indent=1))
    proc.stdin.close()
    proc.wait()
    errlog.close()
    print(grid_table(rows))
    log(f"rows in {out_json}; total {time.perf_counter() - t_start:.0f}s; load {os.getloadavg()}")
    return 0


def grid_table(rows: list[dict]) -> str:
    """Markdown tables: per image × noise, mean ± spread (min–max over seeds) per tool, and a summary."""
    import pandas as pd

    df = pd.DataFrame(rows)
    tools = [t for t in ("ours", "ours-fp32", "careamics") if t in set(df.tool)]
    out = ["| image | noise | noisy | " + " | ".join(f"{t} PSNR mean (min–max)" for t in tools)
           + " | Δ mean (ours − CAREamics) | train time ratio |",
           "|---|---|---:|" + "---:|" * (len(tools) + 2)]
    for (im, nz), g in df.groupby(["image", "noise"], sort=False):
        cells = []
        for t in tools:
            p = g[g.tool == t].psnr
            cells.append(f"{p.mean():.2f} ({p.min():.2f}–{p.max():.2f}) n={len(p)}" if len(p) else "—")
        o, c = g[g.tool == "ours"], g[g.tool == "careamics"]
        d = o.psnr.mean() - c.psnr.mean()
        ratio = o.train_s.sum() / c[c.seed.isin(o.seed)].train_s.sum()
        out.append(f"| {im} | {nz} | {g.noisy_psnr.iloc[0]:.2f} | " + " | ".join(cells)
                   + f" | {d:+.2f} | {ratio:.2f} |")
    o = df[df.tool == "ours"].set_index(["image", "noise", "seed"])
    c = df[df.tool == "careamics"].set_index(["image", "noise", "seed"])
    both = o.add_suffix("_o").join(c.add_suffix("_c"), how="inner")
    diff = both.psnr_o - both.psnr_c
    out.append("")
    out.append(f"paired runs: {len(both)}; ours better in {int((diff > 0).sum())}; Δ PSNR mean {diff.mean():+.2f} "
               f"dB, worst {diff.min():+.2f} dB, best {diff.max():+.2f} dB")
    # worst case per image × noise: the lowest PSNR over seeds, ours vs CAREamics
    wo = both.groupby(level=[0, 1]).psnr_o.min()
    wc = both.groupby(level=[0, 1]).psnr_c.min()
    out.append(f"worst seed per image × noise: ours above CAREamics in {int((wo > wc).sum())} of {len(wo)}; "
               f"Δ(worst) mean {(wo - wc).mean():+.2f} dB, min {(wo - wc).min():+.2f} dB")
    mo = both.groupby(level=[0, 1]).psnr_o.mean()
    mc = both.groupby(level=[0, 1]).psnr_c.mean()
    out.append(f"mean over seeds per image × noise: ours above CAREamics in {int((mo > mc).sum())} of {len(mo)}")
    out.append(f"training time: ours {both.train_s_o.sum():.0f} s, CAREamics {both.train_s_c.sum():.0f} s, "
               f"ratio {both.train_s_o.sum() / both.train_s_c.sum():.2f} (per-run median "
               f"{(both.train_s_o / both.train_s_c).median():.2f})")
    for t in ("ours", "ours-fp32"):
        r = df[df.tool == t]
        if "psnr_last" in r and r.psnr_last.notna().any():
            d = r.psnr_last - r.psnr_best
            out.append(f"{t}, kept weights: last epoch vs best validation epoch ({len(r)} runs): "
                       f"Δ PSNR mean {d.mean():+.2f} dB, min {d.min():+.2f}, max {d.max():+.2f}, "
                       f"last better in {int((d > 0).sum())}, equal in {int((d == 0).sum())}; "
                       f"PSNR mean best {r.psnr_best.mean():.2f}, last {r.psnr_last.mean():.2f} dB")
            for k in ("best", "last"):
                alt = r.set_index(["image", "noise", "seed"])[f"psnr_{k}"]
                j = alt.to_frame("o").join(c.psnr.rename("c"), how="inner")
                out.append(f"  {t} with the {k} weights vs CAREamics: Δ mean {(j.o - j.c).mean():+.2f} dB, "
                           f"worst run {(j.o - j.c).min():+.2f}; worst seed per case above CAREamics' in "
                           f"{int((j.o.groupby(level=[0, 1]).min() > j.c.groupby(level=[0, 1]).min()).sum())}"
                           f" of {j.o.groupby(level=[0, 1]).ngroups}; mean per case above in "
                           f"{int((j.o.groupby(level=[0, 1]).mean() > j.c.groupby(level=[0, 1]).mean()).sum())}")
    if "ours-fp32" in tools:
        f = df[df.tool == "ours-fp32"].set_index(["image", "noise", "seed"])
        bf = o.add_suffix("_b").join(f.add_suffix("_f"), how="inner")
        dd = bf.psnr_b - bf.psnr_f
        out.append(f"bfloat16 vs float32 (ours, {len(bf)} paired runs): Δ PSNR mean {dd.mean():+.2f} dB, "
                   f"min {dd.min():+.2f}, max {dd.max():+.2f}; time ratio "
                   f"{bf.train_s_b.sum() / bf.train_s_f.sum():.2f}")
    return "\n".join(out)


def precision_steps(args) -> int:
    """Our training s/step in float32 and in bfloat16 (autocast), interleaved, on the noisy benchmark image.

    The first 2 steps of each run are dropped (warm-up). Prints the load average, the thread
    settings and whether this CPU has native bfloat16 (AVX512-BF16/AMX; without it torch emulates it).
    """
    import warnings

    import torch

    from ij_bridge.n2v import N2V, N2VConfig
    from ij_bridge.n2v.config import bf16_native

    torch.set_num_threads(args.threads)
    _, noisy = load_data(args.sigma, args.seed)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, bfloat16 native: {bf16_native()}")
    med: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    for r in range(args.rounds):
        for prec in med:
            cfg = N2VConfig(axes="YX", patch_size=(args.patch, args.patch), batch_size=args.batch, epochs=1,
                            steps_per_epoch=args.precision_steps + 2, seed=args.seed, precision=prec,
                            validation_fraction=0)
            model, stamps = N2V(cfg, device="cpu"), []
            load = os.getloadavg()[0]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the emulated-bfloat16 warning: this measures it
                model.train(noisy, show_progress=False,
                            progress=lambda d, t, m: stamps.append(time.perf_counter()))
            med[prec].append(float(np.median(np.diff(stamps[1:]))))
            print(f"round {r + 1}: {prec} {med[prec][-1]:.4f} s/step (load {load:.2f})", flush=True)
    f32, b16 = (float(np.median(v)) for v in med.values())
    print(f"\n| precision | s/step (median of {args.rounds} rounds) |\n|---|---:|\n| float32 | {f32:.4f} |\n"
          f"| bfloat16 | {b16:.4f} |\n\nbfloat16 / float32: {b16 / f32:.2f}")
    return 0


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
    ap.add_argument("--lr", type=float, default=1e-3,
                    help="our learning rate (default 1e-3, our default since session 4; CAREamics 0.3.5 uses "
                    "torch's Adam default 1e-3)")
    ap.add_argument("--skip-careamics", action="store_true")
    ap.add_argument("--skip-ours", action="store_true", help="run CAREamics only")
    ap.add_argument("--json", type=Path, help="also write the results here")
    g = ap.add_argument_group("grid (--grid): every image x noise x seed, both tools in pairs")
    g.add_argument("--grid", action="store_true", help="run the grid instead of the single image")
    g.add_argument("--images", nargs="+", default=GRID_IMAGES, choices=GRID_IMAGES)
    g.add_argument("--noises", nargs="+", default=GRID_NOISES, choices=GRID_NOISES)
    g.add_argument("--seeds", type=int, default=3, help="training seeds per tool (default 3)")
    g.add_argument("--first-seed", type=int, default=0,
                   help="seeds first-seed ... first-seed+seeds-1 (to split the grid over runs)")
    g.add_argument("--stack", action="store_true", help="add the 3D stack (synthetic nuclei 32x96x96)")
    g.add_argument("--noises-3d", nargs="+", default=["g25", "pg"], choices=GRID_NOISES)
    g.add_argument("--steps-3d", type=int, default=50)
    g.add_argument("--batch-3d", type=int, default=4)
    g.add_argument("--patch-3d", type=int, nargs=3, default=[16, 32, 32])
    g.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"],
                   help="our training precision (default: our default, auto)")
    g.add_argument("--fp32-seeds", type=int, default=0,
                   help="also train ours in float32 for the first N seeds (the bfloat16 check)")
    g.add_argument("--crop", type=int, default=0, help="use the centre crop of this size of 2D images")
    g.add_argument("--table", type=Path, nargs="+",
                   help="only print the tables of grid JSON files written before (rows merged)")
    g2 = ap.add_argument_group("precision steps (--precision-steps): float32 vs bfloat16 s/step, ours only")
    g2.add_argument("--precision-steps", type=int, default=0, metavar="N",
                    help="time N training steps (batch × patch as set) in float32 and in bfloat16, "
                         "interleaved over --rounds rounds, and print the ratio")
    g2.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    if args.precision_steps:
        return precision_steps(args)
    if args.table:
        print(grid_table([r for t in args.table for r in json.loads(t.read_text())["rows"]]))
        return 0
    if args.grid:
        return run_grid(args)

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
