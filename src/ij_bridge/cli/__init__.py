"""The ``ij-bridge`` command line.

Each sub-command group lives in its own module with a ``register(subparsers)``
function; this module only composes them. Heavy imports (torch, the JVM) happen
inside the command handlers, so ``ij-bridge --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except CLIError as exc:
        print(f"ij-bridge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ij-bridge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
