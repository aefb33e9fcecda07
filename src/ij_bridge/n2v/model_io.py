"""N2V model files: one self-contained folder or zip.

Layout::

    n2v_model.json   format, versions, config, normalisation, history, checksum
    weights.pt       torch state dict (loaded with ``weights_only=True``)

The rules (atomic writes, overwrite, checksums, format versions, reading a
folder or a zip) are those of :mod:`ij_bridge.model_files`, shared with StarDist.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._version import __version__
from ..model_files import (check_format_version, read_members, require_member, sha256_bytes,
                           verify_sha256, write_members)
from .config import N2VConfig

__all__ = ["save_model", "load_model", "MODEL_JSON", "WEIGHTS", "FORMAT", "FORMAT_VERSION"]

MODEL_JSON = "n2v_model.json"
WEIGHTS = "weights.pt"
FORMAT = "ij-bridge-n2v"
FORMAT_VERSION = 1


def _version() -> str:
    return __version__


def _json_float(v: float) -> float | None:
    return None if not math.isfinite(v) else float(v)


def _payload(model: Any) -> tuple[bytes, bytes]:
    buf = io.BytesIO()
    state = {k: v.detach().cpu() for k, v in model.net.state_dict().items()}
    torch.save(state, buf)
    weights = buf.getvalue()
    history = None
    if model.history is not None:
        history = [{k: (_json_float(v) if isinstance(v, float) else
                        (bool(v) if isinstance(v, (bool, np.bool_)) else int(v)))
                    for k, v in row.items()} for row in model.history.to_dict("records")]
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "ij_bridge_version": _version(),
        "torch_version": torch.__version__,
        "config": model.config.to_dict(),
        "normalization": {"mean": [float(v) for v in model.mean], "std": [float(v) for v in model.std]},
        "weights": {"file": WEIGHTS, "sha256": sha256_bytes(weights)},
        "history": history,
    }
    if getattr(model, "provenance", None) is not None:  # imported from another tool
        meta["provenance"] = model.provenance
    return json.dumps(meta, indent=2).encode(), weights


def save_model(model: Any, path: Path, overwrite: bool = False) -> Path:
    """Write ``model`` to a folder or (``*.zip``) a zip archive; returns the path.

    Written to a hidden temporary sibling and renamed into place
    (:func:`ij_bridge.model_files.write_members`): a failed save leaves an
    existing model intact and nothing half-written. An existing ``path`` is
    replaced only with ``overwrite``, and an existing folder only if it holds
    ``n2v_model.json``.
    """
    meta, weights = _payload(model)
    members = [(MODEL_JSON, meta), (WEIGHTS, weights)]
    if getattr(model, "provenance", None) is not None:
        from .original import readme_text

        members.append(("README.md", readme_text(model.provenance)))
    return write_members(path, members, overwrite=overwrite, markers=(MODEL_JSON,))


def _read(path: Path) -> tuple[bytes, callable]:
    """``n2v_model.json`` and a reader of further members (:func:`ij_bridge.model_files.read_members`)."""
    path = Path(path)

    def get(name: str) -> bytes:
        files = read_members(path, (name,), what="N2V model")
        return require_member(files, name, where=path, what="N2V model")

    return get(MODEL_JSON), get


def load_model(cls: type, path: Path, device: Any = None) -> Any:
    """Load a model written by :func:`save_model`."""
    raw, get = _read(path)
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: {MODEL_JSON} is corrupt ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not an ij-bridge N2V model ({MODEL_JSON} lacks format={FORMAT!r})")
    check_format_version(meta, FORMAT_VERSION, where=path, what="N2V model")
    try:
        config = N2VConfig.from_dict(meta["config"])
        mean = np.asarray(meta["normalization"]["mean"], dtype=np.float64)
        std = np.asarray(meta["normalization"]["std"], dtype=np.float64)
        wmeta = meta["weights"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {MODEL_JSON} is invalid ({type(exc).__name__}: {exc})") from None
    if config.n_channels is None or len(mean) != config.n_channels or len(std) != config.n_channels:
        raise ValueError(f"{path}: normalisation does not match the model's channel count")
    name = wmeta.get("file", WEIGHTS)
    weights = get(name)
    if not wmeta.get("sha256"):
        raise ValueError(f"{path}: {MODEL_JSON} records no checksum for {name}; the file is corrupt")
    verify_sha256(weights, wmeta["sha256"], where=path, name=name)
    try:
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for broken pickles
        raise ValueError(f"{path}: cannot read the weights ({exc})") from None
    model = cls(config, device=device)
    model._build(config.n_channels)
    try:
        model.net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit the configured network ({exc})") from None
    model.net.eval()
    model.mean, model.std = mean, std
    if meta.get("history"):
        import pandas as pd

        model.history = pd.DataFrame(meta["history"])
    model.provenance = meta.get("provenance")
    return model


