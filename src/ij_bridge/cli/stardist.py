"""``ij-bridge stardist``: train StarDist models and segment TIFF files.

Examples::

    ij-bridge stardist train --images imgs/ --masks masks/ --model nuclei.zip --epochs 20
    ij-bridge stardist predict --model nuclei.zip a.tif more/ --output seg/
    ij-bridge stardist predict a.tif --output seg/          # bundled stardist_nuclei2d model
    ij-bridge stardist predict --3d stack.tif --output seg/ # bundled stardist_nuclei3d model
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..workflows.stardist import DEFAULT_MODEL, DEFAULT_MODEL_3D  # the one place they are set
from . import CLIError, add_big_flags, add_group, collect_tiffs

__all__ = ["register"]



def register(subparsers: Any) -> None:
    """Add the ``stardist`` group with its ``train``, ``predict`` and ``import`` sub-commands."""
    sub = add_group(subparsers, "stardist", help="StarDist nucleus segmentation (train, predict)",
                    description="Star-convex instance segmentation (StarDist) in PyTorch.")

    tr = sub.add_parser("train", help="train a model on images and label masks",
                        description="Train StarDist on image / label-image pairs matched by file name.")
    tr.add_argument("--images", required=True, type=Path, help="folder of training images (TIFF)")
    tr.add_argument("--masks", required=True, type=Path,
                    help="folder of label images with the same file names")
    tr.add_argument("--model", required=True, type=Path, help="output: a folder, or a file ending in .zip")
    tr.add_argument("--overwrite", action="store_true",
                    help="replace an existing model at --model (and --plot); checked before training")
    tr.add_argument("--val-images", type=Path, help="folder of validation images")
    tr.add_argument("--val-masks", type=Path, help="folder of validation label images")
    tr.add_argument("--val-fraction", type=float, default=0.15,
                    help="without --val-images: fraction of the pairs held out (0.15; at least one "
                         "pair when there are two or more)")
    tr.add_argument("--3d", dest="three_d", action="store_true", help="train a 3D model on z-stacks")
    tr.add_argument("--epochs", type=int, default=20)
    tr.add_argument("--steps", type=int, default=100, help="gradient steps per epoch (100)")
    tr.add_argument("--batch-size", type=int, default=4)
    tr.add_argument("--patch-size", help="e.g. 128 or 128,128 (2D), 32,64,64 (3D)")
    tr.add_argument("--rays", type=int, help="number of rays (32 in 2D, 96 in 3D)")
    tr.add_argument("--grid", help="output grid, e.g. 2 or 2,2 (default 2,2 / 1,2,2)")
    tr.add_argument("--lr", type=float, default=3e-4, help="learning rate (3e-4)")
    tr.add_argument("--seed", type=int, default=0,
                    help="seeds the validation split and the training (0)")
    tr.add_argument("--no-augment", action="store_true", help="no flips/rotations/intensity changes")
    tr.add_argument("--plot", type=Path, help="write the training history PNG here")
    tr.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=_train)

    pr = sub.add_parser("predict", help="segment images with a trained model",
                        description="Writes per input <name>_labels.tif (calibrated label image), "
                                    "<name>_rois.zip (ImageJ ROIs: 2D the model's polygons, 3D each "
                                    "object's outline in each slice, at its z (and t) position) and "
                                    "<name>_objects.csv. A 2D model segments the slices of a z-stack "
                                    "one by one; a 3D model (--3d) segments volumes.")
    pr.add_argument("inputs", nargs="+", metavar="INPUT", help="TIFF files or folders of them")
    pr.add_argument("--model",
                    help=f"model folder, .zip or bundled name (default: {DEFAULT_MODEL}; with --3d "
                         f"{DEFAULT_MODEL_3D})")
    pr.add_argument("--3d", dest="three_d", action="store_true",
                    help="segment z-stacks as volumes with a 3D model (the model must be 3D)")
    pr.add_argument("--output", required=True, type=Path, help="output folder")
    pr.add_argument("--prob", type=float, help="probability threshold (default: the model's)")
    pr.add_argument("--nms", type=float, help="overlap (NMS) threshold (default: the model's)")
    pr.add_argument("--tiles", help="tiles per axis, e.g. 2,2 (default: automatic)")
    pr.add_argument("--no-normalize", action="store_true", help="input is already normalised")
    pr.add_argument("--low", type=float, default=1.0, help="normalisation low percentile (1)")
    pr.add_argument("--high", type=float, default=99.8, help="normalisation high percentile (99.8)")
    pr.add_argument("--exclude", type=int, default=0, metavar="PIXELS",
                    help="drop objects centred closer than this to the image edge (0: keep all)")
    pr.add_argument("--device", help="cpu, cuda ... (default: cuda if available)")
    pr.add_argument("--fiji", help="Fiji.app (or a folder of models) where --model names the StarDist "
                                   "Fiji plugin's model, e.g. 'Versatile (fluorescent nuclei)' "
                                   "(default: $IJ_BRIDGE_FIJI, $IJ_BRIDGE_MODELS)")
    pr.add_argument("--overwrite", action="store_true",
                    help="replace existing outputs (each input's set of outputs is replaced as a whole)")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    add_big_flags(pr, big="segment block by block, labels written to disk as they are done (default: "
                          "automatic above 4096 x 4096 pixels, 2D model, one plane)",
                  no_big="always segment the whole image at once")
    pr.add_argument("--block-size", type=int, help="core size of --big's blocks (default: from memory)")
    pr.set_defaults(func=_predict)

    im = sub.add_parser("import", help="convert a model of the original StarDist to ij-bridge's format",
                        description="Read a model of the original StarDist (its folder with config.json "
                                    "and weights_best.h5, a zip of it, or a bioimage.io StarDist package) "
                                    "and write it as an ij-bridge model, with its provenance (source, "
                                    "SHA-256, the original config) in config.json and README.md.")
    im.add_argument("src", type=Path, metavar="SRC", help="the original model (folder, .zip, rdf package)")
    im.add_argument("--model", required=True, type=Path, help="output: a folder, or a file ending in .zip")
    im.add_argument("--weights", help="weights file inside SRC (default weights_best.h5, else weights_last.h5)")
    im.add_argument("--prob", type=float, help="probability threshold to store (default: the model's)")
    im.add_argument("--nms", type=float, help="overlap (NMS) threshold to store (default: the model's)")
    im.add_argument("--overwrite", action="store_true", help="replace an existing model at --model")
    im.set_defaults(func=_import)

    from .export import add_export_parser

    add_export_parser(sub, "stardist")


# ----------------------------------------------------------------------------- helpers

def _ints(text: str | None, n: int, name: str):
    if text is None:
        return None
    try:
        vals = tuple(int(v) for v in str(text).split(","))
    except ValueError:
        raise CLIError(f"--{name} must be integers separated by commas, got {text!r}") from None
    if len(vals) == 1:
        vals = vals * n
    if len(vals) != n or any(v < 1 for v in vals):
        raise CLIError(f"--{name} needs {n} positive values, got {text!r}")
    return vals


def _check_model_destination(args: argparse.Namespace) -> None:
    """Before any training: --model (and --plot) must be writable, and new unless --overwrite."""
    from ij_bridge.model_files import DestinationError, check_destination

    try:
        check_destination(args.model, overwrite=args.overwrite, kind="--model",
                          folder=args.model.suffix.lower() != ".zip", markers=("config.json",))
        if args.plot is not None:
            check_destination(args.plot, overwrite=args.overwrite, kind="--plot", folder=False)
    except DestinationError as exc:
        raise CLIError(str(exc)) from None


def _write_error(exc: OSError) -> CLIError:
    """One line for a failed write (full disk, permission): what, why, and that nothing half-written is left."""
    from ij_bridge.model_files import DestinationError

    if isinstance(exc, DestinationError):
        return CLIError(str(exc))
    return CLIError(f"{exc.strerror or exc}; nothing half-written was left (free space or choose "
                    "another place, then run again)")


# ------------------------------------------------------------------------------- train

def _train(args: argparse.Namespace) -> int:
    from ..workflows.stardist import train_from_pairs

    _check_model_destination(args)
    ndim = 3 if args.three_d else 2
    if (args.val_images is None) != (args.val_masks is None):
        raise CLIError("give both --val-images and --val-masks, or neither")
    if not 0 <= args.val_fraction < 1:
        raise CLIError(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    kw: dict[str, Any] = dict(epochs=args.epochs, steps_per_epoch=args.steps,
                              batch_size=args.batch_size, learning_rate=args.lr,
                              augment=not args.no_augment, n_rays=args.rays or None)
    if args.grid:
        kw["grid"] = _ints(args.grid, ndim, "grid")
    try:
        model = train_from_pairs(
            args.images, args.masks, ndim=ndim, val_images=args.val_images, val_masks=args.val_masks,
            val_fraction=args.val_fraction, seed=args.seed,
            patch_size=_ints(args.patch_size, ndim, "patch-size"), fit_patch=args.patch_size is None,
            device=args.device,
            log=lambda line: print(line, file=sys.stderr), show_progress=not args.quiet, **kw)
    except (FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    try:
        model.save(args.model, overwrite=args.overwrite)
    except (OSError, ValueError) as exc:  # DestinationError is a ValueError
        raise _write_error(exc) if isinstance(exc, OSError) else CLIError(str(exc)) from None
    h = model.history
    msg = f"saved {args.model}; thresholds prob={model.thresholds['prob']:.3f} nms={model.thresholds['nms']:.2f}"
    if h.get("val_f1"):
        b = h["best_epoch"][0]
        msg += f"; best epoch {b}: validation F1@0.5 {h['val_f1'][b - 1]:.3f}, accuracy {h['val_accuracy'][b - 1]:.3f}"
    else:
        msg += " (no validation data: thresholds not optimised)"
    print(msg)
    if args.plot:
        try:
            model.plot_history(args.plot)
        except OSError as exc:
            raise _write_error(exc) from None
    return 0


# ------------------------------------------------------------------------------ import

def _import(args: argparse.Namespace) -> int:
    import warnings

    from ij_bridge.model_files import DestinationError, check_destination
    from ij_bridge.stardist.model import StarDistBase
    from ij_bridge.stardist.original import is_original_model

    try:
        check_destination(args.model, overwrite=args.overwrite, kind="--model",
                          folder=args.model.suffix.lower() != ".zip", markers=("config.json",))
    except DestinationError as exc:
        raise CLIError(str(exc)) from None
    from ..stardist.fiji_models import is_fiji_model_name
    from ..stardist.savedmodel import is_savedmodel

    fiji_name = not args.src.exists() and is_fiji_model_name(str(args.src))  # $IJ_BRIDGE_FIJI/_MODELS
    if not args.src.exists() and not fiji_name:
        raise CLIError(f"{args.src} not found; give the original model's folder, its .zip or a "
                       "bioimage.io package")
    if args.weights is None and not fiji_name and not is_savedmodel(args.src) \
            and not is_original_model(args.src):
        raise CLIError(f"{args.src} is not a model of the original StarDist (no original config.json, "
                       "weights .h5 or bioimage.io rdf.yaml); an ij-bridge model needs no import")
    for name, v in (("prob", args.prob), ("nms", args.nms)):
        if v is not None and not 0 < v < 1:
            raise CLIError(f"--{name} must lie in (0, 1), got {v}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = StarDistBase.load(str(args.src) if fiji_name else args.src, device="cpu",
                                      weights=args.weights)
        except (FileNotFoundError, ValueError) as exc:
            raise CLIError(str(exc)) from None
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    for name, v in (("prob", args.prob), ("nms", args.nms)):
        if v is not None:
            model.thresholds[name] = float(v)
            model.provenance["thresholds_from"] = "the command line"
    try:
        model.save(args.model, overwrite=args.overwrite)
    except OSError as exc:
        raise _write_error(exc) from None
    c = model.config
    print(f"imported {args.src} -> {args.model}: {type(model).__name__}, "
          f"{c.original['backbone']} backbone, {c.n_rays} rays, grid {c.grid}, {c.n_channels} channel(s), "
          f"thresholds prob={model.thresholds['prob']:.3f} nms={model.thresholds['nms']:.2f}")
    return 0


# ----------------------------------------------------------------------------- predict

def _predict(args: argparse.Namespace) -> int:
    from ij_bridge.io import imread, imwrite, write_rois, write_table
    from ij_bridge.model_files import DestinationError, check_output_folder, staged_group

    from ..workflows.stardist import load_model, segment

    files = collect_tiffs(args.inputs)
    try:  # every destination is checked before the model is loaded and any image is segmented
        check_output_folder(args.output, files)
    except DestinationError as exc:
        raise CLIError(str(exc)) from None
    outputs = {path: [args.output / f"{path.stem}_labels.tif", args.output / f"{path.stem}_rois.zip",
                      args.output / f"{path.stem}_objects.csv"] for path in files}
    stems: dict[str, Path] = {}
    for path in files:
        if path.stem in stems:
            raise CLIError(f"inputs {stems[path.stem]} and {path} have the same name; their outputs "
                           "would collide - segment them into separate --output folders")
        stems[path.stem] = path
        exist = [str(o) for o in outputs[path] if o.exists()]
        if exist and not args.overwrite:
            raise CLIError(f"output exists: {exist[0]} (pass --overwrite to replace the outputs)")
    if args.exclude < 0:
        raise CLIError(f"--exclude must be >= 0 pixels, got {args.exclude}")
    spec = args.model or (DEFAULT_MODEL_3D if args.three_d else DEFAULT_MODEL)
    try:  # --3d without --model: the bundled 3D model (or one line saying it is missing)
        model = load_model("" if args.three_d and not args.model else spec,
                           3 if args.three_d and not args.model else None, fiji=args.fiji,
                           device=args.device, stand_in=False, what=f"--model {spec}",
                           log=lambda line: print(line, file=sys.stderr))
    except (FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    if args.three_d and model.ndim != 3:
        raise CLIError(f"--model {spec} is a 2D model but --3d asks for a 3D one: give a 3D model, "
                       "or leave out --3d to segment each slice with the 2D model")
    n_tiles = _ints(args.tiles, model.ndim, "tiles")
    from ..workflows import big as _big

    for path in files:
        outs = outputs[path]
        try:  # a whole-slide-sized plane goes block by block (ij_bridge.workflows.big)
            info = _big.tiff_info(path)
        except Exception:  # unreadable: imread below says why
            info = None
        if info is not None and _big.use_big_stardist(info, model, args.big):
            try:
                n = _big.segment_file_big(
                    path, model, outs, overwrite=args.overwrite, prob_thresh=args.prob, nms_thresh=args.nms,
                    normalize=not args.no_normalize, percentiles=(args.low, args.high),
                    block_size=args.block_size, exclude_border=args.exclude, show_progress=not args.quiet,
                    info=info, log=lambda line: print(line, file=sys.stderr))
            except ValueError as exc:
                raise CLIError(f"{path}: {exc}" if str(path) not in str(exc) else str(exc)) from None
            except OSError as exc:
                raise _write_error(exc) from None
            print(f"{path.name}: {n} object(s), block by block -> {outs[0].name}, "
                  f"{outs[1].name if n else '(no ROIs)'}, {outs[2].name}")
            continue
        try:
            da = imread(path)
        except Exception as exc:  # unreadable file: a user error
            raise CLIError(f"cannot read {path}: {exc}") from None
        try:
            seg = segment(da, model, prob_thresh=args.prob, nms_thresh=args.nms, n_tiles=n_tiles,
                          normalize=not args.no_normalize, percentiles=(args.low, args.high),
                          exclude_border=args.exclude, show_progress=not args.quiet, name=str(path),
                          log=lambda line: print(line, file=sys.stderr))
        except ValueError as exc:
            raise CLIError(f"{path}: {exc}" if str(path) not in str(exc) else str(exc)) from None
        rois = seg.rois()
        # the three outputs are one set: all are written, then renamed into place together;
        # with --overwrite, a _rois.zip of an earlier run is removed when this run finds no objects
        try:
            with staged_group(outs, overwrite=args.overwrite) as tmps:
                imwrite(tmps[0], seg.labels, overwrite=True)
                if rois:
                    write_rois(tmps[1], rois, overwrite=True)
                write_table(tmps[2], seg.table, overwrite=True)
        except OSError as exc:
            raise _write_error(exc) from None
        print(f"{path.name}: {seg.n_objects} object(s) -> {outs[0].name}, "
              f"{outs[1].name if rois else '(no ROIs)'}, {outs[2].name}")
    return 0
