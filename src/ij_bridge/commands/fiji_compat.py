"""Fiji StarDist macros, unchanged, on the torch StarDist.

The StarDist Fiji plugin records its runs as::

    run("Command From Macro", "command=[de.csbdresden.stardist.StarDist2D], args=['input':'blobs.gif',
        'modelChoice':'Versatile (fluorescent nuclei)', 'normalizeInput':'true', 'percentileBottom':'1.0',
        'percentileTop':'99.8', 'probThresh':'0.5', 'nmsThresh':'0.4', 'outputType':'Both', 'nTiles':'1',
        'excludeBoundary':'2', 'roiPosition':'Automatic', 'verbose':'false', 'showCsbdeepProgress':'false',
        'showProbAndDist':'false'], process=[false]");

(``args`` is a JSON-like map with single quotes, read by the plugin with Gson;
backslashes in values are doubled.) Where that plugin is absent, this module
provides a ``Command From Macro`` command that runs "StarDist 2D (torch)"
with the same parameters:

=======================  =============================================================
plugin argument          torch StarDist
=======================  =============================================================
``input``                ``input=`` (the image with that title; default: active image)
``modelChoice``          the plugin's three models, read from its jar in
                         ``$IJ_BRIDGE_FIJI`` (Fiji.app) or from ``$IJ_BRIDGE_MODELS``
                         (:mod:`ij_bridge.stardist.fiji_models`); without them,
                         'Versatile (fluorescent nuclei)' runs the bundled model
                         ``stardist_nuclei2d`` (trained by this project, *not* the
                         plugin's weights - a note says so in the Log) and the
                         other two are an error saying how to point at them;
                         'Model (.zip) from File': ``modelFile`` (an ij-bridge
                         model, an original one, or a TF SavedModel zip);
                         any other choice: an error naming the options
``modelFile``            ``model=`` (with 'Model (.zip) from File')
``normalizeInput``       ``normalize``
``percentileBottom/Top`` ``low=`` / ``high=``
``probThresh``           ``probability=``
``nmsThresh``            ``overlap=``
``outputType``           ``output=`` ('ROI Manager', 'Label Image', 'Both')
``nTiles``               ``tiles=`` (the plugin's total tile count becomes tiles per
                         axis: ceil(sqrt(nTiles)))
``excludeBoundary``      ``exclude=``
``roiPosition``          ``position=``
``verbose``              thresholds and counts in the Log
``showCsbdeepProgress``  accepted (progress always shows in ImageJ's status bar)
``showProbAndDist``      "Probability/Score Image" and "Distance Image" windows (2D images)
=======================  =============================================================

As in the plugin, the label image is titled "Label Image" and the ROI Manager
is emptied before the new ROIs are added. Set ``IJ_BRIDGE_STARDIST_COMPAT=off``
to leave ``Command From Macro`` alone (e.g. in a Fiji that has the original
plugin). The switch is read when the commands are installed
(:func:`ij_bridge.commands.install_commands`, which every macro run and
``run_command`` calls): :func:`register_compat_command` registers the command,
or withdraws it when the switch is off.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from ..imagej._java import jc
from .registry import CommandError, String, _withdraw_command, command, run_command

__all__ = ["parse_args", "stardist_options", "register_compat_command", "COMPAT_COMMAND",
           "STARDIST_CLASS", "ENV_COMPAT"]

COMPAT_COMMAND = "Command From Macro"
STARDIST_CLASS = "de.csbdresden.stardist.StarDist2D"
TORCH_COMMAND = "StarDist 2D (torch)"
LABEL_TITLE = "Label Image"            # the plugin's label image title
PROB_TITLE = "Probability/Score Image"
DIST_TITLE = "Distance Image"

MODEL_VERSATILE = "Versatile (fluorescent nuclei)"
MODEL_FILE = "Model (.zip) from File"
MODEL_URL = "Model (.zip) from URL"
OTHER_PLUGIN_MODELS = ("Versatile (H&E nuclei)", "DSB 2018 (from StarDist 2D paper)")

KNOWN_ARGS = {
    "input", "modelChoice", "modelFile", "modelUrl", "normalizeInput", "percentileBottom",
    "percentileTop", "probThresh", "nmsThresh", "outputType", "nTiles", "excludeBoundary",
    "roiPosition", "verbose", "showCsbdeepProgress", "showProbAndDist",
}
OUTPUT_ARGS = {"prob", "dist", "label"}  # the plugin's outputs: accepted and ignored, like the plugin
DEFAULTS = {  # the plugin's defaults
    "modelChoice": MODEL_VERSATILE, "normalizeInput": "true", "percentileBottom": "1.0",
    "percentileTop": "99.8", "probThresh": "0.5", "nmsThresh": "0.4", "outputType": "Both",
    "nTiles": "1", "excludeBoundary": "2", "roiPosition": "Automatic", "verbose": "false",
    "showCsbdeepProgress": "false", "showProbAndDist": "false",
}


# --------------------------------------------------------------------------- parsing
def parse_args(text: str) -> dict[str, str]:
    """Parse the plugin's ``args=[...]`` map: ``'key':'value', ...`` (quotes ' or ").

    Values are JSON strings (``\\\\``, ``\\'``, ``\\n``, ``\\uXXXX`` escapes) or bare
    words/numbers, as Gson's lenient reader accepts them.

    >>> parse_args("'input':'blobs.gif', 'nTiles':'1'")
    {'input': 'blobs.gif', 'nTiles': '1'}
    """
    out: dict[str, str] = {}
    i, n = 0, len(text)

    def skip_ws(i: int) -> int:
        while i < n and text[i].isspace():
            i += 1
        return i

    def token(i: int) -> tuple[str, int]:
        i = skip_ws(i)
        if i >= n:
            raise CommandError(f"args=[{text}]: a key or value is missing at the end")
        q = text[i]
        if q in "'\"":
            j, buf = i + 1, []
            while j < n and text[j] != q:
                if text[j] == "\\" and j + 1 < n:
                    esc = text[j + 1]
                    if esc == "u" and j + 5 < n:
                        buf.append(chr(int(text[j + 2:j + 6], 16)))
                        j += 6
                        continue
                    buf.append({"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}.get(esc, esc))
                    j += 2
                    continue
                buf.append(text[j])
                j += 1
            if j >= n:
                raise CommandError(f"args=[{text}]: unterminated quote starting at {text[i:i + 20]!r}")
            return "".join(buf), j + 1
        j = i
        while j < n and text[j] not in ",:" and not text[j].isspace():
            j += 1
        return text[i:j], j

    i = skip_ws(i)
    if text[i:i + 1] == "{" and text.rstrip().endswith("}"):
        text = text.strip()[1:-1]
        n = len(text)
        i = 0
    while True:
        i = skip_ws(i)
        if i >= n:
            break
        key, i = token(i)
        i = skip_ws(i)
        if i >= n or text[i] != ":":
            raise CommandError(f"args=[{text}]: expected ':' after {key!r}")
        value, i = token(i + 1)
        out[key] = value
        i = skip_ws(i)
        if i < n:
            if text[i] != ",":
                raise CommandError(f"args=[{text}]: expected ',' after the value of {key!r}")
            i += 1
    return out


def _bool(args: dict[str, str], key: str) -> bool:
    v = str(args.get(key, DEFAULTS.get(key, "false"))).strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no", ""):
        return False
    raise CommandError(f"'{key}':'{args[key]}' must be 'true' or 'false'")


def _number(args: dict[str, str], key: str, integer: bool = False) -> float:
    v = str(args.get(key, DEFAULTS[key])).strip()
    try:
        x = float(v)
    except ValueError:
        raise CommandError(f"'{key}':'{v}' must be a number") from None
    if integer:
        if x != int(x):
            raise CommandError(f"'{key}':'{v}' must be a whole number")
        return int(x)
    return x


def _check_model_file(path: str) -> str:
    p = Path(path).expanduser()
    if not path:
        raise CommandError(f"'modelChoice':'{MODEL_FILE}' needs 'modelFile':'/path/to/model.zip'")
    if not p.exists():
        raise CommandError(f"modelFile {path!r} does not exist")
    # the plugin's TF SavedModel zips are read without TensorFlow (ij_bridge.stardist.savedmodel)
    return str(p)


def _quote(value: str) -> str:
    from .registry import quote_option

    try:
        return quote_option(value)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def stardist_options(args: dict[str, str]) -> tuple[str, list[str]]:
    """Translate the plugin's arguments into "StarDist 2D (torch)" options.

    Returns
    -------
    options : str
        Macro options for ``run("StarDist 2D (torch)", options)``.
    notes : list of str
        Lines for the Log (model substitution).

    Raises
    ------
    CommandError
        For an argument the plugin does not have (naming the closest one), and
        for values outside the plugin's choices.
    """
    import difflib

    notes: list[str] = []
    unknown = sorted(set(args) - KNOWN_ARGS - OUTPUT_ARGS)
    if unknown:  # a misspelt argument would silently run with the default
        key = unknown[0]
        close = difflib.get_close_matches(key, sorted(KNOWN_ARGS), n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise CommandError(f"the StarDist plugin has no argument '{key}'{hint}; its arguments are: "
                           + ", ".join(f"'{k}'" for k in sorted(KNOWN_ARGS)))
    choice = args.get("modelChoice", DEFAULTS["modelChoice"])
    from ..stardist.fiji_models import FIJI_MODELS, not_found_message, resolve_fiji_model

    try:  # the plugin's own models, from $IJ_BRIDGE_FIJI (its jar) or $IJ_BRIDGE_MODELS
        found = resolve_fiji_model(choice) if choice in FIJI_MODELS else None
    except FileNotFoundError as exc:
        raise CommandError(str(exc)) from None
    if found is not None:
        model = choice  # "StarDist 2D (torch)" resolves the name again and logs where it read it
    elif choice == MODEL_VERSATILE:
        model = "stardist_nuclei2d"
        notes.append(
            f"'{MODEL_VERSATILE}' runs IJ Bridge's bundled fluorescent-nuclei model (stardist_nuclei2d), "
            "trained by the ij-bridge project - not the original StarDist weights; results will differ "
            "somewhat from the Fiji plugin's. To run the plugin's own model, set IJ_BRIDGE_FIJI="
            "/path/to/Fiji.app (with the StarDist update site) or IJ_BRIDGE_MODELS=/path/to/folder "
            "holding dsb2018_heavy_augment.zip before starting"
        )
    elif choice == MODEL_FILE:
        model = _check_model_file(args.get("modelFile", ""))
    elif choice == MODEL_URL:
        raise CommandError(
            f"'modelChoice':'{MODEL_URL}' is not supported: IJ Bridge does not download models. Save the "
            f"model file and use 'modelChoice':'{MODEL_FILE}', 'modelFile':'/path/to/model.zip'"
        )
    elif choice in OTHER_PLUGIN_MODELS:
        raise CommandError(
            f"'modelChoice':'{choice}' is a model of the original StarDist plugin that IJ Bridge does not "
            f"have here ({not_found_message(choice).split(': ', 1)[1]}). Or use '{MODEL_VERSATILE}' or "
            f"'{MODEL_FILE}' with 'modelFile' set to a model file"
        )
    else:
        raise CommandError(
            f"'modelChoice':'{choice}' is not a StarDist model choice; supported here: "
            f"'{MODEL_VERSATILE}', '{MODEL_FILE}'"
        )
    normalize = _bool(args, "normalizeInput")
    low, high = _number(args, "percentileBottom"), _number(args, "percentileTop")
    prob, nms = _number(args, "probThresh"), _number(args, "nmsThresh")
    n_tiles = _number(args, "nTiles", integer=True)
    if n_tiles < 1:
        raise CommandError(f"'nTiles':'{n_tiles}' must be at least 1")
    tiles = math.isqrt(n_tiles - 1) + 1 if n_tiles > 1 else 1  # per axis: ceil(sqrt(total))
    exclude = _number(args, "excludeBoundary", integer=True)
    output = args.get("outputType", DEFAULTS["outputType"])
    if output not in ("ROI Manager", "Label Image", "Both"):
        raise CommandError(f"'outputType':'{output}' must be 'ROI Manager', 'Label Image' or 'Both'")
    position = args.get("roiPosition", DEFAULTS["roiPosition"])
    if position not in ("Automatic", "Stack", "Hyperstack"):
        raise CommandError(f"'roiPosition':'{position}' must be 'Automatic', 'Stack' or 'Hyperstack'")
    parts = []
    if "input" in args and args["input"]:
        parts.append(f"input={_quote(args['input'])}")
    parts.append(f"model={_quote(model)}")
    if normalize:
        parts.append("normalize")
    parts += [f"low={low!r}", f"high={high!r}", f"probability={prob!r}", f"overlap={nms!r}",
              f"output={_quote(output)}", f"tiles={tiles}", f"exclude={exclude}",
              f"position={_quote(position)}"]
    return " ".join(parts), notes


# --------------------------------------------------------------------------- command
#: The switch: ``off`` (or 0, false, no) leaves ``Command From Macro`` to ImageJ/Fiji.
ENV_COMPAT = "IJ_BRIDGE_STARDIST_COMPAT"


def _enabled() -> bool:
    return os.environ.get(ENV_COMPAT, "on").strip().lower() not in ("off", "0", "false", "no")


def _image_ids() -> set[int]:
    from ..imagej.windows import image_ids

    return set(image_ids())


def _show_prob_and_dist(ctx, imp, args: dict[str, str]) -> None:
    """The plugin's "Show CNN Output": probability and distance maps (grid resolution)."""
    import numpy as np

    from ._common import to_xarray
    from .stardist import load_model

    da = to_xarray(imp)
    if any(d in da.dims for d in ("t", "z", "c", "s")):
        ctx.log("showProbAndDist: only for single 2D images (as in the plugin); not shown")
        return
    choice = args.get("modelChoice", DEFAULTS["modelChoice"])
    model = load_model(choice if choice in (MODEL_VERSATILE, *OTHER_PLUGIN_MODELS)
                       else args.get("modelFile", ""), 2)
    prob, dist = model.predict(np.asarray(da.transpose("y", "x").values),
                               normalize=_bool(args, "normalizeInput"),
                               percentiles=(_number(args, "percentileBottom"), _number(args, "percentileTop")))
    import xarray as xr

    from ..imagej.images import to_imageplus

    gy = da.sizes["y"] / prob.shape[0]
    gx = da.sizes["x"] / prob.shape[1]
    cal = da.attrs.get("calibration") or {}
    units = dict(da.attrs.get("units") or {})
    sy = float(cal.get("pixel_height", 1.0)) * gy
    sx = float(cal.get("pixel_width", 1.0)) * gx
    coords = {"y": np.arange(prob.shape[0]) * sy, "x": np.arange(prob.shape[1]) * sx}
    p_imp = to_imageplus(xr.DataArray(prob.astype(np.float32), dims=("y", "x"), coords=coords,
                                      attrs={"units": units}), title=PROB_TITLE)
    p_imp.show()
    d = np.moveaxis(dist.astype(np.float32), -1, 0)
    d_imp = to_imageplus(xr.DataArray(d, dims=("c", "y", "x"), coords=coords, attrs={"units": units}),
                         title=DIST_TITLE)
    d_imp.show()


def _original_plugin_present() -> bool:
    try:
        jc.IJ.getClassLoader().loadClass(STARDIST_CLASS)
        return True
    except Exception:  # ClassNotFoundException: the plugin is absent
        return False


_COMPAT_PARAMS = (
    String("command", STARDIST_CLASS, label="command (class name)"),
    String("args", "", label="args (the plugin's parameters)"),
    String("process", "false", label="process (pre/post-processing)"),
)


def command_from_macro(ctx, command, args, process):
    """``run("Command From Macro", "command=[...StarDist2D], args=[...]")`` without the plugin."""
    IJ = jc.IJ
    WindowManager = jc.WindowManager
    name = command.strip()
    if name not in (STARDIST_CLASS, "StarDist 2D"):
        raise CommandError(
            f"command=[{name}] is not available: IJ Bridge provides only "
            f"{STARDIST_CLASS} (StarDist 2D) for 'Command From Macro'"
        )
    parsed = parse_args(args)
    options, notes = stardist_options(parsed)
    if _original_plugin_present():
        notes.insert(0, "the original StarDist plugin is installed too; IJ Bridge's torch StarDist runs "
                        "instead (set IJ_BRIDGE_STARDIST_COMPAT=off before starting to use the original)")
    for note in notes:
        IJ.log(f"StarDist 2D (IJ Bridge): {note}")
    imp = None
    if parsed.get("input"):
        from ..imagej.windows import image_by_title

        imp = image_by_title(parsed["input"])
        if imp is None:
            raise CommandError(f"'input':'{parsed['input']}': there is no open image with this title")
    else:
        imp = WindowManager.getCurrentImage()
        if imp is None:
            raise CommandError("StarDist needs an image: open one, or give 'input':'title'")
    verbose = _bool(parsed, "verbose")
    if verbose:
        IJ.log(f"StarDist 2D (IJ Bridge): run(\"{TORCH_COMMAND}\", \"{options}\")")
    before = _image_ids()
    run_command(TORCH_COMMAND, options, imp)
    new = [WindowManager.getImage(i) for i in sorted(_image_ids() - before, key=abs)]
    labels = [x for x in new if x is not None]
    if labels:  # the plugin's title, so that selectWindow("Label Image") keeps working
        labels[-1].setTitle(LABEL_TITLE)
    if _bool(parsed, "showProbAndDist"):
        _show_prob_and_dist(ctx, imp, parsed)
    if verbose:
        rm = jc.RoiManager.getInstance()
        count = int(rm.getCount()) if rm is not None else 0
        IJ.log(f"StarDist 2D (IJ Bridge): {count} ROIs in the ROI Manager"
               + (f", label image {LABEL_TITLE!r}" if labels else ""))


def register_compat_command(enabled: bool | None = None) -> bool:
    """Register ``Command From Macro``, or withdraw it, as the switch says now.

    Parameters
    ----------
    enabled : bool, optional
        Default: ``$IJ_BRIDGE_STARDIST_COMPAT`` read now (on unless ``off``).

    Returns
    -------
    bool
        Whether the command is registered.
    """
    if enabled is None:
        enabled = _enabled()
    if enabled:
        command(COMPAT_COMMAND, params=_COMPAT_PARAMS, menu=None,
                help="Runs recorded StarDist Fiji plugin macros on the torch StarDist.")(command_from_macro)
    else:
        _withdraw_command(COMPAT_COMMAND)
    return enabled
