"""``ij-bridge macro FILE.ijm``: run an ImageJ macro with every IJ Bridge command.

The macro's ``print()`` lines go to stdout as they are written; errors go to
stderr. Exit status: 0 on success; 1 when the macro or an ImageJ command
failed, a dialog wanted input nobody can give, or the macro ended with
``exit("message")`` (unless ``--exit-ok``); 2 for usage errors; 124 when
``--timeout`` stopped it; 130 after SIGINT (Ctrl-C); 143 after SIGTERM.

A time limit or a signal stops the macro at its next statement and a running
IJ Bridge command at its next step (nothing it would have saved is saved). If
the macro has not stopped :data:`GRACE` seconds later (a Java call that never
returns), the process ends anyway with the same status; a second signal ends
it at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import CLIError
from ._imagej_process import exit_now

#: seconds a cancelled macro gets to stop before the process ends without it
GRACE = 30.0


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
    p.add_argument("--mode", default="auto", choices=["auto", "virtual", "interactive", "gui", "headless"],
                   help="display mode (auto: the user's DISPLAY if set, else a virtual one)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="stop the macro after this many seconds, a running command at its next "
                        "step (exit status 124)")
    p.add_argument("--exit-ok", action="store_true",
                   help='treat exit("message") as a normal end (default: a failure, exit status 1)')
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if path.is_dir():
        raise CLIError(f"{str(path)!r} is a folder, not a macro file: give the .ijm file to run "
                       "(to run a macro on every file of a folder use `ij-bridge batch MACRO --input "
                       f"{str(path)!r} --output OUT`)")
    if not path.is_file():
        raise CLIError(f"macro file {str(path)!r} does not exist")
    if args.timeout is not None and not args.timeout > 0:
        raise CLIError(f"--timeout must be a positive number of seconds, got {args.timeout:g}")
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

    from .. import cancel

    cancel.start_watchdog(GRACE)
    result = run_macro(code, args.arg, echo=echo, timeout=args.timeout, imagej=args.imagej,
                       mode=args.mode, exit_ok=args.exit_ok)
    for message in result.messages:
        print(f"ij-bridge: message: {message}", file=sys.stderr)
    status = 0
    if result.cancelled is not None:
        print(f"ij-bridge: macro {path.name} {result.error}", file=sys.stderr)
        status = cancel.exit_status(result.cancelled)
    elif not result.ok:
        print(f"ij-bridge: macro {path.name} failed: {result.error}", file=sys.stderr)
        status = 1
    exit_now(status)
    return status  # pragma: no cover - not reached
