"""Commands "StarDist 2D (torch)", "StarDist 3D (torch)" and "StarDist Train (torch)"."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from ._common import (LABEL_SUFFIX, OUTPUTS, POSITIONS, base_title, directory_or_file,
                      parse_threshold, roi_position, set_torch_threads, show_labels, tiles_tuple,
                      to_xarray)
from .registry import (Checkbox, Choice, CommandError, Directory, ImageTitle, Integer, Number,
                       String, command)

DEFAULT_MODEL = "stardist_nuclei2d"

_cache: dict[tuple, Any] = {}
_cache_lock = threading.Lock()


def _load_fiji_model(name: str, fiji: str, log):
    """The StarDist Fiji plugin's model ``name`` from ``fiji`` (Fiji.app or a models folder),
    $IJ_BRIDGE_FIJI or $IJ_BRIDGE_MODELS; the bundled model (with a Log note) if absent."""
    from ..stardist.fiji_models import (FIJI_MODELS, fallback_note, not_found_message, place_kwargs,
                                        resolve_fiji_model)
    from ..stardist.model import StarDistBase
    from ..stardist.savedmodel import load_stardist_savedmodel

    where = place_kwargs(fiji)
    fiji_dir, models_dir = where.get("fiji"), where.get("models")
    try:
        ref = resolve_fiji_model(name, fiji=fiji_dir, models=models_dir)
    except FileNotFoundError as exc:
        raise CommandError(str(exc)) from None
    if ref is None:
        note = fallback_note(name, DEFAULT_MODEL, fiji=fiji_dir, models=models_dir)
        if FIJI_MODELS.get(name) is not FIJI_MODELS["Versatile (fluorescent nuclei)"]:
            raise CommandError(not_found_message(name, fiji=fiji_dir, models=models_dir))
        if log is not None:
            log(note)
        return load_model(DEFAULT_MODEL, 2)
    key = (2, "fiji", ref.stamp())
    with _cache_lock:
        model = _cache.get(key)
        if model is None:
            try:
                if ref.is_savedmodel:
                    model = load_stardist_savedmodel(ref.location, fiji_model=ref.model)
                else:
                    model = StarDistBase.load(ref.location)
            except (FileNotFoundError, ValueError) as exc:
                raise CommandError(f"model=[{name}]: {exc}") from None
            model.source = f"'{name}' ({ref.location})"
            _cache.clear()
            _cache[key] = model
    if model.ndim != 2:
        raise CommandError(f"model=[{name}] at {ref.location} is not a 2D model")
    if log is not None:
        log(f"'{name}': the StarDist Fiji plugin's own model, read from {ref.location}")
    return model


def load_model(spec: str, ndim: int, fiji: str = "", log=None):
    """A StarDist model from a folder, a .zip or a bundled name, cached per file version.

    A path that does not exist, or a model of the other dimensionality, is an error
    (never a fallback to the bundled model); the message names the macro-level fix.
    The StarDist Fiji plugin's model names (``Versatile (fluorescent nuclei)``, ...)
    are looked up in ``fiji`` (Fiji.app or a models folder), ``$IJ_BRIDGE_FIJI`` or
    ``$IJ_BRIDGE_MODELS`` (:mod:`ij_bridge.stardist.fiji_models`); ``log`` gets a line
    saying which model runs.
    """
    from ..stardist.fiji_models import is_fiji_model_name
    from ..stardist.model import StarDistBase, bundled_models

    command = "StarDist 2D (torch)" if ndim == 2 else "StarDist 3D (torch)"
    spec = spec.strip() or (DEFAULT_MODEL if ndim == 2 else "")
    if not spec:
        raise CommandError("model= is required for StarDist 3D: give a model folder or .zip "
                           "trained with StarDist Train (torch) on z-stacks")
    p = Path(spec).expanduser()
    if not p.exists() and is_fiji_model_name(spec):
        if ndim != 2:
            raise CommandError(f"model=[{spec}] is a 2D model of the StarDist Fiji plugin; "
                               f"{command} needs a 3D model")
        return _load_fiji_model(spec, fiji, log)
    bundled = list(bundled_models())
    stamp = None
    if p.exists():
        files = [p] if p.is_file() else sorted(p.glob("*"))
        stamp = tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files if f.is_file())
        key = (ndim, str(p.resolve()), stamp)
    elif spec in bundled:
        key = (ndim, spec, None)
    else:
        names = f" or a bundled model ({', '.join(bundled)})" if bundled else ""
        raise CommandError(f"model=[{spec}] does not exist: give the folder or .zip of a model saved "
                           f"by ij-bridge{names}")
    with _cache_lock:
        model = _cache.get(key)
        if model is None:
            try:
                model = StarDistBase.load(str(p) if p.exists() else spec)
            except (FileNotFoundError, ValueError) as exc:
                raise CommandError(f"model=[{spec}]: {exc}") from None
            _cache.clear()  # keep one model: they are large
            _cache[key] = model
    if model.ndim != ndim:
        if ndim == 3:
            raise CommandError(
                f"model=[{spec}] is a 2D model; {command} needs a 3D model: segment 2D images (or "
                f"each slice) with run(\"StarDist 2D (torch)\", \"model=[{spec}] ...\"), or train a "
                "3D model on z-stacks with run(\"StarDist Train (torch)\", ...)")
        raise CommandError(
            f"model=[{spec}] is a 3D model; {command} needs a 2D model: segment z-stacks with "
            f"run(\"StarDist 3D (torch)\", \"model=[{spec}] ...\"), or give a 2D model "
            f"({DEFAULT_MODEL} is bundled)")
    return model


def _exclude_border(labels: np.ndarray, points: np.ndarray, border: int) -> np.ndarray:
    """Remove objects whose centre lies within ``border`` pixels of the image edge; relabel 1..n."""
    if border <= 0 or labels.max() == 0:
        return labels
    h, w = labels.shape[-2:]
    pts = np.asarray(points).reshape(-1, 2)
    keep = ((pts[:, 0] >= border) & (pts[:, 0] < h - border)
            & (pts[:, 1] >= border) & (pts[:, 1] < w - border))
    top = max(int(labels.max()), len(pts))
    lut = np.zeros(top + 1, dtype=np.int32)
    kept = np.flatnonzero(keep) + 1
    lut[kept] = np.arange(1, len(kept) + 1, dtype=np.int32)
    return lut[labels]


def _series(da, model_ndim: int, n_channels: int, title: str) -> tuple[list[str], Any]:
    """Split an image into the planes/volumes a model sees: (series dims, image with c last)."""
    if "s" in da.dims:  # RGB: its samples are the channels
        da = da.rename(s="c")
    if "c" in da.dims and n_channels == 1:
        raise CommandError(f"{title!r} has {da.sizes['c']} channels but the model takes one: select "
                           "a channel first (Image > Duplicate... with channels=n)")
    if "c" not in da.dims and n_channels > 1:
        raise CommandError(f"the model takes {n_channels} channels but {title!r} has one")
    if "c" in da.dims and da.sizes["c"] != n_channels:
        raise CommandError(f"the model takes {n_channels} channels but {title!r} has {da.sizes['c']}")
    if model_ndim == 2:
        series = [d for d in ("t", "z") if d in da.dims]
        if len(series) > 1:
            raise CommandError(f"{title!r} has both slices and frames; StarDist 2D segments 2D images, "
                               "2D+time or a stack of 2D slices (use StarDist 3D for volumes)")
    else:
        if "z" not in da.dims:
            raise CommandError(f"{title!r} is not a z-stack; StarDist 3D needs slices (use StarDist 2D)")
        series = [d for d in ("t",) if d in da.dims]
    return series, da


def _segment(ctx, imp, model, ndim, normalize, low, high, probability, overlap, tiles, exclude):
    """Labels for every plane (2D) or volume (3D) of ``imp``; returns labels, dims, template, counts."""
    if normalize and not 0 <= low < high <= 100:
        raise CommandError(f"percentiles must satisfy 0 <= low < high <= 100, got low={low:g} high={high:g}")
    prob = parse_threshold(probability, "probability")
    nms = parse_threshold(overlap, "overlap")
    da = to_xarray(imp)
    series, da = _series(da, ndim, int(model.config.n_channels), str(imp.getTitle()))
    spatial = ["y", "x"] if ndim == 2 else ["z", "y", "x"]
    used_prob = model.thresholds["prob"] if prob is None else prob
    used_nms = model.thresholds["nms"] if nms is None else nms
    ctx.log(f"model {getattr(model, 'source', '?')}, probability {used_prob:g}, overlap {used_nms:g}, "
            f"normalize {'%g-%g %%' % (low, high) if normalize else 'off'}, tiles {tiles or 'auto'}")
    n = da.sizes[series[0]] if series else 1
    out = np.zeros((n,) + tuple(da.sizes[d] for d in spatial), dtype=np.int32)
    counts = []
    for i in range(n):
        plane = da.isel({series[0]: i}) if series else da
        order = spatial + (["c"] if "c" in plane.dims else [])
        plane = plane.transpose(*order)

        def sub(done, total, message, i=i):
            ctx.progress(i * 1000 + int(1000 * done / max(total, 1)), n * 1000,
                         f"{series[0]} {i + 1}/{n}: {message}" if series else message)

        try:
            labels, details = model.predict_instances(
                plane, prob_thresh=prob, nms_thresh=nms, n_tiles=tiles_tuple(tiles, ndim),
                normalize=normalize, percentiles=(low, high), progress=sub)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if ndim == 2:
            labels = _exclude_border(labels, details["points"], exclude)
        out[i] = labels
        counts.append(int(labels.max()))
    template = da.isel(c=0, drop=True) if "c" in da.dims else da
    labels = out if series else out[0]
    return labels, series + spatial, template, counts


def _outputs(ctx, imp, labels, dims, template, output, position):
    if output in ("Label Image", "Both"):
        lab_imp = show_labels(labels, template, dims, base_title(imp) + LABEL_SUFFIX)
        ctx.log(f"label image {lab_imp.getTitle()!r}")
    if output in ("ROI Manager", "Both"):
        from ..imagej.rois import labels_to_rois, set_roi_manager_rois

        pos = roi_position(position, imp) if len(dims) > 2 else None
        rois = labels_to_rois(labels, dims=tuple(dims), position=pos)
        set_roi_manager_rois(rois, reset=True)
        ctx.log(f"{len(rois)} ROIs in the ROI Manager")


_SEGMENT_PARAMS = [
    Checkbox("normalize", True, label="normalize image (percentiles)"),
    Number("low", 1.0, digits=1, minimum=0, maximum=100, label="low percentile"),
    Number("high", 99.8, digits=1, minimum=0, maximum=100, label="high percentile"),
    String("probability", "auto", label="probability threshold (0-1, auto = the model's)"),
    String("overlap", "auto", label="overlap threshold (NMS; 0-1, auto = the model's)"),
]


@command("StarDist 2D (torch)", params=[
    ImageTitle("input", help="image to segment (default: the active image)"),
    String("model", DEFAULT_MODEL, label="model (folder, .zip or bundled name)"),
    *_SEGMENT_PARAMS,
    Choice("output", OUTPUTS, "Both", label="output type"),
    Integer("tiles", 1, minimum=0, label="tiles per axis (0 = automatic)"),
    Integer("exclude", 2, minimum=0, label="exclude objects centred this close to the border (pixels)"),
    Choice("position", POSITIONS, "Automatic", label="position of ROIs in stacks"),
    String("fiji", "", label="fiji (Fiji.app or a models folder, for the StarDist plugin's model names)"),
], help="StarDist nuclei segmentation of 2D images, 2D+time and stacks of 2D slices.")
def stardist_2d_command(ctx, input, model, normalize, low, high, probability, overlap, output, tiles,
                        exclude, position, fiji):
    """Label image ``<title>-labels`` (calibration kept) and/or named, positioned ROIs."""
    set_torch_threads()
    m = load_model(model, 2, fiji=fiji, log=ctx.log)
    labels, dims, template, counts = _segment(ctx, input, m, 2, normalize, low, high, probability,
                                              overlap, tiles, exclude)
    ctx.log(f"{sum(counts)} objects" + (f" ({', '.join(map(str, counts))} per plane)" if len(counts) > 1 else ""))
    _outputs(ctx, input, labels, dims, template, output, position)


@command("StarDist 3D (torch)", params=[
    ImageTitle("input", help="z-stack to segment (default: the active image)"),
    String("model", "", label="model (folder or .zip of a 3D model)"),
    *_SEGMENT_PARAMS,
    Choice("output", OUTPUTS, "Label Image", label="output type (ROIs: one per object and slice)"),
    Integer("tiles", 1, minimum=0, label="tiles per axis in x and y (0 = automatic)"),
    Choice("position", POSITIONS, "Automatic", label="position of ROIs"),
], help="StarDist segmentation of z-stacks (and z-stacks over time) with a 3D model.")
def stardist_3d_command(ctx, input, model, normalize, low, high, probability, overlap, output, tiles,
                        position):
    """Label image ``<title>-labels`` (calibration kept); per-slice ROIs on request."""
    set_torch_threads()
    m = load_model(model, 3)
    labels, dims, template, counts = _segment(ctx, input, m, 3, normalize, low, high, probability,
                                              overlap, tiles, 0)
    ctx.log(f"{sum(counts)} objects")
    _outputs(ctx, input, labels, dims, template, output, position)


# --------------------------------------------------------------------------- training
_TIFF = (".tif", ".tiff")


def _pairs(images: Path, masks: Path) -> list[tuple[Path, Path]]:
    imgs = {p.name: p for p in sorted(images.iterdir()) if p.suffix.lower() in _TIFF}
    msks = {p.name: p for p in sorted(masks.iterdir()) if p.suffix.lower() in _TIFF}
    if not imgs:
        raise CommandError(f"no .tif images in images=[{images}]")
    missing = sorted(set(imgs) - set(msks))
    if missing:
        raise CommandError(f"{len(missing)} image(s) have no mask of the same file name in "
                           f"masks=[{masks}]: {', '.join(missing[:5])}")
    return [(imgs[k], msks[k]) for k in sorted(imgs)]


def _read_pair(ip: Path, mp: Path):
    from ..io import imread

    try:
        x, y = imread(ip), imread(mp)
    except Exception as exc:
        raise CommandError(f"cannot read {ip.name} or its mask: {exc}") from None
    for d in ("t",):
        if d in x.dims:
            raise CommandError(f"{ip.name} has time points; train on single 2D images or z-stacks")
    if "c" in y.dims:
        raise CommandError(f"mask {mp.name} has channels; a mask is one label image")
    sx = {d: x.sizes[d] for d in x.dims if d != "c"}
    sy = dict(y.sizes)
    if sx != sy:
        raise CommandError(f"{ip.name} {sx} and its mask {mp.name} {sy} differ in size; give each "
                           "image the label image of the same name and size")
    from ..stardist.geometry import check_label_image

    try:
        yv = check_label_image(np.asarray(y.values), f"mask {mp.name}")
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return x, yv.astype(np.int32)


def _floor(v: int, q: int) -> int:
    return (v // q) * q


@command("StarDist Train (torch)", params=[
    Directory("images", label="images (folder of .tif)"),
    Directory("masks", label="masks (folder of label .tif, same file names)"),
    String("model", "", label="model (output folder, or a .zip)"),
    Integer("epochs", 20, minimum=1),
    Integer("steps", 100, minimum=1, label="steps per epoch"),
    Integer("patch", 128, minimum=16, label="patch size (pixels, x and y)"),
    Integer("rays", 0, minimum=0, label="rays (0 = 32 in 2D, 96 in 3D)"),
], help="Train a StarDist model on image / label-image pairs (2D, or 3D for z-stacks).")
def stardist_train_command(ctx, images, masks, model, epochs, steps, patch, rays):
    """15 % of the pairs (at least one, when there are two or more) validate and tune thresholds."""
    from ..stardist import StarDist2D, StarDist3D, StarDistConfig

    set_torch_threads()
    images_dir = directory_or_file(images, "images")
    masks_dir = directory_or_file(masks, "masks")
    if not model:
        raise CommandError("model= is required: the folder (or .zip) where the model is saved")
    out = Path(model).expanduser()
    if not out.parent.exists():
        raise CommandError(f"the folder of model=[{model}] does not exist")
    # like ImageJ's own saves, a model saved there earlier is replaced (a folder we did not write never is);
    # a place that cannot take the model fails now, before training
    from ..model_files import DestinationError, check_destination

    try:
        check_destination(out, overwrite=True, kind="model", folder=out.suffix.lower() != ".zip",
                          markers=("config.json",))
    except DestinationError as exc:
        raise CommandError(str(exc)) from None
    pairs = _pairs(images_dir, masks_dir)
    data = [_read_pair(ip, mp) for ip, mp in pairs]
    ndims = {3 if "z" in x.dims else 2 for x, _ in data}
    if len(ndims) > 1:
        raise CommandError("the images mix 2D images and z-stacks; train 2D and 3D models separately")
    ndim = ndims.pop()
    channels = {x.sizes.get("c", 1) for x, _ in data}
    if len(channels) > 1:
        raise CommandError(f"the images have different channel counts {sorted(channels)}")
    n_channels = channels.pop()
    cls = StarDist2D if ndim == 2 else StarDist3D
    spatial = ["y", "x"] if ndim == 2 else ["z", "y", "x"]
    X = [x.transpose(*spatial, *(["c"] if "c" in x.dims else [])) for x, _ in data]
    Y = [y for _, y in data]
    probe = StarDistConfig(ndim=ndim)
    div = probe.divisor
    smallest = [min(int(x.sizes[d]) for x in X) for d in spatial]
    want = [patch, patch] if ndim == 2 else [max(div[0], patch // 4), patch, patch]
    size = [min(_floor(w, q), _floor(s, q)) for w, s, q in zip(want, smallest, div)]
    if any(s < q for s, q in zip(size, div)):
        raise CommandError(f"images of {dict(zip(spatial, smallest))} are too small for a {ndim}D "
                           f"model: each of {spatial} needs at least {div} pixels")
    if size[-2:] != want[-2:]:
        ctx.log(f"patch size reduced to {size} to fit the smallest image")
    cfg = StarDistConfig(ndim=ndim, n_rays=rays or None, n_channels=n_channels,
                         patch_size=tuple(size), epochs=epochs, steps_per_epoch=steps)
    validation = None
    if len(X) >= 2:
        rng = np.random.default_rng(0)
        order = rng.permutation(len(X))
        n_val = max(1, int(round(0.15 * len(X))))
        val, train = order[:n_val], order[n_val:]
        validation = ([X[i] for i in val], [Y[i] for i in val])
        X, Y = [X[i] for i in train], [Y[i] for i in train]
    ctx.log(f"training a {ndim}D model on {len(X)} image(s)"
            + (f", validating on {len(validation[0])}" if validation else " (no validation data)")
            + f": {epochs} epochs x {steps} steps, patch {size}, {cfg.n_rays} rays")
    net = cls(cfg)
    try:
        net.train(X, Y, validation_data=validation, progress=ctx.progress, show_progress=False,
                  optimize_thresholds=validation is not None)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    path = net.save(out, overwrite=True)
    ctx.log(f"model saved to {path} (thresholds probability {net.thresholds['prob']:g}, "
            f"overlap {net.thresholds['nms']:g})")
