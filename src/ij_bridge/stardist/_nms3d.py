"""Compiled kernels for the exact intersection volume of star-convex polyhedra and greedy 3D NMS.

Exact volume of the intersection of two star-convex polyhedra A and B
---------------------------------------------------------------------
Let ``o`` be B's centre. B is the union of its face tetrahedra
``(o, face g)``, one per cone of its rays, with disjoint interiors. A is seen
from the same point ``o``: the tetrahedra ``(o, face f of A)``, each signed by
its orientation seen from ``o``, sum to A's indicator (winding number), whether
``o`` lies inside A, in its kernel, or outside it. Hence

    vol(A ∩ B) = Σ_f s_f Σ_g vol(T_f ∩ T_g),

and since ``T_f`` and ``T_g`` share their apex ``o``, each term is the cone
over the spherical polygon ``cone(f) ∩ cone(g)`` (a triangle clipped by three
planes through ``o``), cut off by the nearer of the two face planes; the
polygon is split where the planes cross, and each part is a pyramid whose
volume is a fan of determinants. Only the cones of B that ``cone(f)`` overlaps
are visited: the cone of its centre direction (a look-up table and a walk
across cone edges), then a search across cone edges while the overlap is not
empty. Exact up to double-precision rounding; no tolerance; the two sides of a
split are disjoint even for coincident face planes. A tetrahedron of A whose
three outer vertices lie in B's inscribed ball is inside B whole.

Most pairs never get there. A pair is decided by the cheapest sufficient test
(every bound is rigorous, so the decision is the exact one): overlap of the
bounding boxes and of the enclosing balls (upper bounds), of the inscribed
balls about the centres (lower bound), then the sum, in which every term
starts as an interval (the face's solid angle Ω from the centre gives
``Ω min(h, r_in)³ / 3`` below and ``min(tetrahedron, Ω r_out³ / 3)`` above)
and the widest terms are made exact first, until the sum is known to exceed
the limit or known not to reach it.

Greedy loop: candidates sorted by decreasing probability; for each kept one,
its neighbours come from a uniform grid of bounding-box centres, and the
decisions for the neighbours (each depends only on the kept candidate and the
neighbour) run in parallel (numba ``prange``); the kept set does not depend on
the number of threads.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

@njit(cache=True, nogil=True, inline="always")
def _boxes_overlap(a, b):
    return (a[0] < b[3] and b[0] < a[3] and a[1] < b[4] and b[1] < a[4] and a[2] < b[5] and b[2] < a[5])


@njit(cache=True, nogil=True)
def face_planes(i, verts, centres, faces, planes):
    """``planes[g] = (n, h)`` of face ``g`` of polyhedron ``i`` relative to its centre: ``t_g(u) = h / n·u``."""
    for g in range(faces.shape[0]):
        a = faces[g, 0]
        b = faces[g, 1]
        c = faces[g, 2]
        p0 = verts[i, a, 0] - centres[i, 0]
        p1 = verts[i, a, 1] - centres[i, 1]
        p2 = verts[i, a, 2] - centres[i, 2]
        ux = verts[i, b, 0] - verts[i, a, 0]
        uy = verts[i, b, 1] - verts[i, a, 1]
        uz = verts[i, b, 2] - verts[i, a, 2]
        wx = verts[i, c, 0] - verts[i, a, 0]
        wy = verts[i, c, 1] - verts[i, a, 1]
        wz = verts[i, c, 2] - verts[i, a, 2]
        nx = uy * wz - uz * wy
        ny = uz * wx - ux * wz
        nz = ux * wy - uy * wx
        planes[g, 0] = nx
        planes[g, 1] = ny
        planes[g, 2] = nz
        planes[g, 3] = nx * p0 + ny * p1 + nz * p2  # = 6 * tetrahedron volume >= 0


@njit(cache=True, nogil=True)
def _locate(ux, uy, uz, inv, nbr, table, nt, nphi):
    """The cone (face index) of the rays' triangulation that contains direction ``u``.

    A look-up table on a (theta, phi) grid gives a start; then a walk across
    the edge of the most negative cone coordinate (a convex triangulation of
    the sphere: it ends in the containing cone).
    """
    r = math.sqrt(ux * ux + uy * uy + uz * uz)
    th = math.acos(min(1.0, max(-1.0, ux / r)))
    ph = math.atan2(uy, uz)
    it = min(nt - 1, int(th / math.pi * nt))
    ip = min(nphi - 1, int((ph + math.pi) / (2.0 * math.pi) * nphi))
    g = table[it, ip]
    nf = inv.shape[0]
    tol = -1e-12 * r
    for _ in range(nf):
        best = 0
        amin = np.inf
        for k in range(3):
            a = inv[g, k, 0] * ux + inv[g, k, 1] * uy + inv[g, k, 2] * uz
            if a < amin:
                amin = a
                best = k
        if amin >= tol:
            return g
        g = nbr[g, best]
    # not reached on a valid triangulation; fall back to the best cone
    bg = 0
    bmin = -np.inf
    for g in range(nf):
        amin = np.inf
        for k in range(3):
            amin = min(amin, inv[g, k, 0] * ux + inv[g, k, 1] * uy + inv[g, k, 2] * uz)
        if amin > bmin:
            bmin = amin
            bg = g
    return bg


@njit(cache=True, nogil=True)
def _clip_cone(src, n, dst, nx, ny, nz, strict=False):
    """Keep the part of the vector polygon ``src[:n]`` with ``n·u >= 0`` (``> 0`` if ``strict``).

    The plane passes through the apex. ``strict`` makes the two sides of a
    split disjoint even for ``n = 0`` (two coincident face planes).
    """
    m = 0
    for k in range(n):
        k1 = k + 1 if k + 1 < n else 0
        da = nx * src[k, 0] + ny * src[k, 1] + nz * src[k, 2]
        db = nx * src[k1, 0] + ny * src[k1, 1] + nz * src[k1, 2]
        ina = da > 0.0 if strict else da >= 0.0
        inb = db > 0.0 if strict else db >= 0.0
        if ina:
            dst[m, 0] = src[k, 0]
            dst[m, 1] = src[k, 1]
            dst[m, 2] = src[k, 2]
            m += 1
        if ina != inb:
            s = da / (da - db)
            dst[m, 0] = src[k, 0] + s * (src[k1, 0] - src[k, 0])
            dst[m, 1] = src[k, 1] + s * (src[k1, 1] - src[k, 1])
            dst[m, 2] = src[k, 2] + s * (src[k1, 2] - src[k, 2])
            m += 1
    return m


@njit(cache=True, nogil=True)
def _pyramid(poly, m, nx, ny, nz, h):
    """Volume of the pyramid from the apex to the plane ``n·x = h`` over the vector polygon ``poly[:m]``."""
    if m < 3:
        return 0.0
    t0 = h / (nx * poly[0, 0] + ny * poly[0, 1] + nz * poly[0, 2])
    q0x = t0 * poly[0, 0]
    q0y = t0 * poly[0, 1]
    q0z = t0 * poly[0, 2]
    t1 = h / (nx * poly[1, 0] + ny * poly[1, 1] + nz * poly[1, 2])
    ax = t1 * poly[1, 0]
    ay = t1 * poly[1, 1]
    az = t1 * poly[1, 2]
    v = 0.0
    for k in range(2, m):
        t2 = h / (nx * poly[k, 0] + ny * poly[k, 1] + nz * poly[k, 2])
        bx = t2 * poly[k, 0]
        by = t2 * poly[k, 1]
        bz = t2 * poly[k, 2]
        v += q0x * (ay * bz - az * by) - q0y * (ax * bz - az * bx) + q0z * (ax * by - ay * bx)
        ax = bx
        ay = by
        az = bz
    return abs(v) / 6.0


@njit(cache=True, nogil=True)
def _cone_pair(tri, lat, g, fp, gp, buf_a, buf_b):
    """Volume of {t u : u in cone(tri) ∩ cone g, t <= min(t_f(u), t_g(u))}; ``-1`` if the cones do not meet."""
    m = _clip_cone(tri, 3, buf_a, lat[g, 0, 0], lat[g, 0, 1], lat[g, 0, 2])
    if m < 3:
        return -1.0
    m = _clip_cone(buf_a, m, buf_b, lat[g, 1, 0], lat[g, 1, 1], lat[g, 1, 2])
    if m < 3:
        return -1.0
    m = _clip_cone(buf_b, m, buf_a, lat[g, 2, 0], lat[g, 2, 1], lat[g, 2, 2])
    if m < 3:
        return -1.0
    # where 1/t_f > 1/t_g the face f is nearer: e(u) = n_f·u / h_f - n_g·u / h_g
    ex = fp[0] / fp[3] - gp[0] / gp[3]
    ey = fp[1] / fp[3] - gp[1] / gp[3]
    ez = fp[2] / fp[3] - gp[2] / gp[3]
    k = _clip_cone(buf_a, m, buf_b, ex, ey, ez)
    v = _pyramid(buf_b, k, fp[0], fp[1], fp[2], fp[3])
    k = _clip_cone(buf_a, m, buf_b, -ex, -ey, -ez, True)
    v += _pyramid(buf_b, k, gp[0], gp[1], gp[2], gp[3])
    return v


@njit(cache=True, nogil=True, inline="always")
def _solid_angle(ax, ay, az, bx, by, bz, cx, cy, cz, det):
    """Solid angle of the triangle ``(a, b, c)`` seen from the origin (Van Oosterom and Strackee); ``det = a·(b×c)``."""
    la = math.sqrt(ax * ax + ay * ay + az * az)
    lb = math.sqrt(bx * bx + by * by + bz * bz)
    lc = math.sqrt(cx * cx + cy * cy + cz * cz)
    den = (la * lb * lc + (ax * bx + ay * by + az * bz) * lc + (ax * cx + ay * cy + az * cz) * lb
           + (bx * cx + by * cy + bz * cz) * la)
    return 2.0 * math.atan2(abs(det), den)


@njit(cache=True, nogil=True)
def _face_volume(f, j, verts, faces, ox, oy, oz, want, i_planes, lat, inv, nbr, table, tri, fp, buf_a, buf_b,
                 stamp, stack):
    """Exact volume of the tetrahedron ``(o, face f of j)`` ∩ polyhedron ``i`` (``i``'s cones and face planes)."""
    for k in range(3):
        v = faces[f, k]
        tri[k, 0] = verts[j, v, 0] - ox
        tri[k, 1] = verts[j, v, 1] - oy
        tri[k, 2] = verts[j, v, 2] - oz
    ux = tri[1, 0] - tri[0, 0]
    uy = tri[1, 1] - tri[0, 1]
    uz = tri[1, 2] - tri[0, 2]
    wx = tri[2, 0] - tri[0, 0]
    wy = tri[2, 1] - tri[0, 1]
    wz = tri[2, 2] - tri[0, 2]
    fp[0] = uy * wz - uz * wy
    fp[1] = uz * wx - ux * wz
    fp[2] = ux * wy - uy * wx
    fp[3] = fp[0] * tri[0, 0] + fp[1] * tri[0, 1] + fp[2] * tri[0, 2]
    if want < 0.0:
        for k in range(4):
            fp[k] = -fp[k]  # h > 0 and n·u > 0 on the cone
    g0 = _locate(tri[0, 0] + tri[1, 0] + tri[2, 0], tri[0, 1] + tri[1, 1] + tri[2, 1],
                 tri[0, 2] + tri[1, 2] + tri[2, 2], inv, nbr, table, table.shape[0], table.shape[1])
    stamp[g0] = f + 1
    stack[0] = g0
    ns = 1
    vf = 0.0
    while ns > 0:
        ns -= 1
        g = stack[ns]
        v = _cone_pair(tri, lat, g, fp, i_planes[g], buf_a, buf_b)
        if v < 0.0:
            continue
        vf += v
        for k in range(3):
            h = nbr[g, k]
            if stamp[h] != f + 1:
                stamp[h] = f + 1
                stack[ns] = h
                ns += 1
    return vf


@njit(cache=True, nogil=True)
def intersection_volume(j, verts, centres, faces, i_centre, i_planes, i_r_in, i_r_out, lat, inv, nbr, table,
                        limit, early):
    """Volume of polyhedron ``j`` ∩ polyhedron ``i`` (given by its centre, face planes and ball radii).

    The faces of ``j`` are seen from ``i``'s centre ``o``: the signed tetrahedra
    ``(o, face f of j)`` sum to the indicator of ``j`` (winding number), and each
    meets only the few cones of ``i`` that its own cone overlaps (found by a
    walk and a search across cone edges). Within the intersection of two cones
    the solid is bounded by the nearer of the two face planes.

    With ``early``, each term starts as an interval: at least the part of
    the face's cone (solid angle Ω) within both the face plane and ``i``'s
    inscribed ball, ``Ω min(h, r_in)³ / 3``, at most the tetrahedron and
    the part of the cone within ``i``'s enclosing ball, ``Ω r_out³ / 3``;
    terms are then made exact, widest interval first, until the sum is known
    to exceed ``limit`` (returns a value above it) or known not to (returns a
    value at most it). Without ``early``: the exact sum.
    """
    nf = faces.shape[0]
    ox = i_centre[0]
    oy = i_centre[1]
    oz = i_centre[2]
    sgn = np.empty(nf)
    tv = np.empty(nf)
    lo = np.empty(nf)
    hi = np.empty(nf)
    r2 = i_r_in * i_r_in
    out3 = i_r_out * i_r_out * i_r_out / 3.0
    lb = 0.0
    ub = 0.0
    for f in range(nf):
        a = faces[f, 0]
        b = faces[f, 1]
        c = faces[f, 2]
        p0x = verts[j, a, 0] - ox
        p0y = verts[j, a, 1] - oy
        p0z = verts[j, a, 2] - oz
        p1x = verts[j, b, 0] - ox
        p1y = verts[j, b, 1] - oy
        p1z = verts[j, b, 2] - oz
        p2x = verts[j, c, 0] - ox
        p2y = verts[j, c, 1] - oy
        p2z = verts[j, c, 2] - oz
        det = p0x * (p1y * p2z - p1z * p2y) - p0y * (p1x * p2z - p1z * p2x) + p0z * (p1x * p2y - p1y * p2x)
        t = abs(det) / 6.0
        tv[f] = t
        sgn[f] = 1.0 if det > 0.0 else -1.0
        if (p0x * p0x + p0y * p0y + p0z * p0z < r2 and p1x * p1x + p1y * p1y + p1z * p1z < r2
                and p2x * p2x + p2y * p2y + p2z * p2z < r2):
            lo[f] = t  # the whole tetrahedron lies in i's inscribed ball: exact
            hi[f] = t
        elif early and t > 0.0:
            om = _solid_angle(p0x, p0y, p0z, p1x, p1y, p1z, p2x, p2y, p2z, det)
            ux = p1x - p0x
            uy = p1y - p0y
            uz = p1z - p0z
            wx = p2x - p0x
            wy = p2y - p0y
            wz = p2z - p0z
            nx = uy * wz - uz * wy
            ny = uz * wx - ux * wz
            nz = ux * wy - uy * wx
            m = min(abs(det) / math.sqrt(nx * nx + ny * ny + nz * nz), i_r_in)  # nearer of plane and ball
            # rounding: bounds widened by 1e-9 relative (the decision stays the exact one)
            lo[f] = min(t, om * m * m * m / 3.0) * (1.0 - 1e-9)
            hi[f] = min(t, om * out3 * (1.0 + 1e-9))
        else:
            lo[f] = 0.0
            hi[f] = t
        if det > 0.0:
            lb += lo[f]
            ub += hi[f]
        else:
            lb -= hi[f]
            ub -= lo[f]
    if early:
        if ub <= limit:
            return ub
        if lb > limit:
            return lb
    order = np.argsort(lo - hi)  # widest interval first
    tri = np.empty((3, 3))
    buf_a = np.empty((12, 3))
    buf_b = np.empty((12, 3))
    fp = np.empty(4)
    stamp = np.zeros(nf, np.int64)
    stack = np.empty(nf, np.int64)
    acc = 0.0
    for k in range(nf):
        f = order[k]
        s = sgn[f]
        if hi[f] <= lo[f]:  # exact already
            acc += s * lo[f]
            continue
        v = min(_face_volume(f, j, verts, faces, ox, oy, oz, s, i_planes, lat, inv, nbr, table, tri, fp,
                             buf_a, buf_b, stamp, stack), tv[f])
        acc += s * v
        if early:
            if s > 0.0:
                lb += v - lo[f]
                ub += v - hi[f]
            else:
                lb += hi[f] - v
                ub += lo[f] - v
            if lb > limit:
                return lb
            if ub <= limit:
                return ub
    return acc


@njit(cache=True, nogil=True, inline="always")
def _lens(r1, r2, d):
    """Volume of the intersection of two balls."""
    if d >= r1 + r2:
        return 0.0
    if d <= abs(r1 - r2):
        r = min(r1, r2)
        return 4.0 / 3.0 * math.pi * r * r * r
    s = r1 + r2 - d
    return math.pi * s * s * (d * d + 2.0 * d * (r1 + r2) - 3.0 * (r1 - r2) ** 2) / (12.0 * d)


@njit(cache=True, parallel=True)
def candidate_geometry_3d(dist, verts, centres, faces, unit6):
    """Per polyhedron: volume, box, inscribed and enclosing ball radii.

    ``unit6[f]`` = det(rays of face f) / 6 > 0 (faces oriented outwards). The
    inscribed radius is the distance from the centre to the nearest face plane
    (the ball of that radius lies in every face's tetrahedron within its cone);
    the enclosing radius is the largest distance.
    """
    n, m = dist.shape
    nf = faces.shape[0]
    vols = np.empty(n)
    boxes = np.empty((n, 6))
    r_in = np.empty(n)
    r_out = np.empty(n)
    for i in prange(n):
        v = 0.0
        near = np.inf
        for f in range(nf):
            a = faces[f, 0]
            b = faces[f, 1]
            c = faces[f, 2]
            t = dist[i, a] * dist[i, b] * dist[i, c] * unit6[f]
            v += t
            # distance from the centre to the face plane = 3 * volume / area
            ux = verts[i, b, 0] - verts[i, a, 0]
            uy = verts[i, b, 1] - verts[i, a, 1]
            uz = verts[i, b, 2] - verts[i, a, 2]
            wx = verts[i, c, 0] - verts[i, a, 0]
            wy = verts[i, c, 1] - verts[i, a, 1]
            wz = verts[i, c, 2] - verts[i, a, 2]
            nx = uy * wz - uz * wy
            ny = uz * wx - ux * wz
            nz = ux * wy - uy * wx
            area2 = math.sqrt(nx * nx + ny * ny + nz * nz)
            h = 0.0 if area2 <= 0.0 else 6.0 * t / area2
            near = min(near, h)
        vols[i] = v
        far = 0.0
        for k in range(m):
            far = max(far, dist[i, k])
        r_in[i] = near * (1.0 - 1e-9)
        r_out[i] = far * (1.0 + 1e-9)
        for c in range(3):
            lo = centres[i, c]
            hi = centres[i, c]
            for k in range(m):
                lo = min(lo, verts[i, k, c])
                hi = max(hi, verts[i, k, c])
            boxes[i, c] = lo
            boxes[i, 3 + c] = hi
    return vols, boxes, r_in, r_out


@njit(cache=True, nogil=True)
def _gather(i, boxes, suppressed, labels, cell_size, cell_start, cell_members, n0, n1, n2, big, out):
    """Candidates after ``i`` in ``i``'s component, not suppressed, whose boxes overlap ``i``'s."""
    half = 0.5 * cell_size
    lo0 = max(0, int(math.floor((boxes[i, 0] - half) / cell_size)))
    lo1 = max(0, int(math.floor((boxes[i, 1] - half) / cell_size)))
    lo2 = max(0, int(math.floor((boxes[i, 2] - half) / cell_size)))
    hi0 = min(n0 - 1, int(math.floor((boxes[i, 3] + half) / cell_size)))
    hi1 = min(n1 - 1, int(math.floor((boxes[i, 4] + half) / cell_size)))
    hi2 = min(n2 - 1, int(math.floor((boxes[i, 5] + half) / cell_size)))
    lab = labels[i]
    cnt = 0
    for g0 in range(lo0, hi0 + 1):
        for g1 in range(lo1, hi1 + 1):
            for g2 in range(lo2, hi2 + 1):
                cell = (g0 * n1 + g1) * n2 + g2
                for s in range(cell_start[cell], cell_start[cell + 1]):
                    j = cell_members[s]
                    if j > i and labels[j] == lab and not suppressed[j] and _boxes_overlap(boxes[i], boxes[j]):
                        out[cnt] = j
                        cnt += 1
    for j in big:
        if j > i and labels[j] == lab and not suppressed[j] and _boxes_overlap(boxes[i], boxes[j]):
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
def _may_suppress(i, j, centres, vols, boxes, r_out, nms_thresh):
    """Whether the upper bounds (boxes, enclosing balls) allow one of ``i``, ``j`` to suppress the other."""
    limit = nms_thresh * (min(vols[i], vols[j]) + 1e-10)
    w = 1.0
    for c in range(3):
        o = min(boxes[i, 3 + c], boxes[j, 3 + c]) - max(boxes[i, c], boxes[j, c])
        if o <= 0.0:
            return False
        w *= o
    if w <= limit:
        return False
    dz = centres[i, 0] - centres[j, 0]
    dy = centres[i, 1] - centres[j, 1]
    dx = centres[i, 2] - centres[j, 2]
    return _lens(r_out[i], r_out[j], math.sqrt(dz * dz + dy * dy + dx * dx)) > limit


@njit(cache=True, nogil=True)
def _decide(i, j, verts, centres, faces, vols, boxes, r_in, r_out, nms_thresh, planes, lat, inv, nbr, table):
    """Whether kept polyhedron ``i`` (face ``planes``) suppresses ``j``: intersection / smaller volume > nms_thresh.

    The upper bounds of :func:`_may_suppress` first, then the inscribed balls'
    lens (a lower bound), then the exact volume with early stop.
    """
    if not _may_suppress(i, j, centres, vols, boxes, r_out, nms_thresh):
        return False
    limit = nms_thresh * (min(vols[i], vols[j]) + 1e-10)
    dz = centres[i, 0] - centres[j, 0]
    dy = centres[i, 1] - centres[j, 1]
    dx = centres[i, 2] - centres[j, 2]
    if _lens(r_in[i], r_in[j], math.sqrt(dz * dz + dy * dy + dx * dx)) > limit:
        return True
    return intersection_volume(j, verts, centres, faces, centres[i], planes, r_in[i], r_out[i], lat, inv, nbr,
                               table, limit, True) > limit


@njit(cache=True, nogil=True)
def components_3d(centres, vols, boxes, r_out, nms_thresh, cell_size, cell_start, cell_members, n0, n1, n2, big):
    """Connected components of "may suppress" (rigorous upper bounds): the greedy is independent across them."""
    n = vols.shape[0]
    parent = np.arange(n)
    none = np.zeros(n, np.bool_)
    same = np.zeros(n, np.int64)
    near = np.empty(n, np.int64)
    for i in range(n):
        cnt = _gather(i, boxes, none, same, cell_size, cell_start, cell_members, n0, n1, n2, big, near)
        for t in range(cnt):
            j = near[t]
            if _may_suppress(i, j, centres, vols, boxes, r_out, nms_thresh):
                a = _find(parent, i)
                b = _find(parent, j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    labels = np.empty(n, np.int64)
    for i in range(n):
        labels[i] = _find(parent, i)
    return labels


@njit(cache=True, nogil=True)
def _greedy_component(members, suppressed, keep, labels, verts, centres, faces, vols, boxes, r_in, r_out,
                      nms_thresh, lat, inv, nbr, table, cell_size, cell_start, cell_members, n0, n1, n2, big):
    """The greedy pass over one component (its members ascending), serially."""
    planes = np.empty((faces.shape[0], 4))
    near = np.empty(len(members), np.int64)
    for i in members:
        if suppressed[i]:
            continue
        keep[i] = True
        cnt = _gather(i, boxes, suppressed, labels, cell_size, cell_start, cell_members, n0, n1, n2, big, near)
        if cnt == 0:
            continue
        face_planes(i, verts, centres, faces, planes)
        for t in range(cnt):
            j = near[t]
            if _decide(i, j, verts, centres, faces, vols, boxes, r_in, r_out, nms_thresh, planes,
                       lat, inv, nbr, table):
                suppressed[j] = True


@njit(cache=True, parallel=True)
def greedy_nms_3d(verts, centres, faces, vols, boxes, r_in, r_out, nms_thresh, lat, inv, nbr, table,
                  cell_size, cell_start, cell_members, n0, n1, n2, big, labels, comp_start, comp_members,
                  small, large, progress_every, counts):
    """Greedy NMS over polyhedra sorted by decreasing probability; returns the boolean ``keep``.

    ``labels``: component of each candidate; ``comp_start``/``comp_members``
    (CSR, members ascending): the members of each component; ``small`` and
    ``large``: component indices. Small components run in parallel, one per
    thread at a time; large ones in turn, each kept candidate's neighbours
    decided in parallel. ``counts[0]`` counts the candidates done (for
    progress); a non-zero ``counts[1]`` stops the work (cancel).
    """
    n = verts.shape[0]
    nf = faces.shape[0]
    keep = np.zeros(n, np.bool_)
    suppressed = np.zeros(n, np.bool_)
    for t in prange(len(small)):
        if counts[1] != 0:
            continue
        c = small[t]
        _greedy_component(comp_members[comp_start[c]:comp_start[c + 1]], suppressed, keep, labels, verts,
                          centres, faces, vols, boxes, r_in, r_out, nms_thresh, lat, inv, nbr, table,
                          cell_size, cell_start, cell_members, n0, n1, n2, big)
        counts[0] += comp_start[c + 1] - comp_start[c]  # progress only (not atomic)
    near = np.empty(n, np.int64)
    planes = np.empty((nf, 4))
    for c in large:
        step = 0
        for s in range(comp_start[c], comp_start[c + 1]):
            i = comp_members[s]
            step += 1
            if progress_every > 0 and step % progress_every == 0:
                counts[0] += progress_every
                if counts[1] != 0:
                    return keep
            if suppressed[i]:
                continue
            keep[i] = True
            cnt = _gather(i, boxes, suppressed, labels, cell_size, cell_start, cell_members, n0, n1, n2, big, near)
            if cnt == 0:
                continue
            face_planes(i, verts, centres, faces, planes)
            for t in prange(cnt):
                j = near[t]
                if _decide(i, j, verts, centres, faces, vols, boxes, r_in, r_out, nms_thresh, planes,
                           lat, inv, nbr, table):
                    suppressed[j] = True
    counts[0] = n
    return keep


@njit(cache=True, parallel=True)
def pair_intersection_volumes(verts_a, centres_a, r_in_a, verts_b, faces, lat, inv, nbr, table):
    """Exact volumes of ``A_k ∩ B_k`` for pairs of polyhedra with the same rays (no early stop)."""
    k = verts_a.shape[0]
    nf = faces.shape[0]
    out = np.empty(k)
    for p in prange(k):
        planes = np.empty((nf, 4))
        face_planes(p, verts_a, centres_a, faces, planes)
        out[p] = intersection_volume(p, verts_b, centres_a, faces, centres_a[p], planes, r_in_a[p], 0.0,
                                     lat, inv, nbr, table, 0.0, False)
    return out
