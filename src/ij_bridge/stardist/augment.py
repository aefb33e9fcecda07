"""3D StarDist training data: augmentation, per-patch targets, anisotropy from labels (no Java).

The 3D rays (a golden spiral) have no symmetry that a flip or a 90° rotation
maps onto itself, so the distance targets of an augmented patch cannot be a
permutation of precomputed ones, as in 2D. Here the image *and its label
image* are transformed first and the targets (object probability and star
distances) are computed from the transformed label patch, so image, label
and targets always agree. The label patch is cut with a margin of the
largest object extent on every side, so the rays of the patch's voxels see
their whole object, not the patch border; the margin travels with the
transform.

The transforms (:func:`random_transform`): a transpose of Y and X (only for
equal y/x voxel sizes and a square patch), flips of Y and X, and a flip of
Z; then intensity scaling and shift (:func:`intensity_augment`).

:func:`star_dist_3d_at` computes star distances at chosen voxels with the
marching rule of :func:`ij_bridge.stardist.geometry.star_dist_3d` (the same
numbers), compiled with numba: it is fast enough to run per patch.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy import ndimage as ndi

from .geometry import edt_prob

__all__ = ["anisotropy_from_labels", "random_transform", "apply_transform", "intensity_augment",
           "star_dist_3d_at", "star_dist_3d_fast", "object_margin", "patch_targets_3d",
           "allow_transpose", "object_probabilities",
           "sample_batch_3d", "init_output_biases_3d", "INTENSITY_SCALE", "INTENSITY_SHIFT",
           "YX_TOLERANCE"]

#: relative difference of the y and x voxel sizes up to which YX rotations are used
YX_TOLERANCE = 0.1
#: intensity augmentation ranges (as the 2D training): ``x * U(scale) + U(shift)``
INTENSITY_SCALE = (0.6, 1.6)
INTENSITY_SHIFT = (-0.2, 0.2)


# ------------------------------------------------------------------------ anisotropy

def object_extents(labels: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Bounding-box sizes (voxels, per axis) of every object of one or more label images: ``(n, ndim)``."""
    if isinstance(labels, np.ndarray):
        labels = [labels]
    ext = []
    for lbl in labels:
        for sl in ndi.find_objects(np.asarray(lbl)):
            if sl is not None:
                ext.append([s.stop - s.start for s in sl])
    return np.asarray(ext, float).reshape(-1, np.ndim(labels[0]) if len(labels) else 3)


def anisotropy_from_labels(labels: Sequence[np.ndarray] | np.ndarray) -> tuple[float, ...] | None:
    """Empirical anisotropy of the objects, as the original StarDist's examples compute it.

    The median bounding-box extent per axis over each label image, the
    median of those over the images, and then ``max(extent) / extent``: e.g.
    ``(2, 1, 1)`` when objects span half as many slices as pixels in y/x.
    None when there are no objects.

    >>> lbl = np.zeros((10, 20, 20), int); lbl[2:6, 2:10, 4:12] = 1
    >>> anisotropy_from_labels(lbl)
    (2.0, 1.0, 1.0)
    """
    if isinstance(labels, np.ndarray):
        labels = [labels]
    per_image = []
    for lbl in labels:
        e = object_extents(lbl)
        if len(e):
            per_image.append(np.median(e, axis=0))
    if not per_image:
        return None
    ext = np.median(np.stack(per_image), axis=0)
    return tuple(round(float(v), 4) for v in ext.max() / ext)


def object_margin(labels: Sequence[np.ndarray], cap: Sequence[int] | None = None) -> tuple[int, ...]:
    """The largest object extent per axis (voxels), at most ``cap``: the label margin of a patch."""
    e = object_extents(list(labels))
    m = e.max(axis=0).astype(int) if len(e) else np.zeros(np.ndim(labels[0]), int)
    if cap is not None:
        m = np.minimum(m, np.asarray(cap, int))
    return tuple(int(v) for v in m)


# ---------------------------------------------------------------------- transforms

def random_transform(rng: np.random.Generator, allow_transpose: bool = True,
                     flip_z: bool = True) -> tuple[str, ...]:
    """A random element of the YX square's symmetries, optionally composed with a Z flip.

    Returns the operations in order, each ``"t"`` (swap Y and X), ``"z"``,
    ``"y"`` or ``"x"`` (flip that axis); :func:`apply_transform` applies them.
    ``allow_transpose=False`` (unequal y/x voxel sizes or a non-square patch)
    leaves the flips only: the 90° rotations need the transpose.
    """
    ops = []
    if allow_transpose and rng.random() < 0.5:
        ops.append("t")
    for ax in ("y", "x"):
        if rng.random() < 0.5:
            ops.append(ax)
    if flip_z and rng.random() < 0.5:
        ops.append("z")
    return tuple(ops)


def apply_transform(a: np.ndarray, ops: Sequence[str], spatial_start: int = 0) -> np.ndarray:
    """Apply :func:`random_transform`'s operations to an array whose axes ``spatial_start..+3`` are Z, Y, X.

    Returns a view. A rotation by 90° in the YX plane is ``("t", "y")`` or
    ``("t", "x")``.
    """
    z, y, x = spatial_start, spatial_start + 1, spatial_start + 2
    for op in ops:
        if op == "t":
            a = np.swapaxes(a, y, x)
        else:
            a = np.flip(a, {"z": z, "y": y, "x": x}[op])
    return a


def transform_box(lo: Sequence[int], size: Sequence[int], shape: Sequence[int],
                  ops: Sequence[str]) -> tuple[list[int], list[int], list[int]]:
    """Where a box ``lo + size`` inside an array of ``shape`` lies after :func:`apply_transform`."""
    lo, size, shape = list(lo), list(size), list(shape)
    for op in ops:
        if op == "t":
            for v in (lo, size, shape):
                v[1], v[2] = v[2], v[1]
        else:
            ax = {"z": 0, "y": 1, "x": 2}[op]
            lo[ax] = shape[ax] - lo[ax] - size[ax]
    return lo, size, shape


def intensity_augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``x * s + t`` with ``s`` from :data:`INTENSITY_SCALE` and ``t`` from :data:`INTENSITY_SHIFT`."""
    s = rng.uniform(*INTENSITY_SCALE)
    t = rng.uniform(*INTENSITY_SHIFT)
    return x * np.float32(s) + np.float32(t)


# -------------------------------------------------------------------- star distances

_KERNEL = None


def _kernel():
    global _KERNEL
    if _KERNEL is None:
        import numba

        @numba.njit(cache=True, nogil=True)
        def march(lbl, starts, dirs, tcorr, out):
            nz, ny, nx = lbl.shape
            one = np.float32(1.0)
            for i in range(starts.shape[0]):
                bz, by, bx = starts[i, 0], starts[i, 1], starts[i, 2]
                val = lbl[bz, by, bx]
                fz, fy, fx = np.float32(bz), np.float32(by), np.float32(bx)
                for k in range(dirs.shape[0]):
                    dz, dy, dx = dirs[k, 0], dirs[k, 1], dirs[k, 2]
                    pz, py, px = np.float32(0.0), np.float32(0.0), np.float32(0.0)
                    while True:
                        pz += dz
                        py += dy
                        px += dx
                        iz = int(np.rint(fz + pz))
                        iy = int(np.rint(fy + py))
                        ix = int(np.rint(fx + px))
                        if (iz < 0 or iz >= nz or iy < 0 or iy >= ny or ix < 0 or ix >= nx
                                or lbl[iz, iy, ix] != val):
                            c = tcorr[k] - one
                            sz = pz + c * dz
                            sy = py + c * dy
                            sx = px + c * dx
                            out[k, i] = np.sqrt(sz * sz + sy * sy + sx * sx)
                            break

        _KERNEL = march
    return _KERNEL


def star_dist_3d_at(lbl: np.ndarray, points: np.ndarray, dirs: np.ndarray,
                    rays_first: bool = False) -> np.ndarray:
    """Star distances (voxels) at ``points`` (m, 3) of a 3D label image along ``dirs`` (k, 3).

    The rule of :func:`ij_bridge.stardist.geometry.star_dist_3d`: unit steps
    along each ray, the nearest voxel at each step, stop at the first voxel of
    another label or outside the array, half a voxel back. Background points
    get distances too (to the first non-background voxel); callers pass
    foreground points. Returns ``(m, k)`` float32 (``(k, m)``, contiguous, with
    ``rays_first``).
    """
    return _star_dist_rays_first(lbl, points, dirs).T if not rays_first else \
        _star_dist_rays_first(lbl, points, dirs)


def _star_dist_rays_first(lbl, points, dirs):
    lbl = np.ascontiguousarray(lbl)
    if lbl.dtype not in (np.int32, np.int64):
        lbl = lbl.astype(np.int64)
    dirs = np.ascontiguousarray(dirs, np.float32)
    pts = np.ascontiguousarray(points, np.int64).reshape(-1, 3)
    out = np.zeros((len(dirs), len(pts)), np.float32)
    if len(pts) and len(dirs):
        tcorr = (np.float32(0.5) / np.abs(dirs).max(axis=1)).astype(np.float32)
        _kernel()(lbl, pts, dirs, tcorr, out)
    return out


def star_dist_3d_fast(lbl: np.ndarray, dirs: np.ndarray, grid: Sequence[int] = (1, 1, 1),
                      start: Sequence[int] = (0, 0, 0), size: Sequence[int] | None = None,
                      rays_first: bool = False) -> np.ndarray:
    """Star distances at every ``grid``-th voxel of the box ``start + size`` (default: all of ``lbl``).

    Same numbers as :func:`ij_bridge.stardist.geometry.star_dist_3d` (0 on
    background); ``ceil(size / grid) + (k,)`` float32, or ``(k,) + ceil(size / grid)``
    with ``rays_first``.
    """
    size = lbl.shape if size is None else tuple(size)
    axes = [np.arange(a, a + s, g) for a, s, g in zip(start, size, grid)]
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    shape = tuple(len(a) for a in axes)
    out = np.zeros((len(dirs), len(mesh)), np.float32)
    fg = np.flatnonzero(lbl[tuple(mesh.T)] > 0)
    out[:, fg] = _star_dist_rays_first(lbl, mesh[fg], dirs)
    out = out.reshape((len(dirs),) + shape)
    return out if rays_first else np.moveaxis(out, 0, -1)


# ---------------------------------------------------------------------- patches

def patch_targets_3d(lbl: np.ndarray, lo: Sequence[int], size: Sequence[int], dirs: np.ndarray,
                     grid: Sequence[int], anisotropy: Sequence[float] | None,
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Targets of the box ``lo + size`` of a (margin-cut) label image at ``grid``.

    Returns the object probability ``ceil(size / grid)`` and the distances
    ``(R,) + ceil(size / grid)``, both float32.
    """
    box = tuple(slice(a, a + s) for a, s in zip(lo, size))
    # only the objects in the box matter (for a ray and for an object's distance transform any
    # other label is "not this object", as background is)
    present = np.unique(lbl[box])
    present = present[present > 0]
    if len(present) < int(lbl.max()):
        lut = np.zeros(int(lbl.max()) + 1, lbl.dtype)
        lut[present] = present
        lbl = lut[lbl]
    prob = edt_prob(lbl, anisotropy)
    sl = tuple(slice(a, a + s, g) for a, s, g in zip(lo, size, grid))
    dist = star_dist_3d_fast(lbl, dirs, grid, lo, size, rays_first=True)
    return prob[sl].astype(np.float32, copy=False), dist


def _choose_box(rng, shape, ps, fg, foreground_prob):
    if len(fg) and rng.random() < foreground_prob:
        c = np.unravel_index(fg[rng.integers(len(fg))], shape)
        return [max(0, min(ci - int(rng.integers(p)), s - p)) for ci, p, s in zip(c, ps, shape)]
    return [int(rng.integers(s - p + 1)) for p, s in zip(ps, shape)]


def allow_transpose(cfg: Any) -> bool:
    """Whether training may swap Y and X (the 90° rotations): a square patch and y/x voxel sizes
    equal within :data:`YX_TOLERANCE` (the empirical anisotropy of a stack is never exactly equal
    in y and x)."""
    ps, an = cfg.patch_size, cfg.anisotropy
    return ps[1] == ps[2] and (an is None or abs(an[1] - an[2]) <= YX_TOLERANCE * max(an[1], an[2]))


def object_probabilities(lbl: np.ndarray, cfg: Any) -> dict[bool, np.ndarray]:
    """The object probability of a whole training label stack, once, for every patch drawn from it.

    ``{False: edt_prob(lbl)}``, and with :func:`allow_transpose` also ``{True: ...}``, the
    probability of the Y/X-swapped stack laid back in the stack's frame: with unequal y/x voxel
    sizes (within the tolerance) the distance transform of a swapped patch is not the swap of
    the distance transform. Flips commute with it exactly, so a patch's probability is a cut of
    one of these, transformed as its image (:func:`sample_patch_3d`). The numbers are those of
    :func:`patch_targets_3d`, which computes them per patch.
    """
    out = {False: edt_prob(lbl, cfg.anisotropy)}
    if cfg.augment and allow_transpose(cfg):
        out[True] = np.ascontiguousarray(np.swapaxes(
            edt_prob(np.ascontiguousarray(np.swapaxes(lbl, 1, 2)), cfg.anisotropy), 1, 2))
    return out


def sample_patch_3d(model: Any, item: tuple, rng: np.random.Generator, augment: bool | None = None,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One training patch of a 3D item ``(image (C, Z, Y, X), labels, foreground indices, margin[, probabilities])``.

    Returns the image patch ``(C, *patch_size)`` and its targets at grid
    resolution (probability, ``(R, ...)`` distances), augmented when
    ``augment`` (default ``config.augment``). With the item's fifth entry
    (:func:`object_probabilities`) the probability is cut from the whole
    stack's; without it, it is computed from the label patch (the same numbers).
    """
    cfg = model.config
    img, lbl, fg, margin = item[:4]
    probs = item[4] if len(item) > 4 else None
    ps = cfg.patch_size
    shape = lbl.shape
    lo = _choose_box(rng, shape, ps, fg, cfg.foreground_prob)
    rlo = [max(0, a - m) for a, m in zip(lo, margin)]
    rhi = [min(s, a + p + m) for a, p, m, s in zip(lo, ps, margin, shape)]
    region = tuple(slice(a, b) for a, b in zip(rlo, rhi))
    x, y = img[(slice(None),) + region], lbl[region]
    inner = [a - r for a, r in zip(lo, rlo)]
    size = list(ps)
    do_aug = cfg.augment if augment is None else augment
    ops: tuple[str, ...] = ()
    if do_aug:
        ops = random_transform(rng, allow_transpose=allow_transpose(cfg), flip_z=True)
        inner, size, _ = transform_box(inner, size, y.shape, ops)
        x, y = apply_transform(x, ops, 1), apply_transform(y, ops, 0)
    y = np.ascontiguousarray(y)
    box = tuple(slice(a, a + s) for a, s in zip(inner, size))
    if probs is None:
        prob, dist = patch_targets_3d(y, inner, size, model.rays.vertices, cfg.grid, cfg.anisotropy)
    else:
        pr = apply_transform(probs["t" in ops][region], ops, 0)
        prob = np.ascontiguousarray(pr[tuple(slice(a, a + s, g) for a, s, g in zip(inner, size, cfg.grid))])
        dist = star_dist_3d_fast(y, model.rays.vertices, cfg.grid, inner, size, rays_first=True)
    x = x[(slice(None),) + box]
    if do_aug:
        x = intensity_augment(x, rng)
    return np.ascontiguousarray(x, np.float32), prob, dist


def sample_batch_3d(model: Any, data: list, rng: np.random.Generator):
    """A batch of :func:`sample_patch_3d` patches as tensors ``(B, C, ...)``, ``(B, 1, ...)``, ``(B, R, ...)``."""
    import torch

    xs, ps, ds = [], [], []
    for _ in range(model.config.batch_size):
        x, p, d = sample_patch_3d(model, data[int(rng.integers(len(data)))], rng)
        xs.append(x)
        ps.append(p)
        ds.append(d)
    return (torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ps))[:, None],
            torch.from_numpy(np.stack(ds)))


def init_output_biases_3d(model: Any, data: list, n_patches: int = 16) -> None:
    """Start the output biases at the priors of un-augmented training patches (a fresh network).

    As :func:`ij_bridge.stardist.training.init_output_biases` (probability
    log-odds, probability-weighted mean distance per ray), estimated on
    ``n_patches`` patches drawn with their own generator.
    """
    import torch

    rng = np.random.default_rng(model.config.seed + 7919)
    p_sum, n_px = 0.0, 0
    d_sum = np.zeros(model.config.n_rays)
    for i in range(n_patches):
        _, p, d = sample_patch_3d(model, data[i % len(data)], rng, augment=False)
        p = p.astype(np.float64)
        p_sum += p.sum()
        n_px += p.size
        d_sum += (d.astype(np.float64) * p[None]).reshape(len(d), -1).sum(axis=1)
    if p_sum <= 0:
        return
    p_mean = min(max(p_sum / n_px, 1e-3), 1 - 1e-3)
    with torch.no_grad():
        model.net.out_prob.bias.fill_(float(np.log(p_mean / (1 - p_mean))))
        model.net.out_dist.bias.copy_(torch.as_tensor(d_sum / p_sum, dtype=model.net.out_dist.bias.dtype))
