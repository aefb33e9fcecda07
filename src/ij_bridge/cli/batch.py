"""``ij-bridge batch``, ``ij-bridge install-macros`` and ``ij-bridge run-command``.

* ``batch MACRO --input DIR --output DIR``: run a macro over a folder
  (:mod:`ij_bridge.batch`).
* ``install-macros PATH/TO/Fiji.app``: give a Fiji or ImageJ that was not
  started from Python the IJ Bridge steps, as macros that call this CLI
  (:mod:`ij_bridge.fiji_macros`).
* ``run-command NAME --input FILE --output DIR``: run one IJ Bridge command on
  an image file and save what it produced (label image, ROIs, Results) plus a
  manifest; the installed macros call it through ImageJ's ``exec()``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import CLIError

__all__ = ["register"]

STATUS_PREFIX = "ij-bridge-status:"


def register(sub) -> None:
    p = sub.add_parser(
        "batch",
        help="run an ImageJ macro over every file of a folder (headless, resumable, parallel)",
        description=(
            "Open each input file in ImageJ, run MACRO on it, and save what is open afterwards "
            "(images as calibrated TIFF, the ROI Manager as rois.zip, Results as results.csv, "
            "other tables, the Log) into OUTPUT/<relative folder>/<file stem>/. Failures are "
            "recorded and the batch goes on; OUTPUT/summary.csv lists every file. The macro's "
            "getArgument() is 'input=[FILE] output=[FOLDER/] name=[STEM] arg=[--arg]'. "
            "See docs/batch.md."
        ),
    )
    p.add_argument("macro", metavar="MACRO", help="the .ijm macro to run on each file")
    p.add_argument("--input", required=True, metavar="DIR", help="input folder (never written to)")
    p.add_argument("--output", required=True, metavar="DIR", help="output folder (created if needed)")
    p.add_argument("--pattern", default="*", metavar="GLOB",
                   help="input files, relative to --input (default: '*'; '**/*.tif' includes sub-folders)")
    p.add_argument("--into-existing", action="store_true",
                   help="write into output folders that hold files ij-bridge did not write (and into an "
                        "output folder that contains the input): files of the names the batch writes are "
                        "replaced, nothing else is removed (default: such folders are an error)")
    p.add_argument("--resume", action="store_true",
                   help="skip files already done by the same macro (failed files are redone)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="ImageJ processes side by side, one JVM each (default: 1)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on a Dask distributed cluster, e.g. tcp://host:8786")
    p.add_argument("--arg", default="", metavar="STRING", help="extra text for the macro: arg=[STRING]")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="stop a file's macro after this many seconds (the file fails with 'time limit', "
                        "the batch goes on)")
    p.add_argument("--exit-ok", action="store_true",
                   help='treat exit("message") in the macro as a normal end (default: the file fails)')
    p.add_argument("--imagej", default=None, metavar="PATH",
                   help="ij.jar, a folder of jars or a Fiji.app (default: see `ij-bridge info`)")
    p.add_argument("--mode", default="virtual", choices=["virtual", "interactive", "gui", "auto"],
                   help="display of the ImageJ processes (default: a private virtual display)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_batch)

    p = sub.add_parser(
        "install-macros",
        help="install macros into a Fiji/ImageJ that call ij-bridge (StarDist, N2V) through exec()",
        description=(
            "Install IJ Bridge macros into a Fiji.app or ImageJ folder: commands under "
            "Plugins > IJ Bridge (exec) that save the active image, call this ij-bridge "
            "executable and load the results (images, ROI Manager, Results) back."
        ),
    )
    p.add_argument("target", metavar="PATH", help="Fiji.app or ImageJ folder (with plugins/ and macros/)")
    p.add_argument("--executable", default=None, metavar="PATH",
                   help="ij-bridge executable the macros call (default: the one of this environment)")
    p.add_argument("--force", action="store_true", help="overwrite files installed before")
    p.set_defaults(func=_install_macros)

    p = sub.add_parser(
        "run-command",
        help="run IJ Bridge commands on an image file and save the results (used by installed macros)",
        description=(
            "Open FILE in the bridge's ImageJ (under a private virtual display), run each command "
            "NAME with its macro OPTIONS in turn, and save every image, the ROI Manager and the "
            "tables into OUTPUT, with manifest.tsv listing them. stdout lists the files "
            "('image<TAB>name.tif', 'rois<TAB>rois.zip', 'results<TAB>results.csv'), the Log "
            "('log<TAB>line') and ends with 'ij-bridge-status: 0', or the exit status and the "
            "error, so that ImageJ's exec() can tell."
        ),
    )
    p.add_argument("steps", nargs="+", metavar="NAME OPTIONS",
                   help='command names each followed by its options ("-" for none), e.g. '
                        '"StarDist 2D (torch)" "output=[Both]" "Measure Labels" -')
    p.add_argument("--input", required=True, metavar="FILE", help="image file (ImageJ TIFF)")
    p.add_argument("--output", required=True, metavar="DIR", help="folder for the results (created)")
    p.add_argument("--title", default=None, metavar="TITLE", help="title to give the input image")
    p.add_argument("--imagej", default=None, metavar="PATH", help=argparse.SUPPRESS)
    p.set_defaults(func=_run_command)


# --------------------------------------------------------------------------- batch
def _batch(args: argparse.Namespace) -> int:
    from ..batch import BatchError, run_batch

    try:
        report = run_batch(
            args.macro, args.input, args.output, pattern=args.pattern, resume=args.resume,
            workers=args.workers, scheduler=args.scheduler, arg=args.arg, timeout=args.timeout,
            imagej=args.imagej, mode=args.mode, show_progress=not args.quiet, exit_ok=args.exit_ok,
            into_existing=args.into_existing,
        )
    except BatchError as exc:
        raise CLIError(str(exc)) from None
    n = len(report.results)
    print(f"{report.n_ok} of {n} files OK, {report.n_failed} failed"
          + (f", {report.n_resumed} done before (--resume)" if report.n_resumed else "")
          + f", {report.seconds:.1f} s; summary: {report.summary}")
    for r in report.results:
        if r.status != "ok":
            print(f"  failed: {r.input}: {r.error}", file=sys.stderr)
    return 0 if report.n_failed == 0 else 1


# --------------------------------------------------------------------------- install-macros
def _install_macros(args: argparse.Namespace) -> int:
    from ..fiji_macros import install_macros

    exe = args.executable or _default_executable()
    try:
        written = install_macros(args.target, executable=exe, force=args.force)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    for path in written:
        print(path)
    print(f"installed {len(written)} files; restart Fiji/ImageJ to see Plugins > IJ Bridge (exec)")
    return 0


def _default_executable() -> str:
    """The ``ij-bridge`` script of the running environment, as an absolute path."""
    here = Path(sys.executable).parent
    for name in ("ij-bridge", "ij-bridge.exe"):
        candidate = here / name
        if candidate.is_file():
            return str(candidate.resolve() if not candidate.is_symlink() else candidate.absolute())
    argv0 = Path(sys.argv[0])
    if argv0.name.startswith("ij-bridge") and argv0.is_file():
        return str(argv0.absolute())
    raise CLIError(f"cannot find the ij-bridge executable next to {sys.executable}; pass --executable")


# --------------------------------------------------------------------------- run-command
def _run_command(args: argparse.Namespace) -> int:
    """Run one command for an installed macro; stdout ends with the status line."""
    # ImageJ's exec() reads stdout only: keep stderr (tqdm, Java) from filling a pipe
    # nobody reads, and put the error on stdout at the end.
    out = Path(args.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
        err_log = open(out / "stderr.txt", "ab")
        os.dup2(err_log.fileno(), 2)
    except OSError as exc:
        print(f"{STATUS_PREFIX} 2 cannot use the output folder {str(out)!r}: {exc}")
        return 2
    try:
        code = _run_command_inner(args, out)
        message = ""
    except CLIError as exc:
        code, message = 2, str(exc)
    except Exception as exc:  # noqa: BLE001 - report every failure to the macro
        code, message = 1, f"{type(exc).__name__}: {exc}"
    if isinstance(code, tuple):
        code, message = code
    text = " ".join(message.split())
    print(f"{STATUS_PREFIX} {code}" + (f" {text}" if text else ""))
    sys.stdout.flush()
    return code


def _run_command_inner(args: argparse.Namespace, out: Path):
    from ..batch import ImageJSession, ensure_roi_manager, reset_imagej, save_open_state
    from ..commands import get_command, run_macro

    steps = list(args.steps)
    if len(steps) % 2:
        steps.append("")
    pairs = [(steps[i], "" if steps[i + 1] == "-" else steps[i + 1]) for i in range(0, len(steps), 2)]
    src = Path(args.input)
    if not src.is_file():
        raise CLIError(f"input image {str(src)!r} does not exist")
    for name, _ in pairs:
        try:
            get_command(name)
        except KeyError:
            from ..commands import load_builtin_commands, registered_commands

            load_builtin_commands()
            if name not in registered_commands():
                raise CLIError(f"no IJ Bridge command named {name!r}; known: "
                               f"{', '.join(sorted(registered_commands()))}") from None
    # never the user's screen: the bridge's ImageJ works on a private virtual display
    session = ImageJSession(args.imagej, "virtual")
    reset_imagej()
    imp, error = session.open_image(str(src))
    if imp is None:
        raise CLIError(error)
    if args.title:
        imp.setTitle(args.title)
    ensure_roi_manager()
    imp.show()
    # " " rather than "": an empty options string would open the dialog
    code = "\n".join(f"run({_macro_string(name)}, {_macro_string(options or ' ')});"
                     for name, options in pairs)
    result = run_macro(code)
    for line in result.output.splitlines():
        print(f"log\t{line}")
    if not result.ok:
        reset_imagej()
        return 1, result.error or "failed"
    # the input image goes back only if a command changed it
    if not imp.changes and imp.getWindow() is not None:
        imp.changes = False
        imp.close()
    written = save_open_state(out)
    reset_imagej()
    lines = []
    for name in written:
        kind = ("image" if name.endswith(".tif") else "rois" if name == "rois.zip" else
                "results" if name == "results.csv" else "table" if name.endswith(".csv") else "file")
        lines.append(f"{kind}\t{name}")
    (out / "manifest.tsv").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    for line in lines:
        print(line)
    return 0


def _macro_string(text: str) -> str:
    """``text`` as an ImageJ macro string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
