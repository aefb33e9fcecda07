"""The bridge layer: ImageJ 1.x runtime and conversions to and from Python.

Everything here needs a JVM; the numerical cores never import this package.
Submodules are imported on first use of one of their names.

========================  ==============================================
module                    names
========================  ==============================================
``runtime``               start, attach, is_started, mode, require_display, ...
``images``                to_imageplus, from_imageplus
``tables``                results_to_dataframe, dataframe_to_results
``rois``                  roi_from_java, roi_to_java, labels_to_rois, rois_to_labels,
                          get/set_roi_manager_rois, get/set_overlay_rois
``helpers``               active_imageplus, active_xarray, sync_image, show (PyImageJ's names)
========================  ==============================================
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "runtime": ["start", "attach", "is_started", "mode", "runtime_info", "require_display",
                "ij_version", "java_version", "ImageJNotFoundError", "HeadlessError"],
    "images": ["to_imageplus", "from_imageplus"],
    "tables": ["results_to_dataframe", "dataframe_to_results"],
    "rois": ["roi_from_java", "roi_to_java", "labels_to_rois", "rois_to_labels",
             "get_roi_manager_rois", "set_roi_manager_rois", "get_overlay_rois", "set_overlay_rois"],
    "helpers": ["active_imageplus", "active_xarray", "sync_image", "show"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'ij_bridge.imagej' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_WHERE))
