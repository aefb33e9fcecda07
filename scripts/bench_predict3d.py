"""StarDist 3D prediction speed: ij-bridge against the original StarDist 0.9.2 on the same weights.

The bundled model ``stardist_nuclei3d`` (U-Net depth 2, 16 filters, 64-channel
head, 96 rays, grid (1, 2, 2)) is written into the original's own network
(``stardist.models.StarDist3D`` with the same configuration; each
convolution's kernel and bias copied, in Keras' layer order), so both run
the same weights on the same stacks with the same thresholds (the model's).
The script checks that the two networks' probability maps agree before it
times anything.

Stacks: anisotropic synthetic nuclei (:func:`ij_bridge.synthetic.synthetic_nuclei`,
z-step 2 x the pixel size, as the bundled model's training data), already
normalised (percentiles 1 / 99.8), so neither side normalises.

Timed per stack, after a warm-up call, for each thread count (ours:
``torch.set_num_threads`` and ``numba.set_num_threads``; the original: TF
intra/inter op threads and ``OMP_NUM_THREADS`` for its C++ NMS/rendering):

* ``net``: ``model.predict`` (probability and distance maps);
* ``total``: ``model.predict_instances`` (network, candidates above
  ``prob_thresh``, NMS, label rendering);
* ours also the parts of ``total``: NMS and rendering.

Wall and process-CPU seconds (medians over stacks x repeats); same-run ratios;
the load average before and after. Ours also runs the imported copy of the
original's model folder (``StarDist3D.load``, the importer's network) as a
third row. Matching of ours and the original's labels (IoU 0.5) and both
against the ground truth are printed as a check that they do the same work.

    .venv/bin/python scripts/bench_predict3d.py                 # 1 and 2 threads, 3 stacks 24x80x80
    .venv/bin/python scripts/bench_predict3d.py --shape 64 128 128 --stacks 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ORIGINAL_PYTHON = "/work/venvs/stardist-tf/bin/python"

_WORKER = r'''
import json, os, sys, time
cfg = json.load(open(sys.argv[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(cfg["threads"])
tf.config.threading.set_inter_op_parallelism_threads(cfg["threads"])
import stardist
from stardist import Rays_GoldenSpiral
from stardist.models import Config3D, StarDist3D

w = np.load(cfg["weights"])
rays = Rays_GoldenSpiral(cfg["n_rays"], anisotropy=cfg["anisotropy"])
conf = Config3D(rays=rays, grid=tuple(cfg["grid"]), anisotropy=cfg["anisotropy"], n_channel_in=1,
                backbone="unet", unet_n_depth=cfg["depth"], unet_n_filter_base=cfg["filters"],
                unet_pool=(2, 2, 2), net_conv_after_unet=cfg["head"], train_patch_size=(16, 64, 64),
                use_gpu=False)
model = StarDist3D(conf, name="bundled_in_original", basedir=cfg["basedir"])
convs = [l for l in model.keras_model.layers if isinstance(l, tf.keras.layers.Conv3D)]
head = [model.keras_model.get_layer(n) for n in ("prob", "dist")]
convs = [l for l in convs if l.name not in ("prob", "dist")] + head
if len(convs) != int(w["n"]):
    raise SystemExit(f"the original's network has {len(convs)} convolutions, ours {int(w['n'])}")
for k, l in enumerate(convs):
    kern, bias = w[f"k{k}"], w[f"b{k}"]
    if l.kernel.shape != kern.shape:
        raise SystemExit(f"layer {l.name}: kernel {tuple(l.kernel.shape)} vs ours {kern.shape}")
    l.set_weights([kern, bias])
if cfg.get("save"):
    model.keras_model.save_weights(os.path.join(cfg["basedir"], "bundled_in_original", "weights_best.h5"))
    with open(os.path.join(cfg["basedir"], "bundled_in_original", "thresholds.json"), "w") as f:
        json.dump({"prob": cfg["prob"], "nms": cfg["nms"]}, f)
X = np.load(cfg["stacks"])
xs = [X[k] for k in sorted(X.files)]
kw = dict(prob_thresh=cfg["prob"], nms_thresh=cfg["nms"], show_tile_progress=False)
prob0, _ = model.predict(xs[0], axes="ZYX", normalizer=None)
model.predict_instances(xs[0], axes="ZYX", normalizer=None, **kw)  # warm-up (graph tracing)
net, tot, labels = [], [], []
for r in range(cfg["repeats"]):
    for x in xs:
        t, c = time.perf_counter(), time.process_time()
        model.predict(x, axes="ZYX", normalizer=None)
        net.append((time.perf_counter() - t, time.process_time() - c))
        t, c = time.perf_counter(), time.process_time()
        lbl, det = model.predict_instances(x, axes="ZYX", normalizer=None, **kw)
        tot.append((time.perf_counter() - t, time.process_time() - c))
        if r == 0:
            labels.append(lbl)
np.savez(cfg["out"], prob0=prob0, **{f"l{k}": l for k, l in enumerate(labels)})
print(json.dumps({"net": net, "total": tot, "versions": {"stardist": stardist.__version__, "tf": tf.__version__},
                  "tf_threads": [tf.config.threading.get_intra_op_parallelism_threads(),
                                 tf.config.threading.get_inter_op_parallelism_threads()]}))
'''


def make_stacks(n: int, shape, seed0: int = 3000):
    """``n`` normalised anisotropic synthetic stacks and their labels."""
    from ij_bridge.synthetic import synthetic_nuclei

    X, Y = [], []
    for s in range(seed0, seed0 + n):
        rng = np.random.default_rng(s)
        r0 = rng.uniform(5, 8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # crowded stacks: fewer objects fit
            x, y = synthetic_nuclei(tuple(shape), n_objects=int(np.prod(shape) / 2500), seed=s,
                                    radius=(r0, 1.4 * r0), anisotropy=2.0, overlap=0.25, axial_blur=2.0,
                                    photons=300.0, noise=0.02)
        lo, hi = np.percentile(x, (1, 99.8))
        X.append(((x - lo) / (hi - lo)).astype(np.float32))
        Y.append(y)
    return X, Y


def keras_weights(model) -> dict[str, np.ndarray]:
    """Our U-Net's convolutions in Keras layer order (kernel ``(kz, ky, kx, in, out)``, bias)."""
    import torch

    convs = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv3d)]
    out = {"n": np.array(len(convs))}
    for k, m in enumerate(convs):
        out[f"k{k}"] = m.weight.detach().float().numpy().transpose(2, 3, 4, 1, 0).copy()
        out[f"b{k}"] = m.bias.detach().float().numpy().copy()
    return out


def time_ours(model, xs, prob, nms, repeats):
    """Per stack: (wall, cpu) of net, total, and NMS and rendering inside a separately timed run."""
    from ij_bridge.stardist.geometry import polyhedra_to_label
    from ij_bridge.stardist.nms import non_maximum_suppression_3d, polygon_candidates

    model.predict_instances(xs[0], normalize=False, prob_thresh=prob, nms_thresh=nms)  # warm-up
    rec = {"net": [], "total": [], "nms": [], "render": []}
    labels = []

    def clock(key, f):
        t, c = time.perf_counter(), time.process_time()
        r = f()
        rec[key].append((time.perf_counter() - t, time.process_time() - c))
        return r

    for r in range(repeats):
        for x in xs:
            p, d = clock("net", lambda: model.predict(x, normalize=False))
            lbl, _ = clock("total", lambda: model.predict_instances(x, normalize=False, prob_thresh=prob,
                                                                     nms_thresh=nms))
            pts, pp, dd = polygon_candidates(p, d, prob, model.config.grid)
            keep = clock("nms", lambda: non_maximum_suppression_3d(np.maximum(dd, 1e-3), pts, pp, model.rays, nms))
            clock("render", lambda: polyhedra_to_label(dd[keep], pts[keep], model.rays, x.shape, prob=pp[keep]))
            if r == 0:
                labels.append(lbl)
    return rec, labels


def med(pairs, k):
    return float(np.median([p[k] for p in pairs])) if pairs else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--shape", type=int, nargs=3, default=[24, 80, 80])
    ap.add_argument("--stacks", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--original-python", default=ORIGINAL_PYTHON)
    ap.add_argument("--no-imported", action="store_true", help="skip the imported copy of the original's model")
    args = ap.parse_args(argv)

    import numba
    import torch

    from ij_bridge.metrics import matching
    from ij_bridge.stardist import StarDist3D

    load0 = os.getloadavg()
    print(f"3D prediction benchmark; command: {' '.join([Path(sys.executable).name] + sys.argv)}")
    print(f"cpu_count {os.cpu_count()}, load average {load0[0]:.2f} / {load0[1]:.2f} / {load0[2]:.2f}; "
          f"torch {torch.__version__}, numba {numba.__version__} ({numba.config.THREADING_LAYER}); "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    model = StarDist3D.from_pretrained("stardist_nuclei3d", device="cpu")
    c = model.config
    prob, nms = model.thresholds["prob"], model.thresholds["nms"]
    X, Y = make_stacks(args.stacks, args.shape)
    print(f"model stardist_nuclei3d: {c.backbone} depth {c.unet_depth}, {c.unet_n_filters} filters, head "
          f"{c.head_channels}, {c.n_rays} rays, grid {tuple(c.grid)}; thresholds prob {prob}, nms {nms}; "
          f"{args.stacks} stacks {tuple(args.shape)}, {args.repeats} repeats")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_predict3d_") as tmp:
        tmp = Path(tmp)
        np.savez(tmp / "weights.npz", **keras_weights(model))
        np.savez(tmp / "stacks.npz", **{f"x{k}": x for k, x in enumerate(X)})
        imported = None
        for i, t in enumerate(args.threads):
            torch.set_num_threads(t)
            numba.set_num_threads(t)
            ours, ours_lbl = time_ours(model, X, prob, nms, args.repeats)
            cfg = {"threads": t, "weights": str(tmp / "weights.npz"), "stacks": str(tmp / "stacks.npz"),
                   "n_rays": c.n_rays, "anisotropy": list(c.anisotropy), "grid": list(c.grid),
                   "depth": c.unet_depth, "filters": c.unet_n_filters, "head": c.head_channels,
                   "prob": prob, "nms": nms, "repeats": args.repeats, "basedir": str(tmp),
                   "save": i == 0 and not args.no_imported, "out": str(tmp / f"orig_{t}.npz")}
            (tmp / "cfg.json").write_text(json.dumps(cfg))
            env = dict(os.environ, OMP_NUM_THREADS=str(t), CUDA_VISIBLE_DEVICES="")
            r = subprocess.run([args.original_python, "-c", _WORKER, str(tmp / "cfg.json")], env=env,
                               capture_output=True, text=True)
            if r.returncode != 0:
                print(r.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"the original's worker failed (exit {r.returncode})")
            orig = json.loads(r.stdout.strip().splitlines()[-1])
            o = np.load(cfg["out"])
            if i == 0:
                p_ours, _ = model.predict(X[0], normalize=False)
                diff = float(np.abs(p_ours - o["prob0"]).max())
                print(f"same weights: max |prob ours - prob original| = {diff:.2e} on stack 0")
                if diff > 1e-3:
                    raise SystemExit("the networks disagree: the weights were not copied right")
                if not args.no_imported:
                    imported = StarDist3D.load(tmp / "bundled_in_original", device="cpu")
            agree = [matching(a, o[f"l{k}"], thresh=0.5).f1 for k, a in enumerate(ours_lbl)]
            f1_o = [matching(y, o[f"l{k}"], thresh=0.5).f1 for k, y in enumerate(Y)]
            f1_s = [matching(y, a, thresh=0.5).f1 for y, a in zip(Y, ours_lbl)]
            n_obj = [int(a.max()) for a in ours_lbl], [int(o[f"l{k}"].max()) for k in range(len(X))]
            row = {"threads": t, "ours": ours, "orig": orig, "agree": agree, "f1_ours": f1_s, "f1_orig": f1_o,
                   "objects": n_obj, "tf_threads": orig["tf_threads"]}
            if imported is not None:
                row["imported"], _ = time_ours(imported, X, prob, nms, args.repeats)
            rows.append(row)
            print(f"  {t} thread(s): ours total {med(ours['total'], 0):.3f} s, original {med(orig['total'], 0):.3f} s "
                  f"(objects ours {n_obj[0]}, original {n_obj[1]}; load {os.getloadavg()[0]:.2f})", flush=True)
    load1 = os.getloadavg()
    print()
    print("| threads | who | net s wall (CPU) | NMS s | render s | total s wall (CPU) | total ours / original (wall, CPU) |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        o = row["orig"]
        for who, rec in (("ours (bundled net)", row["ours"]), ("ours (imported copy)", row.get("imported"))):
            if rec is None:
                continue
            print(f"| {row['threads']} | {who} | {med(rec['net'], 0):.3f} ({med(rec['net'], 1):.3f}) | "
                  f"{med(rec['nms'], 0):.3f} | {med(rec['render'], 0):.3f} | "
                  f"{med(rec['total'], 0):.3f} ({med(rec['total'], 1):.3f}) | "
                  f"{med(rec['total'], 0) / med(o['total'], 0):.2f}×, {med(rec['total'], 1) / med(o['total'], 1):.2f}× |")
        print(f"| {row['threads']} | original 0.9.2 (TF intra/inter {o['tf_threads']}) | {med(o['net'], 0):.3f} "
              f"({med(o['net'], 1):.3f}) | - | - | {med(o['total'], 0):.3f} ({med(o['total'], 1):.3f}) | 1 |")
    print()
    for row in rows:
        print(f"{row['threads']} thread(s): labels ours vs original F1@0.5 per stack "
              f"{', '.join(f'{v:.3f}' for v in row['agree'])}; vs ground truth ours "
              f"{', '.join(f'{v:.3f}' for v in row['f1_ours'])}, original {', '.join(f'{v:.3f}' for v in row['f1_orig'])}")
    print(f"load average before / after: {load0[0]:.2f} / {load1[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
