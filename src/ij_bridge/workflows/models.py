"""The minimal model protocol that :func:`ij_bridge.workflows.stardist.segment` needs,
and the cache that keeps the last loaded model.

A third instance segmenter (a Cellpose- or InstanSeg-like model) implements
:class:`InstanceModel` and reuses ``segment()`` and the generic command and CLI
code: the plane loop, the channel checks, the label image, the ROIs and the
objects table.

Examples
--------
>>> cache = ModelCache()
>>> cache.get(("a", 1), lambda: "model A")
'model A'
>>> cache.get(("a", 1), lambda: "never built")   # same key: the cached one
'model A'
>>> cache.get(("b", 1), lambda: "model B")       # another key replaces it (one model kept)
'model B'
>>> len(cache)
1
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Hashable, Protocol, Sequence, runtime_checkable

import numpy as np

__all__ = ["InstanceModel", "ModelCache", "channels_of", "file_stamp", "FROM_FILE", "MODEL_KINDS",
           "config_dir", "recent_models_file", "recent_models", "remember_model", "bundled_model_names",
           "model_choices", "preselected_model", "chosen_model_path"]

from ..progress import Progress  # noqa: E402  (the one shared type)


@runtime_checkable
class InstanceModel(Protocol):
    """What a segmentation model offers to :func:`~ij_bridge.workflows.stardist.segment`.

    Attributes
    ----------
    ndim : int
        2 (the model sees planes; stacks and time series are segmented plane
        by plane) or 3 (the model sees z-stacks).
    thresholds : dict
        The model's own thresholds, ``{"prob": p, "nms": n}``; used where the
        caller gives none.

    Notes
    -----
    The number of input channels is read by :func:`channels_of`: an
    ``n_channels`` attribute, else ``config.n_channels`` (StarDist's).
    """

    ndim: int
    thresholds: dict

    def predict_instances(self, image: Any, prob_thresh: float | None = None,
                          nms_thresh: float | None = None,
                          n_tiles: Sequence[int] | int | None = None, normalize: bool = True,
                          percentiles: Sequence[float] | None = None,
                          progress: Progress | None = None, show_progress: bool = False,
                          ) -> tuple[np.ndarray, dict[str, Any]]:
        """Labels of one plane (2D) or volume (3D), spatial dims first and channels last, and
        the objects' details: ``points`` (n, ndim), ``prob`` (n,) and, in 2D, ``coord``
        (n, 2, n_vertices) polygon vertices (row, col). Object ``i`` has label ``i + 1``."""
        ...

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the model (a folder, or a file ending in ``.zip``)."""
        ...

    @classmethod
    def load(cls, path: str | Path, device: Any = None) -> "InstanceModel":
        """Read a model written by :meth:`save`."""
        ...


def channels_of(model: Any) -> int:
    """The number of input channels of ``model`` (``n_channels``, else ``config.n_channels``)."""
    n = getattr(model, "n_channels", None)
    if n is None:
        n = getattr(getattr(model, "config", None), "n_channels", 1)
    return int(n)


def file_stamp(path: Path) -> tuple:
    """Names, modification times and sizes of a model file or of a folder's files (a cache key
    that changes when the model is saved again)."""
    files = [path] if path.is_file() else sorted(path.glob("*"))
    return tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files if f.is_file())


class ModelCache:
    """Keeps ONE loaded model (they are large), keyed by where it came from and its file version.

    Thread-safe: two commands asking for the same model at once load it once.
    """

    def __init__(self) -> None:
        self._models: dict[Hashable, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], Any]) -> Any:
        """The model cached under ``key``, else ``load()`` (which replaces any other)."""
        with self._lock:
            model = self._models.get(key)
            if model is None:
                model = load()
                self._models.clear()
                self._models[key] = model
            return model

    def clear(self) -> None:
        """Forget the cached model."""
        with self._lock:
            self._models.clear()

    def __len__(self) -> int:
        return len(self._models)


# ------------------------------------------------------------------------ model choices
#
# What the model choice of a dialog offers: the bundled models, the StarDist Fiji plugin's
# model names, the models used recently (a small list in the user's config folder) and
# "From file...". None of this imports Java; the dialog widget is commands.registry's.

#: the last item of every model choice: opens a chooser for a model folder or file
FROM_FILE = "From file..."

#: the kinds of model a choice offers (each has its own recent list)
MODEL_KINDS = ("stardist2d", "stardist3d", "n2v")

#: how many models each recent list keeps
MAX_RECENT = 8

RECENT_FILE = "recent_models.json"
ENV_CONFIG_DIR = "IJ_BRIDGE_CONFIG_DIR"

_recent_lock = threading.Lock()


def config_dir() -> Path:
    """The user's ij-bridge config folder.

    ``$IJ_BRIDGE_CONFIG_DIR`` if set, else ``$XDG_CONFIG_HOME/ij-bridge``, else
    ``~/.config/ij-bridge``. It is created only when something is written there.
    """
    import os

    own = os.environ.get(ENV_CONFIG_DIR)
    if own:
        return Path(own).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "ij-bridge"


def recent_models_file() -> Path:
    """Where the recent-model lists are kept (``<config_dir>/recent_models.json``)."""
    return config_dir() / RECENT_FILE


def _check_kind(kind: str) -> None:
    if kind not in MODEL_KINDS:
        raise ValueError(f"model kind {kind!r} is not one of {MODEL_KINDS}")


def _read_recent() -> dict[str, list[str]]:
    """The file's lists; an absent, unreadable or damaged file reads as empty lists."""
    import json

    try:
        data = json.loads(recent_models_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    out: dict[str, list[str]] = {}
    for kind in MODEL_KINDS:
        items = data.get(kind)
        if isinstance(items, list):
            out[kind] = [s for s in items if isinstance(s, str) and s.strip()]
    return out


def _is_name(spec: str, kind: str) -> bool:
    """``spec`` is a model name (bundled or the Fiji plugin's), not a path."""
    if kind.startswith("stardist"):
        from ..stardist.fiji_models import is_fiji_model_name

        if spec in bundled_model_names(kind) or (kind == "stardist2d" and is_fiji_model_name(spec)):
            return True
    return False


def recent_models(kind: str) -> list[str]:
    """The models of ``kind`` used recently, newest first.

    Paths that no longer exist are left out (the file keeps them until they
    fall off the end of the list).
    """
    _check_kind(kind)
    items = _read_recent().get(kind, [])
    return [s for s in items if _is_name(s, kind) or Path(s).expanduser().exists()]


def _normalized(spec: str, kind: str) -> str:
    spec = str(spec).strip()
    if _is_name(spec, kind):
        return spec
    p = Path(spec).expanduser()
    if p.exists():
        return str(p.resolve())
    return spec


def remember_model(kind: str, spec: str | Path, *, log: Callable[[str], None] | None = None) -> bool:
    """Put ``spec`` first in the recent list of ``kind`` (an existing path is stored absolute).

    The file is written through a temporary sibling and renamed into place
    (:func:`ij_bridge.model_files.staged`). Never raises for the file: a
    config folder that cannot be written only means no list (``log`` gets one
    line saying so). Returns whether the list was written.
    """
    import json

    from ..model_files import staged

    _check_kind(kind)
    spec = _normalized(str(spec), kind)
    if not spec:
        return False
    with _recent_lock:
        data = _read_recent()
        items = [spec] + [s for s in data.get(kind, []) if s != spec]
        data[kind] = items[:MAX_RECENT]
        path = recent_models_file()
        try:
            with staged(path, overwrite=True) as tmp:
                tmp.write_text(json.dumps({"format": "ij-bridge-recent-models", "version": 1, **data},
                                          indent=1) + "\n", encoding="utf-8")
        except Exception as exc:  # noqa: BLE001 - a list of recent models never fails a run
            if log is not None:
                log(f"(the list of recent models was not saved to {path}: {exc})")
            return False
    return True


def bundled_model_names(kind: str) -> list[str]:
    """The bundled models that a choice of ``kind`` offers (StarDist 2D or 3D; none for N2V)."""
    import json

    _check_kind(kind)
    if not kind.startswith("stardist"):
        return []
    from ..stardist.model_io import CONFIG_JSON, MODELS_DIR, bundled_models

    ndim = 2 if kind == "stardist2d" else 3
    out = []
    for name in bundled_models():
        try:
            meta = json.loads((MODELS_DIR / name / CONFIG_JSON).read_text(encoding="utf-8"))
            model_ndim = int(meta.get("config", {}).get("ndim", 2))
        except (OSError, ValueError, TypeError, AttributeError):
            continue
        if model_ndim == ndim:
            out.append(name)
    return out


def model_choices(kind: str, default: str = "") -> list[str]:
    """The items of a model choice: bundled, Fiji plugin names (2D), recent, ``default`` (when it
    is a bundled name or an existing path), and :data:`FROM_FILE` last.

    Each item, except :data:`FROM_FILE`, is a valid ``model=`` value of the
    command, so that a recorded choice replays.

    >>> items = model_choices("stardist2d")
    >>> items[-1], "Versatile (fluorescent nuclei)" in items
    ('From file...', True)
    """
    from ..stardist.fiji_models import FIJI_MODELS

    _check_kind(kind)
    items: list[str] = list(bundled_model_names(kind))
    if kind == "stardist2d":
        items += list(FIJI_MODELS)
    items += recent_models(kind)
    default = str(default or "").strip()
    if default and (_is_name(default, kind) or Path(default).expanduser().exists()):
        items.append(default)  # (a default that is not installed is not offered)
    out: list[str] = []
    for item in items:
        if item not in out and item != FROM_FILE:
            out.append(item)
    return out + [FROM_FILE]


def preselected_model(kind: str, items: Sequence[str], default: str = "") -> str:
    """The item a dialog shows first: the most recent model that is listed, else ``default``,
    else the first item."""
    for spec in recent_models(kind):
        if spec in items:
            return spec
    if default and default in items:
        return default
    return items[0]


def chosen_model_path(path: str | Path) -> str:
    """The model a file chooser's selection means: a model folder for its ``config.json``.

    >>> chosen_model_path("/data/my_model/config.json")
    '/data/my_model'
    >>> chosen_model_path("/data/my_model.zip")
    '/data/my_model.zip'
    """
    p = Path(path)
    return str(p.parent) if p.name.lower() == "config.json" else str(p)
