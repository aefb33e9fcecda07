"""Noise2Void use cases shared by ``ij-bridge n2v`` and the ImageJ commands.

:func:`denoise` and :func:`train` take calibrated ``xarray.DataArray`` images
(or numpy arrays with an N2V ``axes`` string) and return xarray with the
input's coordinates, units and attributes. :func:`load_model` reads every model
format :meth:`ij_bridge.n2v.N2V.load` accepts. Errors in the input raise
:class:`ValueError` or :class:`FileNotFoundError` with one line for the user.

The one rule for 2D stacks
--------------------------
A 2D model sees the slices of a z-stack as **independent samples**: with
``slices_as_samples=True`` the ``z`` dim (numpy: the ``Z`` letter) is read as a
sample axis, merged with the time points (``t`` / ``T``) if there are any. The
result has the input's dims (``z`` stays ``z``, with its spacing). Without it a
``z`` dim is space, for a 3D model. Both front ends use this: the CLI with
``--2d``, the ImageJ commands with ``mode=2D`` (training) and always for a 2D
model (prediction).

This module imports neither Java nor ImageJ.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["denoise", "train", "load_model", "fit_patch_size", "Progress", "MODEL_MARKERS"]

#: ``progress(done, total, message)``, called after every step or batch of tiles.
from ..progress import Progress  # noqa: E402  (the one shared type)

#: A folder holding one of these is an ij-bridge N2V model (and may be replaced).
MODEL_MARKERS = ("n2v_model.json",)

_SAMPLE_DIM = "t"  # the xarray name N2V reads as a sample axis


def _is_xarray(obj: Any) -> bool:
    return type(obj).__name__ == "DataArray" and hasattr(obj, "dims")


# ------------------------------------------------------------------------------ models
def load_model(spec: Any, *, device: Any = None):
    """An N2V model from a path (or an :class:`~ij_bridge.n2v.N2V`, returned as is).

    Parameters
    ----------
    spec : str, os.PathLike or N2V
        A model written by ij-bridge (folder or ``.zip``), or one of the
        original n2v package: its model folder, the zip of that folder, a
        weights ``.h5`` with ``config.json`` beside it, its ``tf_model.zip``
        export; CAREamics checkpoints as :meth:`N2V.load` documents.
    device : str, optional
        ``"cpu"``, ``"cuda"`` ...; default: CUDA when available.

    Raises
    ------
    FileNotFoundError
        The path, or a file the model needs, does not exist.
    ValueError
        No model given, or the file is not a (readable) N2V model.
    """
    from ..n2v import N2V

    if isinstance(spec, N2V):
        return spec
    if spec is None or str(spec).strip() == "":
        raise ValueError("no N2V model given: give the folder or .zip of a model (trained with "
                         "ij-bridge, or an original n2v model folder, its zip or tf_model.zip)")
    path = Path(os.fspath(spec)).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"N2V model not found: {path}")
    return N2V.load(path, device=device)


# ------------------------------------------------------------------------------ layout
def _numpy_as_samples(data: np.ndarray, axes: str) -> tuple[np.ndarray, str, Callable[[Any], Any]]:
    """``data`` with its Z (and T) axes merged into one sample axis T, and the inverse."""
    if "Z" not in axes:
        return data, axes, lambda res: res
    lead = [a for a in "TZ" if a in axes]
    rest = [a for a in axes if a not in lead]
    perm = [axes.index(a) for a in lead + rest]
    moved = np.transpose(data, perm)
    merged = moved.reshape((-1,) + moved.shape[len(lead):])
    inv = np.argsort(perm)

    def restore(res: Any) -> Any:
        return np.transpose(np.asarray(res).reshape(moved.shape), inv)

    return merged, "T" + "".join(rest), restore


def _as_samples(image: Any) -> tuple[Any, Callable[[Any], Any]]:
    """A view of ``image`` whose ``z`` (and ``t``) are one sample dim, and its inverse."""
    import xarray as xr

    if "z" not in image.dims:
        return image, lambda res: res
    lead = [d for d in ("t", "z") if d in image.dims]
    rest = [d for d in image.dims if d not in lead]
    moved = image.transpose(*lead, *rest)
    view = xr.DataArray(np.asarray(moved.values).reshape((-1,) + moved.shape[len(lead):]),
                        dims=(_SAMPLE_DIM, *rest), attrs=dict(image.attrs), name=image.name)

    def restore(res: Any) -> Any:
        vals = np.asarray(res.transpose(_SAMPLE_DIM, *rest).values).reshape(moved.shape)
        back = xr.DataArray(vals, dims=moved.dims).transpose(*image.dims)
        return xr.DataArray(back.values, dims=image.dims, coords=image.coords,
                            attrs=dict(res.attrs), name=image.name)

    return view, restore


def _prepared(image: Any, axes: str | None, slices_as_samples: bool, what: str
              ) -> tuple[Any, str | None, Callable[[Any], Any]]:
    """``(image for the core, numpy axes or None, restore)`` under the one rule for stacks."""
    if _is_xarray(image):
        if axes is not None:
            raise ValueError(f"{what}: axes= is for numpy arrays; an xarray image is read by its "
                             f"dim names {tuple(image.dims)}")
        if slices_as_samples:
            view, restore = _as_samples(image)
            return view, None, restore
        return image, None, lambda res: res
    if axes is None:
        raise ValueError(f"{what}: a numpy array needs axes=, e.g. 'YX', 'ZYX', 'CYX' or 'TYX'")
    data, ax = np.asarray(image), str(axes).upper()
    if slices_as_samples and len(ax) == data.ndim:  # else the model names the mismatch
        return _numpy_as_samples(data, ax)
    return data, ax, lambda res: res


def _rgb_as_channels(res: Any) -> Any:
    """Denoised RGB is float: its ``s`` (colour sample) dim becomes channels ``c``."""
    if _is_xarray(res) and "s" in res.dims and "c" not in res.dims:
        return res.rename({"s": "c"})
    return res


def _has_z(image: Any, axes: str | None) -> bool:
    return "z" in image.dims if _is_xarray(image) else "Z" in str(axes or "").upper()


# ------------------------------------------------------------------------------ denoise
def denoise(image: Any, model: Any, *, axes: str | None = None,
            tile_shape: int | Sequence[int] | None = None, tta: bool = False,
            slices_as_samples: bool = False, progress: Progress | None = None,
            show_progress: bool = False, device: Any = None):
    """Denoise one image with an N2V model.

    Parameters
    ----------
    image : xarray.DataArray or ndarray
        xarray dims ``t``, ``c``, ``z``, ``y``, ``x`` (and aliases; ``s``, RGB,
        is read as channels); numpy needs ``axes``.
    model : N2V or path
        A trained model, or anything :func:`load_model` reads.
    axes : str, optional
        N2V axes of a numpy ``image`` (letters S, T, C, Z, Y, X); default the
        model's ``config.axes``.
    tile_shape : int or sequence of int, optional
        Tile size per spatial axis; default: automatic from free memory.
        Tiled and untiled results agree to float rounding.
    tta : bool
        Average the 8 flips/rotations in YX.
    slices_as_samples : bool
        Denoise the z slices one by one (a 2D model on a z-stack); see the
        module docstring.
    progress : callable, optional
        ``progress(done, total, message)`` after each batch of tiles.
    show_progress : bool
        Show a tqdm bar.
    device : str, optional
        Used when ``model`` is a path.

    Returns
    -------
    xarray.DataArray or ndarray, float32
        The input's shape and dims, coordinates and attributes; an RGB input
        (dim ``s``) comes back as three float channels (dim ``c``).

    Raises
    ------
    ValueError
        Axes that do not fit the model, the wrong number of channels, NaN or
        infinite values.

    Examples
    --------
    >>> from ij_bridge.workflows.n2v import denoise
    >>> clean = denoise(imread("noisy.tif"), "n2v.zip")   # doctest: +SKIP
    """
    net = load_model(model, device=device)
    what = "image to denoise"
    if axes is None and not _is_xarray(image):
        axes = net.config.axes  # as N2V.predict: numpy in the model's axes
    data, ax, restore = _prepared(image, axes, slices_as_samples, what)
    if net.config.ndim == 2 and _has_z(data, ax):
        raise ValueError(f"{what} is a z-stack and the model is 2D: denoise its slices one by one "
                         "(slices_as_samples) or use a 3D model")
    if net.config.ndim == 3 and not _has_z(data, ax):
        raise ValueError(f"{what} has no z (slices) and the model is 3D: use a 2D model")
    res = net.predict(data, tile_shape=tile_shape, tta=tta, progress=progress, axes=ax,
                      show_progress=show_progress)
    return _rgb_as_channels(restore(res))


# ------------------------------------------------------------------------------ train
def fit_patch_size(patch: Sequence[int], sizes: Sequence[int], divisor: Sequence[int],
                   names: str = "zyx") -> tuple[int, ...]:
    """``patch`` reduced, per axis, to the largest multiple of ``divisor`` that fits ``sizes``.

    >>> fit_patch_size((64, 64), (50, 200), (4, 4), "yx")
    (48, 64)

    Raises
    ------
    ValueError
        An axis is shorter than two network divisors.
    """
    names = names[-len(patch):]
    out = []
    for p, s, d, n in zip(patch, sizes, divisor, names):
        fit = (min(int(p), int(s)) // d) * d
        if fit < 2 * d:
            raise ValueError(f"the image is too small along {n} ({s} pixels) for N2V: it needs at "
                             f"least {2 * d}")
        out.append(fit)
    return tuple(out)


def train(images: Any, *, validation: Any = None, model_path: str | os.PathLike | None = None,
          overwrite: bool = False, config: Any = None, axes: str | None = None,
          slices_as_samples: bool = False, seed: int | None = None,
          names: Sequence[str] | None = None, device: Any = None,
          progress: Progress | None = None, show_progress: bool = False, **settings: Any):
    """Train Noise2Void on noisy images (and save the model when ``model_path`` is given).

    Parameters
    ----------
    images : xarray.DataArray, ndarray, or a list of them
        The noisy images. A ``z`` dim makes a 3D model unless
        ``slices_as_samples``; all images must agree.
    validation : same types, optional
        Held-out images; default: ``validation_fraction`` of the data.
    model_path : path, optional
        Where to save the model: a folder, or a file ending in ``.zip``.
        Checked before training; an existing model is replaced only with
        ``overwrite`` (a folder ij-bridge did not write never).
    overwrite : bool
        Replace an existing model at ``model_path``.
    config : N2VConfig, optional
        Base settings; ``settings`` override its fields. Its ``axes`` are set
        from the images.
    axes : str, optional
        N2V axes of numpy images.
    slices_as_samples : bool
        The z slices are independent 2D images (a 2D model); see the module
        docstring.
    seed : int, optional
        Seeds weights, sampling, augmentation, masking and the validation
        split (default: the config's, 0).
    names : sequence of str, optional
        Names of the images for messages (e.g. file names).
    device : str, optional
        ``"cpu"``, ``"cuda"`` ...; default CUDA when available.
    progress : callable, optional
        ``progress(done, total, message)`` after every step.
    show_progress : bool
        Show a tqdm bar.
    **settings
        :class:`~ij_bridge.n2v.N2VConfig` fields: ``epochs``,
        ``steps_per_epoch``, ``batch_size``, ``patch_size``, ``variant``,
        ``struct_mask``, ``neighborhood_radius``, ...

    Returns
    -------
    model : N2V
    history : pandas.DataFrame
        One row per epoch (``epoch``, ``train_loss``, ``val_loss``, ``lr``,
        ``seconds``, ``best``).

    Raises
    ------
    ValueError
        Bad settings, images that disagree or are too small, an unwritable or
        existing ``model_path`` (:class:`~ij_bridge.model_files.DestinationError`);
        all before the first step.
    OSError
        The model could not be written (e.g. a full disk); nothing
        half-written is left.
    """
    from ..n2v import N2V, N2VConfig

    seq = list(images) if isinstance(images, (list, tuple)) else [images]
    if not seq:
        raise ValueError("no training images given")
    labels = list(names) if names is not None else (
        [f"training image {k + 1}" for k in range(len(seq))] if len(seq) > 1 else ["training image"])
    out: Path | None = None
    if model_path is not None:
        from ..model_files import check_destination

        out = check_destination(model_path, overwrite=overwrite, kind="model",
                                folder=Path(model_path).suffix.lower() != ".zip", markers=MODEL_MARKERS)

    prepared = [_prepared(im, axes, slices_as_samples, lab) for im, lab in zip(seq, labels)]
    data = [p[0] for p in prepared]
    ax = prepared[0][1]
    ndim = 3 if _has_z(data[0], ax) else 2
    for d, lab in zip(data, labels):
        if _has_z(d, ax) != (ndim == 3):
            raise ValueError(f"{lab} is {'2D' if ndim == 3 else '3D'}; all training images must be "
                             f"{'3D (with z)' if ndim == 3 else '2D (no z)'} like {labels[0]}")
    val = None
    if validation is not None:
        vseq = list(validation) if isinstance(validation, (list, tuple)) else [validation]
        val = [_prepared(v, axes, slices_as_samples, "validation image")[0] for v in vseq]
        for v in val:
            if _has_z(v, ax) != (ndim == 3):
                raise ValueError(f"validation images must be {'3D' if ndim == 3 else '2D'} like the "
                                 "training images")

    fields = {f.name for f in dataclasses.fields(N2VConfig)} - {"axes", "n_channels", "original_net"}
    unknown = sorted(set(settings) - fields)
    if unknown:
        raise ValueError(f"unknown N2V setting(s) {unknown}; the settings are: {', '.join(sorted(fields))}")
    base = config.to_dict() if config is not None else {}
    base = {k: v for k, v in base.items() if k in fields}
    base.update(settings)
    if seed is not None:
        base["seed"] = int(seed)
    base["axes"] = ax if ax is not None else ("ZYX" if ndim == 3 else "YX")
    cfg = N2VConfig(**base)

    model = N2V(cfg, device=device)
    history = model.train(data if len(data) > 1 else data[0], validation=val, progress=progress,
                          show_progress=show_progress)
    if out is not None:
        from ..model_files import DestinationError

        try:
            model.save(out, overwrite=overwrite)
        except DestinationError:
            raise
        except OSError as exc:
            raise OSError(f"cannot save the model to {out}: {exc.strerror or exc}; nothing "
                          "half-written was left (free space or choose another place, then run "
                          "again)") from exc
    return model, history
