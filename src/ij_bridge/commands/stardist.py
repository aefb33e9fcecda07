"""Commands "StarDist 2D (torch)", "StarDist 3D (torch)" and "StarDist Train (torch)".

Only ImagePlus <-> xarray, dialogs and display live here; segmenting, training and
model loading are :mod:`ij_bridge.workflows.stardist`, shared with the command line.
"""

from __future__ import annotations

from pathlib import Path

from ..workflows import stardist as workflow
from ..workflows.stardist import DEFAULT_MODEL, DEFAULT_MODEL_3D  # noqa: F401  (kept importable from here)
from ._common import (LABEL_SUFFIX, OUTPUTS, POSITIONS, base_title, directory_or_file,
                      parse_threshold, roi_position, set_torch_threads, show_labels, tiles_tuple,
                      to_xarray)
from .registry import (Checkbox, Choice, CommandError, Directory, ImageTitle, Integer, ModelChoice,
                       Number, String, command)

#: errors of the use-case layer whose messages are written for users
_USER_ERRORS = (ValueError, FileNotFoundError)


def load_model(spec: str, ndim: int, fiji: str = "", log=None):
    """A StarDist model from a folder, a .zip or a bundled name, cached per file version.

    A path that does not exist, or a model of the other dimensionality, is an error
    (never a fallback to the bundled model); the message names the macro-level fix.
    The StarDist Fiji plugin's model names (``Versatile (fluorescent nuclei)``, ...)
    are looked up in ``fiji`` (Fiji.app or a models folder), ``$IJ_BRIDGE_FIJI`` or
    ``$IJ_BRIDGE_MODELS`` (:mod:`ij_bridge.stardist.fiji_models`); ``log`` gets a line
    saying which model runs. See :func:`ij_bridge.workflows.stardist.load_model`.
    """
    from ..stardist.fiji_models import is_fiji_model_name

    from ..stardist.model import bundled_models

    command = "StarDist 2D (torch)" if ndim == 2 else "StarDist 3D (torch)"
    spec = str(spec).strip()
    if spec in ("", DEFAULT_MODEL_3D) and ndim == 3 and DEFAULT_MODEL_3D not in bundled_models():
        raise CommandError(f"this installation has no bundled 3D model ({DEFAULT_MODEL_3D}): give "
                           "model= a folder or .zip of a 3D model, e.g. one trained with "
                           "StarDist Train (torch) on z-stacks")
    spec = spec or (DEFAULT_MODEL_3D if ndim == 3 else DEFAULT_MODEL)
    fiji_name = is_fiji_model_name(spec) and not Path(spec).expanduser().exists()
    try:
        model = workflow.load_model(spec, ndim if fiji_name else None, fiji=fiji or None, log=log,
                                    what=f"model=[{spec}]")
    except _USER_ERRORS as exc:
        raise CommandError(str(exc)) from None
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


def _segment(ctx, imp, model, normalize, low, high, probability, overlap, tiles, exclude):
    """:func:`ij_bridge.workflows.stardist.segment` on ``imp``, with the Log line and progress."""
    prob = parse_threshold(probability, "probability")
    nms = parse_threshold(overlap, "overlap")
    used_prob = model.thresholds["prob"] if prob is None else prob
    used_nms = model.thresholds["nms"] if nms is None else nms
    ctx.log(f"model {getattr(model, 'source', '?')}, probability {used_prob:g}, overlap {used_nms:g}, "
            f"normalize {'%g-%g %%' % (low, high) if normalize else 'off'}, tiles {tiles or 'auto'}")
    return workflow.segment(to_xarray(imp), model, prob_thresh=prob, nms_thresh=nms,
                            normalize=normalize, percentiles=(low, high),
                            n_tiles=tiles_tuple(tiles, model.ndim), exclude_border=exclude,
                            progress=ctx.progress, name=repr(str(imp.getTitle())), log=ctx.log)


def _check_z_stack(imp) -> None:
    """A 3D model needs z slices: say so (and how to fix swapped slices/frames) before any work."""
    if int(imp.getNSlices()) > 1:
        return
    title = str(imp.getTitle())
    frames = int(imp.getNFrames())
    hint = (f"; if its {frames} frames are z slices, swap them with Image > Properties... "
            f"(slices={frames}, frames=1)" if frames > 1 else "")
    raise CommandError(f"{title!r} is not a z-stack (it has 1 slice){hint}; StarDist 3D (torch) "
                       f"segments z-stacks - segment 2D images with run(\"StarDist 2D (torch)\", "
                       f"\"input=[{title}] ...\")")


def _outputs(ctx, imp, seg, output, position, table):
    """Show the label image, fill the ROI Manager (the model's polygons; 3D: each object's
    outline in each slice, with its z (and t) hyperstack position) and, on request, the
    objects table."""
    labels = seg.labels
    dims = [str(d) for d in labels.dims]
    if output in ("Label Image", "Both"):
        lab_imp = show_labels(labels.values, to_xarray(imp), dims, base_title(imp) + LABEL_SUFFIX)
        ctx.log(f"label image {lab_imp.getTitle()!r}")
    if output in ("ROI Manager", "Both"):
        from ..imagej.rois import set_roi_manager_rois

        if seg.polygons is not None:
            rois = seg.rois(position=roi_position(position, imp) if len(dims) > 2 else None)
        else:  # 3D: each object's outline in each slice; Automatic = (c, z, t) positions
            rois = seg.rois(position="hyperstack" if position == "Automatic"
                            else roi_position(position, imp))
        set_roi_manager_rois(rois, reset=True)
        ctx.log(f"{len(rois)} ROIs in the ROI Manager")
    if table:
        from ..imagej.tables import dataframe_to_results
        from ..measure import to_imagej_columns

        # ImageJ's headings (Label, Area, X, Y...), so that getResult("Area", i) works
        title = base_title(imp) + "-objects"
        dataframe_to_results(to_imagej_columns(seg.table), title=title, show=True)
        ctx.log(f"objects table {title!r}")


_SEGMENT_PARAMS = [
    Checkbox("normalize", True, label="normalize image (percentiles)"),
    Number("low", 1.0, digits=1, minimum=0, maximum=100, label="low percentile"),
    Number("high", 99.8, digits=1, minimum=0, maximum=100, label="high percentile"),
    String("probability", "auto", label="probability threshold (0-1, auto = the model's)"),
    String("overlap", "auto", label="overlap threshold (NMS; 0-1, auto = the model's)"),
]
_TABLE = Checkbox("table", False, label="table of the objects (a Results window <title>-objects)")


@command("StarDist 2D (torch)", params=[
    ImageTitle("input", help="image to segment (default: the active image)"),
    ModelChoice("model", "stardist2d", DEFAULT_MODEL, label="model (folder, .zip or bundled name)"),
    *_SEGMENT_PARAMS,
    Choice("output", OUTPUTS, "Both", label="output type"),
    Integer("tiles", 1, minimum=0, label="tiles per axis (0 = automatic)"),
    Integer("exclude", 2, minimum=0, label="exclude objects centred this close to the border (pixels)"),
    Choice("position", POSITIONS, "Automatic", label="position of ROIs in stacks"),
    String("fiji", "", label="fiji (Fiji.app or a models folder, for the StarDist plugin's model names)"),
    _TABLE,
], help="StarDist nuclei segmentation of 2D images, 2D+time and stacks of 2D slices.",
    user_errors=_USER_ERRORS)
def stardist_2d_command(ctx, input, model, normalize, low, high, probability, overlap, output, tiles,
                        exclude, position, fiji, table):
    """Label image ``<title>-labels`` (calibration kept) and/or the model's polygon ROIs, each
    named after and carrying its object's label (as the StarDist Fiji plugin makes them)."""
    set_torch_threads()
    m = load_model(model, 2, fiji=fiji, log=ctx.log)
    seg = _segment(ctx, input, m, normalize, low, high, probability, overlap, tiles, exclude)
    counts = seg.counts
    ctx.log(f"{sum(counts)} objects" + (f" ({', '.join(map(str, counts))} per plane)" if len(counts) > 1 else ""))
    _outputs(ctx, input, seg, output, position, table)


@command("StarDist 3D (torch)", params=[
    ImageTitle("input", help="z-stack to segment (default: the active image)"),
    ModelChoice("model", "stardist3d", DEFAULT_MODEL_3D, label="model (folder or .zip of a 3D model)"),
    *_SEGMENT_PARAMS,
    Choice("output", OUTPUTS, "Label Image", label="output type (ROIs: one per object and slice)"),
    Integer("tiles", 1, minimum=0, label="tiles per axis in x and y (0 = automatic)"),
    Integer("exclude", 2, minimum=0, label="exclude objects centred this close to the x/y border (pixels)"),
    Choice("position", POSITIONS, "Automatic", label="position of ROIs (Automatic: slice and frame)"),
    _TABLE,
], help="StarDist segmentation of z-stacks (and z-stacks over time) with a 3D model.",
    user_errors=_USER_ERRORS)
def stardist_3d_command(ctx, input, model, normalize, low, high, probability, overlap, output, tiles,
                        exclude, position, table):
    """Label stack ``<title>-labels`` (calibration kept); on request one ROI per object and slice
    (named after and carrying its object's label, at its slice and frame) and the objects table."""
    set_torch_threads()
    _check_z_stack(input)
    m = load_model(model, 3)
    seg = _segment(ctx, input, m, normalize, low, high, probability, overlap, tiles, exclude)
    counts = seg.counts
    ctx.log(f"{sum(counts)} objects" + (f" ({', '.join(map(str, counts))} per frame)" if len(counts) > 1 else ""))
    _outputs(ctx, input, seg, output, position, table)


# --------------------------------------------------------------------------- training
@command("StarDist Train (torch)", params=[
    Directory("images", label="images (folder of .tif)"),
    Directory("masks", label="masks (folder of label .tif, same file names)"),
    String("model", "", label="model (output folder, or a .zip)"),
    Integer("epochs", 20, minimum=1),
    Integer("steps", 100, minimum=1, label="steps per epoch"),
    Integer("patch", 128, minimum=16, label="patch size (pixels, x and y)"),
    Integer("rays", 0, minimum=0, label="rays (0 = 32 in 2D, 96 in 3D)"),
    Integer("seed", 0, label="seed (validation split and training)"),
], help="Train a StarDist model on image / label-image pairs (2D, or 3D for z-stacks).",
    user_errors=_USER_ERRORS)
def stardist_train_command(ctx, images, masks, model, epochs, steps, patch, rays, seed):
    """15 % of the pairs (at least one, when there are two or more) validate and tune thresholds;
    z-stacks train a 3D model with the anisotropy of their voxel size."""
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
    net = workflow.train_from_pairs(images_dir, masks_dir, seed=seed, patch_size=patch,
                                    n_rays=rays or None, epochs=epochs, steps_per_epoch=steps,
                                    log=ctx.log, progress=ctx.progress)
    path = net.save(out, overwrite=True)
    ctx.log(f"model saved to {path} (thresholds probability {net.thresholds['prob']:g}, "
            f"overlap {net.thresholds['nms']:g})")
    from ..workflows.models import remember_model  # offered first by the segmenting dialogs

    remember_model("stardist3d" if net.ndim == 3 else "stardist2d", path, log=ctx.log)
