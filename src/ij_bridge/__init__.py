"""ij-bridge: Noise2Void and StarDist in PyTorch, as ImageJ commands.

The numerical cores (:mod:`ij_bridge.n2v`, :mod:`ij_bridge.stardist`,
:mod:`ij_bridge.metrics`, :mod:`ij_bridge.measure`) never import Java. The
ImageJ bridge is loaded lazily: ``import ij_bridge`` starts no JVM, and the
bridge functions below import :mod:`ij_bridge.imagej` on first use
(``run_plugin`` and ``run_command``: :mod:`ij_bridge.commands`). PyImageJ's
notebook helpers have their PyImageJ names: ``active_imageplus``,
``active_xarray``, ``run_plugin``, ``show`` (docs/bridge.md, "Notebooks").
"""

from __future__ import annotations

import importlib

from ._version import __version__

# names re-exported from the bridge layer, imported on first access
_BRIDGE = {
    "start", "attach", "is_started", "mode", "ij_version",
    "to_imageplus", "from_imageplus",
    "results_to_dataframe", "dataframe_to_results",
    "roi_from_java", "roi_to_java", "labels_to_rois", "rois_to_labels",
    "get_roi_manager_rois", "set_roi_manager_rois",
    "get_overlay_rois", "set_overlay_rois",
    "active_imageplus", "active_xarray", "sync_image", "show",
}
# names re-exported from the commands layer (they install the IJ Bridge commands first)
_COMMANDS = {"run_plugin": "ij_bridge.commands.plugins", "run_command": "ij_bridge.commands.registry"}

__all__ = sorted(_BRIDGE | set(_COMMANDS) | {"__version__"})


def __getattr__(name: str):
    if name in _BRIDGE:
        module = importlib.import_module("ij_bridge.imagej")
        return getattr(module, name)
    if name in _COMMANDS:
        return getattr(importlib.import_module(_COMMANDS[name]), name)
    raise AttributeError(f"module 'ij_bridge' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _BRIDGE | set(_COMMANDS))
