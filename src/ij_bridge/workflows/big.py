"""Whole-slide-sized files: the CLI's blockwise path (StarDist 2D, N2V), chosen by size.

``ij-bridge stardist predict`` and ``ij-bridge n2v predict`` look at each
input TIFF's header before reading it. Above a size threshold (StarDist:
:data:`ij_bridge.stardist.big.BIG_THRESHOLD_PIXELS`, 4096 x 4096 pixels, for a
2D model on a single ``YX`` plane; N2V: :data:`ij_bridge.n2v.big.BIG_THRESHOLD_BYTES`,
2 GiB of float32 result) the file is memory-mapped and processed block by
block (:func:`ij_bridge.stardist.big.predict_instances_big`, plane by plane
:func:`ij_bridge.n2v.big.predict_big`), the result written to disk as it is
done. ``--big`` forces this path, ``--no-big`` the whole-image one.

A TIFF that cannot be memory-mapped (compressed, tiled) is read into memory
first (the image itself, not the network's maps); a note says so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["tiff_info", "use_big_stardist", "use_big_n2v", "segment_file_big", "denoise_file_big"]

Log = Callable[[str], None]


def tiff_info(path: str | os.PathLike) -> dict[str, Any]:
    """Shape, dtype, axes and whether it memory-maps, from a TIFF's header.

    The calibration is read by :func:`ij_bridge.io.read_calibration` when the
    outputs are written.
    """
    import tifffile

    with tifffile.TiffFile(path) as tf:
        s = tf.series[0]
        return {"shape": tuple(int(v) for v in s.shape), "dtype": np.dtype(s.dtype),
                "axes": str(s.axes), "memmappable": s.dataoffset is not None}


def _mode(big: bool | None) -> str:
    return "auto" if big is None else ("always" if big else "never")


def use_big_stardist(info: dict[str, Any], model: Any, big: bool | None) -> bool:
    """Whether a file goes the blockwise way: ``big`` True/False forces it, None decides by size."""
    from ..stardist.big import BIG_THRESHOLD_PIXELS

    if big is False or getattr(model, "ndim", 2) != 2 or not hasattr(model, "predict_instances_big"):
        return False
    ax = info["axes"].upper()
    if ax not in ("YX", "YXS", "YXC"):
        return False
    pixels = info["shape"][0] * info["shape"][1]
    return bool(big) or pixels > BIG_THRESHOLD_PIXELS


def use_big_n2v(info: dict[str, Any], big: bool | None) -> bool:
    from ..n2v.big import BIG_THRESHOLD_BYTES

    if big is False:
        return False
    return bool(big) or int(np.prod(info["shape"])) * 4 > BIG_THRESHOLD_BYTES


def _open(path: Path, info: dict[str, Any], log: Log | None):
    import tifffile

    from ..stardist.big import open_image

    if info["memmappable"]:
        return open_image(path)
    if log is not None:
        log(f"note: {path.name} is compressed or tiled, so it is read into memory first "
            "(save it uncompressed to process it straight from disk)")
    return tifffile.imread(path)


def _tiff_kwargs(path: Path, axes: str | None = None) -> dict[str, Any]:
    """ImageJ TIFF keywords that give an output the whole spatial calibration of ``path``."""
    from ..io import calibration_tiff_kwargs, read_calibration

    return calibration_tiff_kwargs(read_calibration(path), axes)


def segment_file_big(path: str | os.PathLike, model: Any, outputs: Sequence[str | os.PathLike], *,
                     overwrite: bool = False, prob_thresh: float | None = None,
                     nms_thresh: float | None = None, normalize: bool = True,
                     percentiles: Sequence[float] = (1.0, 99.8), block_size: int | None = None,
                     exclude_border: int = 0, show_progress: bool = False, log: Log | None = None,
                     info: dict[str, Any] | None = None) -> int:
    """Segment one large 2D TIFF block by block; write labels, ROIs and table; return the object count.

    ``outputs`` are the label TIFF (16-bit, or 32-bit float beyond 65535
    objects, with the input's calibration), the ROI zip (the polygons, as
    :meth:`ij_bridge.workflows.stardist.Segmentation.rois`) and the CSV table
    (``label``, ``probability``, ``center_y_px``, ``center_x_px``,
    ``area_px`` of the polygon; the pixel measurements of the whole-image
    path are left out, as they would need the image and labels in memory).
    The three are written through temporary siblings and renamed into place
    together.
    """
    import pandas as pd
    import roifile

    from ..io import write_rois, write_table
    from ..model_files import staged_group
    from ..stardist.geometry import polygon_areas

    path = Path(path)
    info = tiff_info(path) if info is None else info
    img = _open(path, info, log)
    if exclude_border:
        raise ValueError("--exclude is not supported on the blockwise path; pass --no-big")
    with staged_group(list(outputs), overwrite=overwrite) as tmps:
        _, det = model.predict_instances_big(
            img, tmps[0], overwrite=True, block_size=block_size, prob_thresh=prob_thresh,
            nms_thresh=nms_thresh, normalize=normalize, percentiles=percentiles, labels_dtype="imagej",
            tiff_kwargs=_tiff_kwargs(path, "YX"), show_progress=show_progress)
        coord, pts, prob = det["coord"], det["points"], det["prob"]
        n = len(prob)
        if n:
            digits = max(4, len(str(n)))
            rois = []
            for j in range(n):
                xy = np.stack([coord[j, 1] + 0.5, coord[j, 0] + 0.5], axis=1).astype(np.float32)
                roi = roifile.ImagejRoi.frompoints(xy)
                roi.roitype = roifile.ROI_TYPE.POLYGON
                roi.name = f"label-{j + 1:0{digits}d}"
                roi.props = f"label: {j + 1}\n"
                rois.append(roi)
            write_rois(tmps[1], rois, overwrite=True)
        table = pd.DataFrame({"label": np.arange(1, n + 1), "probability": prob.astype(float),
                              "center_y_px": pts[:, 0].astype(int), "center_x_px": pts[:, 1].astype(int),
                              "area_px": polygon_areas(coord) if n else np.zeros(0)})
        write_table(tmps[2], table, overwrite=True)
    return n


def denoise_file_big(path: str | os.PathLike, model: Any, target: str | os.PathLike, *,
                     overwrite: bool = False, tile_shape: Any = None, tta: bool = False,
                     as_2d: bool = False, show_progress: bool = False, log: Log | None = None,
                     info: dict[str, Any] | None = None) -> Path:
    """Denoise one large TIFF plane by plane into ``target`` (32-bit, the input's calibration)."""
    from ..n2v.big import predict_big

    path = Path(path)
    info = tiff_info(path) if info is None else info
    ax = info["axes"].upper().replace("Q", "T").replace("I", "T")
    if "S" in ax:
        raise ValueError(f"{path.name}: RGB stacks are not supported on the blockwise path; pass --no-big")
    if model.config.ndim == 2 and "Z" in ax and not as_2d:
        raise ValueError(f"{path.name}: a z-stack for a 2D model (pass --2d to denoise its slices one by one)")
    lead = [a for a in ax if a in "TZ"]
    if len(lead) > 1:
        raise ValueError(f"{path.name}: axes {ax} have more than one of T and Z; pass --no-big")
    if lead and ax[0] != lead[0]:
        raise ValueError(f"{path.name}: axes {ax}: the {lead[0]} axis must come first; pass --no-big")
    img = _open(path, info, log)
    predict_big(model, img, target, axes=ax, overwrite=overwrite, tile_shape=tile_shape, tta=tta,
                show_progress=show_progress, tiff_kwargs=_tiff_kwargs(path))  # predict_big adds the axes
    return Path(target)
