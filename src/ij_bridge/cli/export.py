"""``ij-bridge stardist export`` and ``ij-bridge n2v export``: write bioimage.io packages.

Examples::

    ij-bridge stardist export --model nuclei.zip --test-image a.tif --output nuclei_bioimageio.zip
    ij-bridge n2v export --model n2v.zip --test-image noisy.tif --output n2v_bioimageio.zip \\
        --name "N2V for our confocal" --authors "A. Author, B. Author"

The package passes ``bioimageio.core``'s ``test_model`` (``bioimageio test PACKAGE``, with the
``ij-bridge[bioimageio]`` extra installed) and runs in deepImageJ / JDLL from its TorchScript weights.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from . import CLIError

__all__ = ["add_export_parser"]

_WHAT = {"stardist": ("StarDist", "an image like the ones to segment"),
         "n2v": ("Noise2Void", "a noisy image like the ones to denoise")}


def add_export_parser(sub: Any, family: str) -> None:
    """Add ``export`` to the sub-commands of ``family`` ("stardist" or "n2v")."""
    label, example = _WHAT[family]
    ex = sub.add_parser("export", help="write the model as a bioimage.io package (deepImageJ, JDLL, ...)",
                        description=f"Write a {label} model (ij-bridge's, or any model `--model` accepts "
                                    "elsewhere) as a BioImage Model Zoo package (spec 0.5): TorchScript and "
                                    "PyTorch state-dict weights, pre/post-processing, a test input and "
                                    "output, a cover, README, citations"
                                    + (", and the thresholds and NMS settings under config.stardist."
                                       if family == "stardist" else "."))
    ex.add_argument("--model", required=True, help="the model: folder, .zip" +
                    (" or bundled name" if family == "stardist" else ""))
    ex.add_argument("--test-image", required=True, type=Path,
                    help=f"TIFF: {example}; cropped to at most 256 pixels per axis, it becomes the "
                         "package's test input")
    ex.add_argument("--output", required=True, type=Path, help="the package: a file ending in .zip, or a folder")
    ex.add_argument("--name", help="package name (default: from the model)")
    ex.add_argument("--description", help="one-sentence description")
    ex.add_argument("--authors", help="author names, comma-separated")
    ex.add_argument("--license", default="CC-BY-4.0", help="SPDX licence identifier (CC-BY-4.0)")
    ex.add_argument("--overwrite", action="store_true", help="replace an existing package at --output")
    ex.set_defaults(func=lambda args: _export(args, family))


def _export(args: argparse.Namespace, family: str) -> int:
    from ..bioimageio import authors_list, check_name, check_package_destination
    from ..model_files import DestinationError

    try:
        check_package_destination(args.output, overwrite=args.overwrite)
        name = check_name(args.name or _default_name(args.model, family))
        if args.authors is not None:
            authors_list(args.authors)
    except (DestinationError, ValueError) as exc:
        raise CLIError(f"--name: {exc}" if "package name" in str(exc) else str(exc)) from None
    if not args.test_image.is_file():
        raise CLIError(f"--test-image {args.test_image} not found; give a TIFF image for the package's test input")
    from ..io import imread

    try:
        image = imread(args.test_image)
    except Exception as exc:  # an unreadable file is a user error
        raise CLIError(f"cannot read --test-image {args.test_image}: {exc}") from None
    kw: dict[str, Any] = {"overwrite": args.overwrite, "license": args.license}
    if args.authors is not None:
        kw["authors"] = args.authors
    if args.description:
        kw["description"] = args.description
    if family == "stardist":
        from ..stardist.model import StarDistBase

        loader: Any = StarDistBase
    else:
        from ..n2v import N2V

        loader = N2V
    try:
        model = loader.load(args.model, device="cpu")
    except (FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    kw["name"] = name
    if family == "stardist":
        image = _for_stardist(image, model, args.test_image)
    try:
        out = model.export_bioimageio(args.output, image, **kw)
    except DestinationError as exc:
        raise CLIError(str(exc)) from None
    except (ValueError, RuntimeError) as exc:
        raise CLIError(f"{args.test_image}: {exc}" if "test_input" in str(exc) else str(exc)) from None
    except OSError as exc:
        raise CLIError(f"{exc.strerror or exc}; nothing half-written was left (free space or choose "
                       "another place, then run again)") from None
    print(f"exported {args.model} -> {out} (bioimage.io; weights: torchscript, pytorch_state_dict). "
          f"Check it with: bioimageio test {out}")
    return 0


def _default_name(model: str, family: str) -> str:
    """``<model file stem> StarDist (ij-bridge)``, with characters bioimage.io refuses replaced."""
    from ..bioimageio import NAME_CHARACTERS

    stem = Path(str(model)).name
    if stem.lower().endswith(".zip"):
        stem = stem[:-4]
    stem = "".join(c if c in NAME_CHARACTERS else "-" for c in stem)[:80]
    return f"{stem} {'StarDist' if family == 'stardist' else 'Noise2Void'} (ij-bridge)".strip()


def _for_stardist(da: Any, model: Any, path: Path) -> Any:
    """The image's model dims (and ``c``); the first plane of extra dims, with a note."""
    spatial = ["y", "x"] if model.ndim == 2 else ["z", "y", "x"]
    dims = [str(d) for d in da.dims]
    missing = [d for d in spatial if d not in dims]
    if missing:
        raise CLIError(f"--test-image {path}: dims {tuple(dims)} lack {missing} for a {model.ndim}D model")
    if "s" in dims and "c" not in dims:  # RGB samples are the channels (H&E models)
        da = da.rename({"s": "c"})
        dims = [str(d) for d in da.dims]
    extra = [d for d in dims if d not in spatial + ["c"]]
    if any(da.sizes[d] > 1 for d in extra):
        print(f"note: --test-image {path.name} has dims {tuple(dims)}; using the first "
              f"{'/'.join(extra)} plane", file=sys.stderr)
    return da.isel({d: 0 for d in extra}) if extra else da
