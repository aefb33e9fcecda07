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

__all__ = ["InstanceModel", "ModelCache", "channels_of", "file_stamp"]

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
