"""StarDist model files: ij-bridge's own folder or zip, and finding a model by name or path.

Layout::

    config.json    format, versions, config, thresholds, normalisation, rays, the weights' SHA-256
    weights.pt     torch state dict (float32, or float16 when saved with ``half``)
    history.json   the training history
    README.md      only for an imported model: where it came from

The rules (atomic writes, overwrite, checksums, format versions, reading a
folder or a zip) are those of :mod:`ij_bridge.model_files`, shared with N2V.
Models of the original StarDist, the Fiji plugin's TF SavedModels and
bundled models are found by :func:`load_model` too.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from .._version import __version__
from ..model_files import (check_format_version, read_members, sha256_bytes, verify_sha256,
                           write_members)
from .config import StarDistConfig
from .geometry import Rays

__all__ = ["FORMAT", "FORMAT_VERSION", "CONFIG_JSON", "WEIGHTS", "HISTORY", "MODELS_DIR",
           "model_meta", "save_model", "load_model", "bundled_models"]

FORMAT = "ij-bridge-stardist"
FORMAT_VERSION = 1
CONFIG_JSON = "config.json"
WEIGHTS = "weights.pt"
HISTORY = "history.json"
MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
"""Where the bundled models lie."""


def bundled_models() -> list[str]:
    """Names of the models that ship with the package (usable in ``from_pretrained``)."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in MODELS_DIR.iterdir() if (p / CONFIG_JSON).is_file()
                  and p.name.startswith("stardist"))


def model_meta(model: Any, weights_dtype: str, weights_sha256: str | None = None) -> dict[str, Any]:
    """The content of ``config.json`` for ``model``."""
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_class": type(model).__name__,
        "config": model.config.to_dict(),
        "thresholds": dict(model.thresholds),
        "normalization": {"method": "percentile", "percentiles": list(model.config.percentiles),
                          "per_channel": True},
        "weights": WEIGHTS,
        "weights_dtype": weights_dtype,
        "weights_sha256": weights_sha256,
        "ij_bridge_version": __version__,
        "torch_version": torch.__version__,
        "input_layout": "YXC" if model.ndim == 2 else "ZYXC",
    }
    if model.rays is not None:
        meta["rays"] = model.rays.to_dict()
    if getattr(model, "provenance", None):  # imported from another tool (stardist/original.py)
        meta["provenance"] = model.provenance
    return meta


def save_model(model: Any, path: str | Path, half: bool = False, overwrite: bool = False) -> Path:
    """Write ``model`` as a folder, or a zip when ``path`` ends in ``.zip``; see ``StarDistBase.save``."""
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu()
             for k, v in model.net.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    weights = buf.getvalue()
    meta = json.dumps(model_meta(model, "float16" if half else "float32", sha256_bytes(weights)), indent=2)
    hist = json.dumps(model.history)
    members = [(CONFIG_JSON, meta), (WEIGHTS, weights), (HISTORY, hist)]
    if getattr(model, "provenance", None):
        from .original import provenance_readme

        members.append(("README.md", provenance_readme(model)))
    return write_members(path, members, overwrite=overwrite, markers=(CONFIG_JSON,))


def load_model(cls: type, path: str | Path, device: str | torch.device | None = None,
               weights: str | None = None) -> Any:
    """Load a StarDist model of any accepted kind; see ``StarDistBase.load``."""
    from .model import StarDist2D, StarDist3D, StarDistBase
    from .original import is_original_model, load_original

    if is_original_model(path) or weights is not None:
        return load_original(cls, path, device=device, weights=weights)
    from .savedmodel import is_savedmodel, load_stardist_savedmodel

    if "!/" in str(path) or is_savedmodel(path):  # the Fiji plugin's TF SavedModel zip (2D)
        if cls is StarDist3D:
            raise ValueError(f"{path} is a TF SavedModel of a StarDist 2D model (the Fiji "
                             "format); load it with StarDist2D.load")
        return load_stardist_savedmodel(path, device=device)
    p = Path(path)
    if not p.exists() and (MODELS_DIR / str(path)).is_dir():
        p = MODELS_DIR / str(path)
    from .fiji_models import is_fiji_model_name, load_fiji_model

    if not p.exists() and is_fiji_model_name(str(path)):  # from $IJ_BRIDGE_FIJI / _MODELS
        if cls is StarDist3D:
            raise ValueError(f"{path} is a 2D model of the StarDist Fiji plugin; load it "
                             "with StarDist2D.load")
        return load_fiji_model(str(path), device=device)
    if not p.exists():
        hint = f" Bundled models: {', '.join(bundled_models())}." if bundled_models() else ""
        raise FileNotFoundError(f"StarDist model not found: {path}.{hint}")
    files = read_members(p, (CONFIG_JSON, WEIGHTS, HISTORY), what="StarDist model")
    if CONFIG_JSON not in files:
        raise FileNotFoundError(f"{p} has no config.json; is it a StarDist model saved by ij-bridge?")
    try:
        meta = json.loads(files[CONFIG_JSON])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{p}: config.json is corrupt ({exc})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{p}: not an ij-bridge StarDist model (format={meta.get('format')!r})")
    check_format_version(meta, FORMAT_VERSION, where=p, what="StarDist model")
    klass = {"StarDist2D": StarDist2D, "StarDist3D": StarDist3D}.get(meta.get("model_class"))
    if klass is None:
        raise ValueError(f"{p}: unknown model class {meta.get('model_class')!r}")
    if cls is not StarDistBase and klass is not cls:
        raise ValueError(f"{p} holds a {klass.__name__}; load it with {klass.__name__}.load")
    if WEIGHTS not in files:
        raise FileNotFoundError(f"{p} has no weights.pt; the model folder is incomplete")
    # models saved before checksums were recorded have none; those load unverified
    verify_sha256(files[WEIGHTS], meta.get("weights_sha256"), where=p, name=WEIGHTS)
    cfg = StarDistConfig.from_dict(meta["config"])
    model = klass(cfg, device=device)
    try:
        state = torch.load(io.BytesIO(files[WEIGHTS]), map_location="cpu", weights_only=True)
        state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
        model.net.load_state_dict(state)
    except Exception as exc:  # corrupt or mismatched weights
        raise ValueError(f"{p}: weights.pt is corrupt or does not fit the config ({exc})") from None
    model.net.to(model.device, memory_format=model._memory_format)
    model._fresh_weights = False
    th = meta.get("thresholds", {})
    model.thresholds = {"prob": float(th.get("prob", cfg.prob_thresh)),
                        "nms": float(th.get("nms", cfg.nms_thresh))}
    if "rays" in meta:
        model.rays = Rays.from_dict(meta["rays"])
    if HISTORY in files:
        try:
            model.history = json.loads(files[HISTORY])
        except json.JSONDecodeError:
            warnings.warn(f"{p}: history.json is corrupt; ignored")
    model.source = str(p)
    model.provenance = meta.get("provenance")
    return model
