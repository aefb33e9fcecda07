"""StarDist models in PyTorch: the network and prediction.

Training (targets, patch sampling, augmentation, loss, the loop) is in
:mod:`ij_bridge.stardist.training`, the model files in
:mod:`ij_bridge.stardist.model_io` (on the shared rules of
:mod:`ij_bridge.model_files`); the methods here call them.

>>> from ij_bridge.stardist import StarDist2D, StarDistConfig
>>> model = StarDist2D(StarDistConfig(epochs=1, steps_per_epoch=2))   # doctest: +SKIP
>>> model.train(X, Y, validation_data=(Xv, Yv))                        # doctest: +SKIP
>>> labels, details = model.predict_instances(image)                   # doctest: +SKIP
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from ..device import choose_device, memory_budget, to_device
from ..progress import Progress
from ..tiles import auto_n_tiles
from .. import layout as _layout
from . import model_io as _model_io
from . import training as _training
from .config import StarDistConfig
from .geometry import (
    dist_to_coord, polygons_to_label, polyhedra_to_label, rays_golden_spiral, star_dist_2d, star_dist_3d,
)
from .model_io import FORMAT, FORMAT_VERSION, bundled_models
from .nms import non_maximum_suppression, non_maximum_suppression_3d, polygon_candidates

__all__ = ["StarDist2D", "StarDist3D", "StarDistBase", "StarDistNet", "normalize_percentiles",
           "bundled_models", "FORMAT", "FORMAT_VERSION", "Progress"]

_MODELS_DIR = _model_io.MODELS_DIR


def _is_xarray(obj: Any) -> bool:
    return hasattr(obj, "dims") and hasattr(obj, "transpose")
_memory_budget = memory_budget  # looked up here at each prediction (tests replace it)


# ----------------------------------------------------------------------------- network

class StarDistNet(nn.Module):
    """Backbone + 3×3 head + (probability, distances) outputs.

    U-Net backbone (``backbone="unet"``): the stem (two 3×3 convolutions and
    a max-pool per factor of two of the grid) brings the input to the output
    grid, as in the original; the U-Net then works at grid resolution.
    ResNet backbone (``backbone="resnet"``): :class:`ij_bridge.nets.resnet.ResNet`,
    whose strided blocks reach the grid.
    """

    def __init__(self, cfg: StarDistConfig):
        super().__init__()
        from ..nets.unet import UNet

        d = cfg.ndim
        conv = nn.Conv2d if d == 2 else nn.Conv3d
        pool = nn.MaxPool2d if d == 2 else nn.MaxPool3d
        self.cfg = cfg
        if cfg.backbone == "resnet":
            from ..nets.resnet import ResNet

            k = cfg.resnet_kernel_size
            self.stem = nn.Identity()
            self.stem_steps = []
            self.unet = ResNet(cfg.n_channels, ndim=d, grid=cfg.grid, n_blocks=cfg.resnet_n_blocks,
                               n_filters=cfg.resnet_n_filters, kernel_size=k,
                               n_conv_per_block=cfg.resnet_n_conv_per_block)
            self.head = nn.Sequential(conv(self.unet.out_channels, cfg.head_channels, k, padding=k // 2),
                                      nn.ReLU(inplace=True))
            self.out_prob = conv(cfg.head_channels, 1, 1)
            self.out_dist = conv(cfg.head_channels, cfg.n_rays, 1)
            # as the original: he-normal in the ResNet, Keras' default (Glorot) after it
            for m in (*self.head.modules(), self.out_prob, self.out_dist):
                if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)
            return
        k = cfg.unet_kernel_size
        nf = cfg.unet_n_filters
        layers: list[nn.Module] = []
        pooled = np.ones(d, int)
        grid = np.asarray(cfg.grid)
        c = cfg.n_channels
        self.stem_steps: list[tuple[int, ...]] = []
        while tuple(pooled) != tuple(grid):
            p = tuple(int(v) for v in 1 + (grid > pooled))
            pooled *= np.asarray(p)
            for _ in range(2):
                layers += [conv(c, nf, k, padding=k // 2), nn.ReLU(inplace=True)]
                c = nf
            layers.append(pool(p))
            self.stem_steps.append(p)
        self.stem = nn.Sequential(*layers)
        self.unet = UNet(in_channels=c, ndim=d, depth=cfg.unet_depth, n_filters=nf, kernel_size=k,
                         batch_norm=False, pool=cfg.unet_pool)
        self.head = nn.Sequential(conv(self.unet.out_channels, cfg.head_channels, k, padding=k // 2),
                                  nn.ReLU(inplace=True))
        self.out_prob = conv(cfg.head_channels, 1, 1)
        self.out_dist = conv(cfg.head_channels, cfg.n_rays, 1)
        # the original's (Keras') initialisation: Glorot-uniform kernels, zero biases. PyTorch's
        # default gives about 3x smaller weight variance; at equal short budgets it trained to
        # clearly worse shapes (F1 at IoU 0.7) on the benchmark data (docs/stardist.md)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.head(self.unet(self.stem(x)))
        # the two 1x1 output layers as one matrix product over the head's output: one pass over
        # it, forward and backward, without the layout copies torch's 1x1 convolutions make
        # (measured on a small 3D training step, 1 thread, alternated in one process: 72 ms
        # against 84 ms for the two convolutions). The same numbers up to rounding (~1e-8);
        # the weights stay two layers, so saved models are unchanged.
        w = torch.cat([self.out_prob.weight, self.out_dist.weight]).flatten(1)   # (1 + R, C)
        b = torch.cat([self.out_prob.bias, self.out_dist.bias])
        last = h.movedim(1, -1)                       # (N, *spatial, C): a view
        if last.is_contiguous():                      # channels-last (the models' layout)
            y = torch.addmm(b, last.reshape(-1, h.shape[1]), w.t())
            y = y.view(*last.shape[:-1], -1).movedim(-1, 1)
        elif h.is_contiguous():
            n = h.shape[0]
            y = torch.baddbmm(b.view(1, -1, 1).expand(n, -1, 1), w.expand(n, -1, -1), h.flatten(2))
            y = y.view(n, -1, *h.shape[2:])
        else:
            y = (F.conv2d if h.ndim == 4 else F.conv3d)(h, w.view(*w.shape, *(1,) * (h.ndim - 2)), b)
        return y[:, :1], y[:, 1:]

    def receptive_radius(self) -> tuple[int, ...]:
        """Upper bound of the receptive field radius (input pixels) per axis."""
        cfg = self.cfg
        if cfg.backbone == "resnet":
            r = cfg.resnet_kernel_size // 2
            return tuple(rad + r * g for rad, g in zip(self.unet.receptive_radius(), cfg.grid))
        r = cfg.unet_kernel_size // 2
        out = []
        for ax in range(cfg.ndim):
            s, rad = 1, 0
            for p in self.stem_steps:
                rad += 2 * r * s + (p[ax] - 1) * s
                s *= p[ax]
            pool = (cfg.unet_pool or (2,) * cfg.ndim)[ax]
            for _ in range(cfg.unet_depth):
                rad += 2 * r * s + (pool - 1) * s
                s *= pool
            rad += 2 * r * s
            for _ in range(cfg.unet_depth):
                s //= pool
                rad += (pool - 1) * s + 2 * r * s
            rad += r * s
            out.append(rad)
        return tuple(out)


def _make_net(cfg: StarDistConfig) -> nn.Module:
    """ij-bridge's own network, or the original's architecture for an imported model."""
    if cfg.original is not None:
        from .original import OriginalStarDistNet

        return OriginalStarDistNet(cfg)
    return StarDistNet(cfg)


# ----------------------------------------------------------------------- preprocessing

def normalize_percentiles(x: np.ndarray, low: float = 1.0, high: float = 99.8,
                          axis: Sequence[int] | None = None, eps: float = 1e-20) -> np.ndarray:
    """Map the ``low`` and ``high`` percentiles to 0 and 1 (float32, no clipping).

    Parameters
    ----------
    x : ndarray
        Image.
    low, high : float
        Percentiles.
    axis : sequence of int, optional
        Axes to compute percentiles over (default: all; pass the spatial axes
        for per-channel normalisation).
    """
    x = np.asarray(x, np.float32)
    lo, hi = np.percentile(x, (low, high), axis=axis, keepdims=True)
    return ((x - lo) / np.maximum(hi - lo, eps)).astype(np.float32)


# --------------------------------------------------------------------------------- base

class StarDistBase:
    """Common machinery of :class:`StarDist2D` and :class:`StarDist3D`."""

    ndim = 2

    def __init__(self, config: StarDistConfig | None = None, device: str | torch.device | None = None,
                 **kwargs: Any):
        if config is None:
            config = StarDistConfig(ndim=self.ndim, **kwargs)
        else:
            if kwargs:
                d = config.to_dict()
                d.update(kwargs)
                config = StarDistConfig.from_dict(d)
        if config.ndim != self.ndim:
            raise ValueError(f"{type(self).__name__} needs a config with ndim={self.ndim}, "
                             f"got ndim={config.ndim}")
        self.config = config
        self.device = choose_device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.net = _make_net(config)
        self._memory_format = torch.channels_last if self.ndim == 2 else torch.channels_last_3d
        self.net.to(self.device, memory_format=self._memory_format)
        self.thresholds = {"prob": float(config.prob_thresh), "nms": float(config.nms_thresh)}
        self.history: dict[str, list] = {}
        self._fresh_weights = True  # untrained: train() starts the output biases at the data's priors
        self.rays = self._make_rays()

    # -- geometry hooks ------------------------------------------------------------
    def _make_rays(self):
        return None

    def _star_dist(self, lbl: np.ndarray, grid) -> np.ndarray:
        raise NotImplementedError

    # -- input handling -------------------------------------------------------------
    def _spatial_dims(self) -> tuple[str, ...]:
        return ("y", "x") if self.ndim == 2 else ("z", "y", "x")

    def _to_channels_first(self, image: Any, name: str = "image", axes: str | None = None) -> np.ndarray:
        """(spatial..., [C]) numpy, numpy with ``axes``, or xarray -> (C, *spatial) float32.

        Dims are read by :mod:`ij_bridge.layout` (its one alias table; RGB
        samples ``s`` are channels to the model).
        """
        d = self.ndim
        if _is_xarray(image) or axes is not None:
            arr = self._from_named_dims(image, name, axes, channels=True)
        else:
            arr = np.asarray(image)
            if arr.ndim == d:
                arr = arr[..., None]
            elif arr.ndim != d + 1:
                raise ValueError(f"{name} has shape {arr.shape}; a {d}D model takes "
                                 f"{'(Y, X) or (Y, X, C)' if d == 2 else '(Z, Y, X) or (Z, Y, X, C)'}"
                                 f", or pass axes= (e.g. {'CYX' if d == 2 else 'CZYX'})")
        if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.number)):
            raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
        if np.iscomplexobj(arr):
            raise ValueError(f"{name} is complex; use its magnitude")
        if arr.shape[-1] != self.config.n_channels:
            raise ValueError(f"{name} has {arr.shape[-1]} channel(s) (last axis of shape {arr.shape}), "
                             f"the model expects {self.config.n_channels}")
        if any(s < 1 for s in arr.shape):
            raise ValueError(f"{name} is empty: shape {arr.shape}")
        return np.moveaxis(arr, -1, 0).astype(np.float32, copy=False)

    def _from_named_dims(self, image: Any, name: str, axes: str | None, channels: bool) -> np.ndarray:
        """An xarray (by its dims) or a numpy array with ``axes`` in the order (spatial..., [c])."""
        d = self.ndim
        spatial = self._spatial_dims()
        if not channels and axes is not None:  # a label image: the image's axes without C / S
            axes = _training.label_axes(axes)
        dims = _layout.image_dims(image, axes, what=name)
        missing = [s for s in spatial if s not in dims]
        if missing:
            shown = tuple(image.dims) if _is_xarray(image) else axes
            raise ValueError(f"{name} has dims {shown}; a {d}D model needs {list(spatial)} "
                             "(and optionally 'c')")
        keep = spatial + (("c", "s") if channels else ())
        shape = np.shape(image)
        bad = [x for x, n in zip(dims, shape) if x not in keep and n > 1]
        if bad:
            raise ValueError(f"{name} has extra dims {bad}; select one plane/time point "
                             f"(e.g. image.isel({bad[0]}=0)) or use the {3 if d == 2 else 2}D model")
        return _layout.to_model_layout(image, dims, spatial + (("c",) if channels else ()), what=name)

    def _normalize(self, x: np.ndarray, percentiles=None) -> np.ndarray:
        lo, hi = percentiles if percentiles is not None else self.config.percentiles
        return normalize_percentiles(x, lo, hi, axis=tuple(range(1, x.ndim)))

    # -- raw prediction ---------------------------------------------------------------
    def _forward_padded(self, x: np.ndarray) -> np.ndarray:
        """(C, *spatial) with spatial divisible by the divisor -> (1+R, *spatial/grid)."""
        self.net.eval()
        with torch.no_grad():
            t = self._tensor(x[None])
            prob, dist = self.net(t)
            out = torch.cat([torch.sigmoid(prob), dist], dim=1)[0]
        return out.float().cpu().numpy()

    def _tensor(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """A batch (N, C, *spatial) on the device, channels-last (much faster convolutions on CPU).

        On CUDA the copy is asynchronous (:func:`ij_bridge.device.to_device`).
        """
        t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
        return to_device(t, self.device).contiguous(memory_format=self._memory_format)

    def _halo(self) -> tuple[int, ...]:
        div = self.config.divisor
        return tuple(int(math.ceil(r / q) * q) for r, q in zip(self.net.receptive_radius(), div))

    def predict(self, image: Any, normalize: bool = True, n_tiles: Sequence[int] | int | None = None,
                percentiles: Sequence[float] | None = None, progress: Progress | None = None,
                axes: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Probability and distance maps at grid resolution.

        Parameters as :meth:`predict_instances`.

        Returns
        -------
        prob : ndarray
            ``ceil(spatial / grid)`` float32.
        dist : ndarray
            ``ceil(spatial / grid) + (n_rays,)`` float32.
        """
        x = self._to_channels_first(image, axes=axes)
        if normalize:
            x = self._normalize(x, percentiles)
        return self._predict_prepared(x, n_tiles, progress)

    def _predict_prepared(self, x: np.ndarray, n_tiles=None, progress=None):
        from ..tiles import tile_shape_for, tiled_apply

        spatial = x.shape[1:]
        div = self.config.divisor
        grid = self.config.grid
        padded = tuple(int(math.ceil(s / q) * q) for s, q in zip(spatial, div))
        pad = [(0, 0)] + [(0, p - s) for s, p in zip(spatial, padded)]
        xp = np.pad(x, pad, mode="reflect") if any(p[1] for p in pad) else x
        halo = self._halo()
        if n_tiles is None:
            bpp = 4.0 * self.config.unet_n_filters * 8 + 4 * self.config.n_rays
            n_tiles = auto_n_tiles(padded, bpp, _memory_budget(self.device), halo=halo, min_tile=div)
        n_tiles = (int(n_tiles),) * self.ndim if np.isscalar(n_tiles) else tuple(int(v) for v in n_tiles)
        if len(n_tiles) != self.ndim or any(v < 1 for v in n_tiles):
            raise ValueError(f"n_tiles needs {self.ndim} positive values, got {n_tiles}")
        out_shape = tuple(int(math.ceil(s / g)) for s, g in zip(spatial, grid))
        if all(v == 1 for v in n_tiles):
            out = self._forward_padded(xp)
            if progress:
                progress(1, 1, "predicting")
        else:
            tile = tile_shape_for(padded, n_tiles)
            tile = tuple(int(math.ceil(t / q) * q) for t, q in zip(tile, div))
            cb = (lambda i, n: progress(i, n, "predicting tiles")) if progress else None
            out = tiled_apply(self._forward_padded, xp, tile, halo, scale=grid, progress=cb)
        out = out[(slice(None),) + tuple(slice(0, s) for s in out_shape)]
        prob = np.ascontiguousarray(out[0])
        dist = np.ascontiguousarray(np.moveaxis(out[1:], 0, -1))
        return prob, np.maximum(dist, 1e-3)  # as the original (no zero-length rays)

    # -- instances --------------------------------------------------------------------
    def predict_instances(self, image: Any, prob_thresh: float | None = None,
                          nms_thresh: float | None = None, n_tiles: Sequence[int] | int | None = None,
                          normalize: bool = True, percentiles: Sequence[float] | None = None,
                          progress: Progress | None = None, show_progress: bool = False,
                          axes: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Segment star-convex objects.

        Parameters
        ----------
        image : ndarray or xarray.DataArray
            2D model: ``(Y, X)`` or ``(Y, X, C)``; 3D: ``(Z, Y, X)`` or
            ``(Z, Y, X, C)``; any other order or extra size-1 axes with
            ``axes``. An ``xarray.DataArray`` is read by its dim names
            (``z``, ``y``, ``x``, ``c``; RGB samples ``s`` are channels; the
            names and aliases of :mod:`ij_bridge.layout`).
        prob_thresh, nms_thresh : float, optional
            Default: the model's (optimised) thresholds, ``self.thresholds``.
        n_tiles : int or tuple of int, optional
            Tiles per axis; default: as few as fit in memory (usually 1).
        normalize : bool
            Percentile-normalise each channel (set False for data already in [0, 1]).
        percentiles : (float, float), optional
            Default ``config.percentiles``, (1, 99.8).
        progress : callable, optional
            ``progress(done, total, message)``.
        axes : str, optional
            For a numpy ``image``: one letter per axis, in its order, as
            N2V's ``axes=`` (:func:`ij_bridge.layout.parse_axes`): e.g.
            ``"CYX"``, ``"XY"``, ``"YXS"`` (RGB), ``"TYX"`` with one time
            point; ``Z`` for a 3D model. Default: the shapes above.

        Returns
        -------
        labels : ndarray
            int32 label image of the input's spatial shape.
        details : dict
            ``coord`` (n, 2, n_rays) polygon vertices (row, col) in 2D, or
            ``dist`` (n, n_rays) and ``rays_vertices``/``rays_faces`` in 3D;
            ``points`` (n, ndim) centres; ``prob`` (n,). Object ``i`` has label
            ``i + 1``; objects are sorted by decreasing probability.
        """
        prob_thresh = self.thresholds["prob"] if prob_thresh is None else float(prob_thresh)
        nms_thresh = self.thresholds["nms"] if nms_thresh is None else float(nms_thresh)
        if not 0 <= prob_thresh <= 1 or not 0 <= nms_thresh <= 1:
            raise ValueError(f"thresholds must lie in [0, 1], got prob={prob_thresh}, nms={nms_thresh}")
        x = self._to_channels_first(image, axes=axes)
        if normalize:
            x = self._normalize(x, percentiles)
        bar = None
        if show_progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=100, desc="StarDist", leave=False)

        def cb(done, total, message):
            if bar is not None:
                bar.n = int(100 * done / max(total, 1))
                bar.set_description(message)
                bar.refresh()
            if progress is not None:
                progress(done, total, message)

        prob, dist = self._predict_prepared(x, n_tiles, cb)
        labels, details = self._instances(prob, dist, x.shape[1:], prob_thresh, nms_thresh, cb)
        if bar is not None:
            bar.close()
        return labels, details

    def _instances(self, prob, dist, shape, prob_thresh, nms_thresh, progress=None):
        raise NotImplementedError

    # -- training (ij_bridge.stardist.training) ------------------------------------------
    def _prepare_training(self, X, Y, name, axes=None):
        return _training.prepare_training(self, X, Y, name, axes=axes)

    def _targets(self, lbl, grid):
        return _training.targets(self, lbl, grid)

    def _augment(self, img, prob, dist, rng):
        """Geometric augmentation: returns ``(img, prob, dist, ray_order)`` as views.

        ``ray_order`` (or None) is the permutation of the distance channels that the
        spatial transform implies; the caller applies it once, after the grid
        subsampling, so that no full-resolution distance stack is copied.
        """
        return img, prob, dist, None

    def _sample_batch(self, data, rng):
        return _training.sample_batch(self, data, rng)

    def _fit_to_labels(self, labels) -> None:
        """Called once per training, with the (checked) training labels, before any targets."""

    def _training_item(self, img, lbl):
        """One training image's entry of the data that :meth:`_sample_batch` draws from."""
        p, d = _training.targets(self, lbl, (1,) * self.ndim)
        return img, p.astype(np.float32), d.astype(np.float32), np.flatnonzero(lbl > 0)

    def _loss(self, prob_logit, dist_pred, prob_true, dist_true):
        return _training.stardist_loss(self, prob_logit, dist_pred, prob_true, dist_true)

    def _val_loss(self, val):
        return _training.val_loss(self, val)

    def _init_output_biases(self, data) -> None:
        _training.init_output_biases(self, data)

    def train(self, X: Sequence[Any], Y: Sequence[Any],
              validation_data: tuple[Sequence[Any], Sequence[Any]] | None = None,
              epochs: int | None = None, steps_per_epoch: int | None = None,
              progress: Progress | None = None, show_progress: bool = True,
              optimize_thresholds: bool = True, checkpoint: str | Path | None = None,
              axes: str | None = None) -> "pd.DataFrame":
        """Train on lists of images and label images.

        Parameters
        ----------
        X, Y : sequence of array_like
            Images (see :meth:`predict_instances` for layouts) and label
            images of the same spatial shape; each at least ``patch_size``.
        validation_data : (X_val, Y_val), optional
            Evaluated every epoch: loss, and F1 / accuracy at IoU 0.5 of the
            instances predicted with the current thresholds. The best epoch
            (highest validation accuracy, then lowest validation loss) is kept.
        epochs, steps_per_epoch : int, optional
            Override the config.
        progress : callable, optional
            ``progress(done_steps, total_steps, message)``.
        optimize_thresholds : bool
            After training, choose thresholds on the validation data.
        checkpoint : path, optional
            Save the best model there whenever it improves (replacing the
            earlier checkpoint; a folder without ``config.json`` is never
            replaced). The place is checked before training starts.
        axes : str, optional
            The axes of numpy images in ``X`` (and the validation images), as
            in :meth:`predict_instances`; their label images have the same
            axes without ``C``/``S``.

        Returns
        -------
        pandas.DataFrame
            The history, one row per epoch, as :meth:`ij_bridge.n2v.N2V.train`
            returns it: ``epoch``, ``train_loss``, ``prob_loss``, ``dist_loss``,
            ``val_loss``, ``val_f1``, ``val_accuracy`` (NaN without validation
            data), ``lr``, ``seconds``, and ``best`` (True on the epoch whose
            weights were kept). ``self.history`` holds the same numbers as the
            dict of lists that ``history.json`` stores (``loss`` for
            ``train_loss``, ``best_epoch``);
            :func:`ij_bridge.stardist.training.history_table` turns one into
            the other.

        Notes
        -----
        The first call on a fresh model starts the output biases at the
        training data's priors (mean object probability, mean distance per
        ray); later calls continue from the current weights.
        """
        hist = _training.train(self, X, Y, validation_data=validation_data, epochs=epochs,
                               steps_per_epoch=steps_per_epoch, progress=progress,
                               show_progress=show_progress, optimize_thresholds=optimize_thresholds,
                               checkpoint=checkpoint, axes=axes)
        return _training.history_table(hist)

    def optimize_thresholds(self, X_val: Sequence[Any], Y_val: Sequence[Any],
                            **kwargs: Any) -> dict[str, float]:
        """Choose and set the ``prob`` and ``nms`` thresholds on validation data (as the original's method).

        The same as :func:`ij_bridge.stardist.thresholds.optimize_thresholds`
        ``(self, X_val, Y_val, **kwargs)``; see there for the keyword arguments
        (``nms_threshs``, ``iou_threshs``, ``prob_range``, ``normalize``,
        ``n_tiles``, ``progress``). Sets ``self.thresholds``.

        Returns
        -------
        dict
            ``{"prob": float, "nms": float, "score": float}``.
        """
        from .thresholds import optimize_thresholds

        return optimize_thresholds(self, X_val, Y_val, **kwargs)

    def plot_history(self, path: str | Path) -> Path:
        """Write a PNG of the losses and validation scores against epochs."""
        import matplotlib
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        h = self.history
        if not h.get("epoch"):
            raise RuntimeError("no training history; train the model first")
        has_val = "val_f1" in h
        fig, axes = plt.subplots(1, 2 if has_val else 1, figsize=(10 if has_val else 5, 4), squeeze=False)
        ax = axes[0, 0]
        ax.plot(h["epoch"], h["loss"], label="training loss")
        if has_val:
            ax.plot(h["epoch"], h["val_loss"], label="validation loss")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.set_yscale("log")
        ax.legend()
        if has_val:
            ax = axes[0, 1]
            ax.plot(h["epoch"], h["val_f1"], "o-", label="F1 @ IoU 0.5")
            ax.plot(h["epoch"], h["val_accuracy"], "s-", label="accuracy @ IoU 0.5")
            if h.get("best_epoch"):
                ax.axvline(h["best_epoch"][0], color="grey", ls="--", label="best epoch")
            ax.set_ylim(0, 1)
            ax.set_xlabel("epoch")
            ax.set_ylabel("validation score")
            ax.legend()
        fig.tight_layout()
        from ..model_files import staged

        path = Path(path)
        try:
            with staged(path, overwrite=True) as tmp:  # atomic, like every file we write
                fig.savefig(tmp, dpi=100, format="png")
        finally:
            plt.close(fig)
        return path

    # -- model files (ij_bridge.stardist.model_io) -----------------------------------------
    def _meta(self, weights_dtype: str, weights_sha256: str | None = None) -> dict[str, Any]:
        return _model_io.model_meta(self, weights_dtype, weights_sha256)

    def save(self, path: str | Path, half: bool = False, overwrite: bool = False) -> Path:
        """Save as a folder, or as a zip when ``path`` ends in ``.zip``.

        Contents: ``config.json`` (config, thresholds, normalisation, versions,
        the SHA-256 of the weights), ``weights.pt`` (state dict; float16 when
        ``half``), ``history.json``; the format is
        :mod:`ij_bridge.stardist.model_io`.

        The model is written to a hidden temporary sibling and renamed into
        place, so a failed save (a full disk, an interrupt) leaves an existing
        model intact and nothing half-written.

        Raises
        ------
        ij_bridge.model_files.DestinationError
            ``path`` exists and not ``overwrite``; or it is an existing folder
            without ``config.json`` (never replaced); or it is not writable.
        """
        return _model_io.save_model(self, path, half=half, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None,
             weights: str | None = None) -> "StarDistBase":
        """Load a model saved by :meth:`save` (folder or .zip) or a bundled model's name.

        Models of the original StarDist are read too (their folder, its zip, a
        bioimage.io package; ``weights`` picks the ``.h5`` file): see
        :mod:`ij_bridge.stardist.original`; and the Fiji plugin's models.
        """
        return _model_io.load_model(cls, path, device=device, weights=weights)

    @classmethod
    def from_pretrained(cls, name: str = "stardist_nuclei2d", device=None) -> "StarDistBase":
        """Load a model bundled with the package (see :func:`bundled_models`)."""
        if not (_MODELS_DIR / name / "config.json").is_file():
            raise FileNotFoundError(f"no bundled model {name!r}; available: {bundled_models()}")
        return cls.load(_MODELS_DIR / name, device=device)

    def export_bioimageio(self, path: str | Path, test_input: Any, **kwargs: Any) -> Path:
        """Write a BioImage Model Zoo package; see :func:`ij_bridge.stardist.bioimageio.export_bioimageio`."""
        from .bioimageio import export_bioimageio

        return export_bioimageio(self, path, test_input, **kwargs)

    def __repr__(self) -> str:
        c = self.config
        return (f"{type(self).__name__}(n_rays={c.n_rays}, grid={c.grid}, n_channels={c.n_channels}, "
                f"thresholds={self.thresholds})")


# ------------------------------------------------------------------------------- 2D / 3D

class StarDist2D(StarDistBase):
    """StarDist for 2D images (star-convex polygons).

    Parameters
    ----------
    config : StarDistConfig, optional
        Defaults: 32 rays, grid (2, 2), patch (128, 128).
    device : str or torch.device, optional
        Default CUDA when available, else CPU.
    **kwargs
        Override config fields, e.g. ``StarDist2D(n_rays=64)``.
    """

    ndim = 2

    def _star_dist(self, lbl, grid):
        return star_dist_2d(lbl, self.config.n_rays, grid)

    def _augment(self, img, prob, dist, rng):
        # the 8 symmetries of the square (square patches only): ij_bridge.stardist.training.augment_2d
        return _training.augment_2d(img, prob, dist, rng, self.config.n_rays)

    def predict_instances_big(self, image: Any, output: Any = None, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        """Segment an image larger than memory block by block, labels written as they are done.

        See :func:`ij_bridge.stardist.big.predict_instances_big` (``output``: a
        TIFF path or an array; ``block_size``, ``margin``, thresholds,
        normalisation on a subsample of the whole image, ``progress``).
        """
        from .big import predict_instances_big

        return predict_instances_big(self, image, output, **kwargs)

    def _instances(self, prob, dist, shape, prob_thresh, nms_thresh, progress=None):
        points, p, d = polygon_candidates(prob, dist, prob_thresh, self.config.grid)
        d = np.maximum(d, 1e-3)
        coord = dist_to_coord(d, points)
        keep = non_maximum_suppression(coord, p, nms_thresh, progress=progress, centres=points)
        coord, points, p = coord[keep], points[keep], p[keep]
        labels = polygons_to_label(coord, shape, prob=p)
        return labels, {"coord": coord, "points": points, "prob": p}


class StarDist3D(StarDistBase):
    """StarDist for 3D stacks (star-convex polyhedra, rays on a golden spiral).

    Parameters as :class:`StarDist2D`; defaults 96 rays, grid (1, 2, 2),
    patch (32, 64, 64), U-Net backbone (``backbone="resnet"`` for the
    original's residual one). ``anisotropy=(z, y, x)`` (relative voxel size)
    shapes the rays; when not given, the first training of a fresh model sets
    it from the training labels' object extents
    (:func:`ij_bridge.stardist.augment.anisotropy_from_labels`).

    Training augments image and label patch together (flips and 90°
    rotations in YX, the rotations only for equal y/x voxel sizes; flips in
    Z; intensity scale and shift) and computes the targets from the
    transformed label patch (:mod:`ij_bridge.stardist.augment`).
    """

    ndim = 3

    def _make_rays(self):
        return rays_golden_spiral(self.config.n_rays, self.config.anisotropy)

    def _star_dist(self, lbl, grid):
        from .augment import star_dist_3d_fast

        # the numbers of geometry.star_dist_3d, compiled (tests/test_stardist3d_training.py)
        return star_dist_3d_fast(np.asarray(lbl), self.rays.vertices, grid)

    def _fit_to_labels(self, labels) -> None:
        from .augment import anisotropy_from_labels, object_margin

        if self.config.anisotropy is None and self._fresh_weights:
            a = anisotropy_from_labels(labels)
            if a is not None:
                self.config.anisotropy = a
                self.rays = self._make_rays()
        self._label_margin = object_margin(labels, cap=self.config.patch_size)

    def _training_item(self, img, lbl):
        from .augment import object_probabilities

        margin = getattr(self, "_label_margin", None) or tuple(self.config.patch_size)
        # the object probability of the whole stack once (a patch's is a transformed cut of it);
        # the star distances are computed per patch, from the transformed labels
        return img, lbl, np.flatnonzero(lbl > 0), margin, object_probabilities(lbl, self.config)

    def _sample_batch(self, data, rng):
        from .augment import sample_batch_3d

        return sample_batch_3d(self, data, rng)

    def _init_output_biases(self, data) -> None:
        from .augment import init_output_biases_3d

        init_output_biases_3d(self, data)

    def _instances(self, prob, dist, shape, prob_thresh, nms_thresh, progress=None):
        points, p, d = polygon_candidates(prob, dist, prob_thresh, self.config.grid)
        d = np.maximum(d, 1e-3)
        keep = non_maximum_suppression_3d(d, points, p, self.rays, nms_thresh, progress=progress)
        points, p, d = points[keep], p[keep], d[keep]
        labels = polyhedra_to_label(d, points, self.rays, shape, prob=p)
        return labels, {"dist": d, "points": points, "prob": p,
                        "rays_vertices": self.rays.vertices.copy(), "rays_faces": self.rays.faces.copy()}
