"""The Noise2Void model: training, tiled prediction, model files."""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .. import cancel
from ..device import choose_device, memory_budget, to_device, training_backends, warn_if_emulated
from ..nets.unet import UNet
from ..progress import Progress
from ..tiles import auto_n_tiles, iter_tiles
from .config import N2VConfig
from .data import PatchSampler, augment_batch, check_values, grid_patches, to_samples
from .masking import Masked, mask_batch, masked_mse

__all__ = ["N2V", "Progress"]

# the shared progress type and device helpers; the old private names stay for callers and tests
_default_device = choose_device
_memory_budget = memory_budget


class N2V:
    """Noise2Void denoiser (Krull et al. 2019), with the N2V2 and structN2V variants.

    Parameters
    ----------
    config : N2VConfig, optional
        Model and training settings (defaults: 2D, published N2V).
    device : str or torch.device, optional
        Where to train and predict; CUDA when available, else CPU.

    Examples
    --------
    >>> model = N2V(N2VConfig(axes="YX", epochs=20))
    >>> history = model.train(noisy)                      # doctest: +SKIP
    >>> clean = model.predict(noisy)                      # doctest: +SKIP
    >>> model.save("my_n2v.zip")                          # doctest: +SKIP
    """

    def __init__(self, config: N2VConfig | None = None, device: str | torch.device | None = None):
        self.config = config if config is not None else N2VConfig()
        self.device = _default_device(device)
        self.net: UNet | None = None
        self.mean: np.ndarray | None = None  # per channel, float64
        self.std: np.ndarray | None = None
        self.history: Any = None
        self._amp: torch.dtype | None = None  # autocast dtype of the current training
        #: where an imported model came from (source, sha256, original config), else None
        self.provenance: dict[str, Any] | None = None

    # ------------------------------------------------------------------ helpers
    @property
    def is_trained(self) -> bool:
        return self.net is not None and self.mean is not None

    def _build(self, n_channels: int) -> None:
        self.config = self.config.replace(n_channels=int(n_channels))
        torch.manual_seed(self.config.seed)
        if self.config.original_net is not None:  # a model imported from n2v (juglab) or CAREamics
            from .original import build_original_net

            self.net = build_original_net(self.config).to(self.device)
        else:
            self.net = UNet(**self.config.unet_kwargs()).to(self.device)
        if self.config.ndim == 2:
            # NHWC convolutions are about 25 % faster on CPU (oneDNN), no slower on GPU
            self.net = self.net.to(memory_format=torch.channels_last)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x

    def _norm(self, samples: np.ndarray) -> np.ndarray:
        shape = (1, -1) + (1,) * (samples.ndim - 2)
        mean = self.mean.astype(np.float32).reshape(shape)
        std = self.std.astype(np.float32).reshape(shape)
        return (samples - mean) / std

    def _prepare(self, images: Any, what: str) -> list[np.ndarray]:
        """List of ``(C, *spatial)`` float32 arrays from one image or many."""
        cfg = self.config
        seq = images if isinstance(images, (list, tuple)) else [images]
        if not seq:
            raise ValueError(f"{what}: no images given")
        out: list[np.ndarray] = []
        for k, im in enumerate(seq):
            name = f"{what} {k}" if len(seq) > 1 else what
            samples, _ = to_samples(im, cfg.axes, cfg.ndim, name)
            check_values(samples, name)
            out.extend(list(samples))
        channels = {s.shape[0] for s in out}
        if len(channels) > 1:
            raise ValueError(f"{what}: images have different channel counts {sorted(channels)}")
        return out

    # ------------------------------------------------------------------ training
    def train(
        self,
        images: Any,
        validation: Any = None,
        progress: Progress | None = None,
        show_progress: bool = True,
    ):
        """Train on the noisy images themselves.

        Parameters
        ----------
        images : ndarray, xarray.DataArray, or a list of them
            2D or 3D, with or without channels; numpy axes per
            ``config.axes``, xarray by dim names. Sample axes (``S``/``T``)
            give independent images.
        validation : same types, optional
            Held-out images for the validation loss. Without it a
            ``config.validation_fraction`` of the data is held out.
        progress : callable, optional
            ``progress(done, total, message)`` after every step.
        show_progress : bool
            Show a tqdm bar.

        Returns
        -------
        pandas.DataFrame
            One row per epoch: ``epoch``, ``train_loss``, ``val_loss``, ``lr``,
            ``seconds``. The weights of the epoch with the lowest validation
            loss are kept (the last ones without validation).
        """
        import pandas as pd
        from tqdm.auto import tqdm

        cfg = self.config
        train = self._prepare(images, "training image")
        n_ch = train[0].shape[0]
        if self.net is not None and cfg.n_channels not in (None, n_ch):
            raise ValueError(f"model has {cfg.n_channels} channels, images have {n_ch}")
        for s in train:
            if any(a < p for a, p in zip(s.shape[1:], cfg.patch_size)):
                raise ValueError(
                    f"patch_size {cfg.patch_size} is larger than the image (spatial shape "
                    f"{s.shape[1:]}); choose patch_size <= image size")
        val: list[np.ndarray] | None
        if validation is not None:
            val = self._prepare(validation, "validation image")
            if val[0].shape[0] != n_ch:
                raise ValueError(f"validation images have {val[0].shape[0]} channels, training {n_ch}")
        else:
            train, val = self._split(train)

        rng = np.random.default_rng(cfg.seed)
        # normalisation from the training data (float64 accumulation)
        stack = np.concatenate([s.reshape(n_ch, -1) for s in train], axis=1).astype(np.float64)
        self.mean = stack.mean(axis=1)
        self.std = stack.std(axis=1)
        del stack
        if self.net is None:
            self._build(n_ch)
        net = self.net
        assert net is not None
        dev = self.device
        # batches are drawn, augmented and masked on the CPU (cheap, under 1 % of a CPU step; the
        # same batches on every device) and sent to the device in one asynchronous copy each
        timgs = [torch.from_numpy(np.ascontiguousarray(self._norm(s[None])[0])) for s in train]
        sampler = PatchSampler(timgs, cfg.patch_size)
        strategy = "median" if cfg.variant == "N2V2" else "uniform"
        struct = cfg.struct_mask if cfg.variant == "structN2V" else None

        def manip(x: torch.Tensor, r: np.random.Generator) -> Masked:
            return mask_batch(x, r, cfg.masked_fraction, cfg.neighborhood_radius, strategy, struct)

        val_batches: list[Masked] = []
        if val:
            vrng = np.random.default_rng([cfg.seed, 1])
            vp = grid_patches([self._norm(v[None])[0] for v in val], cfg.patch_size,
                              cfg.max_val_patches, vrng)
            # few masked pixels per patch make a noisy loss: repeat the patches with
            # independent masks, up to max_val_patches in all
            repeats = max(1, min(cfg.max_val_patches // len(vp),
                                 math.ceil(1024 / (len(vp) * cfg.n_masked_per_patch * n_ch))))
            vp = np.concatenate([vp] * repeats)
            for i in range(0, len(vp), cfg.batch_size):
                xb = torch.from_numpy(np.ascontiguousarray(vp[i:i + cfg.batch_size])).to(dev)
                val_batches.append(manip(xb, vrng))

        amp = cfg.training_dtype(dev)
        warn_if_emulated(amp, dev, "precision")
        # bfloat16 autocast (an option, see N2VConfig.precision): the convolutions run in
        # bfloat16, weights, optimizer state and the loss stay float32
        autocast = torch.autocast(dev.type, dtype=amp, enabled=amp is not None)
        self._amp = amp
        opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
        total_steps = cfg.epochs * cfg.steps_per_epoch
        if cfg.lr_schedule == "cosine":
            sched: Any = torch.optim.lr_scheduler.CosineAnnealingLR(
                opt, T_max=total_steps, eta_min=0.01 * cfg.learning_rate)
        else:
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode="min", factor=0.5, patience=cfg.lr_patience)

        rows = []
        best = math.inf
        best_state = None
        bar = tqdm(total=total_steps, desc="N2V training", disable=not show_progress, leave=False)
        done = 0
        # deterministic cuDNN for this training only; the bar closes on any exit (tqdm's context)
        with training_backends(dev), bar:
            for epoch in range(cfg.epochs):
                t0 = time.perf_counter()
                net.train()
                losses = torch.zeros((), device=dev)
                for _ in range(cfg.steps_per_epoch):
                    cancel.check()  # a time limit, a signal or Esc stops training here
                    xb = sampler.sample(cfg.batch_size, rng)
                    if cfg.augment:
                        xb = augment_batch(xb, rng)
                    m = manip(xb, rng)
                    m = Masked(*(to_device(t, dev) for t in (m.inputs, m.index, m.targets)))
                    with autocast:
                        pred = net(self._layout(m.inputs))
                    loss = masked_mse(pred.float(), m)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if cfg.lr_schedule == "cosine":
                        sched.step()
                    losses += loss.detach()
                    done += 1
                    bar.update(1)
                    if progress is not None:
                        progress(done, total_steps, f"epoch {epoch + 1}/{cfg.epochs}")
                train_loss = float(losses) / cfg.steps_per_epoch
                val_loss = self._val_loss(val_batches) if val_batches else float("nan")
                lr = opt.param_groups[0]["lr"]
                if cfg.lr_schedule == "plateau":
                    sched.step(val_loss if val_batches else train_loss)
                rows.append(dict(epoch=epoch + 1, train_loss=train_loss, val_loss=val_loss, lr=lr,
                                 seconds=time.perf_counter() - t0))
                bar.set_postfix(loss=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
                if val_batches and val_loss < best:
                    best = val_loss
                    best_state = copy.deepcopy(net.state_dict())
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        self.history = pd.DataFrame(rows)
        self.history["best"] = self.history["val_loss"] == best if val_batches else False
        return self.history

    def _split(self, samples: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Hold out ``validation_fraction`` of the data for validation."""
        cfg = self.config
        frac = cfg.validation_fraction
        if frac == 0:
            return samples, []
        n = len(samples)
        k = int(round(frac * n))
        if n >= 2 and k >= 1:
            order = np.random.default_rng([cfg.seed, 2]).permutation(n)
            held = set(order[:min(k, n - 1)].tolist())
            return ([s for i, s in enumerate(samples) if i not in held],
                    [s for i, s in enumerate(samples) if i in held])
        # too few images to hold out whole ones: a band at the end of the longest in-plane
        # axis of every image (each image keeps training on the rest of its pixels)
        train, val = [], []
        for s in samples:
            sp = s.shape[1:]
            axis = len(sp) - 2 + int(np.argmax(sp[-2:]))
            size, p = sp[axis], cfg.patch_size[axis]
            band = max(p, int(math.ceil(frac * size)))
            if size - band >= p:
                cut = size - band
                train.append(s[(slice(None),) * (axis + 1) + (slice(0, cut),)])
                val.append(s[(slice(None),) * (axis + 1) + (slice(cut, None),)])
            else:
                train.append(s)
        if val:
            return train, val
        warnings.warn("image too small to hold out a validation band of one patch; validating on "
                      "the training image (pass validation= in Python or --val IMAGE on the command line for "
                      "an independent estimate)",
                      stacklevel=3)
        return samples, samples

    @torch.no_grad()
    def _val_loss(self, batches: list[Masked]) -> float:
        net = self.net
        assert net is not None
        net.eval()
        tot, n = 0.0, 0
        amp = self._amp
        for m in batches:
            with torch.autocast(self.device.type, dtype=amp, enabled=amp is not None):
                pred = net(self._layout(m.inputs))
            tot += float(torch.sum((pred.float().reshape(-1)[m.index] - m.targets) ** 2))
            n += int(m.index.numel())
        net.train()
        return tot / max(n, 1)

    # ------------------------------------------------------------------ prediction
    def predict(
        self,
        image: Any,
        tile_shape: int | Sequence[int] | None = None,
        tta: bool = False,
        progress: Progress | None = None,
        axes: str | None = None,
        show_progress: bool = False,
    ):
        """Denoise an image.

        Parameters
        ----------
        image : ndarray or xarray.DataArray
            Any size. numpy axes are ``axes`` (default ``config.axes``);
            xarray dims are read by name. The channel count must match the
            model's.
        tile_shape : int or sequence of int, optional
            Core tile size per spatial axis. Tiles overlap by the network's
            receptive field, so tiled and untiled results agree to float
            rounding. Default: the whole image, or automatic tiles when it
            would not fit the memory budget.
        tta : bool
            Average the 8 flips/rotations in the YX plane (8× slower).
        progress : callable, optional
            ``progress(done, total, message)`` after each batch of tiles.
        axes : str, optional
            Axes of a numpy ``image`` if they differ from ``config.axes``.
        show_progress : bool
            Show a tqdm bar.

        Returns
        -------
        ndarray or xarray.DataArray, float32
            Same shape/dims (and, for xarray, coords and attrs) as ``image``.
        """
        if not self.is_trained:
            raise RuntimeError("the model is not trained: call train() or N2V.load() first")
        cfg = self.config
        samples, restore = to_samples(image, axes or cfg.axes, cfg.ndim, "image to denoise")
        if samples.shape[1] != cfg.n_channels:
            raise ValueError(f"the model expects {cfg.n_channels} channel(s), the image has "
                             f"{samples.shape[1]}")
        if not np.all(np.isfinite(samples)):
            raise ValueError("image to denoise contains NaN or infinite values")
        x = self._norm(samples)
        crop = None
        if cfg.original_net is not None:  # an imported n2v model: pad the image as n2v does
            from .original import pad_like_n2v

            x, crop = pad_like_n2v(x, cfg.divisor)
        spatial = x.shape[2:]
        div = cfg.divisor
        halo = tuple(int(math.ceil(r / d) * d) for r, d in zip(cfg.receptive_radius, div))
        bpp = 4.0 * cfg.unet_filters * 10  # peak activation bytes per pixel, eval mode
        budget = _memory_budget(self.device)
        if tile_shape is None:
            n_tiles = auto_n_tiles(spatial, bpp, budget)
            core = tuple(math.ceil(s / k) for s, k in zip(spatial, n_tiles))
        else:
            core = (int(tile_shape),) * len(spatial) if np.isscalar(tile_shape) else tuple(
                int(t) for t in tile_shape)
            if len(core) != len(spatial) or min(core) < 1:
                raise ValueError(f"tile_shape needs {len(spatial)} positive values, got {tile_shape}")
        # align tiles to the pooling grid so that tiled == untiled
        core = tuple(max(d, int(math.ceil(c / d) * d)) for c, d in zip(core, div))
        tiles = list(iter_tiles(spatial, core, halo))
        # group tiles of equal read shape into batches
        groups: dict[tuple[int, ...], list] = {}
        for t in tiles:
            groups.setdefault(tuple(sl.stop - sl.start for sl in t.read), []).append(t)
        total = len(tiles) * len(x)
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="N2V prediction", disable=not show_progress, leave=False)
        out = np.empty_like(x)
        done = 0
        net = self.net
        assert net is not None
        net.eval()
        try:
            with torch.inference_mode():
                for si in range(len(x)):
                    for shape, group in groups.items():
                        per = max(1, int(budget // (bpp * np.prod(shape))))
                        for g0 in range(0, len(group), per):
                            cancel.check()
                            chunk = group[g0:g0 + per]
                            batch = np.stack([x[si][(slice(None),) + t.read] for t in chunk])
                            res = self._forward(torch.from_numpy(batch).to(self.device), tta)
                            res = res.cpu().numpy()
                            for t, r in zip(chunk, res):
                                out[si][(slice(None),) + t.write] = r[(slice(None),) + t.crop]
                            done += len(chunk)
                            bar.update(len(chunk))
                            if progress is not None:
                                progress(done, total, "denoising")
        finally:
            bar.close()
        if crop is not None:
            out = out[crop]
        shape = (1, -1) + (1,) * (out.ndim - 2)
        out = out * self.std.astype(np.float32).reshape(shape) + self.mean.astype(np.float32).reshape(shape)
        return restore(out.astype(np.float32, copy=False))

    def _forward(self, x: torch.Tensor, tta: bool) -> torch.Tensor:
        """Network on a batch of any spatial size (padded to the divisor), optional TTA."""
        if not tta:
            return self._forward_padded(x)
        acc = torch.zeros_like(x)
        for k in range(4):
            for flip in (False, True):
                t = torch.rot90(x, k, dims=(-2, -1))
                if flip:
                    t = t.flip(-1)
                y = self._forward_padded(t)
                if flip:
                    y = y.flip(-1)
                acc += torch.rot90(y, -k, dims=(-2, -1))
        return acc / 8

    def _forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        div = self.config.divisor
        spatial = x.shape[2:]
        pad = [(-s) % d for s, d in zip(spatial, div)]
        if any(pad):
            # F.pad wants the last axis first
            pads: list[int] = []
            for p in reversed(pad):
                pads += [0, p]
            mode = "reflect" if all(p < s for p, s in zip(pad, spatial)) else "replicate"
            x = F.pad(x, pads, mode=mode)
        y = self.net(self._layout(x))
        return y[(slice(None), slice(None)) + tuple(slice(0, s) for s in spatial)]

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the model as a folder, or a zip if ``path`` ends with ``.zip``.

        The model file holds ``n2v_model.json`` (format, ij_bridge and torch
        versions, config, normalisation, training history, weights checksum)
        and ``weights.pt`` (the state dict). It is written to a hidden
        temporary sibling and renamed into place; an existing model is
        replaced only with ``overwrite=True`` (a folder without
        ``n2v_model.json`` never).

        Raises
        ------
        ij_bridge.model_files.DestinationError
            ``path`` exists and not ``overwrite``, or is not writable.
        """
        from .model_io import save_model

        if not self.is_trained:
            raise RuntimeError("nothing to save: the model is not trained")
        return save_model(self, Path(path), overwrite=overwrite)

    def export_bioimageio(self, path: str | os.PathLike, test_input: Any, **kwargs: Any) -> Path:
        """Write a BioImage Model Zoo package; see :func:`ij_bridge.n2v.bioimageio.export_bioimageio`."""
        from .bioimageio import export_bioimageio

        return export_bioimageio(self, path, test_input, **kwargs)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device | None = None) -> "N2V":
        """Load a model written by :meth:`save` (folder or zip), or one of the original n2v.

        Models of the original n2v package (juglab) are read as they are: the
        model folder or its zip (``config.json`` and ``weights_best.h5``) and
        its ``tf_model.zip`` export; see :func:`ij_bridge.n2v.original.load_original`.

        Raises
        ------
        FileNotFoundError
            The path or a file inside the model is missing.
        ValueError
            The model file is corrupt or not an ij-bridge N2V model.
        """
        from .model_io import load_model
        from .original import detect, load_original

        if detect(Path(path).expanduser()) is not None:
            return load_original(cls, path, device)
        return load_model(cls, Path(path), device)
