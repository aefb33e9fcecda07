"""PyImageJ's notebook conveniences, for ImageJ 1.x: the active image, and ``show``.

==========================  ==========================================================
function                    what (PyImageJ's name and meaning)
==========================  ==========================================================
:func:`active_imageplus`    the active image as an ``ij.ImagePlus`` (``ij.py.active_imageplus``)
:func:`active_xarray`       the active image as an :class:`xarray.DataArray` (``ij.py.active_xarray``)
:func:`sync_image`          a stack's displayed plane written back into its stack (``ij.py.sync_image``)
:func:`show`                an image, a label image and ROIs drawn with matplotlib (``ij.py.show``)
==========================  ==========================================================

``run_plugin`` (PyImageJ's ``ij.py.run_plugin``) is
:func:`ij_bridge.commands.plugins.run_plugin`: it installs the IJ Bridge
commands, so it lives with them. All of these are also ``ij_bridge.<name>``.

``sync`` means here what it means in PyImageJ for the ImageJ 1.x side: code
that edits the pixels through ``imp.getProcessor()`` (``ip.setPixels(...)``,
a filter that swaps the processor's array) leaves the stack's copy of that
plane behind until ImageJ itself stores it; synchronising writes the processor's
pixels into the stack at the current position, so that :func:`from_imageplus`
(which reads the stack) sees the edit. There is no ImageJ2 data to update.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ._java import jc

__all__ = ["active_imageplus", "active_xarray", "sync_image", "show", "label_colormap"]


def _ensure_started() -> None:
    from . import runtime

    runtime._ensure_started()


def sync_image(imp: Any = None) -> None:
    """Write the displayed plane's processor pixels into the image's stack (PyImageJ's ``sync_image``).

    Parameters
    ----------
    imp : ij.ImagePlus, optional
        Default: the active image; nothing happens when there is none. Single
        planes and virtual stacks (whose planes live in files) are left as
        they are: their processor is the image.
    """
    _ensure_started()
    if imp is None:
        imp = jc.WindowManager.getCurrentImage()
        if imp is None:
            return
    if int(imp.getStackSize()) < 2 or bool(imp.getStack().isVirtual()):
        return
    ip = imp.getProcessor()
    stack = imp.getStack()
    n = int(imp.getCurrentSlice())
    if stack.getPixels(n) is not ip.getPixels():
        stack.setPixels(ip.getPixels(), n)


def active_imageplus(sync: bool = True) -> Any | None:
    """The active image (``WindowManager.getCurrentImage()``), or None when no image is open.

    Parameters
    ----------
    sync : bool
        First write pixels edited through ``imp.getProcessor()`` into the stack
        (:func:`sync_image`), as PyImageJ does.

    Returns
    -------
    ij.ImagePlus or None
    """
    _ensure_started()
    imp = jc.WindowManager.getCurrentImage()
    if imp is None:
        return None
    if sync:
        sync_image(imp)
    return imp


def active_xarray(sync: bool = True):
    """The active image as an :class:`xarray.DataArray` (:func:`from_imageplus`), or None.

    Parameters
    ----------
    sync : bool
        As for :func:`active_imageplus`.

    Returns
    -------
    xarray.DataArray or None
        A copy with dims ``t, c, z, y, x`` (as present), calibration, title and
        units; None when no image is open.
    """
    from .images import from_imageplus

    imp = active_imageplus(sync=sync)
    return None if imp is None else from_imageplus(imp)


# --------------------------------------------------------------------------- show
_NON_INTERACTIVE = {"agg", "pdf", "ps", "svg", "pgf", "cairo", "template"}


def label_colormap(n_labels: int):
    """A matplotlib colormap for a label image: 0 black, then the label LUT's colours.

    The colours are those of the distinct-colour label LUT that ImageJ shows
    label images with (:func:`ij_bridge.luts.label_lut`,
    :func:`ij_bridge.imagej.images.set_label_lut`): label ``k`` has entry ``k``
    up to 255 labels, as in ImageJ; beyond, the table repeats (entry
    ``1 + (k - 1) % 255``), where ImageJ's 256-entry display gives bands of
    neighbouring labels one colour. Without that table, labels are grey levels.
    """
    from matplotlib.colors import ListedColormap

    try:
        from ..luts import label_lut as lut
    except ImportError:  # an installation without the label LUT: grey levels
        lut = None
    n = max(int(n_labels), 1)
    if lut is not None:
        table = np.asarray(lut(), dtype=float)  # (256, 3) 0..255, entry 0 the background
        if table.max() > 1:
            table = table / 255.0
        colours = np.concatenate([[[0.0, 0.0, 0.0]], table[1 + (np.arange(n) % (len(table) - 1))]])
    else:
        grey = np.linspace(0.35, 1.0, n)
        colours = np.concatenate([[[0.0, 0.0, 0.0]], np.stack([grey] * 3, axis=1)])
    return ListedColormap(colours, name="labels")


def _plane(data: Any, what: str):
    """``data`` (numpy, xarray or ImagePlus) as a 2-D (or RGB) numpy array, and the ImagePlus if any."""
    import xarray as xr

    imp = None
    try:
        import jpype

        if jpype.isJVMStarted() and isinstance(data, jc.ImagePlus):
            from .images import from_imageplus

            imp = data
            data = from_imageplus(data)
    except ImportError:  # pragma: no cover - jpype is a dependency
        pass
    if isinstance(data, xr.DataArray):
        dims = tuple(data.dims)
        if dims == ("y", "x"):
            return np.asarray(data.values), imp
        if dims == ("y", "x", "s"):
            return np.asarray(data.values), imp
        raise ValueError(f"show() draws one plane, but {what} has dims {dims}; pick one first, "
                         "e.g. image.isel(z=0) or image.max('z')")
    arr = np.asarray(data)
    if arr.ndim != 2:
        raise ValueError(f"show() draws one plane, but {what} is a numpy array of shape {arr.shape}; "
                         "give a 2-D (y, x) array, or an xarray with dims ('y', 'x', 's') for RGB")
    return arr, imp


def _roi_outlines(rois: Sequence[Any]) -> list[np.ndarray]:
    """(n, 2) x, y outlines (pixel coordinates) of roifile or ImageJ ROIs."""
    import jpype

    out = []
    for roi in rois:
        if jpype.isJVMStarted() and isinstance(roi, jc.Roi):
            from .rois import roi_from_java

            roi = roi_from_java(roi)
        if not hasattr(roi, "coordinates"):
            raise TypeError(f"rois must be roifile.ImagejRoi or ij.gui.Roi objects, got {type(roi).__name__}")
        for xy in roi.coordinates(multi=True):
            xy = np.asarray(xy, dtype=float)
            if len(xy):
                out.append(np.vstack([xy, xy[:1]]))
    return out


def show(image: Any = None, *, labels: Any = None, rois: Sequence[Any] | None = None,
         cmap: str | None = None, title: str | None = None, alpha: float = 0.5, ax: Any = None):
    """Draw an image, a label image, or both, with ROIs, in matplotlib (PyImageJ's ``ij.py.show``).

    Parameters
    ----------
    image : numpy.ndarray, xarray.DataArray or ij.ImagePlus, optional
        One plane: a 2-D array, an xarray with dims ``(y, x)`` (or ``(y, x, s)``
        for RGB), or an ``ImagePlus`` of one plane (its Overlay's ROIs are drawn
        unless ``rois`` is given).
    labels : array_like or ij.ImagePlus, optional
        A label image of the same plane shape, drawn over ``image`` (or alone)
        in the label colours (:func:`label_colormap`), background transparent.
    rois : sequence of roifile.ImagejRoi or ij.gui.Roi, optional
        Outlines to draw (e.g. ``ij_bridge.get_roi_manager_rois()``), in pixel
        coordinates.
    cmap : str, optional
        Colormap of ``image`` (default grey).
    title : str, optional
        Axes title; default the image's title.
    alpha : float
        Opacity of ``labels`` over ``image``.
    ax : matplotlib.axes.Axes, optional
        Draw there. Without it a new figure is made and, with an interactive
        matplotlib backend, shown (``pyplot.show()``, as PyImageJ does);
        notebooks display it inline.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ValueError
        Neither ``image`` nor ``labels``; more than one plane; shapes that differ.
    """
    import matplotlib.pyplot as plt

    if image is None and labels is None:
        raise ValueError("show() needs an image, labels=..., or both")
    img = lbl = None
    shown_title = title
    if image is not None:
        img, imp = _plane(image, "the image")
        if rois is None and imp is not None and imp.getOverlay() is not None:
            from .rois import get_overlay_rois

            rois = get_overlay_rois(imp)
        if shown_title is None:
            shown_title = (str(imp.getTitle()) if imp is not None
                           else getattr(image, "attrs", {}).get("title") or getattr(image, "name", None))
    if labels is not None:
        lbl, _ = _plane(labels, "labels")
        if lbl.ndim != 2 or not (np.issubdtype(lbl.dtype, np.integer) or np.all(lbl == np.round(lbl))):
            raise ValueError("labels must be a 2-D image of whole numbers (0 = background)")
        lbl = lbl.astype(np.int64)
        if img is not None and img.shape[:2] != lbl.shape:
            raise ValueError(f"labels have shape {lbl.shape}, the image {img.shape[:2]}: give both of one plane")
    new_figure = ax is None
    if new_figure:
        _, ax = plt.subplots()
    if img is not None:
        ax.imshow(img, cmap=cmap or ("gray" if img.ndim == 2 else None), interpolation="nearest")
    if lbl is not None:
        n = int(lbl.max()) if lbl.size else 0
        shown = np.ma.masked_equal(lbl, 0) if img is not None else lbl
        ax.imshow(shown, cmap=label_colormap(n), vmin=0, vmax=max(n, 1), interpolation="nearest",
                  alpha=alpha if img is not None else None)
    for xy in _roi_outlines(rois or []):
        ax.plot(xy[:, 0] - 0.5, xy[:, 1] - 0.5, color="yellow", lw=1)  # ROI corners -> pixel centres
    if shown_title:
        ax.set_title(str(shown_title))
    ax.set_axis_off()
    if new_figure and plt.get_backend().lower() not in _NON_INTERACTIVE:
        plt.show()
    return ax
