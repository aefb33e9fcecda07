"""Image layout, normalisation, patch sampling and augmentation for N2V.

Internally every image is a stack of samples ``(S, C, *spatial)``;
:func:`to_samples` builds it from numpy (axes string) or xarray (dim names)
and returns the inverse for the model's output. Dim names and axes letters are
those of :mod:`ij_bridge.layout` (one table for the whole package): ``T`` (and
the deprecated ``S``) are independent samples, ``C`` and RGB samples are channels.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..layout import ALIASES, image_dims, legacy_sample_axis, parse_axes

__all__ = ["to_samples", "check_values", "PatchSampler", "augment_batch", "grid_patches",
           "XARRAY_DIMS"]

#: N2V's letter for each dim of :mod:`ij_bridge.layout`: time points are independent
#: samples, RGB colour samples (``s``) are channels.
_LETTER = {"t": "T", "c": "C", "s": "C", "z": "Z", "y": "Y", "x": "X"}

#: xarray dim names understood by N2V and their meaning: every name of the one alias
#: table :data:`ij_bridge.layout.ALIASES` (the names of :mod:`ij_bridge.io` and PyImageJ).
XARRAY_DIMS = {name: _LETTER[dim] for name, dim in ALIASES.items()}


def _is_xarray(obj: Any) -> bool:
    return type(obj).__name__ == "DataArray" and hasattr(obj, "dims")


def _axes_of(image: Any, axes: str | None, ndim: int, what: str) -> tuple[np.ndarray, str]:
    if _is_xarray(image):
        dims = image_dims(image, None, what=what)  # the dims decide; config.axes is for numpy
        if "c" in dims and "s" in dims:
            raise ValueError(f"{what}: xarray dims {tuple(image.dims)} name the same axis twice for N2V: "
                             "channels (c) and RGB samples (s), which N2V reads as channels; merge them "
                             "into one 'c' dim")
        data = np.asarray(image.values)
        ax = "".join(_LETTER[d] for d in dims)
    else:
        data = np.asarray(image)
        if axes is None:
            raise ValueError(f"{what}: numpy input needs an axes string such as 'YX' or 'ZYX'")
        if len(axes) != data.ndim:
            raise ValueError(
                f"{what}: array has {data.ndim} dimensions {data.shape} but axes {axes.upper()!r} name "
                f"{len(axes)}; pass axes= matching the array (letters T,C,Z,Y,X)")
        # N2V's old S (independent images, like T) keeps working with a DeprecationWarning
        # (in ij_bridge.layout S is ImageJ's RGB sample axis); the other letters are layout's
        rest, s_at = legacy_sample_axis(axes, what=what, stacklevel=4)
        ax = "".join(_LETTER[d] for d in parse_axes(rest, what=what))
        if s_at is not None:
            ax = ax[:s_at] + "S" + ax[s_at:]
    if ("Z" in ax) != (ndim == 3):
        model = "3D (ZYX)" if ndim == 3 else "2D (YX)"
        raise ValueError(
            f"{what}: image axes {ax!r} do not fit a {model} model; "
            + ("a 3D model needs a Z axis" if ndim == 3 else
               "a 2D model takes no Z axis (name it T to denoise slice by slice, "
               "or train a 3D model with axes 'ZYX')"))
    return data, ax


def to_samples(image: Any, axes: str | None, ndim: int, what: str = "image"
               ) -> tuple[np.ndarray, Callable[[np.ndarray], Any]]:
    """Bring an image to ``(S, C, *spatial)`` float32.

    Parameters
    ----------
    image : ndarray or xarray.DataArray
        The image. For xarray the dims decide (see :data:`XARRAY_DIMS`).
    axes : str, optional
        Axes of a numpy image, e.g. ``"ZYX"``, ``"YXC"``, ``"TCYX"``.
    ndim : int
        Spatial dimensionality of the model.

    Returns
    -------
    samples : ndarray, float32
    restore : callable
        Maps an ``(S, C, *spatial)`` result back to the input's layout (an
        xarray input gives an xarray with the same dims, coords, attrs, name).
    """
    data, ax = _axes_of(image, axes, ndim, what)
    if data.dtype.kind not in "biuf":
        raise ValueError(f"{what}: dtype {data.dtype} is not numeric")
    sample_axes = [a for a in "ST" if a in ax]
    order = sample_axes + (["C"] if "C" in ax else []) + [a for a in "ZYX" if a in ax]
    perm = [ax.index(a) for a in order]
    moved = np.transpose(data, perm)
    n_s = len(sample_axes)
    s_shape = moved.shape[:n_s]
    spatial = moved.shape[n_s + ("C" in ax):]
    samples = moved.reshape((int(np.prod(s_shape, dtype=np.int64)), -1) + tuple(spatial))
    samples = samples.astype(np.float32, copy=False)
    inv = np.argsort(perm)

    def restore(out: np.ndarray) -> Any:
        c = out.shape[1]
        res = out.reshape(tuple(s_shape) + ((c,) if "C" in ax else ()) + tuple(out.shape[2:]))
        res = np.transpose(res, inv)
        if _is_xarray(image):
            import xarray as xr

            return xr.DataArray(res, dims=image.dims, coords=image.coords, attrs=dict(image.attrs),
                                name=image.name)
        return res

    return samples, restore


def check_values(samples: np.ndarray, what: str = "image") -> None:
    """Reject NaN/inf and channels without any variation."""
    if not np.all(np.isfinite(samples)):
        n = int(np.size(samples) - np.count_nonzero(np.isfinite(samples)))
        raise ValueError(f"{what} contains {n} NaN or infinite values; replace them before N2V")
    flat = np.moveaxis(samples, 1, 0).reshape(samples.shape[1], -1)
    const = [c for c in range(flat.shape[0]) if flat[c].min() == flat[c].max()]
    if const:
        raise ValueError(f"{what} is constant in channel(s) {const}: there is nothing to denoise "
                         "or learn from")


def augment_batch(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Random element of the dihedral group in the YX plane, per patch.

    Flips of Y and X, and (for square patches) a transpose, give all eight
    90° rotations and mirrorings. Vectorised with ``torch.where``.
    """
    B = x.shape[0]
    flags = rng.random((B, 3)) < 0.5
    shape = (B,) + (1,) * (x.ndim - 1)
    dev = x.device

    def where(f, a, b):
        return torch.where(torch.from_numpy(f).to(dev).reshape(shape), a, b)

    x = where(flags[:, 0], x.flip(-1), x)
    x = where(flags[:, 1], x.flip(-2), x)
    if x.shape[-1] == x.shape[-2]:
        x = where(flags[:, 2], x.transpose(-1, -2), x)
    return x


class PatchSampler:
    """Random patches from a list of ``(C, *spatial)`` tensors, batch-vectorised.

    Images are chosen with probability proportional to their number of patch
    positions; all patches from one image are cut with one gather.
    """

    def __init__(self, images: Sequence[torch.Tensor], patch: tuple[int, ...]):
        self.images = list(images)
        self.patch = tuple(patch)
        counts = []
        for im in self.images:
            sp = im.shape[1:]
            if any(s < p for s, p in zip(sp, self.patch)):
                raise ValueError(f"patch_size {self.patch} is larger than an image of spatial "
                                 f"shape {tuple(sp)}; use a smaller patch_size")
            counts.append(np.prod([s - p + 1 for s, p in zip(sp, self.patch)], dtype=np.float64))
        self.p = np.asarray(counts) / np.sum(counts)
        # largest start position per image and axis
        self.limits = np.array([[s - p for s, p in zip(im.shape[1:], self.patch)] for im in self.images],
                               dtype=np.int64)
        self._ar = [torch.arange(p, device=self.images[0].device) for p in self.patch]

    def sample(self, n: int, rng: np.random.Generator) -> torch.Tensor:
        which = rng.choice(len(self.images), size=n, p=self.p)
        starts = np.floor(rng.random((n, len(self.patch))) * (self.limits[which] + 1)).astype(np.int64)
        out = torch.empty((n, self.images[0].shape[0]) + self.patch, dtype=self.images[0].dtype,
                          device=self.images[0].device)
        nd = len(self.patch)
        for i in np.unique(which):
            sel = np.nonzero(which == i)[0]
            st = torch.from_numpy(starts[sel]).to(out.device)
            idx = []
            for a in range(nd):
                shape = [len(sel)] + [1] * nd
                shape[1 + a] = self.patch[a]
                idx.append((st[:, a, None] + self._ar[a]).reshape(shape))
            im = self.images[i]
            out[torch.from_numpy(sel).to(out.device)] = im[(slice(None),) + tuple(idx)].movedim(0, 1)
        return out



def grid_patches(images: Sequence[np.ndarray], patch: tuple[int, ...], max_n: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Non-overlapping patches on a regular grid, at most ``max_n`` (a seeded subset)."""
    out = []
    for im in images:
        sp = im.shape[1:]
        if any(s < p for s, p in zip(sp, patch)):
            raise ValueError(f"validation image of spatial shape {tuple(sp)} is smaller than "
                             f"patch_size {patch}")
        starts = [np.arange(0, s - p + 1, p) for s, p in zip(sp, patch)]
        for st in np.stack(np.meshgrid(*starts, indexing="ij"), -1).reshape(-1, len(patch)):
            out.append(im[(slice(None),) + tuple(slice(a, a + p) for a, p in zip(st, patch))])
    arr = np.stack(out)
    if len(arr) > max_n:
        arr = arr[np.sort(rng.choice(len(arr), max_n, replace=False))]
    return arr
