"""Commands "N2V Train (torch)", "N2V Predict (torch)" and "N2V Train + Predict (torch)"."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ._common import DENOISED_SUFFIX, base_title, set_torch_threads, show_image, to_xarray
from .registry import Choice, CommandError, ImageTitle, Integer, String, command

VARIANTS = ("N2V", "N2V2", "structN2V")
STRUCTS = ("horizontal", "vertical")


def _axes(da, mode: str, title: str) -> tuple[np.ndarray, str]:
    """The image as numpy with an N2V axes string (2D: slices are samples; 3D: z is space)."""
    if "s" in da.dims:
        raise CommandError(f"{title!r} is RGB; convert it to a stack of channels or to 8-bit first")
    letters = {"t": "T", "c": "C", "y": "Y", "x": "X"}
    if mode == "2D":
        letters["z"] = "S"
    else:
        if "z" not in da.dims:
            raise CommandError(f"mode=3D needs a z-stack, but {title!r} has no slices (use mode=2D)")
        letters["z"] = "Z"
    axes = "".join(letters[d] for d in da.dims)
    return np.asarray(da.values), axes


def _train(ctx, imp, model_path: str, epochs, steps, batch, patch, radius, variant, struct, span,
           mode):
    from ..n2v import N2V, N2VConfig, StructMask

    set_torch_threads()
    if variant == "structN2V" and (span < 3 or span % 2 == 0):
        raise CommandError(f"span= must be an odd number >= 3, got {span}")
    out = None
    if model_path:
        out = Path(model_path).expanduser()
        if not out.parent.exists():
            raise CommandError(f"the folder of model=[{model_path}] does not exist")
        # like ImageJ's own saves, a model saved there earlier is replaced (a folder we did not write
        # never is); a place that cannot take the model fails now, before training
        from ..model_files import DestinationError, check_destination

        try:
            check_destination(out, overwrite=True, kind="model", folder=out.suffix.lower() != ".zip",
                              markers=("n2v_model.json",))
        except DestinationError as exc:
            raise CommandError(str(exc)) from None
    da = to_xarray(imp)
    data, axes = _axes(da, mode, str(imp.getTitle()))
    ndim = 3 if mode == "3D" else 2
    div = 2 ** 2  # the default U-Net depth 2 pools by 4 per axis
    sizes = {a: data.shape[axes.index(a)] for a in "ZYX" if a in axes}
    size = []
    for a in ("ZYX" if ndim == 3 else "YX"):
        want = patch if a != "Z" else max(2 * div, patch // 2)
        fit = (min(want, sizes[a]) // div) * div
        if fit < 2 * div:
            raise CommandError(f"{imp.getTitle()!r} is too small along {a.lower()} ({sizes[a]} pixels) "
                               f"for N2V: it needs at least {2 * div}")
        size.append(fit)
    if size[-1] != patch or size[-2] != patch:
        ctx.log(f"patch size reduced to {size} to fit the image")
    try:
        cfg = N2VConfig(axes=axes, patch_size=tuple(size), batch_size=batch, epochs=epochs,
                        steps_per_epoch=steps, variant=variant, neighborhood_radius=radius,
                        struct_mask=StructMask(struct, span) if variant == "structN2V" else None)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    ctx.log(f"training {variant} ({mode}) on {imp.getTitle()!r}: {epochs} epochs x {steps} steps, "
            f"batch {batch}, patch {size}, radius {radius}")
    model = N2V(cfg)
    try:
        history = model.train(data, progress=ctx.progress, show_progress=False)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    last = history.iloc[-1]
    ctx.log(f"trained: loss {last['train_loss']:.4f}, validation loss {last['val_loss']:.4f}")
    if out is not None:
        saved = model.save(out, overwrite=True)
        ctx.log(f"model saved to {saved}")
    return model, mode


def _predict(ctx, imp, model, tiles: int, mode: str | None = None):
    set_torch_threads()
    cfg = model.config
    model_mode = "3D" if "Z" in cfg.axes else "2D"
    da = to_xarray(imp)
    data, axes = _axes(da, model_mode, str(imp.getTitle()))
    channels = data.shape[axes.index("C")] if "C" in axes else 1
    if cfg.n_channels is not None and channels != cfg.n_channels:
        raise CommandError(f"the model denoises {cfg.n_channels} channel(s); {imp.getTitle()!r} has {channels}")
    tile_shape: Any = None
    if tiles > 1:
        tile_shape = tuple(data.shape[axes.index(a)] if a == "Z" else math.ceil(data.shape[axes.index(a)] / tiles)
                           for a in "ZYX" if a in axes)
    try:
        out = model.predict(data, axes=axes, tile_shape=tile_shape, progress=ctx.progress)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    result = show_image(np.asarray(out, dtype=np.float32), da, tuple(da.dims),
                        base_title(imp) + DENOISED_SUFFIX)
    stats = result.getStatistics()
    result.setDisplayRange(float(stats.min), float(stats.max))
    ctx.log(f"denoised {imp.getTitle()!r} -> {result.getTitle()!r}")
    return result


def _load(model_path: str):
    from ..n2v import N2V

    if not model_path:
        raise CommandError("model= is required: the folder (or .zip) of a model saved by N2V Train (torch)")
    try:
        return N2V.load(Path(model_path).expanduser())
    except (FileNotFoundError, ValueError) as exc:
        raise CommandError(str(exc)) from None


_TRAIN_PARAMS = [
    Integer("epochs", 10, minimum=1),
    Integer("steps", 100, minimum=1, label="steps per epoch"),
    Integer("batch", 16, minimum=1, label="batch size"),
    Integer("patch", 64, minimum=8, label="patch size (pixels)"),
    Integer("radius", 5, minimum=1, label="radius of the neighbourhood (pixels)"),
    Choice("variant", VARIANTS, "N2V"),
    Choice("struct", STRUCTS, "horizontal", label="struct direction (structN2V)"),
    Integer("span", 5, minimum=3, label="span of the struct mask (structN2V, odd)"),
    Choice("mode", ("2D", "3D"), "2D", label="mode (2D: slices and frames are samples)"),
]


@command("N2V Train (torch)", params=[
    ImageTitle("training", label="training image", help="noisy image to learn from (default: active)"),
    String("model", "", label="model (folder or .zip to save to)"),
    *_TRAIN_PARAMS,
], help="Train Noise2Void on a noisy image (no clean data needed) and save the model.")
def n2v_train_command(ctx, training, model, epochs, steps, batch, patch, radius, variant, struct, span,
                      mode):
    if not model:
        raise CommandError("model= is required: the folder (or .zip) where the trained model is saved")
    _train(ctx, training, model, epochs, steps, batch, patch, radius, variant, struct, span, mode)


@command("N2V Predict (torch)", params=[
    String("model", "", label="model (folder or .zip)"),
    Integer("tiles", 1, minimum=1, label="tiles per axis in x and y"),
], help="Denoise the active image with a trained Noise2Void model: a new 32-bit image.")
def n2v_predict_command(ctx, model, tiles):
    imp = ctx.image()
    _predict(ctx, imp, _load(model), tiles)


@command("N2V Train + Predict (torch)", params=[
    ImageTitle("training", label="training image", help="noisy image to learn from (default: active)"),
    ImageTitle("prediction", label="prediction image (None = the training image)", optional=True),
    String("model", "", label="model (folder or .zip; empty = not saved)"),
    *_TRAIN_PARAMS,
    Integer("tiles", 1, minimum=1, label="tiles per axis in x and y"),
], help="Train Noise2Void on an image, then denoise it (or another image).")
def n2v_train_predict_command(ctx, training, prediction, model, epochs, steps, batch, patch, radius,
                              variant, struct, span, mode, tiles):
    trained, _ = _train(ctx, training, model, epochs, steps, batch, patch, radius, variant, struct,
                        span, mode)
    _predict(ctx, prediction if prediction is not None else training, trained, tiles)
