"""Held-out 3D NMS candidate sets and the original StarDist 0.9.2's decisions on them.

Makes realistic candidate sets of star-convex polyhedra, the way a 3D StarDist
prediction gives them: nuclei are random ellipsoids (some touching or
overlapping, flattened along z for the anisotropic set); candidates are grid
positions inside each nucleus whose distances are the exact ray-ellipsoid
distances from that position with smooth multiplicative noise, and whose
probability falls off from the nucleus centre, plus noise. Then the original
``stardist.nms.non_maximum_suppression_3d_sparse`` (stardist 0.9.2) is run on
each set and its kept indices are stored.

Writes ``tests/fixtures/reference/nms3d/candidates.npz`` with, per set ``k``:
``k_dist`` (uint8, distances in 1/8 voxel: ``dist = k_dist / 8``, exactly what
the original was given as float32), ``k_points`` (int16, z y x), ``k_prob``
(float32, all distinct), ``k_vertices`` / ``k_faces`` (the original's
``Rays_GoldenSpiral``), ``k_thresh`` and ``k_keep`` (the original's kept
indices). ``tests/test_stardist_nms3d.py`` reads it; it never needs the
original package.

Run with the original's environment (stardist 0.9.2 + TensorFlow 2.15, made by
``scripts/reference_models/make_stardist.py``)::

    /work/venvs/stardist-tf/bin/python scripts/reference_models/make_nms3d.py
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "reference" / "nms3d" / "candidates.npz"

# (name, seed, n_rays, anisotropy, volume shape, nuclei, radius range (z, y, x), grid, nms_thresh)
SETS = [
    ("iso", 1, 96, None, (64, 160, 160), 110, ((4.0, 8.0), (4.0, 8.0), (4.0, 8.0)), (2, 2, 2), 0.4),
    ("aniso", 2, 64, (2.0, 1.0, 1.0), (32, 160, 160), 110, ((3.0, 5.0), (5.0, 9.0), (5.0, 9.0)), (1, 2, 2), 0.3),
    ("dense", 3, 96, None, (48, 112, 112), 90, ((4.0, 7.0), (4.0, 7.0), (4.0, 7.0)), (2, 2, 2), 0.5),
]
# candidates: grid positions within this fraction of the nucleus radius
INNER = 0.5


def _rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def ellipsoid_distances(points, centre, rot, radii, rays):
    """Distance along each ray from each point (inside the ellipsoid) to its surface."""
    a = rot.T / np.asarray(radii)[:, None]          # maps offsets to the unit sphere
    p = (points - centre) @ a.T                      # (n, 3)
    u = rays @ a.T                                   # (m, 3)
    uu = (u * u).sum(1)[None]
    pu = p @ u.T
    pp = (p * p).sum(1)[:, None]
    return (-pu + np.sqrt(np.maximum(pu * pu - uu * (pp - 1.0), 0.0))) / uu


def distinct_float32(p: np.ndarray) -> np.ndarray:
    """``p`` (float32) with exact ties broken: in sorted order, a value not above its predecessor is
    raised to the next float32 above it; distinct values keep their order."""
    o = np.argsort(p, kind="stable")
    s = p[o].tolist()
    for k in range(1, len(s)):
        if s[k] <= s[k - 1]:
            s[k] = float(np.nextafter(np.float32(s[k - 1]), np.float32(np.inf)))
    out = np.empty_like(p)
    out[o] = np.asarray(s, np.float32)
    return out


def make_set(seed, rays_vertices, shape, n_nuclei, radius_range, grid):
    rng = np.random.default_rng(seed)
    shape = np.asarray(shape, float)
    dist, points, prob = [], [], []
    for _ in range(n_nuclei):
        radii = np.array([rng.uniform(*r) for r in radius_range])
        centre = rng.uniform(radii, shape - radii)
        rot = _rotation(rng)
        # grid positions near the nucleus centre (where a network's prob is high)
        lo = np.floor(centre - radii).astype(int)
        hi = np.ceil(centre + radii).astype(int)
        zz, yy, xx = np.meshgrid(*[np.arange(max(l, 0) + (-max(l, 0)) % s, h, s)
                                   for l, h, s in zip(lo, hi, grid)], indexing="ij")
        pts = np.stack([zz.ravel(), yy.ravel(), xx.ravel()], 1).astype(float)
        q = ((pts - centre) @ rot / radii)
        rho = np.sqrt((q * q).sum(1))
        pts, rho = pts[rho < INNER], rho[rho < INNER]
        if len(pts) == 0:
            continue
        d = ellipsoid_distances(pts, centre, rot, radii, rays_vertices)
        # smooth noise over the rays: a few low-order terms of the ray direction
        coef = rng.normal(0, 0.06, (len(pts), 4))
        basis = np.concatenate([np.ones((len(rays_vertices), 1)), rays_vertices], 1)
        d = d * np.exp(coef @ basis.T) + rng.normal(0, 0.15, d.shape)
        dist.append(np.clip(d, 0.25, 31.8))
        points.append(pts)
        prob.append(np.clip(1.0 - 0.6 * rho + rng.normal(0, 0.08, len(rho)), 0.01, 0.999))
    dist = np.concatenate(dist)
    points = np.concatenate(points).astype(np.int16)
    prob = np.concatenate(prob).astype(np.float32)
    # distinct probabilities (the original breaks ties by its own sort order): a small perturbation,
    # then any float32 ties left (there are many in large sets) raised by an ulp in turn. (Perturbing
    # again until no tie is left, as this did before, never ends for 30k candidates and more.)
    prob = distinct_float32((prob + rng.uniform(-1e-4, 1e-4, len(prob))).astype(np.float32))
    q = np.round(dist * 8).astype(np.uint8)
    return q, points, prob


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from stardist import Rays_GoldenSpiral
    from stardist.nms import non_maximum_suppression_3d_sparse

    out = {}
    for name, seed, n_rays, aniso, shape, n_nuclei, radii, grid, thresh in SETS:
        rays = Rays_GoldenSpiral(n_rays, anisotropy=aniso)
        q, points, prob = make_set(seed, rays.vertices.astype(float), shape, n_nuclei, radii, grid)
        dist = q.astype(np.float32) / np.float32(8)
        res = non_maximum_suppression_3d_sparse(dist, prob, points.astype(np.float32), rays, nms_thresh=thresh)
        keep = np.sort(np.asarray(res[3], np.int64))
        print(f"{name}: {len(prob)} candidates, {n_rays} rays, nms_thresh {thresh}: the original keeps {len(keep)}")
        out.update({f"{name}_dist": q, f"{name}_points": points, f"{name}_prob": prob,
                    f"{name}_vertices": rays.vertices.astype(np.float32),
                    f"{name}_faces": rays.faces.astype(np.int32),
                    f"{name}_thresh": np.float32(thresh), f"{name}_keep": keep.astype(np.int32)})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=args.out.parent)
    os.close(fd)
    try:
        np.savez_compressed(tmp, **out)
        os.replace(tmp, args.out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
