#!/usr/bin/env python
"""Train the bundled StarDist 2D model for fluorescent nuclei.

Data (all usable by the project):

* ``../shared/data/nuclei2d/train_left_*.tif``: rows 0-383 for training,
  rows 384-511 (128 x 256, held out) for validation;
* synthetic nuclei from :func:`ij_bridge.synthetic.synthetic_nuclei` with
  varied sizes, densities, brightness and noise (seeds 0..n-1 for training,
  1000.. for validation).

The model (32 rays, grid (2, 2), U-Net depth 3 / 32 filters) is saved with
float16 weights (about 2.9 MB) to ``src/ij_bridge/models/stardist_nuclei2d``
together with a README giving provenance, the command and validation scores.

Usage::

    python scripts/train_bundled_model.py [--epochs 60 --steps 100 --batch 8]

Runs on CUDA when available (a few minutes), else on CPU (reduce epochs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "nuclei2d"
OUT = ROOT / "src" / "ij_bridge" / "models" / "stardist_nuclei2d"


def synthetic_set(n: int, seed0: int, shape=(256, 256)):
    from ij_bridge.synthetic import synthetic_nuclei

    rng = np.random.default_rng(seed0)
    X, Y = [], []
    for i in range(n):
        r0 = rng.uniform(4, 8)
        kw = dict(
            n_objects=int(rng.integers(15, 70)),
            radius=(r0, r0 * rng.uniform(1.3, 2.0)),
            noise=float(rng.uniform(0.005, 0.06)),
            photons=float(rng.choice([30.0, 100.0, 300.0, 1000.0])),
            overlap=float(rng.uniform(0.0, 0.4)),
            background=float(rng.uniform(0.0, 0.2)),
            blur=float(rng.uniform(0.5, 2.0)),
            intensity=(float(rng.uniform(0.2, 0.6)), 1.0),
        )
        x, y = synthetic_nuclei(shape, seed=seed0 + i, **kw)
        X.append(x.astype(np.float32))
        Y.append(y)
    return X, Y


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--n-synthetic", type=int, default=40)
    ap.add_argument("--real-repeat", type=int, default=8,
                    help="the real training crop is listed this many times (sampling weight)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--checkpoint", type=Path, default=None, help="save the best model here during training")
    args = ap.parse_args(argv)

    import tifffile
    import torch

    from ij_bridge.metrics import matching_dataset
    from ij_bridge.stardist import StarDist2D, StarDistConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    img = tifffile.imread(args.data / "train_left_img.tif").astype(np.float32)
    lbl = tifffile.imread(args.data / "train_left_mask.tif").astype(np.int32)
    split = 384
    real_tr = (img[:split], lbl[:split])
    real_va = (img[split:], lbl[split:])
    Xs, Ys = synthetic_set(args.n_synthetic, 0)
    Xsv, Ysv = synthetic_set(6, 1000)
    X = [real_tr[0]] * args.real_repeat + Xs
    Y = [real_tr[1]] * args.real_repeat + Ys
    Xv = [real_va[0]] + Xsv
    Yv = [real_va[1]] + Ysv

    cfg = StarDistConfig(n_rays=32, grid=(2, 2), patch_size=(128, 128), batch_size=args.batch,
                         epochs=args.epochs, steps_per_epoch=args.steps, seed=args.seed,
                         learning_rate=3e-4)
    model = StarDist2D(cfg)
    print(f"device {model.device}, {len(X)} training images, {len(Xv)} validation images", flush=True)
    t0 = time.perf_counter()
    def report(done, total, message):
        if done % args.steps == 0:
            print(f"{message}: step {done}/{total}, {time.perf_counter() - t0:.0f} s", flush=True)

    model.train(X, Y, validation_data=(Xv, Yv), show_progress=sys.stderr.isatty(), progress=report,
                checkpoint=args.checkpoint)
    train_s = time.perf_counter() - t0
    print(f"trained in {train_s:.0f} s; thresholds {model.thresholds}", flush=True)

    scores = {}
    for name, xs, ys in [("nuclei2d rows 384-511 (held out)", [real_va[0]], [real_va[1]]),
                         ("synthetic validation (6 images)", Xsv, Ysv)]:
        preds = [model.predict_instances(x)[0] for x in xs]
        ms = matching_dataset(ys, preds, thresh=[0.5, 0.7])
        scores[name] = {f"{k}@{m.thresh}": round(float(getattr(m, k)), 3)
                        for m in ms for k in ("f1", "accuracy", "precision", "recall")}
        scores[name]["n_true"] = int(ms[0].n_true)
        scores[name]["n_pred"] = int(ms[0].n_pred)
        print(name, scores[name], flush=True)

    out = args.out
    model.save(out, half=True, overwrite=True)
    model.plot_history(out / "history.png")
    best = model.history.get("best_epoch", [None])[0]
    lines = [
        "# stardist_nuclei2d: bundled StarDist 2D model for fluorescent nuclei",
        "",
        "Trained by ij-bridge's own PyTorch StarDist (`ij_bridge.stardist.StarDist2D`).",
        "",
        "## Provenance",
        "- Real data: `../shared/data/nuclei2d/train_left_img.tif` / `train_left_mask.tif` "
        "(2018 Data Science Bowl via the StarDist sample data, BSD-3-Clause): rows 0-383 for training, "
        "rows 384-511 held out for validation.",
        f"- Synthetic nuclei from `ij_bridge.synthetic.synthetic_nuclei`: {args.n_synthetic} training "
        "images 256x256 (seeds 0..), 6 validation images (seeds 1000..), varied size, density, "
        "brightness, blur and noise. The real crop is sampled with weight "
        f"{args.real_repeat} (listed {args.real_repeat} times).",
        "",
        "## Model",
        f"- 32 rays, grid (2, 2), U-Net depth 3, 32 filters, 128-channel head; "
        f"{sum(p.numel() for p in model.net.parameters())} parameters.",
        "- Weights stored as float16 (`weights.pt`) to keep the folder small; they are cast back "
        "to float32 on load.",
        "- Input: one channel, normalised by percentiles (1, 99.8) per image.",
        f"- Thresholds (optimised on the validation images, mean accuracy over IoU 0.3/0.5/0.7): "
        f"prob={model.thresholds['prob']:.2f}, nms={model.thresholds['nms']:.2f}.",
        "",
        "## Training",
        f"- Command: `python scripts/train_bundled_model.py --epochs {args.epochs} --steps {args.steps} "
        f"--batch {args.batch} --n-synthetic {args.n_synthetic} --seed {args.seed}`",
        f"- Patch 128x128, batch {args.batch}, Adam lr 3e-4, {args.epochs} epochs x {args.steps} steps; "
        f"best epoch {best} (by validation accuracy at IoU 0.5); {train_s:.0f} s on {model.device}"
        f" (torch {torch.__version__}).",
        "- `history.json` / `history.png`: losses and validation F1/accuracy per epoch.",
        "",
        "## Validation scores (after threshold optimisation)",
        "",
        "| data | F1@0.5 | accuracy@0.5 | F1@0.7 | accuracy@0.7 | objects (true / predicted) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, s in scores.items():
        lines.append(f"| {name} | {s['f1@0.5']:.3f} | {s['accuracy@0.5']:.3f} | {s['f1@0.7']:.3f} | "
                     f"{s['accuracy@0.7']:.3f} | {s['n_true']} / {s['n_pred']} |")
    lines += ["", "The held-out real crop is small (one 128x256 region); treat its scores as indicative.",
              "Scores of the thresholds' own selection data are optimistic by construction.", ""]
    (out / "README.md").write_text("\n".join(lines))
    (out / "scores.json").write_text(json.dumps({"scores": scores, "train_seconds": train_s,
                                                 "thresholds": model.thresholds}, indent=2))
    print(f"saved to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
