"""Commands "N2V Train (torch)", "N2V Predict (torch)" and "N2V Train + Predict (torch)"."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ._common import DENOISED_SUFFIX, base_title, set_torch_threads, show_image, to_xarray
from .registry import Choice, CommandError, ImageTitle, Integer, ModelChoice, String, command

VARIANTS = ("N2V", "N2V2", "structN2V")
STRUCTS = ("horizontal", "vertical")


def _train(ctx, imp, model_path: str, epochs, steps, batch, patch, radius, variant, struct, span,
           mode):
    from ..n2v import N2VConfig, StructMask
    from ..workflows import n2v as wf

    set_torch_threads()
    if variant == "structN2V" and (span < 3 or span % 2 == 0):
        raise CommandError(f"span= must be an odd number >= 3, got {span}")
    out = None
    if model_path:
        out = Path(model_path).expanduser()
        if not out.parent.exists():
            raise CommandError(f"the folder of model=[{model_path}] does not exist")
    title = str(imp.getTitle())
    da = to_xarray(imp)
    if mode == "3D" and "z" not in da.dims:
        raise CommandError(f"mode=3D needs a z-stack, but {title!r} has no slices (use mode=2D)")
    # patch= is the size in x and y (a 3D patch is half as deep, at least 8), reduced to fit
    want = (max(8, patch // 2), patch, patch) if mode == "3D" else (patch, patch)
    dims = ("z", "y", "x") if mode == "3D" else ("y", "x")
    divisor = N2VConfig(axes="ZYX" if mode == "3D" else "YX").divisor
    try:
        size = wf.fit_patch_size(want, [da.sizes[d] for d in dims], divisor, "".join(dims))
    except ValueError as exc:
        raise CommandError(f"{title!r}{str(exc).removeprefix('the image')}") from None
    if size != want:
        ctx.log(f"patch size reduced to {list(size)} to fit the image")
    ctx.log(f"training {variant} ({mode}) on {title!r}: {epochs} epochs x {steps} steps, "
            f"batch {batch}, patch {list(size)}, radius {radius}")
    # like ImageJ's own saves, a model saved there earlier is replaced (a folder we did not write
    # never is); a place that cannot take the model fails before training. Its ValueError or
    # OSError (a full disk) reaches the user as it is (user_errors)
    model, history = wf.train(
        da, model_path=out, overwrite=True, slices_as_samples=mode == "2D",
        names=[repr(title)], progress=ctx.progress, patch_size=size, batch_size=batch,
        epochs=epochs, steps_per_epoch=steps, variant=variant, neighborhood_radius=radius,
        struct_mask=StructMask(struct, span) if variant == "structN2V" else None)
    last = history.iloc[-1]
    ctx.log(f"trained: loss {last['train_loss']:.4f}, validation loss {last['val_loss']:.4f}")
    if out is not None:
        ctx.log(f"model saved to {out}")
        from ..workflows.models import remember_model

        remember_model("n2v", out, log=ctx.log)  # offered first by N2V Predict's model choice
    return model, mode


def _predict(ctx, imp, model, tiles: int, mode: str | None = None):
    from ..workflows import n2v as wf

    set_torch_threads()
    title = str(imp.getTitle())
    da = to_xarray(imp)
    model_2d = model.config.ndim == 2
    tile_shape: Any = None
    if tiles > 1:  # tiles= per axis in x and y; z (3D) in one piece
        tile_shape = tuple(da.sizes[d] if d == "z" else math.ceil(da.sizes[d] / tiles)
                           for d in (("y", "x") if model_2d else ("z", "y", "x")))
    try:
        # a 2D model denoises the slices of a stack one by one
        out = wf.denoise(da, model, tile_shape=tile_shape, slices_as_samples=model_2d,
                         progress=ctx.progress)
    except ValueError as exc:
        raise CommandError(f"{title!r}: {exc}") from None
    result = show_image(np.asarray(out.values, dtype=np.float32), out, tuple(out.dims),
                        base_title(imp) + DENOISED_SUFFIX)
    stats = result.getStatistics()
    result.setDisplayRange(float(stats.min), float(stats.max))
    ctx.log(f"denoised {title!r} -> {result.getTitle()!r}")
    return result


def _load(model_path: str):
    from ..workflows import n2v as wf

    if not model_path:
        raise CommandError("model= is required: the folder (or .zip) of a model saved by N2V Train (torch)")
    return wf.load_model(model_path)  # FileNotFoundError, ValueError: user_errors


#: raised by workflows.n2v with a message for the user (shown as it is, no traceback)
USER_ERRORS = (ValueError, FileNotFoundError, OSError)

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
], help="Train Noise2Void on a noisy image (no clean data needed) and save the model.",
   user_errors=USER_ERRORS)
def n2v_train_command(ctx, training, model, epochs, steps, batch, patch, radius, variant, struct, span,
                      mode):
    if not model:
        raise CommandError("model= is required: the folder (or .zip) where the trained model is saved")
    _train(ctx, training, model, epochs, steps, batch, patch, radius, variant, struct, span, mode)


@command("N2V Predict (torch)", params=[
    ModelChoice("model", "n2v", "", label="model (folder or .zip)"),
    Integer("tiles", 1, minimum=1, label="tiles per axis in x and y"),
], help="Denoise the active image with a trained Noise2Void model: a new 32-bit image.",
   user_errors=USER_ERRORS)
def n2v_predict_command(ctx, model, tiles):
    imp = ctx.image()
    _predict(ctx, imp, _load(model), tiles)


@command("N2V Train + Predict (torch)", params=[
    ImageTitle("training", label="training image", help="noisy image to learn from (default: active)"),
    ImageTitle("prediction", label="prediction image (None = the training image)", optional=True),
    String("model", "", label="model (folder or .zip; empty = not saved)"),
    *_TRAIN_PARAMS,
    Integer("tiles", 1, minimum=1, label="tiles per axis in x and y"),
], help="Train Noise2Void on an image, then denoise it (or another image).",
   user_errors=USER_ERRORS)
def n2v_train_predict_command(ctx, training, prediction, model, epochs, steps, batch, patch, radius,
                              variant, struct, span, mode, tiles):
    trained, _ = _train(ctx, training, model, epochs, steps, batch, patch, radius, variant, struct,
                        span, mode)
    _predict(ctx, prediction if prediction is not None else training, trained, tiles)
