"""``ij-bridge macro FILE.ijm``: run an ImageJ macro with every IJ Bridge command.

The macro's ``print()`` lines go to stdout as they are written; errors go to
stderr. Exit status: 0 on success, 1 when the macro or an ImageJ command
failed (or a dialog wanted input nobody can give), 2 for usage errors.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import CLIError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "macro",
        help="run an ImageJ macro (.ijm) with the IJ Bridge commands installed",
        description=(
            "Run an ImageJ macro in the bridge's ImageJ, with every IJ Bridge command "
            "installed, under a private virtual display when there is no DISPLAY. "
            "getArgument() returns --arg; print() goes to stdout. The exit status is "
            "non-zero when the macro or an ImageJ command fails."
        ),
    )
    p.add_argument("file", metavar="FILE.ijm", help="macro file")
    p.add_argument("--arg", default="", metavar="STRING", help="the macro's getArgument() value")
    p.add_argument("--imagej", default=None, metavar="PATH",
                   help="ij.jar, a folder of jars or a Fiji.app (default: see `ij-bridge info`)")
    p.add_argument("--mode", default="auto", choices=["auto", "virtual", "interactive", "headless"],
                   help="display mode (auto: the user's DISPLAY if set, else a virtual one)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="abort the macro after this many seconds (exit status 1)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise CLIError(f"macro file {str(path)!r} does not exist")
    if args.mode == "headless":
        raise CLIError("macros need a (virtual) display in ImageJ 1.x: use --mode virtual (needs Xvfb)")
    try:
        code = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CLIError(f"macro file {str(path)!r} is not UTF-8 text: {exc}") from None

    from ..commands.runner import run_macro

    def echo(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    result = run_macro(code, args.arg, echo=echo, timeout=args.timeout, imagej=args.imagej,
                       mode=args.mode)
    for message in result.messages:
        print(f"ij-bridge: message: {message}", file=sys.stderr)
    status = 0
    if not result.ok:
        print(f"ij-bridge: macro {path.name} failed: {result.error}", file=sys.stderr)
        status = 1
    _exit_now(status)
    return status  # pragma: no cover - not reached


def _exit_now(status: int) -> None:
    """End the process without waiting for ImageJ's threads.

    Windows that a macro leaves open keep non-daemon Java threads alive (a
    stack window's slice selector, for one), and the JVM's shutdown would wait
    for them forever. Everything the macro wrote is on disk by now, so: close
    the images, flush, and leave. The virtual display (Xvfb) goes with this
    process: the bridge starts it with a parent-death signal. Stopping it
    first would not do: Java's X11 toolkit ends the process with status 1 as
    soon as its display disappears.
    """
    import os

    from ..commands.runner import close_all_images

    try:
        close_all_images()
    except Exception:  # pragma: no cover - exiting anyway
        pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
