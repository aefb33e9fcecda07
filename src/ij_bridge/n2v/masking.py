"""Blind-spot masking of Noise2Void, vectorised over a whole batch.

A small, stratified set of pixels per patch and channel is chosen; their
values are replaced (by a random neighbour for N2V, by the neighbourhood
median for N2V2) and, for structN2V, the pixels on a line through each of them
are scrambled too. The network then learns to predict the original values of
the chosen pixels from their surroundings only; the loss sees those pixels
alone.

All random numbers come from a :class:`numpy.random.Generator`, so masks are
reproducible and identical on CPU and GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .config import StructMask

__all__ = ["Masked", "stratified_coords", "neighbour_offsets", "struct_offsets", "mask_batch",
           "masked_mse"]


@dataclass
class Masked:
    """A masked batch.

    Attributes
    ----------
    inputs : torch.Tensor
        The batch with masked pixels replaced, ``(B, C, *spatial)``.
    index : torch.Tensor
        Flat indices (into ``inputs.reshape(-1)``) of the masked pixels, int64.
    targets : torch.Tensor
        Original values at ``index``.
    """

    inputs: torch.Tensor
    index: torch.Tensor
    targets: torch.Tensor


def stratified_coords(spatial: tuple[int, ...], n: int, fraction: float,
                      rng: np.random.Generator) -> np.ndarray:
    """Stratified random pixel positions for ``n`` patches.

    The patch is divided into cells of side about ``(1/fraction)**(1/ndim)``
    (integer boundaries); one pixel is drawn uniformly in every cell (cells cut
    by the border keep their pixel only if it falls inside), so the expected
    masked fraction is ``fraction``, no pixel is drawn twice and masked pixels
    never cluster.

    Returns
    -------
    ndarray of int64, shape (N, 1 + ndim)
        Patch index followed by the spatial coordinates.
    """
    ndim = len(spatial)
    step = (1.0 / fraction) ** (1.0 / ndim)
    # integer cell boundaries, so that neighbouring cells never share a pixel
    cells = [np.arange(math.ceil(s / step)) for s in spatial]
    grid = np.stack(np.meshgrid(*cells, indexing="ij"), -1).reshape(-1, ndim)  # (K, ndim)
    lo = np.floor(grid * step).astype(np.int64)
    width = np.floor((grid + 1) * step).astype(np.int64) - lo
    u = rng.random((n, grid.shape[0], ndim))
    coords = lo[None] + np.floor(u * width[None]).astype(np.int64)  # (n, K, ndim)
    inside = np.all(coords < np.asarray(spatial), axis=-1)
    which = np.broadcast_to(np.arange(n)[:, None], inside.shape)
    return np.concatenate([which[inside][:, None], coords[inside]], axis=1)


def struct_offsets(struct: StructMask | None, ndim: int) -> np.ndarray:
    """Offsets (centre excluded) of the structN2V line, ``(M, ndim)``."""
    if struct is None:
        return np.zeros((0, ndim), np.int64)
    half = struct.span // 2
    steps = np.array([s for s in range(-half, half + 1) if s != 0], np.int64)
    off = np.zeros((steps.size, ndim), np.int64)
    off[:, -1 if struct.direction == "horizontal" else -2] = steps
    return off


def neighbour_offsets(radius: tuple[int, ...], struct: StructMask | None = None) -> np.ndarray:
    """Offsets of the replacement neighbourhood, ``(M, ndim)``.

    The box ``[-r, r]`` per axis without the centre and, for structN2V,
    without the line (whose noise is correlated with the centre).
    """
    ndim = len(radius)
    axes = [np.arange(-r, r + 1) for r in radius]
    off = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, ndim).astype(np.int64)
    keep = np.any(off != 0, axis=1)
    line = struct_offsets(struct, ndim)
    if len(line):
        on_line = (off[:, None, :] == line[None]).all(-1).any(1)
        keep &= ~on_line
    return off[keep]


def _shift(coords: np.ndarray, off: np.ndarray, spatial: np.ndarray) -> np.ndarray:
    """``coords + off``; where that leaves the patch, ``coords - off`` instead.

    Mirroring the offset (not the position) keeps a non-zero offset non-zero,
    so the centre pixel is never its own replacement.
    """
    p = coords + off
    out = (p < 0) | (p >= spatial)
    p = np.where(out, coords - off, p)
    return np.clip(p, 0, spatial - 1)


def mask_batch(
    x: torch.Tensor,
    rng: np.random.Generator,
    fraction: float = 0.002,
    radius: int = 5,
    strategy: str = "uniform",
    struct: StructMask | None = None,
) -> Masked:
    """Mask a batch for blind-spot training.

    Parameters
    ----------
    x : torch.Tensor
        ``(B, C, *spatial)`` normalised patches. Each patch and channel gets
        its own mask.
    rng : numpy.random.Generator
        Source of all randomness.
    fraction : float
        Expected fraction of masked pixels.
    radius : int
        Neighbourhood radius; limited per axis to ``(size - 1) // 2`` so that
        a mirrored offset always stays inside the patch.
    strategy : {"uniform", "median"}
        Replacement by one random neighbour (N2V) or the median of the
        neighbourhood (N2V2); the centre never contributes.
    struct : StructMask, optional
        structN2V line: the pixels on it get the values of random pixels of
        the same patch and channel, and are excluded from the replacement
        neighbourhood.

    Returns
    -------
    Masked
    """
    if strategy not in ("uniform", "median"):
        raise ValueError(f"strategy must be 'uniform' or 'median', got {strategy!r}")
    B, C = x.shape[:2]
    spatial = tuple(x.shape[2:])
    ndim = len(spatial)
    sp = np.asarray(spatial)
    strides = np.array([int(np.prod(spatial[i + 1:])) for i in range(ndim)], np.int64)
    plane = int(np.prod(spatial))

    pts = stratified_coords(spatial, B * C, fraction, rng)
    bc, coords = pts[:, 0], pts[:, 1:]
    base = bc * plane
    centre = base + coords @ strides
    x = x.contiguous()
    flat = x.view(-1)
    out = x.clone(memory_format=torch.contiguous_format)
    oflat = out.view(-1)  # a view: writes go to ``out``

    rad = tuple(int(min(radius, (s - 1) // 2)) for s in spatial)
    if min(rad) < 1:
        raise ValueError(f"patch {spatial} is too small for a masking neighbourhood")
    offsets = neighbour_offsets(rad, struct)
    if strategy == "uniform":
        pick = offsets[rng.integers(0, len(offsets), size=len(coords))]
        src = base + _shift(coords, pick, sp) @ strides
        values = flat[torch.from_numpy(src).to(x.device)]
    else:
        nb = _shift(coords[:, None, :], offsets[None], sp)  # (N, M, ndim)
        src = base[:, None] + nb @ strides
        values = flat[torch.from_numpy(src).to(x.device)].median(dim=1).values

    if struct is not None:
        line = struct_offsets(struct, ndim)
        p = coords[:, None, :] + line[None]  # (N, L, ndim)
        inside = np.all((p >= 0) & (p < sp), axis=-1)
        dst = (base[:, None] + p @ strides)[inside]
        rand = rng.integers(0, plane, size=dst.size)
        rsrc = np.broadcast_to(base[:, None], inside.shape)[inside] + rand
        dev = x.device
        oflat[torch.from_numpy(dst).to(dev)] = flat[torch.from_numpy(rsrc).to(dev)]

    idx = torch.from_numpy(centre).to(x.device)
    oflat[idx] = values
    return Masked(out, idx, flat[idx])


def masked_mse(pred: torch.Tensor, masked: Masked) -> torch.Tensor:
    """Mean squared error on the masked pixels only."""
    return torch.mean((pred.reshape(-1)[masked.index] - masked.targets) ** 2)
