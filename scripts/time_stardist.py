#!/usr/bin/env python
"""Time the StarDist core: training step, prediction, NMS.

Settings of the issue's reference numbers: grid (2, 2), patch 128, batch 4, 32 rays, 2 threads.
Prints a Markdown table; wall seconds and CPU seconds (all threads) are both given, because
on a shared machine wall time depends on the load (see the printed load average).

    .venv/bin/python scripts/time_stardist.py [--threads 2 --steps 30]

The comparison with the original StarDist is in scripts/bench_stardist.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def _timed(fn, reps):
    wall, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return float(np.median(wall)), float(np.median(cpu)), out


def candidates(n: int, seed: int = 0):
    """``n`` noisy candidates at the density of a grid-2 prediction of touching nuclei."""
    from ij_bridge.stardist import dist_to_coord, edt_prob, star_dist_2d
    from ij_bridge.synthetic import synthetic_nuclei

    side = int(np.ceil(np.sqrt(n * 4 / 0.28) / 64) * 64)
    n_obj = int(side * side * 0.28 / (np.pi * 9 ** 2))
    _, lbl = synthetic_nuclei((side, side), n_objects=n_obj, radius=(6, 12), overlap=0.4, seed=seed)
    dist = star_dist_2d(lbl, 32, grid=(2, 2))
    prob = edt_prob(lbl)[::2, ::2]
    rng = np.random.default_rng(seed)
    ind = np.argwhere(prob > 0)
    ind = ind[np.sort(rng.choice(len(ind), size=min(n, len(ind)), replace=False))]
    d = np.maximum(dist[ind[:, 0], ind[:, 1]] * rng.uniform(0.85, 1.15, (len(ind), 32)), 0.5)
    p = np.clip(prob[ind[:, 0], ind[:, 1]] + rng.normal(0, 0.05, len(ind)), 0.01, 1)
    pts = ind * 2
    return dist_to_coord(d, pts), p, pts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30, help="training steps to time (after 5 warm-up)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--skip-100k", action="store_true")
    args = ap.parse_args(argv)

    import torch

    from ij_bridge.stardist import StarDist2D, StarDistConfig
    from ij_bridge.stardist.nms import non_maximum_suppression
    from ij_bridge.synthetic import synthetic_nuclei

    torch.set_num_threads(args.threads)
    rows = []
    X, Y = zip(*[synthetic_nuclei((256, 256), n_objects=40, seed=s) for s in range(4)])
    cfg = StarDistConfig(n_rays=32, grid=(2, 2), patch_size=(128, 128), batch_size=4, epochs=1,
                         steps_per_epoch=args.steps + 5, seed=0)
    model = StarDist2D(cfg, device="cpu")
    stamps = []
    model.train(list(X), list(Y), show_progress=False,
                progress=lambda d, t, m: stamps.append((time.perf_counter(), time.process_time())))
    st = np.diff(np.asarray(stamps), axis=0)[5:]
    rows.append(("training step (patch 128, batch 4, grid 2, 32 rays)", np.median(st[:, 0]), np.median(st[:, 1])))

    x, _ = synthetic_nuclei((256, 256), n_objects=40, seed=99)
    model.thresholds = {"prob": 0.5, "nms": 0.4}
    model.predict_instances(x)
    w, c, _ = _timed(lambda: model.predict_instances(x), args.reps)
    rows.append(("predict_instances 256x256 (untrained net, prob 0.5)", w, c))
    from ij_bridge.stardist import StarDist2D as S
    bundled = S.from_pretrained(device="cpu")
    bundled.predict_instances(x)
    w, c, (lbl, _) = _timed(lambda: bundled.predict_instances(x), args.reps)
    rows.append((f"predict_instances 256x256 (bundled model, {lbl.max()} objects)", w, c))

    for n in ([10_000] if args.skip_100k else [10_000, 100_000]):
        coord, p, pts = candidates(n)
        w, c, keep = _timed(lambda: non_maximum_suppression(coord, p, 0.4, centres=pts),
                            1 if n > 10_000 else 3)
        rows.append((f"NMS {n // 1000}k candidates (kept {len(keep)})", w, c))

    print(f"torch {torch.__version__}, {args.threads} threads, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}, {os.cpu_count()} CPUs\n")
    print("| what | wall s | CPU s |\n| --- | --- | --- |")
    for name, w, c in rows:
        print(f"| {name} | {w:.3f} | {c:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
