"""What the N2V and StarDist BioImage Model Zoo exports share (no Java).

Each model family writes its own ``rdf.yaml`` (:mod:`ij_bridge.n2v.bioimageio`,
:mod:`ij_bridge.stardist.bioimageio`); this module holds the pieces they share:
the format version, checksums, array and image files (``.npy`` test tensors,
``.tif`` sample tensors, ``.png`` covers), TorchScript tracing with a check on a
second input size, the destination check and the atomic writing of a package as
a folder or a zip.

``rdf.yaml`` is written as JSON, which every YAML reader accepts; this keeps
PyYAML out of the dependencies. Validating a package needs ``bioimageio.core``
(the optional extra ``ij-bridge[bioimageio]``), which ij-bridge itself does not
import.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .model_files import check_destination, write_members

__all__ = ["FORMAT_VERSION", "sha256", "write_package", "check_package_destination", "npy_bytes",
           "tiff_bytes", "cover_png", "torchscript_bytes", "state_dict_bytes", "file_entry", "rdf_bytes",
           "MARKER", "check_name", "NAME_CHARACTERS", "provenance_entry", "write_model_package"]

#: the bioimage.io model description version written (read by bioimageio.core, deepImageJ 3, JDLL)
FORMAT_VERSION = "0.5.4"
#: the file every package holds; an existing folder without it is never replaced
MARKER = "rdf.yaml"


#: the characters bioimage.io allows in a model's name (5 to 128 of them)
NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+- ()")


def check_name(name: str) -> str:
    """Return ``name`` if bioimage.io accepts it as a model name; else a ValueError naming the fix."""
    bad = sorted(set(str(name)) - NAME_CHARACTERS)
    if bad:
        raise ValueError(f"package name {name!r} has characters bioimage.io does not allow "
                         f"({' '.join(repr(c) for c in bad)}); use letters, digits, spaces and _ + - ( ) only")
    if not 5 <= len(name) <= 128:
        raise ValueError(f"package name {name!r} must have 5 to 128 characters, it has {len(name)}")
    return name


def sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``, as ``rdf.yaml`` lists it for every file."""
    return hashlib.sha256(data).hexdigest()


def check_package_destination(path: str | Path, *, overwrite: bool = False) -> Path:
    """Check before any work that a package may be written at ``path``; return it as a Path.

    An existing package is replaced only with ``overwrite``, and an existing
    folder only if it holds ``rdf.yaml`` (a folder ij-bridge did not write is
    never replaced).

    Raises
    ------
    ij_bridge.model_files.DestinationError
    """
    p = Path(path)
    return check_destination(p, overwrite=overwrite, kind="bioimage.io package",
                             folder=p.suffix.lower() != ".zip", markers=(MARKER,))


def write_package(path: str | Path, files: Mapping[str, bytes], *, overwrite: bool = False) -> Path:
    """Write a model package: a zip when ``path`` ends with ``.zip``, else a folder.

    Atomic (a temporary sibling renamed into place, see
    :func:`ij_bridge.model_files.write_members`); an existing package is
    replaced only with ``overwrite`` (a folder only if it holds ``rdf.yaml``).
    """
    return write_members(path, files, overwrite=overwrite, markers=(MARKER,))


def write_model_package(path: str | Path, files: Mapping[str, bytes], rdf: Mapping[str, Any], *,
                        overwrite: bool = False) -> Path:
    """The exporters' last step: ``files`` and ``rdf.yaml`` (made from ``rdf``) written as a package.

    See :func:`write_package` (atomic; a zip when ``path`` ends with ``.zip``).
    ``files`` itself is not changed.
    """
    return write_package(path, {**files, MARKER: rdf_bytes(rdf)}, overwrite=overwrite)


def file_entry(name: str, files: Mapping[str, bytes]) -> dict[str, str]:
    """``{"source": name, "sha256": ...}`` for a member of ``files``."""
    return {"source": name, "sha256": sha256(files[name])}


def rdf_bytes(rdf: Mapping[str, Any]) -> bytes:
    """``rdf.yaml`` content: JSON (a subset of YAML), UTF-8."""
    return (json.dumps(rdf, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def npy_bytes(a: np.ndarray) -> bytes:
    """The ``.npy`` file of ``a`` (test tensors must be in numpy's format)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def tiff_bytes(a: np.ndarray) -> bytes:
    """A plain TIFF of ``a`` (a sample tensor, readable by imageio)."""
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, np.ascontiguousarray(a))
    return buf.getvalue()


def _unit(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64)
    lo, hi = np.percentile(a, (1, 99.8)) if a.size else (0.0, 1.0)
    return np.clip((a - lo) / (hi - lo if hi > lo else 1.0), 0, 1)


def cover_png(left: np.ndarray, right: np.ndarray, right_cmap: str = "magma") -> bytes:
    """A 2:1 cover image: ``left`` in grey beside ``right`` in a colour map (both 2D).

    The two images are scaled to their 1st-99.8th percentiles; ``right`` is
    resized (nearest) to ``left``'s shape.
    """
    from matplotlib import colormaps
    from matplotlib.image import imsave

    left, right = np.asarray(left), np.asarray(right)
    if right.shape != left.shape:
        idx = tuple(np.minimum((np.arange(n) * r / n).astype(int), r - 1)
                    for n, r in zip(left.shape, right.shape))
        right = right[np.ix_(*idx)]
    grey = np.repeat(_unit(left)[..., None], 3, axis=-1)
    colour = colormaps[right_cmap](_unit(right))[..., :3]
    gap = np.ones((left.shape[0], max(1, left.shape[1] // 32), 3))
    img = np.concatenate([grey, gap, colour], axis=1)
    # pad the width to exactly twice the height (the cover aspect ratio bioimage.io asks for)
    h, w = img.shape[:2]
    if w < 2 * h:
        img = np.concatenate([img, np.ones((h, 2 * h - w, 3))], axis=1)
    elif w > 2 * h:
        pad = (w + 1) // 2 - h
        img = np.concatenate([img, np.ones((pad, w, 3))], axis=0)
        if img.shape[1] < 2 * img.shape[0]:
            img = np.concatenate([img, np.ones((img.shape[0], 2 * img.shape[0] - img.shape[1], 3))], axis=1)
    buf = io.BytesIO()
    imsave(buf, (img * 255).round().astype(np.uint8), format="png")
    return buf.getvalue()


def state_dict_bytes(module: Any) -> bytes:
    """``torch.save`` of the module's state dict (contiguous CPU tensors)."""
    import torch

    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def torchscript_bytes(module: Any, example: np.ndarray, check: np.ndarray | None = None,
                      atol: float = 1e-4) -> bytes:
    """Trace ``module`` (CPU, float32, eval) on ``example`` and return the saved TorchScript.

    The traced module is re-run on ``check`` (an input of another valid size;
    default ``example``) and compared with the eager module, so a network whose
    trace froze a size-dependent constant fails here, not in a consumer.

    Parameters
    ----------
    module : torch.nn.Module
    example, check : ndarray
        Batched inputs ``(1, C, *spatial)``.
    atol : float
        Tolerance of the comparison, relative to the output's range.

    Raises
    ------
    RuntimeError
        The traced module does not reproduce the eager one.
    """
    import torch

    module = module.cpu().float().eval()
    with torch.no_grad(), warnings.catch_warnings():
        # TorchScript is what deepImageJ/JDLL load; torch >= 2.10 flags it as deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(module, torch.from_numpy(np.ascontiguousarray(example, np.float32)),
                                 check_trace=False)
        buf = io.BytesIO()
        torch.jit.save(traced, buf)
        data = buf.getvalue()
        reloaded = torch.jit.load(io.BytesIO(data), map_location="cpu")
        for x in [example] if check is None else [example, check]:
            t = torch.from_numpy(np.ascontiguousarray(x, np.float32))
            want, got = module(t), reloaded(t)
            if want.shape != got.shape:
                raise RuntimeError(f"TorchScript export: output shape {tuple(got.shape)} for input "
                                   f"{tuple(t.shape)}, the network gives {tuple(want.shape)}")
            scale = float((want.max() - want.min()).clamp_min(1e-6))
            err = float((want - got).abs().max())
            if err > atol * scale:
                raise RuntimeError(f"TorchScript export does not reproduce the network on input "
                                   f"{tuple(t.shape)} (max difference {err:.3g})")
    return data


def provenance_entry(provenance: Mapping[str, Any]) -> dict[str, Any]:
    """An imported model's provenance for ``rdf.yaml``'s ``config`` (plain JSON).

    ``source``/``sha256`` become ``source_path``/``source_sha256``: a mapping with
    both keys would be read by bioimageio.spec as a file of the package.
    """
    out = json.loads(json.dumps(dict(provenance), default=str))
    for key in ("source", "sha256"):
        if key in out:
            out[f"source_{'path' if key == 'source' else key}"] = out.pop(key)
    return out


def authors_list(authors: Sequence[str] | str) -> list[dict[str, str]]:
    """``[{"name": ...}]`` from names (a single string may hold several, comma-separated)."""
    if isinstance(authors, str):
        authors = [a.strip() for a in authors.split(",")]
    names = [a for a in authors if a]
    if not names:
        raise ValueError("a bioimage.io package needs at least one author name")
    return [{"name": a} for a in names]
