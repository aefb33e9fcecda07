"""Macros that give a stock Fiji/ImageJ the IJ Bridge steps through the ``ij-bridge`` CLI.

:func:`install_macros` writes, into a ``Fiji.app`` or an ImageJ folder,

* ``plugins/IJ Bridge/<Command>_(ij-bridge).ijm``: one command per IJ Bridge
  step, listed under *Plugins > IJ Bridge* (ImageJ installs the ``.ijm`` files
  of a ``plugins/`` sub-folder as commands, underscores in the file name
  becoming spaces; the sub-menu is the folder name as it is, hence the space
  in the folder's name), e.g.
  ``run("StarDist 2D (ij-bridge)", "model=[stardist_nuclei2d] normalize ...")``;
* ``macros/toolsets/IJ Bridge.ijm``: a tool bar set with the same steps.

Each command shows a dialog generated from the IJ Bridge command's own
parameters (same labels, so the same macro keys: a recorded
``run("StarDist 2D (torch)", options)`` works with ``(ij-bridge)`` in its name
instead), saves a copy of the active image as a calibrated TIFF in a temporary
folder, and calls ``ij-bridge run-command`` through ImageJ's ``exec()`` with the
absolute path of the ``ij-bridge`` executable baked in. The results come back
into ImageJ: images (label image, denoised image) with their calibration, the
ROI Manager from ``rois.zip``, the Results from ``results.csv``, the bridge's
Log lines. A failure of the CLI (its last output line carries the status)
stops the macro with the error message, as an ImageJ error.

With the Macro Recorder open, a run from the menu records one line,
``run("StarDist 2D (ij-bridge)", "model=... measure");``, and nothing of the
exchange: the files are read back through calls that ImageJ does not record
(``open()`` rather than ``roiManager("Open", ...)``, whose path in the
temporary folder would be gone on replay).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

__all__ = ["install_macros", "macro_for", "STEPS", "Step"]

SUFFIX = "(ij-bridge)"
PLUGIN_DIR = "IJ Bridge"
#: the folder of installations before the menu was named "IJ Bridge" (replaced with --force)
OLD_PLUGIN_DIR = "IJ_Bridge"
TOOLSET_NAME = "IJ Bridge.ijm"


@dataclass(frozen=True)
class Step:
    """An installed command: the IJ Bridge command it runs, and what follows it."""

    command: str                    # the IJ Bridge command, e.g. "StarDist 2D (torch)"
    title: str                      # the installed command's name, without the suffix
    measure: bool = False           # offer "measure" (Measure Labels on the label image)
    icon: str = "T1d13?"            # tool icon (ImageJ's icon language)


STEPS: tuple[Step, ...] = (
    Step("StarDist 2D (torch)", "StarDist 2D", measure=True, icon="C037T0d12ST7d12DC900Tcd12*"),
    Step("N2V Predict (torch)", "N2V Predict", icon="C037T0d12NT7d122Tdd12V"),
    Step("N2V Train + Predict (torch)", "N2V Train + Predict", icon="C900T0d12NT7d122Tdd12V"),
    Step("N2V Train (torch)", "N2V Train", icon="C090T0d12NT7d122Tdd12V"),
)


def _str(text: str) -> str:
    """A macro string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _file_name(title: str) -> str:
    return title.replace(" ", "_").replace("+", "plus").replace("/", "_") + f"_{SUFFIX}.ijm"


_RUNTIME = r'''
// ---- IJ Bridge exchange with the ij-bridge CLI (generated; do not edit) ----
function ijbFail(message) {
    showStatus("");
    instance = "" + call("ij.IJ.getInstance");  // "ij.ImageJ[...]" with an ImageJ window
    if (indexOf(instance, "ImageJ") >= 0) {
        // an ImageJ error: the error dialog, and a macro that called this one stops too
        call("ij.IJ.error", "IJ Bridge", message);
        // IJ.error ends by throwing "Macro canceled", which call() shows in an "Exception"
        // window: close it, the abort itself has been registered
        if (isOpen("Exception")) { selectWindow("Exception"); run("Close"); }
        exit;
    }
    // command-line ImageJ (-batch): no one could close a dialog; the message goes to the output
    exit("IJ Bridge: " + message);
}

function ijbCall(exe, steps, title) {
    // steps: command names and option strings, alternating, separated by "\n"
    if (!File.exists(exe))
        ijbFail("the ij-bridge executable is missing:\n" + exe + "\nReinstall with `ij-bridge install-macros`.");
    // d2s: getTime() alone would print as 1.7962E12
    tmp = getDirectory("temp") + "ij-bridge-" + d2s(getTime(), 0) + "-" + d2s(floor(random * 1000000), 0) + File.separator;
    File.makeDirectory(tmp);
    input = tmp + "input.tif";
    out = tmp + "out";
    // a copy of the whole image (not just a selection), so that the user's image keeps its title and path
    id = getImageID();
    hadSelection = selectionType() != -1;
    if (hadSelection) run("Select None");
    wasBatch = is("Batch Mode");
    setBatchMode(true);
    run("Duplicate...", "title=ij-bridge-input duplicate");
    saveAs("Tiff", input);
    close();
    selectImage(id);
    if (hadSelection) run("Restore Selection");
    if (!wasBatch) setBatchMode(false);
    parts = split(steps, "\n");
    args = newArray("run-command", "--input", input, "--output", out, "--title", title);
    for (i = 0; i + 1 < parts.length; i += 2) {
        if (parts[i + 1] == "-") parts[i + 1] = "";
        args = Array.concat(args, newArray(parts[i], parts[i + 1]));
    }
    showStatus("IJ Bridge: " + parts[0] + " ...");
    if (args.length == 9) output = exec(exe, args[0], args[1], args[2], args[3], args[4], args[5], args[6], args[7], args[8]);
    else if (args.length == 11) output = exec(exe, args[0], args[1], args[2], args[3], args[4], args[5], args[6], args[7], args[8], args[9], args[10]);
    else ijbFail("internal error: " + args.length + " arguments");
    lines = split(output, "\n");
    status = "";
    for (i = lines.length - 1; i >= 0 && status == ""; i--)
        if (startsWith(lines[i], "ij-bridge-status:")) status = lines[i];
    for (i = 0; i < lines.length; i++)
        if (startsWith(lines[i], "log\t")) print(substring(lines[i], 4));
    if (status == "") {
        ijbCleanUp(tmp);
        ijbFail("ij-bridge did not answer (" + exe + "):\n" + output);
    }
    if (status != "ij-bridge-status: 0") {
        ijbCleanUp(tmp);
        message = substring(status, lengthOf("ij-bridge-status: "));
        space = indexOf(message, " ");
        if (space >= 0) message = substring(message, space + 1);
        message = "" + parts[0] + " failed:\n" + message;  // (a leading array element confuses the parser)
        ijbFail(message);
    }
    ijbLoad(out + File.separator, lines);
    ijbCleanUp(tmp);
    done = "IJ Bridge: " + parts[0] + " done";
    showStatus(done);
}

function ijbLoad(dir, lines) {
    loaded = "";
    for (i = 0; i < lines.length; i++) {
        f = split(lines[i], "\t");
        if (f.length < 2) continue;
        if (f[0] == "image") {
            open(dir + f[1]);
            name = f[1];
            if (endsWith(name, ".tif")) name = substring(name, 0, lengthOf(name) - 4);
            rename(name);
            getPixelSize(unit, pw, ph);
            loaded = loaded + "image '" + name + "' (" + pw + " " + unit + "/pixel); ";
        } else if (f[0] == "rois") {
            // the real ROI Manager: in batch mode a macro command would get a private one
            // that ImageJ drops when this macro ends
            run("ROI Manager...");
            roiManager("reset");
            // with a window, open() and not roiManager("Open", path): the Recorder writes
            // down the latter (with this temporary path, gone on replay), while open() of a
            // ROI set fills the ROI Manager unrecorded. In batch mode (no Recorder there)
            // open() would fill a ROI Manager private to a nested macro
            if (is("Batch Mode")) roiManager("Open", dir + f[1]);
            else open(dir + f[1]);
            loaded = loaded + roiManager("count") + " ROIs in the ROI Manager; ";
        } else if (f[0] == "results") {
            ijbResults(dir + f[1]);
            loaded = loaded + nResults + " rows in Results; ";
        }
    }
    if (loaded != "") print("IJ Bridge: loaded " + substring(loaded, 0, lengthOf(loaded) - 2));
}

function ijbSplitCsv(line) {
    // one CSV line (RFC 4180 quotes) into cells
    cells = newArray(0);
    cell = "";
    quoted = false;
    i = 0;
    n = lengthOf(line);
    while (i < n) {
        c = substring(line, i, i + 1);
        if (quoted) {
            if (c == "\"") {
                if (i + 1 < n && substring(line, i + 1, i + 2) == "\"") { cell = cell + "\""; i++; }
                else quoted = false;
            } else cell = cell + c;
        } else if (c == "\"") quoted = true;
        else if (c == ",") { cells = Array.concat(cells, cell); cell = ""; }
        else cell = cell + c;
        i++;
    }
    return Array.concat(cells, cell);
}

function ijbResults(path) {
    // a CSV written by ij-bridge (ImageJ's layout) into the Results table
    text = File.openAsString(path);
    rows = split(text, "\n");
    run("Clear Results");
    if (rows.length < 1) return;
    head = ijbSplitCsv(rows[0]);
    for (r = 1; r < rows.length; r++) {
        if (lengthOf(String.trim(rows[r])) == 0) continue;
        v = ijbSplitCsv(rows[r]);
        for (j = 0; j < head.length && j < v.length; j++) {
            if (head[j] == " " || head[j] == "") continue;
            x = parseFloat(v[j]);
            if (head[j] == "Label" || (isNaN(x) && v[j] != "NaN")) setResult(head[j], r - 1, v[j]);
            else setResult(head[j], r - 1, x);
        }
    }
    updateResults();
}

function ijbCleanUp(tmp) {
    dirs = newArray(tmp + "out" + File.separator, tmp);
    for (d = 0; d < dirs.length; d++) {
        if (!File.isDirectory(dirs[d])) continue;
        list = getFileList(dirs[d]);
        for (i = 0; i < list.length; i++)
            if (!endsWith(list[i], "/")) ok = File.delete(dirs[d] + list[i]);
        ok = File.delete(dirs[d]);
    }
}
'''


def _dialog_code(cmd, step: Step) -> tuple[list[str], list[str], list[str]]:
    """Macro lines that show the command's dialog, read it back and build its options."""
    add, read, build = [], [], []
    first_image = True
    for i, p in enumerate(cmd.params):
        var = f"v{i}"
        label = _str(p.label)
        if p.kind == "message":
            add.append(f"Dialog.addMessage({label});")
        elif p.kind == "image":
            if first_image and not p.optional:
                first_image = False
                build.append(f'opts = opts + " {p.key}=[" + title + "]";')
            # other images cannot travel with the active one: their default (None/active) applies
        elif p.kind in ("string", "directory", "file", "model"):  # a model: its name or path as text
            fn = {"string": "addString", "directory": "addDirectory", "file": "addFile",
                  "model": "addString"}[p.kind]
            width = ", 24" if p.kind in ("string", "model") else ""
            add.append(f"Dialog.{fn}({label}, {_str(str(p.default))}{width});")
            read.append(f"{var} = Dialog.getString();")
            build.append(f'opts = opts + " {p.key}=[" + {var} + "]";')
        elif p.kind in ("number", "integer"):
            digits = 0 if p.kind == "integer" else max(int(p.digits), 1)
            add.append(f"Dialog.addNumber({label}, {float(p.default)!r}, {digits}, 8, \"\");")
            read.append(f"{var} = Dialog.getNumber();")
            build.append(f'opts = opts + " {p.key}=" + {var};')
        elif p.kind == "checkbox":
            add.append(f"Dialog.addCheckbox({label}, {'true' if p.default else 'false'});")
            read.append(f"{var} = Dialog.getCheckbox();")
            build.append(f'if ({var}) opts = opts + " {p.key}";')
        elif p.kind == "choice":
            items = ", ".join(_str(c) for c in p.choices)
            add.append(f"Dialog.addChoice({label}, newArray({items}), {_str(str(p.default))});")
            read.append(f"{var} = Dialog.getChoice();")
            build.append(f'opts = opts + " {p.key}=[" + {var} + "]";')
    if step.measure:
        add.append('Dialog.addCheckbox("measure objects (Measure Labels into the Results table)", false);')
        read.append("measure = Dialog.getCheckbox();")
    return add, read, build


def macro_for(step: Step, executable: str) -> str:
    """The ImageJ macro source of one installed command."""
    from ..commands import load_builtin_commands, registered_commands

    load_builtin_commands()
    commands = registered_commands()
    if step.command not in commands:
        raise ValueError(f"IJ Bridge has no command {step.command!r}; known: {sorted(commands)}")
    cmd = commands[step.command]
    add, read, build = _dialog_code(cmd, step)
    name = f"{step.title} {SUFFIX}"
    lines = [
        f"// {name}: runs the IJ Bridge command \"{step.command}\" through the ij-bridge CLI.",
        "// Installed by `ij-bridge install-macros`; the executable path below is this installation's.",
        f"// From a macro: run({_str(name)}, \"key=value ...\") with the keys of \"{step.command}\".",
        "",
        f"exe = {_str(executable)};",
        "if (nImages == 0) ijbFail(\"open an image first\");",
        "title = getTitle();",
        f"Dialog.create({_str(name)});",
        *add,
        "Dialog.show();",
        *read,
        'opts = "";',
        *build,
        "while (startsWith(opts, \" \")) opts = substring(opts, 1);",
        'if (opts == "") opts = "-";',
        f"steps = {_str(step.command)} + \"\\n\" + opts;",
    ]
    if step.measure:
        lines += [
            "if (measure) {",
            '    if (indexOf(opts, "output=[ROI Manager]") >= 0) ijbFail("measure needs the label image: '
            'choose output Label Image or Both");',
            '    steps = steps + "\\nMeasure Labels\\nintensity=[" + title + "]";',
            "}",
        ]
    lines += ["ijbCall(exe, steps, title);", ""]
    return "\n".join(lines) + _RUNTIME


def _toolset(executable: str) -> str:
    parts = [
        "// IJ Bridge toolset: the ij-bridge steps on the tool bar (More Tools menu, >>).",
        f"// Calls the commands installed under Plugins > IJ Bridge; ij-bridge: {executable}",
        "",
    ]
    for step in STEPS:
        name = f"{step.title} {SUFFIX}"
        parts.append(f'macro "{name} Action Tool - {step.icon}" {{\n    run({_str(name)});\n}}\n')
    return "\n".join(parts)


def install_macros(target: str | os.PathLike, executable: str, *, force: bool = False,
                   steps: Sequence[Step] = STEPS) -> list[Path]:
    """Install the IJ Bridge macros into a Fiji.app or ImageJ folder.

    Parameters
    ----------
    target : path
        A ``Fiji.app`` (or ImageJ) folder: it must have a ``plugins`` folder.
    executable : str
        Absolute path of the ``ij-bridge`` executable the macros will call.
    force : bool
        Overwrite files from an earlier installation.

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    FileNotFoundError
        ``target`` or its ``plugins`` folder does not exist, or ``executable`` is missing.
    FileExistsError
        A file exists already and ``force`` is False.
    """
    root = Path(target).expanduser()
    if root.name == "ImageJ-linux64" or root.is_file():
        root = root.parent
    if not root.is_dir():
        raise FileNotFoundError(f"{str(root)!r} does not exist; give the Fiji.app or ImageJ folder")
    if not (root / "plugins").is_dir():
        raise FileNotFoundError(f"{str(root)!r} has no plugins folder: give the Fiji.app (or ImageJ) folder "
                                "that holds plugins/ and macros/")
    exe = Path(executable)
    if not exe.is_absolute() or not exe.is_file():
        raise FileNotFoundError(f"the ij-bridge executable {executable!r} must be an existing absolute path")
    files = {root / "plugins" / PLUGIN_DIR / _file_name(s.title): macro_for(s, str(exe)) for s in steps}
    files[root / "macros" / "toolsets" / TOOLSET_NAME] = _toolset(str(exe))
    # an earlier installation's plugins/IJ_Bridge/ (menu shown as "IJ_Bridge"): its commands
    # would be listed twice, so --force replaces them; only files of ours are removed
    old_dir = root / "plugins" / OLD_PLUGIN_DIR
    old = [old_dir / _file_name(s.title) for s in STEPS if (old_dir / _file_name(s.title)).is_file()]
    existing = [p for p in files if p.exists()] + old
    if existing and not force:
        raise FileExistsError(f"{len(existing)} file(s) exist already, e.g. {str(existing[0])!r}; "
                              "pass --force to replace them")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    for path in old:
        path.unlink()
    if old and not any(old_dir.iterdir()):
        old_dir.rmdir()
    return list(files)
