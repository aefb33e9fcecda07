"""NMS speed: ij-bridge against the original StarDist 0.9.2, same candidates, same run.

2D (default) or 3D (``--3d``) candidate sets of 10k and 100k candidates (``--sizes``):

* 3D: star-convex polyhedra (96 rays on the golden spiral) the way a 3D
  prediction gives them: grid-(1, 2, 2) positions near the centres of random
  ellipsoidal nuclei, exact ray-ellipsoid distances with smooth noise,
  probabilities falling off from the centre (the generator of
  ``scripts/reference_models/make_nms3d.py``); ``nms_thresh`` 0.4.
* 2D: star-convex polygons (32 rays) of random elliptic nuclei, grid-2
  positions, jittered distances; ``nms_thresh`` 0.4.

Ours runs in this process (after a warm-up call that loads the compiled
kernels from numba's cache), once with all numba threads and once with one;
the original runs in its own environment (``--original-python``, default
``/work/venvs/stardist-tf/bin/python``) by subprocess with ``OMP_NUM_THREADS``
set to the same thread count. Printed: wall and process-CPU seconds, the
ratios, the agreement of the kept sets, the load average before and after,
and the thread settings. ``--save DIR`` writes each generated set,
``--candidates FILE...`` reads saved ones (e.g. to time the original alone,
``--no-ours``, on a set too large for one sitting).

    .venv/bin/python scripts/bench_nms.py --3d --sizes 10000
    .venv/bin/python scripts/bench_nms.py --3d --sizes 30000 100000 --no-original
    .venv/bin/python scripts/bench_nms.py            # 2D
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ORIGINAL_PYTHON = "/work/venvs/stardist-tf/bin/python"

_ORIGINAL = r"""
import json, sys, time
import numpy as np
z = np.load(sys.argv[1])
from stardist.nms import non_maximum_suppression_3d_sparse, non_maximum_suppression_sparse

class Rays:  # the original's NMS needs only these of its Rays object
    def __init__(self, v, f):
        self.vertices, self.faces = v, f
    def __len__(self):
        return len(self.vertices)

if "faces" in z:
    rays = Rays(z["vertices"], z["faces"])
    small = slice(0, 300)
    non_maximum_suppression_3d_sparse(z["dist"][small], z["prob"][small], z["points"][small], rays, nms_thresh=0.4)
    t, c = time.perf_counter(), time.process_time()
    res = non_maximum_suppression_3d_sparse(z["dist"], z["prob"], z["points"], rays, nms_thresh=float(z["thresh"]))
else:
    t, c = time.perf_counter(), time.process_time()
    res = non_maximum_suppression_sparse(z["dist"], z["prob"], z["points"], nms_thresh=float(z["thresh"]))
dt, dc = time.perf_counter() - t, time.process_time() - c
np.save(sys.argv[2], np.sort(np.asarray(res[3], np.int64)))
print(json.dumps({"seconds": dt, "cpu_seconds": dc}))
"""


def _make_nms3d():
    spec = importlib.util.spec_from_file_location("make_nms3d", ROOT / "scripts" / "reference_models" / "make_nms3d.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def candidates_3d(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` polyhedron candidates around random nuclei (about 50 per nucleus)."""
    from ij_bridge.stardist import rays_golden_spiral

    gen = _make_nms3d()
    gen.INNER = 0.6
    rays = rays_golden_spiral(96)
    n_nuc = max(4, n // 45)
    side = int(np.ceil(np.sqrt(n_nuc * 12 ** 3 / 48)))
    q, points, prob = gen.make_set(seed, rays.vertices.astype(float), (48, side, side), n_nuc,
                                   ((4.0, 8.0), (4.0, 8.0), (4.0, 8.0)), (1, 2, 2))
    rng = np.random.default_rng(seed)
    sel = np.sort(rng.choice(len(prob), size=min(n, len(prob)), replace=False))
    # the original's volumes are signed (-det / 6): it needs its own face order, det < 0 in (z, y, x),
    # which rays_golden_spiral gives (ours orients the faces itself)
    if not (np.linalg.det(rays.vertices.astype(float)[rays.faces]) < 0).all():
        raise RuntimeError("rays_golden_spiral's faces are not in the original's order")
    return {"dist": q[sel].astype(np.float32) / np.float32(8), "points": points[sel].astype(np.float32),
            "prob": prob[sel], "vertices": rays.vertices.astype(np.float32),
            "faces": rays.faces.astype(np.int32), "thresh": np.float32(0.4)}


def candidates_2d(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` polygon candidates (32 rays) at grid-2 positions of random elliptic nuclei."""
    rng = np.random.default_rng(seed)
    phi = np.arange(32) * (2 * np.pi / 32)
    u = np.stack([np.sin(phi), np.cos(phi)], 1)
    per = 30  # candidates per nucleus, about what a grid-2 prediction gives for radius 6-12
    n_nuc = int(np.ceil(n / per))
    side = np.sqrt(n_nuc * 25.0 ** 2)
    dist, points, prob = [], [], []
    for _ in range(n_nuc):
        c = rng.uniform(0, side, 2)
        r = rng.uniform(6, 12, 2)
        t = rng.uniform(0, np.pi)
        rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        off = rng.normal(0, 0.3, (per, 2))
        off *= np.minimum(1.0, 0.7 / (np.linalg.norm(off, axis=1, keepdims=True) + 1e-12))  # inside the nucleus
        pts = np.round((c + (rot @ (off * r).T).T) / 2) * 2
        a = rot.T / r[:, None]
        p = (pts - c) @ a.T
        uu = u @ a.T
        A = (uu * uu).sum(1)[None]
        B = p @ uu.T
        C = (p * p).sum(1)[:, None] - 1
        d = (-B + np.sqrt(np.maximum(B * B - A * C, 0))) / A
        d = np.maximum(d * rng.uniform(0.85, 1.15, d.shape), 0.5)
        rho = np.sqrt((p * p).sum(1))
        dist.append(d)
        points.append(pts)
        prob.append(np.clip(1 - rho + rng.normal(0, 0.05, per), 0.01, 1))
    sel = slice(0, n)
    # distinct probabilities: the two break ties differently (ours by input order)
    prob = np.concatenate(prob)
    prob = (np.clip(prob, 0.01, 0.94) + np.arange(len(prob)) * (0.05 / len(prob))).astype(np.float32)
    return {"dist": np.concatenate(dist)[sel].astype(np.float32),
            "points": np.concatenate(points)[sel].astype(np.int64),
            "prob": prob[sel], "thresh": np.float32(0.4)}


def run_ours(c: dict, threads: int) -> tuple[float, float, np.ndarray]:
    """Ours in this process: ``(wall s, process CPU s, sorted kept indices)``."""
    import numba

    from ij_bridge.stardist import non_maximum_suppression, non_maximum_suppression_3d
    from ij_bridge.stardist.geometry import Rays, dist_to_coord

    numba.set_num_threads(threads)
    if "faces" in c:
        rays = Rays(c["vertices"], c["faces"])
        small = slice(0, 300)
        non_maximum_suppression_3d(c["dist"][small], c["points"][small], c["prob"][small], rays, 0.4)
        t, cpu = time.perf_counter(), time.process_time()
        keep = non_maximum_suppression_3d(c["dist"], c["points"], c["prob"], rays, float(c["thresh"]))
    else:
        coord = dist_to_coord(c["dist"], c["points"])
        non_maximum_suppression(coord[:300], c["prob"][:300], 0.4, centres=c["points"][:300])
        t, cpu = time.perf_counter(), time.process_time()
        keep = non_maximum_suppression(dist_to_coord(c["dist"], c["points"]), c["prob"], float(c["thresh"]),
                                       centres=c["points"])
    return time.perf_counter() - t, time.process_time() - cpu, np.sort(keep)


def run_original(c: dict, threads: int, python: str, timeout: float):
    """The original by subprocess: ``(wall s, process CPU s, sorted kept indices)``, Nones on timeout."""
    with tempfile.TemporaryDirectory(prefix="bench_nms_") as tmp:
        inp, out = os.path.join(tmp, "in.npz"), os.path.join(tmp, "keep.npy")
        np.savez(inp, **c)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        try:
            r = subprocess.run([python, "-c", _ORIGINAL, inp, out], env=env, capture_output=True, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, None, None
        if r.returncode != 0:
            raise RuntimeError(f"the original failed: {r.stderr.strip().splitlines()[-1:]}")
        res = json.loads(r.stdout.strip().splitlines()[-1])
        return res["seconds"], res["cpu_seconds"], np.load(out)


def _fmt(v, digits=2):
    return "-" if v is None else f"{v:.{digits}f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--3d", dest="three_d", action="store_true", help="3D polyhedra (default: 2D polygons)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--candidates", type=Path, nargs="+",
                    help="saved candidate sets (.npz from --save) instead of --sizes")
    ap.add_argument("--save", type=Path, help="folder: write each generated candidate set there (cand_<kind>_<n>.npz)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for ours (numba) and the original (OpenMP)")
    ap.add_argument("--original-python", default=ORIGINAL_PYTHON)
    ap.add_argument("--original-timeout", type=float, default=1800.0, help="seconds before the original is given up")
    ap.add_argument("--no-original", action="store_true")
    ap.add_argument("--no-ours", action="store_true", help="time the original only")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import numba

    kind = "3D" if args.three_d else "2D"
    print(f"NMS benchmark ({kind}); command: {' '.join([Path(sys.executable).name] + sys.argv)}")
    print(f"cpu_count {os.cpu_count()}, threads {args.threads} (numba {numba.__version__}, layer "
          f"{numba.config.THREADING_LAYER}; original OMP_NUM_THREADS={args.threads}); load average "
          f"{' / '.join(f'{v:.2f}' for v in os.getloadavg())}")
    sets = args.candidates if args.candidates else args.sizes
    rows = []
    for s in sets:
        if isinstance(s, Path):
            c = dict(np.load(s))
        else:
            c = candidates_3d(s, args.seed) if args.three_d else candidates_2d(s, args.seed)
            if args.save is not None:
                args.save.mkdir(parents=True, exist_ok=True)
                np.savez(args.save / f"cand_{kind}_{s}.npz", **c)
        load0 = os.getloadavg()
        t_all = c_all = t_one = c_one = keep = None
        if not args.no_ours:
            t_all, c_all, keep = run_ours(c, args.threads)
            t_one, c_one, keep1 = run_ours(c, 1)
            if not np.array_equal(keep, keep1):
                raise RuntimeError("kept sets differ between thread counts")
        t_orig = c_orig = keep_o = None
        if not args.no_original:
            t_orig, c_orig, keep_o = run_original(c, args.threads, args.original_python, args.original_timeout)
        load1 = os.getloadavg()
        agree = None
        if keep_o is not None and keep is not None:
            a, b = set(keep.tolist()), set(keep_o.tolist())
            agree = len(a & b) / max(1, len(a | b))
        rows.append((len(c["prob"]), t_orig, c_orig, t_all, c_all, t_one, c_one, None if keep is None else len(keep),
                     None if keep_o is None else len(keep_o), agree, load0[0], load1[0]))
        print(f"  {len(c['prob'])} candidates: ours {_fmt(t_all)} s wall / {_fmt(c_all)} s CPU ({args.threads} threads), "
              f"{_fmt(t_one)} s / {_fmt(c_one)} s (1 thread); original "
              f"{'timeout' if t_orig is None and not args.no_original else f'{_fmt(t_orig)} s / {_fmt(c_orig)} s'}",
              flush=True)
    print()
    print(f"| {kind} candidates | original 0.9.2 s wall (CPU) | ours s ({args.threads} threads) wall (CPU) | "
          "ours s (1 thread) wall (CPU) | original / ours wall (CPU) | speedup threads | kept (ours / original) | "
          "kept-set agreement | load avg before / after |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n, to, co, ta, ca, t1, c1, ka, ko, ag, l0, l1 in rows:
        ratio = "n/a" if to is None or ta is None else f"{to / ta:.1f}× ({co / ca:.1f}×)"
        orig = (f">{int(args.original_timeout)}" if to is None and not args.no_original
                else f"{_fmt(to)} ({_fmt(co)})")
        speed = "-" if ta is None else f"{t1 / ta:.2f}×"
        print(f"| {n:,} | {orig} | {_fmt(ta)} ({_fmt(ca)}) | {_fmt(t1)} ({_fmt(c1)}) | {ratio} | {speed} | "
              f"{'-' if ka is None else ka} / {'-' if ko is None else ko} | "
              f"{'-' if ag is None else f'{100 * ag:.1f} %'} | {l0:.1f} / {l1:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
