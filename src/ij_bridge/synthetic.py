"""Synthetic fluorescent-nuclei images with exact instance labels (no Java).

:func:`synthetic_nuclei` draws irregular, star-convex blobs (an ellipse or
ellipsoid whose radius is modulated by a few low-frequency harmonics) at random
positions, some of them touching or overlapping (the later object overwrites the
earlier one), and renders a plausible microscope image: per-object brightness,
smooth texture, optical blur, background, Poisson (shot) and Gaussian (read)
noise. The same seed always gives the same image and labels.

:func:`add_gaussian_noise`, :func:`add_poisson_noise` and :func:`noisy_image`
corrupt a clean image, e.g. for denoising tests.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "synthetic_nuclei",
    "add_gaussian_noise",
    "add_poisson_noise",
    "noisy_image",
]


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _place_centres(
    rng: np.random.Generator,
    shape: np.ndarray,
    scale: np.ndarray,
    radii: np.ndarray,
    overlap: float,
    margin: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy random placement with a minimal centre distance of ``(1-overlap)(r_i+r_j)``.

    Positions are in physical units (pixel index × scale). Returns accepted
    centres and their radii (possibly fewer than requested).
    """
    n = len(radii)
    n_cand = max(50 * n, 200)
    lo = -margin * radii.min() * np.ones(len(shape))
    hi = shape * scale + margin * radii.min()
    cand = rng.uniform(lo, hi, size=(n_cand, len(shape)))
    centres = np.empty((n, len(shape)))
    rad = np.empty(n)
    k = 0
    ci = 0
    # one cheap vectorised distance test per candidate; loop is over objects, not pixels
    while k < n and ci < n_cand:
        c = cand[ci]
        r = radii[k]
        ci += 1
        if k:
            d = np.sqrt(np.sum((centres[:k] - c) ** 2, axis=1))
            if np.any(d < (1.0 - overlap) * (rad[:k] + r)):
                continue
        centres[k] = c
        rad[k] = r
        k += 1
    return centres[:k], rad[:k]


def _random_rotation(rng: np.random.Generator, ndim: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(ndim, ndim)))
    return q * np.sign(np.diag(r))


def _keep_largest_piece(labels: np.ndarray) -> np.ndarray:
    """Remove fragments: each label keeps only its largest face-connected piece."""
    from skimage.measure import label as cc_label

    pieces = cc_label(labels, background=0, connectivity=1)
    n_pieces = int(pieces.max())
    if n_pieces == 0:
        return labels
    flat_p = pieces.ravel()
    size = np.bincount(flat_p, minlength=n_pieces + 1)
    owner = np.zeros(n_pieces + 1, np.int64)
    owner[flat_p] = labels.ravel()
    ids = np.arange(1, n_pieces + 1)
    # per owner label, the piece with the largest size wins
    order = np.lexsort((-size[ids], owner[ids]))
    sorted_owner = owner[ids][order]
    first = np.r_[True, sorted_owner[1:] != sorted_owner[:-1]]
    keep = np.zeros(n_pieces + 1, bool)
    keep[ids[order][first]] = True
    out = labels.copy()
    out[~keep[pieces]] = 0
    return out


def _relabel(labels: np.ndarray, min_size: int) -> np.ndarray:
    counts = np.bincount(labels.ravel())
    ok = counts >= max(min_size, 1)
    ok[0] = False
    lut = np.zeros(len(counts), np.int32)
    lut[ok] = np.arange(1, int(ok.sum()) + 1, dtype=np.int32)
    return lut[labels]


def synthetic_nuclei(
    shape: Sequence[int] = (256, 256),
    n_objects: int = 40,
    radius: tuple[float, float] = (6.0, 12.0),
    seed: int | np.random.Generator | None = 0,
    noise: float = 0.03,
    photons: float | None = 300.0,
    overlap: float = 0.25,
    irregularity: float = 0.15,
    elongation: float = 0.25,
    intensity: tuple[float, float] = (0.5, 1.0),
    background: float = 0.08,
    texture: float = 0.15,
    blur: float = 1.0,
    anisotropy: float = 1.0,
    min_size: int = 8,
    axial_blur: float = 1.0,
    attenuation: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic image of fluorescent nuclei and its instance label image.

    Parameters
    ----------
    shape : sequence of int
        ``(Y, X)`` or ``(Z, Y, X)``.
    n_objects : int
        Number of nuclei to place. Fewer may fit when the image is crowded (a
        warning says so); objects overwritten down to fewer than ``min_size``
        pixels are dropped. Labels are consecutive ``1..n``.
    radius : (float, float)
        Range of the mean radius in (x/y) pixels, drawn uniformly.
    seed : int or numpy.random.Generator or None
        Random seed; the same seed gives identical outputs.
    noise : float
        Standard deviation of additive Gaussian (read) noise, in the image's
        intensity units (objects have intensity ~``intensity``).
    photons : float or None
        Expected photon count at intensity 1 for Poisson shot noise (smaller =
        noisier); None for no shot noise.
    overlap : float
        0 keeps objects apart, larger values let them touch and overlap: two
        centres are at least ``(1 - overlap) * (r1 + r2)`` apart. Where objects
        overlap the later one wins.
    irregularity : float
        Amplitude of the radial harmonics that make the outline irregular (0 =
        ellipses/ellipsoids). Shapes stay star-convex from their centre.
    elongation : float
        Maximal relative difference of the ellipse axes (0 = round).
    intensity : (float, float)
        Range of per-object brightness.
    background : float
        Constant background level.
    texture : float
        Relative amplitude of smooth intensity texture inside the nuclei.
    blur : float
        Standard deviation (pixels) of the Gaussian optical blur; 0 for none.
    anisotropy : float
        3D only: z-step divided by the x/y pixel size. Objects are round in
        physical space, so they span ``1/anisotropy`` as many slices as pixels
        in x/y; the blur is scaled the same way.
    min_size : int
        Objects with fewer pixels after overwriting are removed.
    axial_blur : float
        3D only: the optical blur along z relative to x/y in physical units
        (a widefield or confocal PSF is about 2-4 times longer along z); 1
        for an isotropic blur.
    attenuation : float
        3D only: the signal decays as ``exp(-attenuation * z / Z)`` with depth
        (slice ``z`` of ``Z``), as light is lost deeper in a sample; 0 for none.

    Returns
    -------
    image : numpy.ndarray of float32
    labels : numpy.ndarray of int32

    Examples
    --------
    >>> img, lbl = synthetic_nuclei((64, 64), n_objects=5, seed=1)
    >>> img.dtype, lbl.dtype, img.shape
    (dtype('float32'), dtype('int32'), (64, 64))
    """
    shape_t = tuple(int(s) for s in shape)
    ndim = len(shape_t)
    if ndim not in (2, 3):
        raise ValueError(f"shape must be (Y, X) or (Z, Y, X), got {shape_t}")
    if min(shape_t) < 1:
        raise ValueError(f"shape must be positive, got {shape_t}")
    if n_objects < 0:
        raise ValueError(f"n_objects must be >= 0, got {n_objects}")
    rmin, rmax = float(radius[0]), float(radius[1])
    if not (0 < rmin <= rmax):
        raise ValueError(f"radius must be (min, max) with 0 < min <= max, got {radius}")
    if not (0 <= overlap < 1):
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if anisotropy <= 0:
        raise ValueError(f"anisotropy must be > 0, got {anisotropy}")
    if axial_blur <= 0 or attenuation < 0:
        raise ValueError(f"axial_blur must be > 0 and attenuation >= 0, got {axial_blur}, {attenuation}")
    if photons is not None and photons <= 0:
        raise ValueError(f"photons must be > 0 or None, got {photons}")
    rng = _rng(seed)

    # physical scale per axis (x/y pixel = 1)
    scale = np.ones(ndim)
    if ndim == 3:
        scale[0] = float(anisotropy)
    shp = np.asarray(shape_t, float)

    radii = rng.uniform(rmin, rmax, n_objects)
    centres, radii = _place_centres(rng, shp, scale, radii, overlap, margin=0.3)
    if len(radii) < n_objects:
        warnings.warn(
            f"synthetic_nuclei: only {len(radii)} of {n_objects} objects fit with overlap={overlap}; "
            "use a larger shape, smaller radius or larger overlap",
            stacklevel=2,
        )

    labels = np.zeros(shape_t, np.int32)
    bright = np.zeros(len(radii) + 1, np.float32)
    bright[1:] = rng.uniform(intensity[0], intensity[1], len(radii))
    n_harm = 3
    for k, (c, r) in enumerate(zip(centres, radii), start=1):
        rot = _random_rotation(rng, ndim)
        e = rng.uniform(0, elongation)
        axes = np.ones(ndim)
        axes[0] = 1 + e
        axes[-1] = 1 / (1 + e)
        if irregularity > 0:
            amp = rng.uniform(0, irregularity, n_harm) / np.arange(1, n_harm + 1)
            freq = np.arange(2, 2 + n_harm)
            phase = rng.uniform(0, 2 * np.pi, n_harm)
            dirs = rng.normal(size=(n_harm, ndim))
            dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        rbound = r * (1 + e) * (1 + (irregularity if irregularity > 0 else 0)) + 1
        lo = np.maximum(np.floor((c - rbound) / scale).astype(int), 0)
        hi = np.minimum(np.ceil((c + rbound) / scale).astype(int) + 1, np.asarray(shape_t))
        if np.any(hi <= lo):
            continue
        grids = np.meshgrid(*[np.arange(a, b) * s - cc for a, b, s, cc in zip(lo, hi, scale, c)], indexing="ij")
        v = np.stack(grids, axis=-1)  # physical offsets from the centre
        rho = np.linalg.norm(v, axis=-1)
        u = v / np.maximum(rho, 1e-9)[..., None]
        w = u @ rot  # direction in the object's own frame
        rad = 1.0 / np.sqrt(np.sum((w / axes) ** 2, axis=-1))
        if irregularity > 0:
            if ndim == 2:
                theta = np.arctan2(w[..., 0], w[..., 1])
                mod = np.sum(amp * np.cos(freq * theta[..., None] + phase), axis=-1)
            else:
                dots = w @ dirs.T
                mod = np.sum(amp * np.cos(freq * np.pi * 0.5 * dots + phase), axis=-1)
            rad = rad * (1 + mod)
        inside = rho <= r * rad
        sl = tuple(slice(a, b) for a, b in zip(lo, hi))
        labels[sl][inside] = k

    labels = _keep_largest_piece(labels)
    # brightness follows the surviving object's original index, then relabel
    obj_b = bright[labels]
    labels = _relabel(labels, min_size)
    obj_b[labels == 0] = 0

    # image formation: objects with texture, blur, background, noise
    img = obj_b.astype(np.float32)
    if texture > 0:
        field = rng.normal(size=shape_t).astype(np.float32)
        sig = np.full(ndim, 2.0)
        if ndim == 3:
            sig[0] = 2.0 / anisotropy
        field = ndi.gaussian_filter(field, sig)
        field /= field.std() + 1e-12
        img *= 1 + texture * np.clip(field, -3, 3)
    if blur > 0:
        sig = np.full(ndim, float(blur))
        if ndim == 3:
            sig[0] = blur * float(axial_blur) / anisotropy
        img = ndi.gaussian_filter(img, sig)
    if ndim == 3 and attenuation > 0:
        depth = np.exp(-float(attenuation) * np.arange(shape_t[0]) / shape_t[0]).astype(np.float32)
        img = img * depth[:, None, None]
    img = img + np.float32(background)
    if photons is not None:
        img = add_poisson_noise(img, photons, seed=rng)
    if noise > 0:
        img = add_gaussian_noise(img, noise, seed=rng)
    return img.astype(np.float32), labels.astype(np.int32)


def add_gaussian_noise(
    image: np.ndarray, sigma: float, seed: int | np.random.Generator | None = 0
) -> np.ndarray:
    """Return ``image`` plus zero-mean Gaussian noise of standard deviation ``sigma`` (float32)."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    a = np.asarray(image, dtype=np.float32)
    return (a + _rng(seed).normal(0.0, sigma, size=a.shape).astype(np.float32)).astype(np.float32)


def add_poisson_noise(
    image: np.ndarray, photons: float, seed: int | np.random.Generator | None = 0
) -> np.ndarray:
    """Shot noise: ``Poisson(image * photons) / photons`` (float32).

    ``photons`` is the expected photon count at intensity 1; negative
    intensities are clipped to 0 first.
    """
    if photons <= 0:
        raise ValueError(f"photons must be > 0, got {photons}")
    a = np.clip(np.asarray(image, dtype=np.float64), 0, None)
    return (_rng(seed).poisson(a * photons) / photons).astype(np.float32)


def noisy_image(
    image: np.ndarray,
    sigma: float = 0.1,
    photons: float | None = None,
    seed: int | np.random.Generator | None = 0,
) -> np.ndarray:
    """Corrupt a clean image with optional Poisson then Gaussian noise (float32).

    Parameters
    ----------
    image : numpy.ndarray
        Clean image.
    sigma : float
        Standard deviation of the additive Gaussian noise.
    photons : float or None
        Expected photons at intensity 1 for shot noise; None for none.
    seed : int or Generator or None
        Random seed.
    """
    rng = _rng(seed)
    out = np.asarray(image, dtype=np.float32)
    if photons is not None:
        out = add_poisson_noise(out, photons, seed=rng)
    if sigma > 0:
        out = add_gaussian_noise(out, sigma, seed=rng)
    return out
