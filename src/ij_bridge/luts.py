"""Colour tables for label images (no Java; ImageJ applies them in :mod:`ij_bridge.imagej.images`).

:func:`label_lut` is a fixed, glasbey-like table of 256 distinct colours: entry 0
is black (background) and every further entry is, among a grid of sRGB
colours, the one farthest (in CIELAB, a roughly perceptual colour space) from
all entries before it, so that labels with nearby numbers look different.
ImageJ 1.x has no such table built in (its "glasbey" LUTs ship with Fiji only);
this one is computed here, once, from fixed rules and a fixed seed, so it is the
same on every run and every machine.

Examples
--------
>>> lut = label_lut()
>>> lut.shape, lut.dtype, lut[0].tolist()
((256, 3), dtype('uint8'), [0, 0, 0])
>>> len({tuple(c) for c in lut.tolist()})
256
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["label_lut", "srgb_to_lab", "LUT_SEED"]

#: Seed of the candidate order (ties between equally distant colours go to the earlier one).
LUT_SEED = 20261202

#: Candidate colours: every combination of these sRGB levels (33**3 colours).
_LEVELS = np.linspace(0, 255, 33).round().astype(np.uint8)

#: Candidates darker than this CIELAB lightness are left out: on the black
#: background they would look like background.
_MIN_LIGHTNESS = 25.0


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB colours given as 0-255 values, shape (..., 3).

    >>> (srgb_to_lab(np.array([[255, 255, 255], [255, 0, 0]])).round(1) + 0.0).tolist()
    [[100.0, 0.0, 0.0], [53.2, 80.1, 67.2]]
    """
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375],
                  [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


@lru_cache(maxsize=1)
def _table() -> np.ndarray:
    r, g, b = np.meshgrid(_LEVELS, _LEVELS, _LEVELS, indexing="ij")
    rgb = np.stack([r.ravel(), g.ravel(), b.ravel()], axis=1)
    rgb = rgb[np.random.default_rng(LUT_SEED).permutation(len(rgb))]
    lab = srgb_to_lab(rgb)
    keep = lab[:, 0] >= _MIN_LIGHTNESS
    rgb, lab = rgb[keep], lab[keep]
    chosen = [np.zeros(3, np.uint8)]
    # squared distance of each candidate to the nearest chosen colour (black first)
    nearest = np.sum((lab - srgb_to_lab(chosen[0])) ** 2, axis=1)
    for _ in range(255):
        i = int(np.argmax(nearest))  # first of the farthest: fixed by the seeded order
        chosen.append(rgb[i])
        nearest = np.minimum(nearest, np.sum((lab - lab[i]) ** 2, axis=1))
    table = np.stack(chosen).astype(np.uint8)
    table.setflags(write=False)
    return table


def label_lut() -> np.ndarray:
    """The label colour table: (256, 3) uint8 RGB, entry 0 black, all entries distinct.

    Computed on first use (a few tens of milliseconds) and kept; read-only.
    """
    return _table()
