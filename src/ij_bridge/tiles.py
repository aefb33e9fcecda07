"""Tiled inference shared by the N2V and StarDist models (no Java).

An image too large for one forward pass is cut into tiles that overlap by a
*halo*; each tile is processed independently and only its centre (the tile
without the halo) is written to the output. With a halo at least as large as
the network's receptive field the stitched result equals the untiled one up to
float rounding.

Arrays here are channel-first: ``(C, *spatial)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from . import cancel

__all__ = ["Tile", "iter_tiles", "tiled_apply", "tile_shape_for", "auto_n_tiles"]


@dataclass(frozen=True)
class Tile:
    """One tile: where to read in the input, and where its centre goes.

    Attributes
    ----------
    read : tuple of slice
        Spatial region of the input to process (core plus halo, clipped to the image).
    write : tuple of slice
        Spatial region of the output that this tile fills (in output pixels).
    crop : tuple of slice
        Region of the tile's output that goes to ``write``.
    """

    read: tuple[slice, ...]
    write: tuple[slice, ...]
    crop: tuple[slice, ...]


def _as_tuple(v, n, name) -> tuple[int, ...]:
    t = (int(v),) * n if np.isscalar(v) else tuple(int(x) for x in v)
    if len(t) != n:
        raise ValueError(f"{name} needs {n} values, got {t}")
    return t


def iter_tiles(
    shape: Sequence[int],
    tile_shape: Sequence[int] | int,
    halo: Sequence[int] | int = 0,
    scale: Sequence[int] | int = 1,
) -> Iterator[Tile]:
    """Cover a spatial ``shape`` with tiles of core size ``tile_shape``.

    Tile borders are aligned to multiples of ``scale`` (the output stride, e.g.
    StarDist's grid) so that output pixels map to whole input blocks.

    Parameters
    ----------
    shape : sequence of int
        Spatial shape of the input.
    tile_shape : int or sequence of int
        Size of each tile's core (rounded up to a multiple of ``scale``).
    halo : int or sequence of int
        Context added on each side of the core (rounded up to a multiple of ``scale``).
    scale : int or sequence of int
        Ratio of input to output size per axis.
    """
    n = len(shape)
    tile_shape = _as_tuple(tile_shape, n, "tile_shape")
    halo = _as_tuple(halo, n, "halo")
    scale = _as_tuple(scale, n, "scale")
    starts_per_axis = []
    for size, t, h, s in zip(shape, tile_shape, halo, scale):
        t = max(s, math.ceil(min(t, size) / s) * s)
        h = math.ceil(h / s) * s
        starts = list(range(0, size, t))
        starts_per_axis.append([(a, min(a + t, size), h, s) for a in starts])
    for combo in np.ndindex(*[len(a) for a in starts_per_axis]):
        read, write, crop = [], [], []
        for axis, i in enumerate(combo):
            a, b, h, s = starts_per_axis[axis][i]
            size = shape[axis]
            r0, r1 = max(0, a - h), min(size, b + h)
            read.append(slice(r0, r1))
            write.append(slice(a // s, math.ceil(b / s)))
            crop.append(slice((a - r0) // s, (a - r0) // s + math.ceil(b / s) - a // s))
        yield Tile(tuple(read), tuple(write), tuple(crop))


def tile_shape_for(shape: Sequence[int], n_tiles: Sequence[int] | int) -> tuple[int, ...]:
    """Core tile size that splits ``shape`` into ``n_tiles`` pieces per axis."""
    n_tiles = _as_tuple(n_tiles, len(shape), "n_tiles")
    if any(k < 1 for k in n_tiles):
        raise ValueError(f"n_tiles must be >= 1, got {n_tiles}")
    return tuple(math.ceil(s / k) for s, k in zip(shape, n_tiles))


def auto_n_tiles(
    shape: Sequence[int],
    bytes_per_pixel: float,
    budget_bytes: float,
    *,
    halo: Sequence[int] | int = 0,
    min_tile: Sequence[int] | int = 16,
) -> tuple[int, ...]:
    """Fewest tiles (splitting the largest axis first) whose working set fits a budget.

    Parameters
    ----------
    shape : sequence of int
        Spatial shape of the input.
    bytes_per_pixel : float
        Estimated peak memory per input pixel for one forward pass (activations).
    budget_bytes : float
        Memory available for one tile (see :func:`ij_bridge.device.memory_budget`).
    halo : int or sequence of int
        Context read on each side of a tile; a tile's working set is its core
        plus the halo on both sides (never more than the whole axis).
    min_tile : int or sequence of int
        An axis whose tile core is this small is not split further.

    Returns
    -------
    tuple of int
        Tiles per axis; all ones when the whole image fits.

    Examples
    --------
    >>> auto_n_tiles((100, 100), 4.0, 1e9)
    (1, 1)
    >>> auto_n_tiles((100, 100), 4.0, 4.0 * 50 * 100)
    (2, 1)
    """
    d = len(shape)
    halo = _as_tuple(halo, d, "halo")
    min_tile = _as_tuple(min_tile, d, "min_tile")
    n_tiles = [1] * d

    def need(n: list[int]) -> float:
        return math.prod(min(s, math.ceil(s / k) + 2 * h) for s, k, h in zip(shape, n, halo)) * bytes_per_pixel

    while need(n_tiles) > budget_bytes:
        cores = [math.ceil(s / k) for s, k in zip(shape, n_tiles)]
        axis = int(np.argmax([c if c > m else 0 for c, m in zip(cores, min_tile)]))
        if cores[axis] <= min_tile[axis]:
            break
        n_tiles[axis] += 1
    return tuple(n_tiles)


def tiled_apply(
    fn: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    tile_shape: Sequence[int] | int,
    halo: Sequence[int] | int,
    scale: Sequence[int] | int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Apply ``fn`` tile by tile to a channel-first image and stitch the results.

    Parameters
    ----------
    fn : callable
        Maps a ``(C, *tile)`` array to ``(C_out, *tile // scale)``.
    image : ndarray
        Input of shape ``(C, *spatial)``.
    tile_shape, halo, scale
        See :func:`iter_tiles`.
    progress : callable, optional
        Called as ``progress(done, total)`` after each tile.

    Returns
    -------
    ndarray
        ``(C_out, *ceil(spatial / scale))``, dtype of ``fn``'s output.
    """
    spatial = image.shape[1:]
    tiles = list(iter_tiles(spatial, tile_shape, halo, scale))
    sc = _as_tuple(scale, len(spatial), "scale")
    out = None
    for i, tile in enumerate(tiles):
        cancel.check()
        result = fn(image[(slice(None),) + tile.read])
        if out is None:
            out_shape = (result.shape[0],) + tuple(math.ceil(s / k) for s, k in zip(spatial, sc))
            out = np.empty(out_shape, dtype=result.dtype)
        out[(slice(None),) + tile.write] = result[(slice(None),) + tile.crop]
        if progress is not None:
            progress(i + 1, len(tiles))
    assert out is not None
    return out
