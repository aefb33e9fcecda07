"""``ij-bridge info`` and ``ij-bridge demo``."""

from __future__ import annotations

import argparse

from . import CLIError

__all__ = ["register"]


def _add_runtime_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--imagej", metavar="PATH", help="ij.jar, folder of jars or Fiji.app "
                   "(default: $IJ_BRIDGE_IMAGEJ, a running JVM, /usr/share/java/ij.jar)")
    p.add_argument("--mode", default="auto", choices=["auto", "headless", "virtual", "interactive"],
                   help="display mode (default: auto)")


def register(sub) -> None:
    p = sub.add_parser("info", help="print ImageJ, Java, display and torch versions")
    _add_runtime_args(p)
    p.set_defaults(func=_info)

    p = sub.add_parser("demo", help="run the main workflow on generated sample data")
    p.add_argument("--output", default="demo_output", help="output folder (default: demo_output)")
    _add_runtime_args(p)
    p.set_defaults(func=_demo)


def torch_device_description() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)}), torch {torch.__version__}"
    return f"cpu ({torch.get_num_threads()} threads), torch {torch.__version__}"


def _start(args):
    import ij_bridge
    from ij_bridge.imagej.runtime import ImageJNotFoundError

    try:
        return ij_bridge.start(args.imagej, mode=args.mode)
    except ImageJNotFoundError as exc:
        raise CLIError(str(exc)) from exc


def _info(args) -> int:
    import ij_bridge

    info = _start(args)
    rows = [
        ("ij-bridge", ij_bridge.__version__),
        ("ImageJ", info["imagej_version"]),
        ("Java", info["java_version"]),
        ("ImageJ from", info["source"]),
        ("mode", info["mode"]),
        ("display", info["display"] or "-"),
        ("torch device", torch_device_description()),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0


def _demo(args) -> int:
    from ij_bridge.demo import run_demo

    return run_demo(args.output, imagej=args.imagej, mode=args.mode)
