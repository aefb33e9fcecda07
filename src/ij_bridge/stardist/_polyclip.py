"""Compiled kernels for exact polygon intersection areas and greedy 2D NMS.

Exact area of the intersection of two polygons P and Q
------------------------------------------------------
Split P into the fan of triangles ``T_k = (c, p_k, p_k+1)`` from a point
``c`` (its star centre). For any closed polygon the winding number is the
signed sum of the fan triangles' indicators, so

    area(P ∩ Q) = Σ_k sign(T_k) · area(T_k ∩ Q)

for simple P and Q of the same orientation, whatever ``c`` is. Each term
clips Q by one convex triangle (Sutherland–Hodgman, three half-planes),
which is exact for any simple Q in the sense of signed area: the degenerate
edges that clipping a concave polygon leaves on the clip lines enclose no
area. No tolerance, no special cases for touching or collinear edges.

When P is star-shaped from ``c`` (every fan triangle has the orientation of
P, as StarDist's polygons have from their ray origin), all terms are
non-negative, so a pair can be decided as soon as the running sum exceeds
the suppression threshold.

The greedy loop visits candidates by decreasing probability, finds the
candidates near each kept one in a uniform grid of bounding-box centres, and
decides a pair by the cheapest sufficient test: bounding-box overlap (upper
bound), then, with ray origins, inscribed/enclosing disc lenses (lower and
upper bounds), then the exact area.

These functions are compiled with numba on first use (cached on disk).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


@njit(cache=True, nogil=True, inline="always")
def _clip_halfplane(src, n_src, dst, ax, ay, bx, by):
    """Keep the part of polygon ``src[:n_src]`` left of the directed line a→b; returns its length."""
    ex = bx - ax
    ey = by - ay
    n_out = 0
    if n_src == 0:
        return 0
    px = src[n_src - 1, 0]
    py = src[n_src - 1, 1]
    sp = ex * (py - ay) - ey * (px - ax)
    for i in range(n_src):
        qx = src[i, 0]
        qy = src[i, 1]
        sq = ex * (qy - ay) - ey * (qx - ax)
        if sq >= 0.0:
            if sp < 0.0:
                t = sp / (sp - sq)
                dst[n_out, 0] = px + t * (qx - px)
                dst[n_out, 1] = py + t * (qy - py)
                n_out += 1
            dst[n_out, 0] = qx
            dst[n_out, 1] = qy
            n_out += 1
        elif sp >= 0.0:
            t = sp / (sp - sq)
            dst[n_out, 0] = px + t * (qx - px)
            dst[n_out, 1] = py + t * (qy - py)
            n_out += 1
        px = qx
        py = qy
        sp = sq
    return n_out


@njit(cache=True, nogil=True)
def _signed_area(v, n):
    s = 0.0
    if n < 3:
        return 0.0
    x0 = v[n - 1, 0]
    y0 = v[n - 1, 1]
    for i in range(n):
        x1 = v[i, 0]
        y1 = v[i, 1]
        s += x0 * y1 - x1 * y0
        x0 = x1
        y0 = y1
    return 0.5 * s


@njit(cache=True, nogil=True)
def _fan_intersection(p, c, q, q_box, orient, stop_above, buf_a, buf_b):
    """``area(P ∩ Q)`` by P's fan from ``c``; stops early once it exceeds ``stop_above``.

    ``p``, ``q``: (n, 2) and (m, 2) vertices; ``q_box``: Q's (min0, min1, max0, max1);
    ``orient``: +1 if P and Q are both counter-clockwise, -1 if both clockwise
    (the product of their orientations for mixed input). ``stop_above`` < 0 never stops.
    Each fan term is non-negative when P is star-shaped from ``c``; the early stop
    is only used by callers for which that holds.
    """
    n = p.shape[0]
    m = q.shape[0]
    cx = c[0]
    cy = c[1]
    total = 0.0
    for k in range(n):
        k1 = k + 1 if k + 1 < n else 0
        ax = p[k, 0]
        ay = p[k, 1]
        bx = p[k1, 0]
        by = p[k1, 1]
        cr = (ax - cx) * (by - cy) - (ay - cy) * (bx - cx)
        if cr == 0.0:
            continue
        # triangle's box against Q's box
        if (max(cx, ax, bx) <= q_box[0] or min(cx, ax, bx) >= q_box[2]
                or max(cy, ay, by) <= q_box[1] or min(cy, ay, by) >= q_box[3]):
            continue
        if cr > 0.0:  # counter-clockwise triangle c, a, b
            k_n = _clip_halfplane(q, m, buf_b, cx, cy, ax, ay)
            k_n = _clip_halfplane(buf_b, k_n, buf_a, ax, ay, bx, by)
            k_n = _clip_halfplane(buf_a, k_n, buf_b, bx, by, cx, cy)
            total += _signed_area(buf_b, k_n)
        else:  # clockwise: clip by c, b, a and count negatively
            k_n = _clip_halfplane(q, m, buf_b, cx, cy, bx, by)
            k_n = _clip_halfplane(buf_b, k_n, buf_a, bx, by, ax, ay)
            k_n = _clip_halfplane(buf_a, k_n, buf_b, ax, ay, cx, cy)
            total -= _signed_area(buf_b, k_n)
        if stop_above >= 0.0 and total * orient > stop_above:
            return total * orient
    return total * orient


@njit(cache=True, nogil=True)
def pair_intersection_areas(p, pc, q):
    """Exact ``area(P_i ∩ Q_i)`` for polygon pairs; P_i, Q_i simple, any orientation.

    ``p`` (k, n, 2), ``pc`` (k, 2) a point for P's fan (any point is exact; its star
    centre is fastest), ``q`` (k, m, 2).
    """
    k = p.shape[0]
    m = q.shape[1]
    out = np.zeros(k)
    buf_a = np.empty((8 * m + 8, 2))
    buf_b = np.empty((8 * m + 8, 2))
    box = np.empty(4)
    for i in range(k):
        box[0] = q[i, :, 0].min()
        box[1] = q[i, :, 1].min()
        box[2] = q[i, :, 0].max()
        box[3] = q[i, :, 1].max()
        op = 1.0 if _signed_area(p[i], p.shape[1]) >= 0 else -1.0
        oq = 1.0 if _signed_area(q[i], m) >= 0 else -1.0
        out[i] = _fan_intersection(p[i], pc[i], q[i], box, op * oq, -1.0, buf_a, buf_b)
    return out


@njit(cache=True, nogil=True, inline="always")
def _lens(r1, r2, d):
    """Area of the intersection of two discs."""
    if d >= r1 + r2:
        return 0.0
    if d <= abs(r1 - r2):
        r = min(r1, r2)
        return math.pi * r * r
    c1 = (d * d + r1 * r1 - r2 * r2) / (2.0 * d * r1)
    c2 = (d * d + r2 * r2 - r1 * r1) / (2.0 * d * r2)
    c1 = min(1.0, max(-1.0, c1))
    c2 = min(1.0, max(-1.0, c2))
    kk = (-d + r1 + r2) * (d + r1 - r2) * (d - r1 + r2) * (d + r1 + r2)
    return r1 * r1 * math.acos(c1) + r2 * r2 * math.acos(c2) - 0.5 * math.sqrt(max(kk, 0.0))


@njit(cache=True, nogil=True)
def _decide(i, j, verts, centres, areas, orient, boxes, star, r_in, r_out, nms_thresh, buf_a, buf_b):
    """Whether kept candidate ``i`` suppresses candidate ``j``."""
    ov0 = min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0])
    if ov0 <= 0.0:
        return False
    ov1 = min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1])
    if ov1 <= 0.0:
        return False
    limit = nms_thresh * (min(areas[i], areas[j]) + 1e-10)
    if ov0 * ov1 <= limit:
        return False  # even a full overlap of the boxes would not exceed the threshold
    d = math.hypot(centres[i, 0] - centres[j, 0], centres[i, 1] - centres[j, 1])
    if _lens(r_in[i], r_in[j], d) > limit:
        return True  # the inscribed discs alone overlap enough
    if _lens(r_out[i], r_out[j], d) <= limit:
        return False  # the enclosing discs do not overlap enough
    # exact; fan of the star-shaped one so that the sum can stop early
    if star[j]:
        inter = _fan_intersection(verts[j], centres[j], verts[i], boxes[i], orient[i] * orient[j],
                                  limit, buf_a, buf_b)
    else:
        inter = _fan_intersection(verts[i], centres[i], verts[j], boxes[j], orient[i] * orient[j],
                                  limit if star[i] else -1.0, buf_a, buf_b)
    return inter > limit


@njit(cache=True, nogil=True)
def _gather_2d(i, boxes, suppressed, labels, cell_size, cell_start, cell_members, n_cells0, n_cells1, big, out):
    """Candidates after ``i`` in ``i``'s component, not suppressed, near ``i`` (grid cells and ``big``)."""
    half = 0.5 * cell_size
    # grid members' box centres lie within half a cell of their boxes
    lo0 = max(0, int(math.floor((boxes[i, 0] - half) / cell_size)))
    lo1 = max(0, int(math.floor((boxes[i, 1] - half) / cell_size)))
    hi0 = min(n_cells0 - 1, int(math.floor((boxes[i, 2] + half) / cell_size)))
    hi1 = min(n_cells1 - 1, int(math.floor((boxes[i, 3] + half) / cell_size)))
    lab = labels[i]
    cnt = 0
    for g0 in range(lo0, hi0 + 1):
        for g1 in range(lo1, hi1 + 1):
            cell = g0 * n_cells1 + g1
            for s in range(cell_start[cell], cell_start[cell + 1]):
                j = cell_members[s]
                if j > i and labels[j] == lab and not suppressed[j]:
                    out[cnt] = j
                    cnt += 1
    for j in big:
        if j > i and labels[j] == lab and not suppressed[j]:
            out[cnt] = j
            cnt += 1
    return cnt


@njit(cache=True, nogil=True, inline="always")
def _find(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@njit(cache=True, nogil=True)
def components_2d(centres, areas, boxes, r_out, nms_thresh, cell_size, cell_start, cell_members,
                  n_cells0, n_cells1, big):
    """Connected components of "may suppress" (box and enclosing-disc upper bounds, as in ``_decide``).

    A candidate can only be suppressed by one in its own component, so the
    greedy pass is independent across components.
    """
    n = areas.shape[0]
    parent = np.arange(n)
    none = np.zeros(n, np.bool_)
    same = np.zeros(n, np.int64)
    near = np.empty(n, np.int64)
    for i in range(n):
        cnt = _gather_2d(i, boxes, none, same, cell_size, cell_start, cell_members, n_cells0, n_cells1, big, near)
        for t in range(cnt):
            j = near[t]
            ov0 = min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0])
            ov1 = min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1])
            if ov0 <= 0.0 or ov1 <= 0.0:
                continue
            limit = nms_thresh * (min(areas[i], areas[j]) + 1e-10)
            if ov0 * ov1 <= limit:
                continue
            d = math.hypot(centres[i, 0] - centres[j, 0], centres[i, 1] - centres[j, 1])
            if _lens(r_out[i], r_out[j], d) <= limit:
                continue
            a = _find(parent, i)
            b = _find(parent, j)
            if a != b:
                parent[max(a, b)] = min(a, b)
    labels = np.empty(n, np.int64)
    for i in range(n):
        labels[i] = _find(parent, i)
    return labels


@njit(cache=True, nogil=True)
def _greedy_component_2d(members, suppressed, keep, labels, verts, centres, areas, orient, boxes, star, r_in,
                         r_out, nms_thresh, cell_size, cell_start, cell_members, n_cells0, n_cells1, big):
    """The greedy pass over one component (its members ascending), serially."""
    m = verts.shape[1]
    buf_a = np.empty((8 * m + 8, 2))
    buf_b = np.empty((8 * m + 8, 2))
    near = np.empty(len(members), np.int64)
    for i in members:
        if suppressed[i]:
            continue
        keep[i] = True
        cnt = _gather_2d(i, boxes, suppressed, labels, cell_size, cell_start, cell_members, n_cells0, n_cells1,
                         big, near)
        for t in range(cnt):
            j = near[t]
            if _decide(i, j, verts, centres, areas, orient, boxes, star, r_in, r_out, nms_thresh, buf_a, buf_b):
                suppressed[j] = True


@njit(cache=True, parallel=True)
def greedy_nms(verts, centres, areas, orient, boxes, star, r_in, r_out, nms_thresh,
               cell_size, cell_start, cell_members, n_cells0, n_cells1, big, labels, comp_start, comp_members,
               small, large, progress_every, progress_counts):
    """Greedy NMS over candidates already sorted by decreasing probability.

    ``cell_start``/``cell_members``: CSR grid (``n_cells0`` × ``n_cells1`` cells of
    ``cell_size``) of the candidates by box centre, each cell's members ascending;
    ``big``: candidates whose box is larger than a cell, not in the grid, visited
    for every kept one. ``labels``, ``comp_start``/``comp_members``, ``small``,
    ``large``: the independent blocks (components of :func:`components_2d`);
    small ones run in parallel, one per thread at a time, large ones in turn
    with each kept candidate's neighbours decided in parallel. The result does
    not depend on the number of threads. Returns the boolean ``keep`` array (in
    the sorted order); ``progress_counts[0]`` counts the candidates done.
    """
    n = verts.shape[0]
    m = verts.shape[1]
    keep = np.zeros(n, np.bool_)
    suppressed = np.zeros(n, np.bool_)
    for t in prange(len(small)):
        c = small[t]
        _greedy_component_2d(comp_members[comp_start[c]:comp_start[c + 1]], suppressed, keep, labels, verts,
                             centres, areas, orient, boxes, star, r_in, r_out, nms_thresh, cell_size, cell_start,
                             cell_members, n_cells0, n_cells1, big)
        progress_counts[0] += comp_start[c + 1] - comp_start[c]  # progress only (not atomic)
    near = np.empty(n, np.int64)
    buf_a = np.empty((8 * m + 8, 2))
    buf_b = np.empty((8 * m + 8, 2))
    for c in large:
        step = 0
        for s in range(comp_start[c], comp_start[c + 1]):
            i = comp_members[s]
            step += 1
            if progress_every > 0 and step % progress_every == 0:
                progress_counts[0] += progress_every
            if suppressed[i]:
                continue
            keep[i] = True
            cnt = _gather_2d(i, boxes, suppressed, labels, cell_size, cell_start, cell_members, n_cells0,
                             n_cells1, big, near)
            if cnt < 256:  # a parallel region costs more than a few cheap decisions
                for t in range(cnt):
                    j = near[t]
                    if _decide(i, j, verts, centres, areas, orient, boxes, star, r_in, r_out,
                               nms_thresh, buf_a, buf_b):
                        suppressed[j] = True
            else:
                for t in prange(cnt):
                    j = near[t]
                    ba = np.empty((8 * m + 8, 2))
                    bb = np.empty((8 * m + 8, 2))
                    if _decide(i, j, verts, centres, areas, orient, boxes, star, r_in, r_out,
                               nms_thresh, ba, bb):
                        suppressed[j] = True
    progress_counts[0] = n
    return keep


@njit(cache=True, nogil=True)
def candidate_geometry(verts, centres, use_mean):
    """Per polygon: fan centre, area, orientation, box, star-shapedness, inner/outer disc radii.

    ``verts`` (n, m, 2); ``centres`` (n, 2), replaced by the vertex mean where
    ``use_mean``. The inner radius (distance from the centre to the nearest
    edge) bounds a disc inside the polygon only if it is star-shaped from the
    centre; it is 0 otherwise. The outer radius is the farthest vertex.
    """
    n = verts.shape[0]
    m = verts.shape[1]
    c = np.empty((n, 2))
    areas = np.empty(n)
    orient = np.empty(n)
    boxes = np.empty((n, 4))
    star = np.empty(n, np.bool_)
    r_in = np.empty(n)
    r_out = np.empty(n)
    for i in range(n):
        if use_mean:
            sx = 0.0
            sy = 0.0
            for k in range(m):
                sx += verts[i, k, 0]
                sy += verts[i, k, 1]
            cx = sx / m
            cy = sy / m
        else:
            cx = centres[i, 0]
            cy = centres[i, 1]
        c[i, 0] = cx
        c[i, 1] = cy
        s = 0.0
        pos = True
        neg = True
        near = np.inf
        far = 0.0
        b0 = np.inf
        b1 = np.inf
        b2 = -np.inf
        b3 = -np.inf
        for k in range(m):
            k1 = k + 1 if k + 1 < m else 0
            ax = verts[i, k, 0] - cx
            ay = verts[i, k, 1] - cy
            bx = verts[i, k1, 0] - cx
            by = verts[i, k1, 1] - cy
            cr = ax * by - ay * bx
            s += cr
            if cr < 0.0:
                pos = False
            if cr > 0.0:
                neg = False
            ex = bx - ax
            ey = by - ay
            ee = ex * ex + ey * ey
            t = 0.0 if ee <= 0.0 else min(1.0, max(0.0, -(ax * ex + ay * ey) / ee))
            near = min(near, math.hypot(ax + t * ex, ay + t * ey))
            far = max(far, math.hypot(ax, ay))
            b0 = min(b0, verts[i, k, 0])
            b1 = min(b1, verts[i, k, 1])
            b2 = max(b2, verts[i, k, 0])
            b3 = max(b3, verts[i, k, 1])
        areas[i] = 0.5 * abs(s)
        orient[i] = -1.0 if s < 0.0 else 1.0
        star[i] = neg if s < 0.0 else pos
        r_in[i] = near * (1.0 - 1e-9) if star[i] else 0.0
        r_out[i] = far * (1.0 + 1e-9)
        boxes[i, 0] = b0
        boxes[i, 1] = b1
        boxes[i, 2] = b2
        boxes[i, 3] = b3
    return c, areas, orient, boxes, star, r_in, r_out


def warm_up() -> None:
    """Compile (or load from the on-disk cache) every kernel once, on a tiny input."""
    t = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    v = np.stack([np.cos(t), np.sin(t)], axis=-1)[None] * 3.0
    verts = np.ascontiguousarray(np.concatenate([v, v + 1.0]))
    pair_intersection_areas(verts[:1], np.zeros((1, 2)), verts[1:])
    c, areas, orient, boxes, star, r_in, r_out = candidate_geometry(verts, np.zeros((2, 2)), True)
    bx = boxes + 5.0
    grid = (10.0, np.array([0, 2], np.int64), np.arange(2, dtype=np.int64), 1, 1, np.zeros(0, np.int64))
    labels = components_2d(c + 5.0, areas, bx, r_out, 0.4, *grid)
    greedy_nms(verts + 5.0, c + 5.0, areas, orient, bx, star, r_in, r_out, 0.4, *grid, labels,
               np.array([0, 2], np.int64), np.arange(2, dtype=np.int64), np.zeros(1, np.int64),
               np.zeros(0, np.int64), 0, np.zeros(1, np.int64))

if __name__ == "__main__":
    warm_up()
