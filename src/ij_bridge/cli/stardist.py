"""``ij-bridge stardist``: train StarDist models and segment TIFF files.

Examples::

    ij-bridge stardist train --images imgs/ --masks masks/ --model nuclei.zip --epochs 20
    ij-bridge stardist predict --model nuclei.zip a.tif more/ --output seg/
    ij-bridge stardist predict a.tif --output seg/          # bundled stardist_nuclei2d model
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from . import TIFF_SUFFIXES, CLIError, collect_tiffs

__all__ = ["register"]

DEFAULT_MODEL = "stardist_nuclei2d"


def register(subparsers: Any) -> None:
    """Add the ``stardist`` group with its ``train``, ``predict`` and ``import`` sub-commands."""
    grp = subparsers.add_parser("stardist", help="StarDist nucleus segmentation (train, predict)",
                                description="Star-convex instance segmentation (StarDist) in PyTorch.")
    sub = grp.add_subparsers(dest="stardist_command", metavar="SUBCOMMAND")
    grp.set_defaults(func=lambda args: (grp.print_help(), 1)[1])

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
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--no-augment", action="store_true", help="no flips/rotations/intensity changes")
    tr.add_argument("--plot", type=Path, help="write the training history PNG here")
    tr.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=_train)

    pr = sub.add_parser("predict", help="segment images with a trained model",
                        description="Writes per input <name>_labels.tif (calibrated label image), "
                                    "<name>_rois.zip (ImageJ ROIs) and <name>_objects.csv.")
    pr.add_argument("inputs", nargs="+", metavar="INPUT", help="TIFF files or folders of them")
    pr.add_argument("--model", default=DEFAULT_MODEL,
                    help=f"model folder, .zip or bundled name (default: {DEFAULT_MODEL})")
    pr.add_argument("--output", required=True, type=Path, help="output folder")
    pr.add_argument("--prob", type=float, help="probability threshold (default: the model's)")
    pr.add_argument("--nms", type=float, help="overlap (NMS) threshold (default: the model's)")
    pr.add_argument("--tiles", help="tiles per axis, e.g. 2,2 (default: automatic)")
    pr.add_argument("--no-normalize", action="store_true", help="input is already normalised")
    pr.add_argument("--low", type=float, default=1.0, help="normalisation low percentile (1)")
    pr.add_argument("--high", type=float, default=99.8, help="normalisation high percentile (99.8)")
    pr.add_argument("--device", help="cpu, cuda ... (default: cuda if available)")
    pr.add_argument("--fiji", help="Fiji.app (or a folder of models) where --model names the StarDist "
                                   "Fiji plugin's model, e.g. 'Versatile (fluorescent nuclei)' "
                                   "(default: $IJ_BRIDGE_FIJI, $IJ_BRIDGE_MODELS)")
    pr.add_argument("--overwrite", action="store_true",
                    help="replace existing outputs (each input's set of outputs is replaced as a whole)")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
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


def _tiffs(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise CLIError(f"{what} folder not found: {folder}")
    files = {f.name: f for f in sorted(folder.iterdir()) if f.suffix.lower() in TIFF_SUFFIXES}
    if not files:
        raise CLIError(f"no .tif files in {what} folder {folder}")
    return files


def _pairs(images: Path, masks: Path) -> list[tuple[Path, Path]]:
    imgs = _tiffs(images, "images")
    msks = _tiffs(masks, "masks")
    missing = sorted(set(imgs) - set(msks))
    if missing:
        raise CLIError(f"{len(missing)} image(s) have no mask of the same name in {masks}: "
                       f"{', '.join(missing[:5])}")
    extra = sorted(set(msks) - set(imgs))
    if extra:
        print(f"note: ignoring {len(extra)} mask(s) without an image: {', '.join(extra[:5])}",
              file=sys.stderr)
    return [(imgs[k], msks[k]) for k in sorted(imgs)]


def _read(path: Path):
    from ij_bridge.io import imread

    try:
        da = imread(path)
    except Exception as exc:  # unreadable file: a user error
        raise CLIError(f"cannot read {path}: {exc}") from None
    if "s" in da.dims:  # RGB: its samples are the model's channels (never planes to loop over)
        da = da.rename(s="c").drop_vars("c", errors="ignore")
    return da


def _image_for_model(da, ndim: int, path: Path):
    """A DataArray with only the model's spatial dims (+ c); errors name the fix."""
    dims = [str(d) for d in da.dims]
    spatial = ["y", "x"] if ndim == 2 else ["z", "y", "x"]
    missing = [d for d in spatial if d not in dims]
    if missing:
        raise CLIError(f"{path}: dims {tuple(dims)} lack {missing} for a {ndim}D model")
    extra = [d for d in dims if d not in spatial + ["c"] and da.sizes[d] > 1]
    if extra:
        raise CLIError(f"{path}: dims {tuple(dims)}; training needs single {ndim}D images "
                       f"(extra dims {extra}){' - use --3d for z-stacks' if 'z' in extra else ''}")
    drop = [d for d in dims if d not in spatial + ["c"]]
    return da.squeeze(drop) if drop else da


def _load_pairs(pairs, ndim):
    X, Y = [], []
    for ip, mp in pairs:
        X.append(_image_for_model(_read(ip), ndim, ip))
        y = _image_for_model(_read(mp), ndim, mp)
        if "c" in y.dims:
            raise CLIError(f"{mp}: a label image must have one channel, got {y.sizes['c']}")
        _check_pair(X[-1], y, ip, mp, ndim)
        Y.append(y.values)
    return X, Y


def _check_pair(x, y, ip: Path, mp: Path, ndim: int) -> None:
    """An image and its mask must agree in size, and the mask must be a label image (names both files)."""
    from ij_bridge.stardist.geometry import check_label_image

    spatial = ["y", "x"] if ndim == 2 else ["z", "y", "x"]
    sx = {d: int(x.sizes[d]) for d in spatial}
    sy = {d: int(y.sizes[d]) for d in spatial}
    if sx != sy:
        raise CLIError(f"{ip.name} and its mask {mp} differ in size ({sx} vs {sy}); give each image "
                       "the label image of the same name and size")
    try:
        check_label_image(y.values, f"mask {mp}")
    except ValueError as exc:
        raise CLIError(str(exc)) from None


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
    import numpy as np

    from ij_bridge.stardist import StarDist2D, StarDist3D, StarDistConfig

    _check_model_destination(args)
    ndim = 3 if args.three_d else 2
    pairs = _pairs(args.images, args.masks)
    if (args.val_images is None) != (args.val_masks is None):
        raise CLIError("give both --val-images and --val-masks, or neither")
    if args.val_images is not None:
        val_pairs = _pairs(args.val_images, args.val_masks)
    else:
        if not 0 <= args.val_fraction < 1:
            raise CLIError(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
        n_val = int(round(args.val_fraction * len(pairs)))
        if len(pairs) >= 2 and args.val_fraction > 0:
            n_val = max(1, n_val)
        rng = np.random.default_rng(args.seed)
        order = rng.permutation(len(pairs))
        val_pairs = [pairs[i] for i in sorted(order[:n_val])]
        pairs = [pairs[i] for i in sorted(order[n_val:])]
    X, Y = _load_pairs(pairs, ndim)
    Xv, Yv = _load_pairs(val_pairs, ndim) if val_pairs else ([], [])
    n_channels = int(X[0].sizes["c"]) if "c" in X[0].dims else 1
    kw: dict[str, Any] = dict(ndim=ndim, epochs=args.epochs, steps_per_epoch=args.steps,
                              batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed,
                              augment=not args.no_augment, n_channels=n_channels)
    if args.rays:
        kw["n_rays"] = args.rays
    if args.grid:
        kw["grid"] = _ints(args.grid, ndim, "grid")
    if args.patch_size:
        kw["patch_size"] = _ints(args.patch_size, ndim, "patch-size")
    if ndim == 3:
        sz = [float(abs(X[0].coords[d][1] - X[0].coords[d][0])) if d in X[0].coords and X[0].sizes[d] > 1
              else 1.0 for d in ("z", "y", "x")]
        if sz[0] != sz[1] or sz[0] != sz[2]:
            kw["anisotropy"] = tuple(s / min(sz) for s in sz)
    try:
        cfg = StarDistConfig(**kw)
        klass = StarDist3D if ndim == 3 else StarDist2D
        model = klass(cfg, device=args.device)
        print(f"training {klass.__name__} on {len(X)} image(s), validating on {len(Xv)}; "
              f"device {model.device}", file=sys.stderr)
        model.train(X, Y, validation_data=(Xv, Yv) if Xv else None, show_progress=not args.quiet)
    except ValueError as exc:
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



def _polygon_rois(coord, labels_ids, plane_tag, pos, n_digits):
    import numpy as np
    import roifile

    rois = []
    for c, lab in zip(coord, labels_ids):
        # (row, col) pixel-centre coordinates -> ImageJ (x, y), pixel centres at +0.5
        xy = np.stack([c[1] + 0.5, c[0] + 0.5], axis=1).astype(np.float32)
        roi = roifile.ImagejRoi.frompoints(xy)
        roi.roitype = roifile.ROI_TYPE.POLYGON
        roi.name = f"label-{int(lab):0{n_digits}d}{plane_tag}"
        for k, v in pos.items():
            setattr(roi, k, v)
        rois.append(roi)
    return rois


def _predict(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd
    import xarray as xr

    from ij_bridge.io import imwrite, write_rois, write_table
    from ij_bridge.measure import regionprops_table
    from ij_bridge.stardist.model import StarDistBase

    from ij_bridge.model_files import DestinationError, check_output_folder, staged_group

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
    try:
        from ..stardist.fiji_models import is_fiji_model_name, load_fiji_model, place_kwargs

        fiji_name = is_fiji_model_name(str(args.model)) and not Path(args.model).exists()
        if args.fiji and fiji_name:
            model = load_fiji_model(str(args.model), device=args.device, **place_kwargs(args.fiji))
        else:
            model = StarDistBase.load(args.model, device=args.device)
    except (FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    if fiji_name:
        print(f"model: the StarDist Fiji plugin's {model.source}, thresholds prob "
              f"{model.thresholds['prob']:g}, nms {model.thresholds['nms']:g}", file=sys.stderr)
    ndim = model.ndim
    n_tiles = _ints(args.tiles, ndim, "tiles")
    spatial = ["y", "x"] if ndim == 2 else ["z", "y", "x"]
    for path in files:
        outs = outputs[path]
        da = _read(path)
        dims = [str(d) for d in da.dims]
        missing = [d for d in spatial if d not in dims]
        if missing:
            raise CLIError(f"{path}: dims {tuple(dims)} lack {missing} for a {ndim}D model")
        loop = [d for d in dims if d not in spatial + ["c"]]
        if "c" in dims and da.sizes["c"] != model.config.n_channels:
            raise CLIError(f"{path}: {da.sizes['c']} channel(s) (RGB counts 3), the model expects "
                           f"{model.config.n_channels}: save the one channel to segment (or a grey "
                           "version of an RGB image) first, or use a model trained on as many channels")
        if "c" not in dims and model.config.n_channels != 1:
            raise CLIError(f"{path}: one channel, the model expects {model.config.n_channels}")
        loop_shape = [da.sizes[d] for d in loop]
        labels = np.zeros(loop_shape + [da.sizes[d] for d in spatial], np.int32)
        rois, rows = [], []
        n_planes = int(np.prod(loop_shape)) if loop else 1
        for k, idx in enumerate(np.ndindex(*loop_shape) if loop else [()]):
            plane = da.isel(dict(zip(loop, idx))) if loop else da
            try:
                lbl, det = model.predict_instances(
                    plane, prob_thresh=args.prob, nms_thresh=args.nms, n_tiles=n_tiles,
                    normalize=not args.no_normalize, percentiles=(args.low, args.high),
                    show_progress=not args.quiet and n_planes == 1)
            except ValueError as exc:
                raise CLIError(f"{path}: {exc}") from None
            labels[idx] = lbl
            ids = np.arange(1, len(det["prob"]) + 1)
            tag = "".join(f"-{d}{i + 1:03d}" for d, i in zip(loop, idx))
            if ndim == 2:
                pos: dict[str, int] = {}
                if len(loop) == 1:
                    pos["position"] = idx[0] + 1
                elif loop:
                    for d, i in zip(loop, idx):
                        if d in ("z", "t"):
                            pos[f"{d}_position"] = i + 1
                n_digits = max(4, len(str(len(ids))))
                present = np.unique(lbl)
                sel = np.isin(ids, present)
                rois += _polygon_rois(det["coord"][sel], ids[sel], tag, pos, n_digits)
            for j, lab in enumerate(ids):
                row = {d: i + 1 for d, i in zip(loop, idx)}
                row.update({"label": int(lab), "probability": float(det["prob"][j])})
                row.update({f"center_{a}_px": int(v) for a, v in zip(spatial, det["points"][j])})
                rows.append(row)
        coords = {d: da.coords[d] for d in loop + spatial if d in da.coords}
        # ImageJ has no 32-bit integer type: 16-bit when the labels fit, else 32-bit float (exact to 2**24)
        labels = labels.astype(np.uint16) if labels.max(initial=0) < 65536 else labels.astype(np.float32)
        out = xr.DataArray(labels, dims=loop + spatial, coords=coords,
                           attrs={k: v for k, v in da.attrs.items() if k in ("units", "calibration", "title")})
        table = pd.DataFrame(rows)
        if loop == [] and len(table):
            meas = regionprops_table(out)
            table = table.merge(meas, on="label", how="left")
        # the three outputs are one set: all are written, then renamed into place together;
        # with --overwrite, a _rois.zip of an earlier run is removed when this run finds no objects
        try:
            with staged_group(outs, overwrite=args.overwrite) as tmps:
                imwrite(tmps[0], out, overwrite=True)
                if rois:
                    write_rois(tmps[1], rois, overwrite=True)
                write_table(tmps[2], table, overwrite=True)
        except OSError as exc:
            raise _write_error(exc) from None
        n_obj = len(rows)
        print(f"{path.name}: {n_obj} object(s) -> {outs[0].name}, "
              f"{outs[1].name if rois else '(no ROIs)'}, {outs[2].name}")
    return 0
