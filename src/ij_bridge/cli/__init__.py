"""The ``ij-bridge`` command line.

Each sub-command group lives in its own module with a ``register(subparsers)``
function; this module only composes them. Heavy imports (torch, the JVM) happen
inside the command handlers, so ``ij-bridge --help`` is instant.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from pathlib import Path
from typing import Any

from .. import __version__

# modules that contribute sub-commands, in the order shown by --help
_GROUPS = [
    "ij_bridge.cli.imagej",     # info, demo
    "ij_bridge.cli.macro",      # macro
    "ij_bridge.cli.batch",      # batch, install-macros
    "ij_bridge.cli.n2v",        # n2v train|predict
    "ij_bridge.cli.stardist",   # stardist train|predict
]


class CLIError(Exception):
    """An error with a message meant for the user; exits with status 2."""


TIFF_SUFFIXES = (".tif", ".tiff")


def collect_tiffs(paths: list[str]) -> list[Path]:
    """Expand command-line inputs: files as given, folders to their TIFF files (sorted)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in TIFF_SUFFIXES)
            if not found:
                raise CLIError(f"no .tif files in folder {p}")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise CLIError(f"input not found: {p}")
    return files


def add_group(subparsers: Any, name: str, *, help: str, description: str) -> Any:
    """Add the command group ``name`` and return its sub-command parsers.

    ``ij-bridge NAME`` without a sub-command prints the group's help and exits with 1;
    the chosen sub-command is stored as ``args.<name>_command``.
    """
    grp = subparsers.add_parser(name, help=help, description=description)
    sub = grp.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND")
    grp.set_defaults(func=lambda args: (grp.print_help(), 1)[1])
    return sub


def add_big_flags(parser: Any, *, big: str, no_big: str) -> None:
    """Add ``--big`` / ``--no-big`` (issue 14.3, :mod:`ij_bridge.workflows.big`) to ``parser``.

    ``args.big`` is True, False or None (neither given: the command decides by size);
    ``big`` and ``no_big`` are the two flags' help texts.
    """
    grp = parser.add_mutually_exclusive_group()
    grp.add_argument("--big", dest="big", action="store_const", const=True, default=None, help=big)
    grp.add_argument("--no-big", dest="big", action="store_const", const=False, help=no_big)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ij-bridge",
        description="Noise2Void and StarDist in PyTorch for ImageJ workflows.",
    )
    parser.add_argument("--version", action="version", version=f"ij-bridge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _GROUPS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a group not built yet
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


#: exit statuses of the command line (docs/guarantees.md, "Exit codes")
EXIT_OK = 0
EXIT_FAILED = 1          # the work failed (a macro error, a failed batch file, ...)
EXIT_USAGE = 2           # bad arguments or input, found before any work started
EXIT_TIME_LIMIT = 124    # --timeout reached (as timeout(1))
EXIT_INTERRUPTED = 130   # SIGINT (Ctrl-C): 128 + 2
EXIT_TERMINATED = 143    # SIGTERM: 128 + 15


def _leave(status: int) -> int:
    """Return ``status``, or end the process now if a JVM runs (its shutdown can wait forever)."""
    if "jpype" in sys.modules and sys.modules["jpype"].isJVMStarted():
        import os

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


def format_warning(message: Warning | str, category: type[Warning]) -> str:
    r"""One line for a warning, as the command line shows it (no source file, no code line).

    ``UserWarning`` (and the package's own kinds, such as
    ``LossyConversionWarning``) show the message alone; other kinds
    (``RuntimeWarning``, ``DeprecationWarning``...) add their name, which says
    where they come from.

    >>> format_warning(UserWarning("image too small\n  to hold out"), UserWarning)
    'ij-bridge: warning: image too small to hold out'
    >>> format_warning("overflow in exp", RuntimeWarning)
    'ij-bridge: warning: overflow in exp (RuntimeWarning)'
    """
    text = " ".join(str(message).split())
    ours = category is UserWarning or category.__module__.startswith("ij_bridge")
    return f"ij-bridge: warning: {text}" + ("" if ours else f" ({category.__name__})")


@contextlib.contextmanager
def _clean_warnings():
    """While the command line runs, print each warning as one :func:`format_warning` line.

    Python's default shows ``file.py:151: UserWarning: ...`` and then the source
    line that triggered it, which means nothing to a command-line user. Only
    the display changes: filters (``-W``, ``PYTHONWARNINGS``) still decide which
    warnings show, and the previous ``warnings.showwarning`` comes back on exit
    (tests call :func:`main` in their own process).
    """
    import warnings

    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        stream = sys.stderr if file is None else file
        try:
            stream.write(format_warning(message, category) + "\n")
        except (OSError, ValueError):  # a closed stderr: as Python's own, say nothing
            pass

    warnings.showwarning = show
    try:
        yield
    finally:
        if warnings.showwarning is show:
            warnings.showwarning = previous


def main(argv: list[str] | None = None) -> int:
    with _clean_warnings():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    from .. import cancel

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    if argv is None:  # the real program (not a test calling main([...]))
        # SIGINT/SIGTERM stop long work at its next step (ij_bridge.cancel); a second one
        # at once, and work that has not stopped 30 s later is ended
        cancel.install_signal_handlers()
        cancel.start_watchdog(30.0)
    try:
        with cancel.cancel_scope() as scope:
            status = int(args.func(args) or 0)
        if scope.reason is not None:  # cancelled, but the command did not notice before its end
            print(f"ij-bridge: stopped ({scope.reason})", file=sys.stderr)
            return _leave(cancel.exit_status(scope.reason))
        return status
    except CLIError as exc:
        print(f"ij-bridge: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except cancel.Cancelled as exc:
        print(f"ij-bridge: stopped ({exc.reason}) before the work was done", file=sys.stderr)
        return _leave(cancel.exit_status(exc.reason))
    except KeyboardInterrupt:
        print("ij-bridge: interrupted", file=sys.stderr)
        return _leave(EXIT_INTERRUPTED)
    except SystemExit as exc:
        if exc.code == EXIT_TERMINATED:
            print("ij-bridge: terminated", file=sys.stderr)
            return _leave(EXIT_TERMINATED)
        raise
    except RuntimeError as exc:
        # ImageJ could not be started as asked (no DISPLAY for --mode interactive/gui, no
        # ImageJ found): a set-up problem whose message names the fix, so one line, no traceback
        if type(exc).__module__ == "ij_bridge.imagej.runtime" and type(exc).__name__ in _SETUP_ERRORS:
            print(f"ij-bridge: error: {exc}", file=sys.stderr)
            return _leave(EXIT_USAGE)
        raise


_SETUP_ERRORS = ("HeadlessError", "ImageJNotFoundError")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
