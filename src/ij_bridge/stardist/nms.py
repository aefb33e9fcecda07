"""Non-maximum suppression of star-convex candidates.

The rule is the original StarDist's: candidates are visited in order of
decreasing probability; a candidate is kept unless its intersection with an
already kept object, divided by the smaller of the two areas (volumes),
exceeds ``nms_thresh``.

2D uses exact polygon intersections and a grid of bounding boxes to find the
few candidates that can overlap a kept one, in a compiled loop
(:mod:`ij_bridge.stardist._polyclip`), so that 100,000 candidates take about a
second.

3D uses a rasterised intersection: each candidate is voxelised inside its
bounding box (star-convex inside test, see
:func:`~ij_bridge.stardist.geometry.inside_polyhedron`) only when a kept object
is nearby, and the overlap with each nearby kept object is the number of its
voxels inside that object. Volumes are voxel counts of the same rasterisation,
so the ratio is consistent; the error is that of voxelisation (about one voxel
layer on the surface).
"""

from __future__ import annotations

import numpy as np

from .. import cancel
from ..progress import Progress
from .geometry import Rays, dist_to_coord, inside_polyhedron, polyhedron_mask

__all__ = ["non_maximum_suppression", "non_maximum_suppression_3d", "polygon_candidates", "nms_from_maps",
           "polygon_intersection_areas"]


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


def polygon_intersection_areas(coord_a: np.ndarray, coord_b: np.ndarray) -> np.ndarray:
    """Exact areas of the intersections of polygon pairs.

    Parameters
    ----------
    coord_a, coord_b : ndarray
        ``(k, 2, n)`` and ``(k, 2, m)`` vertices (row, col) of ``k`` pairs of
        simple polygons (any orientation, convex or not).

    Returns
    -------
    ndarray
        ``(k,)`` intersection areas in pixels², to double-precision rounding.

    Examples
    --------
    >>> sq = np.array([[[0, 0, 4, 4], [0, 4, 4, 0]]], float)
    >>> polygon_intersection_areas(sq, sq + np.array([2.0, 1.0])[None, :, None]).tolist()
    [6.0]
    """
    from ._polyclip import pair_intersection_areas

    a = np.asarray(coord_a, np.float64)
    b = np.asarray(coord_b, np.float64)
    if a.ndim != 3 or b.ndim != 3 or a.shape[1] != 2 or b.shape[1] != 2 or len(a) != len(b):
        raise ValueError(f"need (k, 2, n) and (k, 2, m) vertices, got {a.shape} and {b.shape}")
    va = np.ascontiguousarray(a.transpose(0, 2, 1))
    vb = np.ascontiguousarray(b.transpose(0, 2, 1))
    return pair_intersection_areas(va, np.ascontiguousarray(va.mean(axis=1)), vb)


def _grid(boxes: np.ndarray):
    """Uniform grid of box centres.

    Returns ``(cell size, CSR start, members, n0, n1, big, origin)``: ``origin`` is
    the lowest box centre, the grid's (0, 0) corner, in the boxes' frame.
    """
    n = len(boxes)
    ext = (boxes[:, 2:] - boxes[:, :2]).max(axis=1)
    centre = 0.5 * (boxes[:, :2] + boxes[:, 2:])
    span = np.maximum(centre.max(axis=0) - centre.min(axis=0), 1e-9)
    cell = max(float(np.quantile(ext, 0.99)), 1e-6)
    cell = max(cell, float(np.sqrt(span[0] * span[1] / (4.0 * n + 1024))))  # bounded cell count
    big = ext > cell
    g = np.floor((centre - centre.min(axis=0)) / cell).astype(np.int64)
    n0, n1 = int(g[:, 0].max()) + 1, int(g[:, 1].max()) + 1
    idx = np.flatnonzero(~big)
    flat = g[idx, 0] * n1 + g[idx, 1]
    o = np.argsort(flat, kind="stable")  # members stay ascending within a cell
    start = np.zeros(n0 * n1 + 1, np.int64)
    np.cumsum(np.bincount(flat, minlength=n0 * n1), out=start[1:])
    return cell, start, idx[o].astype(np.int64), n0, n1, np.flatnonzero(big).astype(np.int64), centre.min(axis=0)


def non_maximum_suppression(coord: np.ndarray, prob: np.ndarray, nms_thresh: float = 0.4,
                            progress: Progress | None = None,
                            centres: np.ndarray | None = None) -> np.ndarray:
    """Greedy NMS of 2D polygons with exact intersection areas.

    Parameters
    ----------
    coord : ndarray
        ``(n, 2, n_rays)`` polygon vertices, (row, col); simple polygons, all
        in the same orientation (as :func:`~ij_bridge.stardist.geometry.dist_to_coord`
        gives them).
    prob : ndarray
        ``(n,)`` scores; higher is visited first (ties keep input order).
    nms_thresh : float
        Suppress a candidate when ``intersection / min(area) > nms_thresh``.
    progress : callable, optional
        ``progress(done, total, message)``.
    centres : ndarray, optional
        ``(n, 2)`` ray origins (row, col) of star-convex candidates. Only a
        speed hint: the result is the same without them (the vertex mean is
        used instead), but from a star centre the exact area can stop early and
        the inscribed disc gives a lower bound.

    Returns
    -------
    ndarray
        Indices of the kept candidates, in order of decreasing probability.

    Notes
    -----
    Intersections are exact (a fan of triangles clipped against the other
    polygon, in double precision; see :mod:`ij_bridge.stardist._polyclip`). A
    pair is first decided by cheaper sufficient tests when they settle it:
    bounding-box overlap, then the lenses of inscribed and enclosing discs.
    Nearby candidates come from a uniform grid of box centres. The loop is
    compiled (numba, cached after the first call): 100,000 candidates take
    about a second on one core.

    Examples
    --------
    >>> from ij_bridge.stardist.geometry import dist_to_coord
    >>> c = dist_to_coord(np.full((2, 8), 5.0), np.array([[10, 10], [10, 12]]))
    >>> non_maximum_suppression(c, np.array([0.9, 0.8]), 0.3).tolist()
    [0]
    """
    from ._polyclip import candidate_geometry, greedy_nms

    coord = np.asarray(coord, np.float64)
    prob = np.asarray(prob)
    if coord.ndim != 3 or coord.shape[1] != 2 or len(prob) != len(coord):
        raise ValueError(f"need coord (n, 2, n_rays) and prob (n,), got {coord.shape}, {prob.shape}")
    if centres is not None:
        centres = np.asarray(centres, np.float64)
        if centres.shape != (len(coord), 2):
            raise ValueError(f"centres must be (n, 2), got {centres.shape}")
    if not np.isfinite(coord).all():
        raise ValueError("polygon coordinates contain NaN or infinity")
    n = len(coord)
    if n == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-prob, kind="stable")
    verts = np.ascontiguousarray(coord[order].transpose(0, 2, 1))  # (n, n_rays, 2)
    c, areas, orient, boxes, star, r_in, r_out = candidate_geometry(
        verts, np.zeros((n, 2)) if centres is None else np.ascontiguousarray(centres[order]), centres is None)
    cell, start, members, n0, n1, big, origin = _grid(boxes)
    # one frame for all: the grid's origin at 0
    verts -= origin
    c = c - origin
    boxes = boxes - np.concatenate([origin, origin])
    counts = np.zeros(1, np.int64)
    args = (verts, c, areas, orient, np.ascontiguousarray(boxes), star, r_in, r_out, float(nms_thresh),
            cell, start, members, n0, n1, big)
    if progress is None or n < 20_000:
        if progress is not None:
            progress(0, n, "non-maximum suppression")
        keep = greedy_nms(*args, 0, counts)
    else:
        keep = _run_with_progress(greedy_nms, args, counts, n, progress)
    if progress is not None:
        progress(n, n, "non-maximum suppression")
    return order[keep].astype(np.int64)


def _run_with_progress(kernel, args, counts, n, progress):
    """Run the compiled loop (which releases the GIL) in a thread and report its counter."""
    import threading

    result = {}

    def work():
        try:
            result["keep"] = kernel(*args, max(1, n // 100), counts)
        except BaseException as exc:  # pragma: no cover - re-raised below
            result["error"] = exc

    t = threading.Thread(target=work, name="ij-bridge-nms", daemon=True)
    t.start()
    while t.is_alive():
        t.join(0.25)
        cancel.check()  # the compiled loop finishes in the background; its result is dropped
        progress(int(counts[0]), n, "non-maximum suppression")
    if "error" in result:  # pragma: no cover
        raise result["error"]
    return result["keep"]


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
                               progress: Progress | None = None,
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
        if r % step == 0:
            cancel.check()
            if progress is not None:
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
