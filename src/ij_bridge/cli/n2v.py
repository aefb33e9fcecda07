"""``ij-bridge n2v``: train a Noise2Void model and denoise TIFF files.

Examples::

    ij-bridge n2v train noisy.tif --model n2v.zip --epochs 20
    ij-bridge n2v predict --model n2v.zip noisy.tif more/ --output denoised/
    ij-bridge n2v import my_n2v_model/ --model n2v.zip
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from . import CLIError, add_big_flags, add_group, collect_tiffs



def register(subparsers: Any) -> None:
    """Add the ``n2v`` group with its ``train``, ``predict`` and ``import`` sub-commands."""
    sub = add_group(subparsers, "n2v", help="Noise2Void denoising (train, predict, import)",
                    description="Self-supervised denoising with Noise2Void.")

    tr = sub.add_parser("train", help="train a model on noisy images",
                        description="Train Noise2Void on the noisy images themselves.")
    tr.add_argument("images", nargs="+", metavar="IMAGE", help="TIFF files or folders of them")
    tr.add_argument("--model", required=True, type=Path,
                    help="where to save the model: a folder, or a file ending in .zip")
    tr.add_argument("--overwrite", action="store_true",
                    help="replace an existing model at --model; checked before training")
    tr.add_argument("--val", nargs="+", metavar="IMAGE", help="validation images (default: hold "
                    "out --val-fraction of the training data)")
    tr.add_argument("--variant", default="N2V", choices=["N2V", "N2V2", "structN2V"])
    tr.add_argument("--struct", choices=["horizontal", "vertical"],
                    help="structN2V line direction (horizontal = along X)")
    tr.add_argument("--struct-span", type=int, default=5, help="structN2V line length, odd (5)")
    tr.add_argument("--epochs", type=int, default=10)
    tr.add_argument("--steps", type=int, default=100, help="gradient steps per epoch (100)")
    tr.add_argument("--batch-size", type=int, default=16)
    tr.add_argument("--patch-size", help="e.g. 64 or 64,64 (2D), 32,64,64 (3D)")
    tr.add_argument("--masked-fraction", type=float, default=0.002)
    tr.add_argument("--radius", type=int, default=5, help="neighbourhood radius (5)")
    tr.add_argument("--lr", type=float, default=1e-3, help="learning rate (1e-3)")
    tr.add_argument("--lr-schedule", default="plateau", choices=["plateau", "cosine"])
    tr.add_argument("--val-fraction", type=float, default=0.1)
    tr.add_argument("--no-augment", action="store_true", help="no flips/rotations")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--2d", dest="as_2d", action="store_true",
                    help="treat the slices of a z-stack as independent 2D images (2D model)")
    tr.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=_train)

    pr = sub.add_parser("predict", help="denoise images with a trained model",
                        description="Denoise TIFF files; calibration is kept.")
    pr.add_argument("inputs", nargs="+", metavar="INPUT", help="TIFF files or folders of them")
    pr.add_argument("--model", required=True, type=Path, help="model folder or .zip")
    pr.add_argument("--output", required=True, type=Path, help="output folder")
    pr.add_argument("--tile", help="tile size, e.g. 512 or 256,512 (default: automatic)")
    pr.add_argument("--tta", action="store_true", help="8-fold test-time augmentation")
    pr.add_argument("--2d", dest="as_2d", action="store_true",
                    help="denoise the slices of a z-stack one by one with a 2D model")
    pr.add_argument("--device", help="cpu, cuda ... (default: cuda if available)")
    pr.add_argument("--overwrite", action="store_true", help="replace existing output files")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    add_big_flags(pr, big="denoise plane by plane from a memory map, written as it is done (default: "
                          "automatic above 2 GiB of 32-bit result)",
                  no_big="always denoise the whole image at once")
    pr.set_defaults(func=_predict)

    im = sub.add_parser("import", help="convert an n2v (juglab) model to ij-bridge's format",
                        description="Convert a model of the original n2v package (model folder, "
                        "its zip, a weights .h5 with config.json beside it, or tf_model.zip with "
                        "config.json beside it) to an ij-bridge N2V model. Predictions are the "
                        "original's; source, sha256 and original config are kept in the model.")
    im.add_argument("source", type=Path, metavar="SRC", help="the n2v model")
    im.add_argument("--model", required=True, type=Path,
                    help="where to write the ij-bridge model: a folder, or a file ending in .zip")
    im.add_argument("--overwrite", action="store_true", help="replace an existing model at --model")
    im.set_defaults(func=_import)

    from .export import add_export_parser

    add_export_parser(sub, "n2v")


# ---------------------------------------------------------------------------- files


def _ints(text: str | None, what: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        vals = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise CLIError(f"{what} must be integers separated by commas, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise CLIError(f"{what} must be positive, got {text!r}")
    return vals


def _imread(path: Path):
    """TIFF -> calibrated xarray.DataArray (:func:`ij_bridge.io.imread`)."""
    from .. import io as ijio

    try:
        return ijio.imread(path)
    except FileNotFoundError:
        raise CLIError(f"input not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise CLIError(f"cannot read {path}: {exc}") from None


def _imwrite(path: Path, img) -> None:
    """Denoised xarray.DataArray -> 32-bit ImageJ TIFF with the input's calibration."""
    from .. import io as ijio

    ijio.imwrite(path, img, overwrite=True)


# ---------------------------------------------------------------------------- commands
def _progress_quiet(args) -> bool:
    return bool(args.quiet) or not sys.stderr.isatty()


def _train(args: argparse.Namespace) -> int:
    from ..model_files import DestinationError, check_destination

    try:  # before any image is read or any step trained
        check_destination(args.model, overwrite=args.overwrite, kind="--model",
                          folder=args.model.suffix.lower() != ".zip", markers=("n2v_model.json",))
    except DestinationError as exc:
        raise CLIError(str(exc)) from None
    files = collect_tiffs(args.images)
    val_files = collect_tiffs(args.val) if args.val else None
    if args.variant == "structN2V" and not args.struct:
        raise CLIError("--variant structN2V needs --struct horizontal|vertical")
    if args.struct and args.variant != "structN2V":
        raise CLIError("--struct is only used with --variant structN2V")
    from ..n2v import StructMask
    from ..workflows import n2v as wf

    images = [_imread(f) for f in files]
    val = [_imread(f) for f in val_files] if val_files else None
    ndim = 3 if "z" in images[0].dims and not args.as_2d else 2
    patch = _ints(args.patch_size, "--patch-size")
    if patch is not None and len(patch) == 1:
        patch = patch * ndim
    try:
        model, history = wf.train(
            images, validation=val, model_path=args.model, overwrite=args.overwrite,
            slices_as_samples=args.as_2d, names=[str(f) for f in files], seed=args.seed,
            device=args.device, show_progress=not _progress_quiet(args),
            patch_size=patch, batch_size=args.batch_size, epochs=args.epochs,
            steps_per_epoch=args.steps, variant=args.variant, masked_fraction=args.masked_fraction,
            neighborhood_radius=args.radius,
            struct_mask=StructMask(args.struct, args.struct_span) if args.struct else None,
            learning_rate=args.lr, lr_schedule=args.lr_schedule,
            validation_fraction=args.val_fraction, augment=not args.no_augment)
    except (ValueError, OSError) as exc:  # bad settings or images; a full disk at the save
        raise CLIError(str(exc)) from None
    cfg = model.config
    last = history.iloc[-1]
    best = history[history["best"]] if history["best"].any() else history.iloc[[-1]]
    print(f"trained {cfg.epochs} epochs on {len(files)} image(s): train loss {last.train_loss:.4g}, "
          f"best val loss {best.val_loss.iloc[0]:.4g} (epoch {int(best.epoch.iloc[0])}); "
          f"model saved to {args.model}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from ..model_files import DestinationError, check_destination

    try:  # before the source is read
        check_destination(args.model, overwrite=args.overwrite, kind="--model",
                          folder=args.model.suffix.lower() != ".zip", markers=("n2v_model.json",))
    except DestinationError as exc:
        raise CLIError(str(exc)) from None
    from ..n2v.original import detect
    from ..workflows import n2v as wf

    if detect(args.source) is None and args.source.exists():
        raise CLIError(f"{args.source} is not a model of the original n2v (no config.json with "
                       "means/stds); if it is an ij-bridge model it needs no import")
    try:
        model = wf.load_model(args.source, device="cpu")
        model.save(args.model, overwrite=args.overwrite)
    except (FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    prov = model.provenance or {}
    print(f"imported {args.source} ({prov.get('format')}, {model.config.ndim}D, "
          f"{model.config.n_channels} channel(s)) -> {args.model}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from ..model_files import DestinationError, check_output_folder

    files = collect_tiffs(args.inputs)
    out_dir: Path = args.output
    try:  # a file there, the inputs' folder, a read-only place: refused before any work
        check_output_folder(out_dir, files)
    except DestinationError as exc:
        raise CLIError(str(exc)) from None
    targets = [out_dir / (f.stem + ".tif") for f in files]
    if len(set(targets)) != len(targets):
        raise CLIError("two inputs have the same file name; denoise them into separate folders")
    existing = [t for t in targets if t.exists()]
    if existing and not args.overwrite:
        raise CLIError(f"{existing[0]} exists (pass --overwrite to replace)")
    tile = _ints(args.tile, "--tile")
    tile_shape: Any = tile[0] if tile is not None and len(tile) == 1 else tile
    from ..workflows import n2v as wf

    try:
        model = wf.load_model(args.model, device=args.device)
    except (FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"cannot create --output {out_dir}: {exc.strerror or exc}") from None
    from ..workflows import big as _big

    for f, target in zip(files, targets):
        try:
            info = _big.tiff_info(f)
        except Exception:  # unreadable: _imread below says why
            info = None
        if info is not None and _big.use_big_n2v(info, args.big):
            try:
                _big.denoise_file_big(f, model, target, overwrite=True, tile_shape=tile_shape, tta=args.tta,
                                      as_2d=args.as_2d, show_progress=not _progress_quiet(args), info=info,
                                      log=lambda line: print(line, file=sys.stderr))
            except ValueError as exc:
                raise CLIError(f"{f}: {exc}" if str(f) not in str(exc) else str(exc)) from None
            except OSError as exc:
                raise CLIError(f"cannot write {target}: {exc.strerror or exc}; nothing half-written was "
                               "left (free space or choose another folder, then run again)") from None
            print(f"{f} -> {target} (plane by plane)")
            continue
        img = _imread(f)
        try:
            res = wf.denoise(img, model, tile_shape=tile_shape, tta=args.tta,
                             slices_as_samples=args.as_2d, show_progress=not _progress_quiet(args))
        except ValueError as exc:
            hint = (" (pass --2d to denoise its slices one by one)"
                    if "z" in img.dims and model.config.ndim == 2 else "")
            raise CLIError(f"{f}: {exc}{hint}") from None
        try:
            _imwrite(target, res)
        except OSError as exc:  # atomic writes: a full disk leaves nothing half-written
            raise CLIError(f"cannot write {target}: {exc.strerror or exc}; nothing half-written was "
                           "left (free space or choose another folder, then run again)") from None
        print(f"{f} -> {target}")
    return 0
