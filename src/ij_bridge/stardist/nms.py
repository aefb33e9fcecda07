"""Non-maximum suppression of star-convex candidates.

The rule is the original StarDist's: candidates are visited in order of
decreasing probability; a candidate is kept unless its intersection with an
already kept object, divided by the smaller of the two areas (volumes),
exceeds ``nms_thresh``.

2D uses exact polygon intersections (GEOS through shapely 2, vectorised per
kept object) and an STR-tree of bounding boxes to find the few candidates that
can overlap a kept one, so that 100,000 candidates take seconds.

3D uses a rasterised intersection: each candidate is voxelised inside its
bounding box (star-convex inside test, see
:func:`~ij_bridge.stardist.geometry.inside_polyhedron`) only when a kept object
is nearby, and the overlap with each nearby kept object is the number of its
voxels inside that object. Volumes are voxel counts of the same rasterisation,
so the ratio is consistent; the error is that of voxelisation (about one voxel
layer on the surface).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from .geometry import Rays, dist_to_coord, inside_polyhedron, polygon_areas, polyhedron_mask

__all__ = ["non_maximum_suppression", "star_pair_intersection_areas", "non_maximum_suppression_3d", "polygon_candidates", "nms_from_maps"]


def polygon_candidates(prob: np.ndarray, dist: np.ndarray, prob_thresh: float,
                       grid=(1, 1), max_candidates: int | None = None):
    """Candidates above ``prob_thresh`` from grid-resolution maps.

    Returns ``(points (n, 2) full-resolution row/col, prob (n,), dist (n, n_rays))``
    sorted by decreasing probability.
    """
    ind = np.nonzero(prob > prob_thresh)
    p = prob[ind]
    order = np.argsort(-p, kind="stable")
    if max_candidates is not None:
        order = order[:max_candidates]
    points = np.stack(ind, axis=1)[order] * np.asarray(grid)[None]
    return points.astype(np.int64), p[order].astype(np.float32), dist[ind][order].astype(np.float32)


def _lens_area(r1: np.ndarray, r2: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Area of the intersection of two discs (radii ``r1``, ``r2``, centre distance ``d``)."""
    r1, r2, d = np.broadcast_arrays(np.asarray(r1, float), np.asarray(r2, float), np.asarray(d, float))
    out = np.zeros(r1.shape)
    inside = d <= np.abs(r1 - r2)
    out[inside] = np.pi * np.minimum(r1, r2)[inside] ** 2
    part = ~inside & (d < r1 + r2)
    if part.any():
        a, b, c = r1[part], r2[part], np.maximum(d[part], 1e-12)
        c1 = np.clip((c * c + a * a - b * b) / (2 * c * a), -1, 1)
        c2 = np.clip((c * c + b * b - a * a) / (2 * c * b), -1, 1)
        k = (-c + a + b) * (c + a - b) * (c - a + b) * (c + a + b)
        out[part] = a * a * np.arccos(c1) + b * b * np.arccos(c2) - 0.5 * np.sqrt(np.maximum(k, 0))
    return out



def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def star_pair_intersection_areas(va: np.ndarray, vb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact intersection areas of polygon pairs that are both star-shaped from the origin.

    Both polygons of a pair are seen from the origin: where it lies strictly
    inside the kernel of both (every edge line at least 1e-6 × size away, the
    polygons counter-clockwise), each has a single-valued piecewise-linear
    radial function. Between consecutive vertex angles of either polygon both
    boundaries are straight segments, so the intersection is a fan of exact
    triangles (split where the two segments cross). About five times faster
    than a general (GEOS) overlay of 32-gons.

    Parameters
    ----------
    va, vb : ndarray
        ``(P, n, 2)`` and ``(P, m, 2)`` vertices, (x, y), relative to the origin.

    Returns
    -------
    areas : ndarray
        ``(P,)``; 0 where not ``ok``.
    ok : ndarray
        ``(P,)`` bool, whether the origin is strictly inside both kernels.
    """
    va = np.asarray(va, np.float64)
    vb = np.asarray(vb, np.float64)
    P = len(va)
    area = np.zeros(P)
    if P == 0:
        return area, np.zeros(0, bool)
    scale = np.maximum(np.abs(va).max(axis=(1, 2)), np.abs(vb).max(axis=(1, 2))) + 1e-12

    def kernel_ok(v):
        e = np.roll(v, -1, axis=1) - v
        margin = _cross(e, -v) / (np.hypot(e[..., 0], e[..., 1]) + 1e-300)
        return np.all(margin > 1e-6 * scale[:, None], axis=1)

    ok = kernel_ok(va) & kernel_ok(vb)
    if not ok.any():
        return area, ok
    va, vb = va[ok], vb[ok]
    Q = len(va)
    two_pi = 2 * np.pi
    rows = np.arange(Q)[:, None]

    def prepare(v):
        ang = np.mod(np.arctan2(v[..., 1], v[..., 0]), two_pi)
        order = np.argsort(ang, axis=1)
        return ang, order, np.take_along_axis(ang, order, axis=1)

    ang_a, ord_a, sa = prepare(va)
    ang_b, ord_b, sb = prepare(vb)
    t = np.sort(np.concatenate([ang_a, ang_b], axis=1), axis=1)
    a = t
    b = np.concatenate([t[:, 1:], t[:, :1] + two_pi], axis=1)
    mid = np.mod(0.5 * (a + b), two_pi)

    def edge_at(v, order, sorted_ang):
        n = v.shape[1]
        pos = (sorted_ang[:, None, :] <= mid[:, :, None]).sum(axis=2) - 1  # -1: wraps to the last
        k = order[rows, pos % n]
        return v[rows, k], v[rows, (k + 1) % n]

    A0, A1 = edge_at(va, ord_a, sa)
    B0, B1 = edge_at(vb, ord_b, sb)

    def radial(P0, P1, th):
        u = np.stack([np.cos(th), np.sin(th)], -1)
        D = P1 - P0
        return _cross(P0, D) / _cross(u, D)

    rA_a, rA_b = radial(A0, A1, a), radial(A0, A1, b)
    rB_a, rB_b = radial(B0, B1, a), radial(B0, B1, b)
    lo_a, lo_b = np.minimum(rA_a, rB_a), np.minimum(rA_b, rB_b)
    same = (rA_a - rB_a) * (rA_b - rB_b) >= 0
    part = 0.5 * lo_a * lo_b * np.sin(b - a)
    if not same.all():
        dA, dB = A1 - A0, B1 - B0
        den = _cross(dA, dB)
        sgm = _cross(B0 - A0, dB) / np.where(den == 0, 1.0, den)
        X = A0 + sgm[..., None] * dA
        rx = np.hypot(X[..., 0], X[..., 1])
        tx = a + np.mod(np.arctan2(X[..., 1], X[..., 0]) - a, two_pi)
        crossing = 0.5 * lo_a * rx * np.sin(tx - a) + 0.5 * rx * lo_b * np.sin(b - tx)
        part = np.where(same, part, crossing)
    area[ok] = part.sum(axis=1)
    return area, ok


def non_maximum_suppression(coord: np.ndarray, prob: np.ndarray, nms_thresh: float = 0.4,
                            progress: Callable[[int, int, str], None] | None = None,
                            centres: np.ndarray | None = None, threads: int | None = None,
                            ) -> np.ndarray:
    """Greedy NMS of 2D star-convex polygons.

    Parameters
    ----------
    coord : ndarray
        ``(n, 2, n_rays)`` polygon vertices, (row, col).
    prob : ndarray
        ``(n,)`` scores; higher is visited first (ties keep input order).
    nms_thresh : float
        Suppress a candidate when ``intersection / min(area) > nms_thresh``.
    progress : callable, optional
        ``progress(done, total, message)``.
    centres : ndarray, optional
        ``(n, 2)`` centres the polygons are star-convex from (their ray
        origins). With them, pairs are first decided by disc bounds: the disc of
        radius ``min(dist) * cos(pi / n_rays)`` lies inside a star polygon and
        the disc of radius ``max(dist)`` contains it, so the lens areas of the
        inner and outer discs bound the intersection from below and above; only
        undecided pairs get an exact (GEOS) intersection. The result is the
        same as without them.
    threads : int, optional
        Threads for the exact intersections (GEOS releases the GIL); default
        ``torch.get_num_threads()`` (at most 8). Used above 2000 candidates.

    Returns
    -------
    ndarray
        Indices of the kept candidates, in order of decreasing probability.

    Examples
    --------
    >>> from ij_bridge.stardist.geometry import dist_to_coord
    >>> c = dist_to_coord(np.full((2, 8), 5.0), np.array([[10, 10], [10, 12]]))
    >>> non_maximum_suppression(c, np.array([0.9, 0.8]), 0.3).tolist()
    [0]
    """
    import shapely

    coord = np.asarray(coord, np.float64)
    prob = np.asarray(prob)
    if coord.ndim != 3 or coord.shape[1] != 2 or len(prob) != len(coord):
        raise ValueError(f"need coord (n, 2, n_rays) and prob (n,), got {coord.shape}, {prob.shape}")
    if centres is not None:
        centres = np.asarray(centres, np.float64)
        if centres.shape != (len(coord), 2):
            raise ValueError(f"centres must be (n, 2), got {centres.shape}")
    n = len(coord)
    if n == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-prob, kind="stable")
    # shapely wants (x, y); the geometry does not care, keep (row, col)
    ring = coord.transpose(0, 2, 1)
    polys = shapely.polygons(np.concatenate([ring, ring[:, :1]], axis=1))
    areas = polygon_areas(coord)
    tree = shapely.STRtree(polys)
    xy = None
    if centres is not None:
        xy = np.ascontiguousarray(coord[:, ::-1].transpose(0, 2, 1))  # (n, n_rays, 2) as (x, y)
        rad = np.hypot(coord[:, 0] - centres[:, :1], coord[:, 1] - centres[:, 1:])
        r_in = rad.min(axis=1) * np.cos(np.pi / coord.shape[2]) * (1 - 1e-9)
        r_out = rad.max(axis=1) * (1 + 1e-9)
    suppressed = np.zeros(n, bool)
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    keep = []
    step = max(1, n // 100)
    n_threads = _n_threads(threads)
    pool = ThreadPoolExecutor(n_threads) if n_threads > 1 and n > 2000 else None
    try:
        _greedy(order, rank, tree, polys, areas, suppressed, keep, nms_thresh, centres,
                r_in if centres is not None else None, r_out if centres is not None else None,
                pool, progress, n, step, xy)
    finally:
        if pool is not None:
            pool.shutdown()
    if progress is not None:
        progress(n, n, "non-maximum suppression")
    return np.asarray(keep, np.int64)


def _n_threads(threads: int | None) -> int:
    if threads is not None:
        return max(1, int(threads))
    try:
        import torch
        return max(1, min(torch.get_num_threads(), 8))
    except Exception:  # pragma: no cover
        return 1


def _intersection_areas(a, bs, pool) -> np.ndarray:
    """Areas of ``a`` ∩ each of ``bs``; GEOS releases the GIL, so chunks run in threads."""
    import shapely

    def work(chunk):
        try:
            return shapely.area(shapely.intersection(a, chunk))
        except shapely.errors.GEOSException:  # degenerate predicted shapes
            return shapely.area(shapely.intersection(shapely.make_valid(a), shapely.make_valid(chunk)))

    if pool is None or len(bs) < 32:
        return work(bs)
    k = pool._max_workers
    chunks = np.array_split(bs, k)
    return np.concatenate(list(pool.map(work, chunks)))


def _greedy(order, rank, tree, polys, areas, suppressed, keep, nms_thresh, centres, r_in, r_out,
            pool, progress, n, step, xy):
    for r, i in enumerate(order):
        if progress is not None and r % step == 0:
            progress(r, n, "non-maximum suppression")
        if suppressed[i]:
            continue
        keep.append(i)
        cand = tree.query(polys[i])
        cand = cand[(rank[cand] > r) & ~suppressed[cand]]
        if len(cand) == 0:
            continue
        small = np.minimum(areas[i], areas[cand]) + 1e-10
        if centres is not None:
            d = np.hypot(*(centres[cand] - centres[i]).T)
            lower = _lens_area(r_in[i], r_in[cand], d) / small
            upper = _lens_area(r_out[i], r_out[cand], d) / small
            sure = lower > nms_thresh
            suppressed[cand[sure]] = True
            cand = cand[~sure & (upper > nms_thresh)]
            if len(cand) == 0:
                continue
            small = np.minimum(areas[i], areas[cand]) + 1e-10
        inter = np.empty(len(cand))
        todo = np.ones(len(cand), bool)
        if xy is not None:
            # exact fan integration from the candidate's centre, else from the kept one's
            for o, first, second in ((centres[cand], xy[i][None], xy[cand]),
                                     (centres[i][None], xy[cand], xy[i][None])):
                sub = np.flatnonzero(todo)
                if len(sub) == 0:
                    break
                oo = (o[sub] if len(o) > 1 else o)[:, ::-1][:, None, :]
                fa = first[sub] if len(first) > 1 else first
                fb = second[sub] if len(second) > 1 else second
                fa, fb = np.broadcast_to(fa, (len(sub),) + fa.shape[1:]), np.broadcast_to(fb, (len(sub),) + fb.shape[1:])
                ar, ok = star_pair_intersection_areas(fa - oo, fb - oo)
                inter[sub[ok]] = ar[ok]
                todo[sub[ok]] = False
        if todo.any():
            inter[todo] = _intersection_areas(polys[i], polys[cand[todo]], pool)
        suppressed[cand[inter / small > nms_thresh]] = True


def nms_from_maps(prob: np.ndarray, dist: np.ndarray, prob_thresh: float, nms_thresh: float,
                  grid=(1, 1), progress=None):
    """Candidates from 2D prediction maps, then NMS. Returns ``(points, prob, dist, coord)``."""
    points, p, d = polygon_candidates(prob, dist, prob_thresh, grid)
    d = np.maximum(d, 1e-3)
    coord = dist_to_coord(d, points)
    keep = non_maximum_suppression(coord, p, nms_thresh, progress=progress, centres=points)
    return points[keep], p[keep], d[keep], coord[keep]


def non_maximum_suppression_3d(dist: np.ndarray, points: np.ndarray, prob: np.ndarray, rays: Rays,
                               nms_thresh: float = 0.4,
                               progress: Callable[[int, int, str], None] | None = None,
                               ) -> np.ndarray:
    """Greedy NMS of star-convex polyhedra (rasterised intersections).

    Parameters
    ----------
    dist : ndarray
        ``(n, n_rays)`` distances in voxels.
    points : ndarray
        ``(n, 3)`` (z, y, x) centres.
    prob : ndarray
        ``(n,)`` scores.
    rays : Rays
        The rays of ``dist``.
    nms_thresh : float
        Suppress when ``intersection / min(volume) > nms_thresh``.

    Returns
    -------
    ndarray
        Indices of kept candidates, by decreasing probability.
    """
    dist = np.asarray(dist, np.float64)
    points = np.asarray(points, np.float64)
    prob = np.asarray(prob)
    n = len(dist)
    if n == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-prob, kind="stable")
    verts = points[:, None, :] + dist[:, :, None] * rays.vertices[None].astype(np.float64)
    lo = np.floor(verts.min(axis=1)).astype(np.int64)
    hi = np.ceil(verts.max(axis=1)).astype(np.int64) + 1
    shape = tuple(int(v) for v in hi.max(axis=0) + 1)
    kept: list[int] = []
    kept_lo = np.zeros((0, 3), np.int64)
    kept_hi = np.zeros((0, 3), np.int64)
    kept_vol: list[int] = []
    step = max(1, n // 100)
    big = (max(shape) + 10,) * 3
    for r, i in enumerate(order):
        if progress is not None and r % step == 0:
            progress(r, n, "non-maximum suppression (3D)")
        near = np.nonzero(np.all((kept_lo < hi[i]) & (kept_hi > lo[i]), axis=1))[0]
        sl, mask = polyhedron_mask(dist[i], points[i] - lo[i], rays, big)
        vol_i = int(mask.sum())
        if len(near):
            zz, yy, xx = np.nonzero(mask)
            vox = np.stack([zz, yy, xx], 1) + np.array([s.start for s in sl]) + lo[i]
            suppress = False
            for j in near:
                k = kept[j]
                inside = inside_polyhedron(vox - points[k], dist[k], rays)
                inter = int(inside.sum())
                if inter / (min(vol_i, kept_vol[j]) + 1e-10) > nms_thresh:
                    suppress = True
                    break
            if suppress:
                continue
        kept.append(i)
        kept_vol.append(max(vol_i, 1))
        kept_lo = np.vstack([kept_lo, lo[i][None]])
        kept_hi = np.vstack([kept_hi, hi[i][None]])
    if progress is not None:
        progress(n, n, "non-maximum suppression (3D)")
    return np.asarray(kept, np.int64)
