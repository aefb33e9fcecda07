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

``--3d`` trains the bundled StarDist 3D model ``stardist_nuclei3d`` instead
(:func:`main_3d`): synthetic anisotropic stacks only (the shared data has no
3D annotation), evaluated on held-out synthetic stacks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "nuclei2d"
OUT = ROOT / "src" / "ij_bridge" / "models" / "stardist_nuclei2d"
OUT_3D = ROOT / "src" / "ij_bridge" / "models" / "stardist_nuclei3d"

#: the 3D training stacks: z-steps about twice the pixel size, as in many confocal stacks
STACK_3D = (64, 128, 128)
ANISOTROPY_3D = 2.0


#: ranges of the synthetic training images' parameters, per dimension (2D: 256 x 256 images,
#: 3D: anisotropic stacks): base radius, objects, long/short radius ratio, noise, overlap, blur
_RANGES = {
    2: dict(r0=(4, 8), n=(15, 70), ratio=(1.3, 2.0), noise=(0.005, 0.06), overlap=(0.0, 0.4), blur=(0.5, 2.0)),
    3: dict(r0=(5, 8), n=(60, 140), ratio=(1.2, 1.6), noise=(0.005, 0.05), overlap=(0.1, 0.4), blur=(0.5, 1.5)),
}


def _draw(rng: np.random.Generator, ndim: int) -> dict:
    """Parameters of one training image: varied size, density, brightness, blur and noise (3D: also
    axial blur and depth attenuation). The draws' order fixes the bundled models' data: keep it."""
    r = _RANGES[ndim]
    r0 = rng.uniform(*r["r0"])
    kw = dict(n_objects=int(rng.integers(*r["n"])), radius=(r0, r0 * rng.uniform(*r["ratio"])),
              noise=float(rng.uniform(*r["noise"])), photons=float(rng.choice([30.0, 100.0, 300.0, 1000.0])),
              overlap=float(rng.uniform(*r["overlap"])), background=float(rng.uniform(0.0, 0.2)),
              blur=float(rng.uniform(*r["blur"])))
    if ndim == 3:
        kw.update(axial_blur=float(rng.uniform(1.5, 3.0)), attenuation=float(rng.uniform(0.0, 0.7)),
                  anisotropy=ANISOTROPY_3D)
    kw["intensity"] = (float(rng.uniform(0.2, 0.6)), 1.0)
    return kw


def _synthetic_images(n: int, seed0: int, shape, quiet: bool = False):
    """``n`` synthetic images of ``shape`` (seeds ``seed0..``), each with the parameters :func:`_draw` gives."""
    import warnings

    from ij_bridge.synthetic import synthetic_nuclei

    rng = np.random.default_rng(seed0)
    X, Y = [], []
    for i in range(n):
        kw = _draw(rng, len(shape))
        with warnings.catch_warnings():
            if quiet:  # "only k of n objects fit": crowded stacks are wanted
                warnings.simplefilter("ignore")
            x, y = synthetic_nuclei(shape, seed=seed0 + i, **kw)
        X.append(x.astype(np.float32))
        Y.append(y)
    return X, Y


def synthetic_set(n: int, seed0: int, shape=(256, 256)):
    """``n`` synthetic 2D nuclei images (seeds ``seed0..``) with varied size, density and noise."""
    return _synthetic_images(n, seed0, shape)


def synthetic_set_3d(n: int, seed0: int, shape=STACK_3D):
    """``n`` synthetic anisotropic nuclei stacks (seeds ``seed0..``) with varied size, density and noise."""
    return _synthetic_images(n, seed0, shape, quiet=True)


def evaluate(model, sets) -> tuple[dict, list[float]]:
    """Scores (F1, accuracy, precision, recall at IoU 0.5 / 0.7; object counts) per named set, and
    the prediction seconds of each image; ``sets`` is a list of ``(name, images, labels)``."""
    from ij_bridge.metrics import matching_dataset

    scores, pred_s = {}, []
    for name, xs, ys in sets:
        preds = []
        for x in xs:
            t = time.perf_counter()
            preds.append(model.predict_instances(x)[0])
            pred_s.append(time.perf_counter() - t)
        ms = matching_dataset(ys, preds, thresh=[0.5, 0.7])
        scores[name] = {f"{k}@{m.thresh}": round(float(getattr(m, k)), 3)
                        for m in ms for k in ("f1", "accuracy", "precision", "recall")}
        scores[name]["n_true"] = int(ms[0].n_true)
        scores[name]["n_pred"] = int(ms[0].n_pred)
        print(name, scores[name], flush=True)
    return scores, pred_s


def _write_text(path: Path, text: str) -> None:
    """Write `text` through a temporary sibling renamed into place."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def scores_table(scores: dict) -> list[str]:
    """The README's markdown table of :func:`evaluate`'s scores."""
    lines = ["| data | F1@0.5 | accuracy@0.5 | F1@0.7 | accuracy@0.7 | objects (true / predicted) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, s in scores.items():
        lines.append(f"| {name} | {s['f1@0.5']:.3f} | {s['accuracy@0.5']:.3f} | {s['f1@0.7']:.3f} | "
                     f"{s['accuracy@0.7']:.3f} | {s['n_true']} / {s['n_pred']} |")
    return lines


def main_3d(args) -> int:
    """Train, evaluate and save the bundled 3D model (``--3d``)."""
    import torch

    from ij_bridge.stardist import StarDist3D, StarDistConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    n_train = args.n_synthetic or 12
    X, Y = synthetic_set_3d(n_train, 0)
    Xv, Yv = synthetic_set_3d(2, 1000)
    Xt, Yt = synthetic_set_3d(3, 2000)  # held out: neither training nor model/threshold choice
    cfg = StarDistConfig(ndim=3, n_rays=96, grid=(1, 2, 2), patch_size=tuple(args.patch),
                         backbone=args.backbone, unet_depth=2, unet_n_filters=args.filters,
                         resnet_n_filters=args.filters, head_channels=args.head,
                         batch_size=args.batch, epochs=args.epochs, steps_per_epoch=args.steps,
                         seed=args.seed, learning_rate=3e-4)
    stopped = None
    if args.finalize is not None:
        # a checkpoint of an interrupted run of this command: its best epoch, thresholds chosen now
        from ij_bridge.stardist import optimize_thresholds

        model = StarDist3D.load(args.finalize)
        h = model.history
        stopped = (len(h.get("epoch", [])), args.epochs)
        train_s = float(sum(h.get("seconds", [])))
        optimize_thresholds(model, Xv, Yv)
    else:
        model = StarDist3D(cfg)
    n_par = sum(p.numel() for p in model.net.parameters())
    print(f"device {model.device}, {len(X)} training stacks {STACK_3D}, {len(Xv)} validation, "
          f"{len(Xt)} test; {n_par} parameters; threads {torch.get_num_threads()}", flush=True)
    t0 = time.perf_counter()

    def report(done, total, message):
        if done % 10 == 0:
            print(f"{message}: step {done}/{total}, {time.perf_counter() - t0:.0f} s", flush=True)

    if args.finalize is None:
        model.train(X, Y, validation_data=(Xv, Yv), show_progress=False, progress=report,
                    checkpoint=args.checkpoint)
        train_s = time.perf_counter() - t0
    print(f"trained in {train_s:.0f} s; anisotropy {model.config.anisotropy}; thresholds "
          f"{model.thresholds}", flush=True)
    scores, pred_s = evaluate(model, [("synthetic test stacks (3, seeds 2000-2002, held out)", Xt, Yt),
                                      ("synthetic validation stacks (2, seeds 1000-1001)", Xv, Yv)])
    out = args.out or OUT_3D
    model.save(out, half=True, overwrite=True)
    model.plot_history(out / "history.png")
    best = model.history.get("best_epoch", [None])[0]
    if best is None and model.history.get("val_accuracy"):
        best = int(np.argmax(model.history["val_accuracy"])) + 1
    c = model.config
    cmd = (f"python scripts/train_bundled_model.py --3d --epochs {args.epochs} --steps {args.steps} "
           f"--batch {args.batch} --n-synthetic {n_train} --patch {' '.join(map(str, args.patch))} "
           f"--backbone {args.backbone} --filters {args.filters} --head {args.head} --seed {args.seed}")
    size_mb = (out / "weights.pt").stat().st_size / 1e6
    lines = [
        "# stardist_nuclei3d: bundled StarDist 3D model for fluorescent nuclei in z-stacks",
        "",
        "Trained by ij-bridge's own PyTorch StarDist (`ij_bridge.stardist.StarDist3D`); "
        "load it with `StarDist3D.from_pretrained(\"stardist_nuclei3d\")`.",
        "",
        "## Provenance",
        "- Data: synthetic only. The shared data (`../shared/data`) has no annotated 3D stack, and no "
        "official StarDist 3D model or 3D data set was used.",
        f"- `scripts/train_bundled_model.py` `synthetic_set_3d`, built on "
        f"`ij_bridge.synthetic.synthetic_nuclei`: {n_train} training stacks "
        f"{STACK_3D[0]}x{STACK_3D[1]}x{STACK_3D[2]} (z, y, x; seeds 0..{n_train - 1}), "
        f"2 validation stacks (seeds 1000-1001; best epoch and thresholds), 3 test stacks "
        "(seeds 2000-2002; used for nothing but the scores below).",
        f"- Voxels: z-step {ANISOTROPY_3D:g} x the pixel size; nuclei of radius 5-13 pixels (y/x), "
        "60-140 per stack placed with overlap 0.1-0.4 (touching and overlapping; the later object "
        "wins), irregular ellipsoids; axial blur 1.5-3 x the lateral (physical), depth attenuation, "
        "background, Poisson (30-1000 photons) and Gaussian noise.",
        "",
        "## Model",
        f"- {c.backbone} backbone" + (f" (depth {c.unet_depth} as the original StarDist3D's U-Net, "
                                      f"{c.unet_n_filters} filters)" if c.backbone == "unet" else
                                      f" ({c.resnet_n_blocks} blocks, {c.resnet_n_filters} filters)")
        + f", {c.head_channels}-channel head; {c.n_rays} rays on a golden spiral for anisotropy "
        f"{tuple(c.anisotropy) if c.anisotropy else None} (from the training labels' extents), "
        f"grid {tuple(c.grid)}; {n_par} parameters.",
        f"- Weights stored as float16 (`weights.pt`, {size_mb:.1f} MB); cast back to float32 on load.",
        "- Input: one channel, normalised by percentiles (1, 99.8) per stack. Made for stacks whose "
        "z-step is about twice the pixel size; resample z first for very different voxel shapes.",
        f"- Thresholds (optimised on the validation stacks): prob={model.thresholds['prob']:.2f}, "
        f"nms={model.thresholds['nms']:.2f}.",
        "",
        "## Training",
        f"- Command: `{cmd}`",
        f"- Patch {'x'.join(map(str, c.patch_size))}, batch {c.batch_size}, Adam lr 3e-4, {args.epochs} "
        f"epochs x {args.steps} steps; augmentation: YX flips and 90° rotations, Z flips, intensity "
        f"scale/shift; best epoch {best} (by validation accuracy at IoU 0.5); {train_s:.0f} s on "
        f"{model.device} (torch {torch.__version__}, {torch.get_num_threads()} threads).",
        "- Trained on the project's shared 2-core development CPU while other jobs ran, so the time "
        "is not a speed measurement.",
    ]
    if stopped is not None:
        lines += [
            f"- The run was stopped after {stopped[0]} of its {stopped[1]} epochs to meet the session's "
            "deadline (the machine was much slower than planned under load); the model is the best "
            f"epoch of its checkpoint, and its thresholds were then chosen on the validation stacks "
            f"(`--finalize CHECKPOINT`). The time above is the sum of the epochs' seconds.",
        ]
    lines += [
        "- `history.json` / `history.png`: losses and validation F1/accuracy per epoch.",
        "",
        "## Scores (after threshold optimisation)",
        "",
        *scores_table(scores),
    ]
    lines += ["", "The validation stacks also chose the best epoch and the thresholds, so their scores "
              "are optimistic; the test stacks' are not. Synthetic data is easier than most real stacks.",
              f"Prediction took {np.mean(pred_s):.1f} s per {STACK_3D} stack on average (same shared CPU).",
              ""]
    _write_text(out / "README.md", "\n".join(lines))
    _write_text(out / "scores.json", json.dumps({"scores": scores, "train_seconds": train_s,
                                                 "thresholds": model.thresholds,
                                                 "predict_seconds_per_stack": float(np.mean(pred_s))},
                                                indent=2))
    print(f"saved to {out}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--3d", dest="three_d", action="store_true",
                    help="train the bundled 3D model (stardist_nuclei3d) on synthetic stacks")
    ap.add_argument("--patch", type=int, nargs=3, default=[32, 64, 64], help="3D: patch size z y x")
    ap.add_argument("--backbone", default="unet", choices=["unet", "resnet"], help="3D: backbone")
    ap.add_argument("--filters", type=int, default=32, help="3D: U-Net / ResNet base filters")
    ap.add_argument("--head", type=int, default=128, help="3D: width of the convolution before the outputs")
    ap.add_argument("--finalize", type=Path, default=None,
                    help="3D: evaluate and save the checkpoint of an interrupted run instead of training")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--n-synthetic", type=int, default=None, help="synthetic images (2D: 40, 3D: 12)")
    ap.add_argument("--real-repeat", type=int, default=8,
                    help="the real training crop is listed this many times (sampling weight)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--checkpoint", type=Path, default=None, help="save the best model here during training")
    args = ap.parse_args(argv)
    if args.three_d:
        return main_3d(args)
    args.out = args.out or OUT
    args.n_synthetic = args.n_synthetic or 40

    import tifffile
    import torch

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

    scores, _ = evaluate(model, [("nuclei2d rows 384-511 (held out)", [real_va[0]], [real_va[1]]),
                                 ("synthetic validation (6 images)", Xsv, Ysv)])

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
        *scores_table(scores),
    ]
    lines += ["", "The held-out real crop is small (one 128x256 region); treat its scores as indicative.",
              "Scores of the thresholds' own selection data are optimistic by construction.", ""]
    _write_text(out / "README.md", "\n".join(lines))
    _write_text(out / "scores.json", json.dumps({"scores": scores, "train_seconds": train_s,
                                                 "thresholds": model.thresholds}, indent=2))
    print(f"saved to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
