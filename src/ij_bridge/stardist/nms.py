"""Non-maximum suppression of star-convex candidates.

The rule is the original StarDist's: candidates are visited in order of
decreasing probability; a candidate is kept unless its intersection with an
already kept object, divided by the smaller of the two areas (volumes),
exceeds ``nms_thresh``.

2D uses exact polygon intersections and a grid of bounding boxes to find the
few candidates that can overlap a kept one, in a compiled loop
(:mod:`ij_bridge.stardist._polyclip`), so that 100,000 candidates take about a
second.

3D computes volumes and intersections of the star-convex polyhedra exactly
(tetrahedron-tetrahedron clipping, :mod:`ij_bridge.stardist._nms3d`), with the
same pruning (rigorous box and ball bounds, a grid), and decides the
neighbours of each kept object on all cores.
"""

from __future__ import annotations

import numpy as np

from .. import cancel
from ..progress import Progress
from .geometry import Rays, dist_to_coord, polyhedron_volumes

__all__ = ["non_maximum_suppression", "non_maximum_suppression_3d", "polygon_candidates", "nms_from_maps",
           "polygon_intersection_areas", "polyhedron_intersection_volumes"]


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
    from ._polyclip import candidate_geometry, components_2d, greedy_nms

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
    boxes = np.ascontiguousarray(boxes)
    grid = (cell, start, members, n0, n1, big)
    labels = components_2d(c, areas, boxes, r_out, float(nms_thresh), *grid)
    counts = np.zeros(1, np.int64)
    args = (verts, c, areas, orient, boxes, star, r_in, r_out, float(nms_thresh), *grid, labels, *_blocks(labels))
    if progress is None or n < 20_000:
        if progress is not None:
            progress(0, n, "non-maximum suppression")
        keep = greedy_nms(*args, 0, counts)
    else:
        keep = _run_with_progress(greedy_nms, args, counts, n, progress)
    if progress is not None:
        progress(n, n, "non-maximum suppression")
    return order[keep].astype(np.int64)


def _run_with_progress(kernel, args, counts, n, progress, message="non-maximum suppression"):
    """Run the compiled loop (which releases the GIL) in a thread and report its counter.

    On cancel, a kernel with a stop flag (``counts[1]``) is told to stop and
    joined; an older one finishes in the background and its result is dropped.
    """
    import threading

    result = {}

    def work():
        try:
            result["keep"] = kernel(*args, max(1, n // 100), counts)
        except BaseException as exc:  # pragma: no cover - re-raised below
            result["error"] = exc

    t = threading.Thread(target=work, name="ij-bridge-nms", daemon=True)
    done = 0
    t.start()
    while t.is_alive():
        t.join(0.25)
        try:
            cancel.check()
        except BaseException:
            if len(counts) > 1:
                counts[1] = 1
                t.join()
            raise
        if progress is not None:
            done = min(n, max(done, int(counts[0])))  # the compiled counter is not atomic: report its maximum
            progress(done, n, message)
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


def _oriented_faces(rays: Rays):
    """Faces oriented outwards (positive determinant) and det(rays)/6 of each, in float64."""
    v = np.asarray(rays.vertices, np.float64)
    faces = np.array(rays.faces, np.int64)
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.min(initial=0) < 0 or faces.max(initial=0) >= len(v):
        raise ValueError(f"rays.faces must be (n_faces, 3) indices into {len(v)} rays, got {faces.shape}")
    det = np.linalg.det(v[faces]) / 6.0
    flip = det < 0
    faces[flip] = faces[flip][:, ::-1]
    return np.ascontiguousarray(faces), np.abs(det)


_CONE_TABLES: dict[int, tuple] = {}


def _cone_tables(rays: Rays, faces: np.ndarray):
    """Per cone of the rays' triangulation: inward edge normals, inverse basis, edge neighbours; a direction table.

    ``nbr[g, k]`` is the cone across the edge opposite ray ``faces[g, k]``;
    ``table`` maps a (theta, phi) bin of a direction (theta from the first
    axis, phi = atan2(u1, u2)) to a cone near it (the walk in
    :func:`ij_bridge.stardist._nms3d._locate` finishes the search).
    """
    key = id(rays)
    hit = _CONE_TABLES.get(key)
    if hit is not None and hit[0] is rays and np.array_equal(hit[1], faces):
        return hit[2]
    v = np.asarray(rays.vertices, np.float64)
    basis = v[faces].transpose(0, 2, 1)  # columns = the three rays
    inv = np.ascontiguousarray(np.linalg.inv(basis))
    lat = np.empty((len(faces), 3, 3))
    for k in range(3):
        a, b, c = v[faces[:, k]], v[faces[:, (k + 1) % 3]], v[faces[:, (k + 2) % 3]]
        nrm = np.cross(a, b)
        flip = np.einsum("ij,ij->i", nrm, c) < 0
        nrm[flip] *= -1
        lat[:, k] = nrm
    edges = {}
    for g, f in enumerate(faces.tolist()):
        for k in range(3):
            e = tuple(sorted((f[(k + 1) % 3], f[(k + 2) % 3])))
            edges.setdefault(e, []).append((g, k))
    nbr = np.empty((len(faces), 3), np.int64)
    for e, owners in edges.items():
        if len(owners) != 2:
            raise ValueError("rays.faces is not a closed triangulation of the sphere (an edge has "
                             f"{len(owners)} faces)")
        (g0, k0), (g1, k1) = owners
        nbr[g0, k0] = g1
        nbr[g1, k1] = g0
    nt, nphi = 64, 128
    th = (np.arange(nt) + 0.5) * np.pi / nt
    ph = (np.arange(nphi) + 0.5) * 2 * np.pi / nphi - np.pi
    tt, pp = np.meshgrid(th, ph, indexing="ij")
    u = np.stack([np.cos(tt), np.sin(tt) * np.sin(pp), np.sin(tt) * np.cos(pp)], -1).reshape(-1, 3)
    table = np.argmax(np.einsum("fij,nj->nfi", inv, u).min(axis=2), axis=1).reshape(nt, nphi).astype(np.int64)
    out = (np.ascontiguousarray(lat), inv, nbr, table)
    _CONE_TABLES[key] = (rays, faces, out)
    return out


def _polyhedra(dist, points, rays):
    dist = np.asarray(dist, np.float64)
    points = np.asarray(points, np.float64)
    n_rays = len(rays.vertices)
    if dist.ndim != 2 or dist.shape[1] != n_rays or points.shape != (len(dist), 3):
        raise ValueError(f"need dist (n, {n_rays}) and points (n, 3), got {dist.shape} and {points.shape}")
    if not (np.isfinite(dist).all() and np.isfinite(points).all()):
        raise ValueError("distances or points contain NaN or infinity")
    if (dist < 0).any():
        raise ValueError("distances must be non-negative (clip the network's output at 0)")
    faces, unit6 = _oriented_faces(rays)
    verts = np.ascontiguousarray(points[:, None, :] + dist[:, :, None] * np.asarray(rays.vertices, np.float64)[None])
    return np.ascontiguousarray(dist), np.ascontiguousarray(points), verts, faces, unit6


def polyhedron_intersection_volumes(dist_a: np.ndarray, points_a: np.ndarray, dist_b: np.ndarray,
                                    points_b: np.ndarray, rays: Rays) -> np.ndarray:
    """Exact volumes of the intersections of pairs of star-convex polyhedra.

    Parameters
    ----------
    dist_a, dist_b : ndarray
        ``(k, n_rays)`` distances (voxels) of the ``k`` pairs.
    points_a, points_b : ndarray
        ``(k, 3)`` centres (z, y, x).
    rays : Rays
        The rays of both.

    Returns
    -------
    ndarray
        ``(k,)`` volumes in voxels³, exact up to double-precision rounding
        (the sum of tetrahedron-tetrahedron intersections, see
        :mod:`ij_bridge.stardist._nms3d`).

    Examples
    --------
    >>> from ij_bridge.stardist.geometry import rays_golden_spiral
    >>> r = rays_golden_spiral(32)
    >>> d = np.full((1, 32), 4.0)
    >>> v = polyhedron_intersection_volumes(d, np.zeros((1, 3)), d, np.zeros((1, 3)), r)
    >>> bool(np.isclose(v[0], polyhedron_volumes(d, r)[0]))
    True
    """
    from ._nms3d import candidate_geometry_3d, pair_intersection_volumes

    da, pa, va, faces, unit6 = _polyhedra(dist_a, points_a, rays)
    db, pb, vb, _, _ = _polyhedra(dist_b, points_b, rays)
    if len(da) != len(db):
        raise ValueError(f"need as many polyhedra in a as in b, got {len(da)} and {len(db)}")
    if len(da) == 0:
        return np.zeros(0)
    r_in = candidate_geometry_3d(da, va, pa, faces, unit6)[2]
    return pair_intersection_volumes(va, pa, r_in, vb, faces, *_cone_tables(rays, faces))


def _blocks(labels: np.ndarray):
    """Independent blocks of the greedy pass from component labels.

    Returns ``(start, members, small, large)``: CSR of the components (members
    ascending, i.e. by decreasing probability), the components that run
    whole on one thread each, in parallel, and the large ones, which run in
    turn with each kept candidate's neighbours decided in parallel.
    """
    import numba

    order = np.argsort(labels, kind="stable").astype(np.int64)
    _, first, sizes = np.unique(labels[order], return_index=True, return_counts=True)
    start = np.append(first, len(labels)).astype(np.int64)
    threads = max(1, numba.get_num_threads())
    large = sizes > max(256, len(labels) // (2 * threads)) if threads > 1 else np.zeros(len(sizes), bool)
    return start, order, np.flatnonzero(~large).astype(np.int64), np.flatnonzero(large).astype(np.int64)


def _grid_3d(boxes: np.ndarray):
    """Uniform 3D grid of box centres (see :func:`_grid`); the origin is the lowest box centre."""
    n = len(boxes)
    ext = (boxes[:, 3:] - boxes[:, :3]).max(axis=1)
    centre = 0.5 * (boxes[:, :3] + boxes[:, 3:])
    origin = centre.min(axis=0)
    span = np.maximum(centre.max(axis=0) - origin, 1e-9)
    cell = max(float(np.quantile(ext, 0.99)), 1e-6)
    cell = max(cell, float(np.cbrt(np.prod(span) / (4.0 * n + 1024))))  # bounded cell count
    big = ext > cell
    g = np.floor((centre - origin) / cell).astype(np.int64)
    n0, n1, n2 = (int(v) + 1 for v in g.max(axis=0))
    idx = np.flatnonzero(~big)
    flat = (g[idx, 0] * n1 + g[idx, 1]) * n2 + g[idx, 2]
    o = np.argsort(flat, kind="stable")
    start = np.zeros(n0 * n1 * n2 + 1, np.int64)
    np.cumsum(np.bincount(flat, minlength=n0 * n1 * n2), out=start[1:])
    return cell, start, idx[o].astype(np.int64), n0, n1, n2, np.flatnonzero(big).astype(np.int64), origin


def non_maximum_suppression_3d(dist: np.ndarray, points: np.ndarray, prob: np.ndarray, rays: Rays,
                               nms_thresh: float = 0.4,
                               progress: Progress | None = None,
                               ) -> np.ndarray:
    """Greedy NMS of star-convex polyhedra with exact intersection volumes.

    Parameters
    ----------
    dist : ndarray
        ``(n, n_rays)`` distances in voxels (non-negative).
    points : ndarray
        ``(n, 3)`` (z, y, x) centres.
    prob : ndarray
        ``(n,)`` scores; higher is visited first (ties keep input order).
    rays : Rays
        The rays of ``dist``.
    nms_thresh : float
        Suppress a candidate when ``intersection / min(volume) > nms_thresh``.
    progress : callable, optional
        ``progress(done, total, message)``.

    Returns
    -------
    ndarray
        Indices of kept candidates, by decreasing probability.

    Notes
    -----
    The rule is the original StarDist's (0.9.2): greedy by probability, the
    overlap divided by the smaller of the two volumes. Volumes and
    intersections are computed from the polyhedra themselves, exactly (sums of
    tetrahedron-tetrahedron intersections in double precision, see
    :mod:`ij_bridge.stardist._nms3d`), where the original counts voxels of a
    rendering in its last test; the two agree except for pairs within about a
    voxel layer of the threshold. Pairs are first decided by rigorous bounds
    (boxes, enclosing and inscribed balls), neighbours come from a uniform
    grid, and the decisions for the neighbours of a kept polyhedron are made
    in parallel (numba threads); the result does not depend on the number of
    threads.

    Examples
    --------
    >>> from ij_bridge.stardist.geometry import rays_golden_spiral
    >>> d = np.full((2, 32), 5.0)
    >>> pts = np.array([[10.0, 10, 10], [10, 10, 12]])
    >>> non_maximum_suppression_3d(d, pts, np.array([0.5, 0.7]), rays_golden_spiral(32), 0.4).tolist()
    [1]
    """
    import numba

    from ._nms3d import candidate_geometry_3d, components_3d, greedy_nms_3d

    prob = np.asarray(prob)
    if prob.ndim != 1 or len(prob) != len(dist):
        raise ValueError(f"need prob (n,) for {len(dist)} candidates, got {prob.shape}")
    if not 0.0 <= float(nms_thresh) <= 1.0:
        raise ValueError(f"nms_thresh must lie in [0, 1], got {nms_thresh}")
    n = len(prob)
    if n == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-prob, kind="stable")
    dist, points, verts, faces, unit6 = _polyhedra(np.asarray(dist)[order], np.asarray(points)[order], rays)
    vols, boxes, r_in, r_out = candidate_geometry_3d(dist, verts, points, faces, unit6)
    cell, start, members, n0, n1, n2, big, origin = _grid_3d(boxes)
    # one frame for all: the grid's origin at 0
    verts -= origin
    points = points - origin
    boxes = np.ascontiguousarray(boxes - np.concatenate([origin, origin]))
    grid = (cell, start, members, n0, n1, n2, big)
    if numba.get_num_threads() > 1:
        labels = components_3d(points, vols, boxes, r_out, float(nms_thresh), *grid)
    else:  # one thread: the components (only a way to share the work) would cost time for nothing
        labels = np.zeros(n, np.int64)
    blocks = _blocks(labels)
    counts = np.zeros(2, np.int64)
    args = (verts, points, faces, vols, boxes, r_in, r_out, float(nms_thresh), *_cone_tables(rays, faces),
            *grid, labels, *blocks)
    if progress is not None:
        progress(0, n, "non-maximum suppression (3D)")
    keep = _run_with_progress(greedy_nms_3d, args, counts, n, progress, "non-maximum suppression (3D)")
    if progress is not None:
        progress(n, n, "non-maximum suppression (3D)")
    return order[keep].astype(np.int64)
