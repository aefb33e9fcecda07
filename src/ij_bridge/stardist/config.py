"""Configuration of a StarDist model."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["StarDistConfig"]


@dataclass
class StarDistConfig:
    """Everything that defines a StarDist model and its training.

    Parameters
    ----------
    ndim : int
        2 or 3 spatial dimensions (set by :class:`StarDist2D` / :class:`StarDist3D`).
    n_rays : int, optional
        Number of rays; default 32 in 2D, 96 in 3D.
    grid : tuple of int, optional
        Output subsampling per axis (powers of two); default ``(2, 2)`` in 2D,
        ``(1, 2, 2)`` in 3D. Candidates are predicted at every ``grid``-th pixel.
    n_channels : int
        Number of input channels.
    anisotropy : tuple of float, optional
        3D only: relative voxel size (z, y, x), e.g. ``(2, 1, 1)`` for z-steps
        twice the pixel size; it spreads the rays evenly in physical space (the
        original's ``Rays_GoldenSpiral(anisotropy=...)``) and scales the
        distance transform of the probability targets. ``None`` (default): the
        first training of a fresh model sets it from the training labels, as
        the original's examples do (the largest median object extent divided by
        each axis' median extent,
        :func:`ij_bridge.stardist.augment.anisotropy_from_labels`); give
        ``(1, 1, 1)`` for isotropic rays.
    backbone : str
        ``"unet"`` (default) or ``"resnet"`` (the residual backbone of the
        original StarDist3D's examples; :class:`ij_bridge.nets.resnet.ResNet`).
    unet_depth, unet_n_filters, unet_kernel_size : int
        Backbone U-Net (3, 32, 3 as in the original).
    unet_pool : tuple of int, optional
        U-Net pooling per axis (default 2 on every axis).
    resnet_n_blocks, resnet_n_filters, resnet_kernel_size, resnet_n_conv_per_block : int
        ResNet backbone (4 blocks, 32 filters doubled at the strided blocks,
        kernel 3, 3 convolutions per block, as in the original).
    head_channels : int
        Width of the 3×3 convolution between the backbone and the outputs (128).
    patch_size : tuple of int, optional
        Training patch size; default ``(128, 128)`` in 2D, ``(32, 64, 64)`` in 3D.
    batch_size, epochs, steps_per_epoch : int
        Training schedule.
    learning_rate : float
        Adam learning rate; halved when the validation loss plateaus.
    seed : int
        Seeds weights initialisation and patch sampling (reproducible runs).
    dist_loss_weight : float
        Weight of the distance loss (0.2).
    background_reg : float
        Weight of the background regulariser (mean |dist| on background).
    foreground_prob : float
        Fraction of patches centred on a foreground pixel.
    augment : bool
        Flips, 90° rotations and intensity scaling/shift (3D: in the YX plane,
        rotations only for equal y/x voxel sizes, and flips in Z;
        :mod:`ij_bridge.stardist.augment`).
    percentiles : (float, float)
        Normalisation percentiles per channel.
    prob_thresh, nms_thresh : float
        Default thresholds (replaced by :func:`optimize_thresholds`).
    train_precision : {"float32", "bfloat16", "auto"}
        Arithmetic of the training forward/backward pass. ``"bfloat16"`` runs
        the network under ``torch.autocast`` (weights, optimizer state, the loss
        and prediction stay float32). On a quiet CPU with AMX/AVX512-BF16 a
        step of the benchmark's budget took 0.46x the original StarDist's at
        2 threads and 0.34x at 1 thread (float32: 0.96-1.00x;
        docs/benchmarks.md). On a busy machine use 1 thread with bfloat16:
        oneDNN's AMX weight-gradient kernel busy-waits for its partner thread.
        ``"auto"``: bfloat16 on such CPUs and on CUDA GPUs of compute capability
        8.0 and later (bfloat16 tensor cores), float32 elsewhere.
        Default ``"float32"``: bit-for-bit the earlier training on the same
        CPU type, and the arithmetic that every CPU has natively (torch's
        kernels differ between CPU types in float32 too, so a seed repeats
        exactly on one CPU type, not across them). On a CPU without bfloat16
        arithmetic (AVX2 only) torch emulates it: a step took 8.5x float32's
        time there, and training warns
        (:class:`ij_bridge.device.EmulatedBfloat16Warning`).
    original : dict, optional
        The architecture of a model imported from the original StarDist (Keras),
        as :func:`ij_bridge.stardist.original.original_architecture` gives it; the
        network is then the original's (:class:`~ij_bridge.stardist.original.OriginalStarDistNet`)
        and the ``unet_*``/``head_channels`` fields are not used.
    """

    ndim: int = 2
    n_rays: int | None = None
    grid: tuple[int, ...] | None = None
    n_channels: int = 1
    anisotropy: tuple[float, ...] | None = None
    unet_depth: int = 3
    unet_n_filters: int = 32
    unet_kernel_size: int = 3
    unet_pool: tuple[int, ...] | None = None
    backbone: str = "unet"
    resnet_n_blocks: int = 4
    resnet_n_filters: int = 32
    resnet_kernel_size: int = 3
    resnet_n_conv_per_block: int = 3
    head_channels: int = 128
    patch_size: tuple[int, ...] | None = None
    batch_size: int = 4
    epochs: int = 50
    steps_per_epoch: int = 100
    learning_rate: float = 3e-4
    seed: int = 0
    dist_loss_weight: float = 0.2
    background_reg: float = 1e-4
    foreground_prob: float = 0.9
    augment: bool = True
    percentiles: tuple[float, float] = (1.0, 99.8)
    prob_thresh: float = 0.5
    nms_thresh: float = 0.4
    train_precision: str = "float32"
    original: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.ndim not in (2, 3):
            raise ValueError(f"ndim must be 2 or 3, got {self.ndim}")
        d = self.ndim
        if self.n_rays is None:
            self.n_rays = 32 if d == 2 else 96
        if self.grid is None:
            self.grid = (2, 2) if d == 2 else (1, 2, 2)
        if self.patch_size is None:
            self.patch_size = (128, 128) if d == 2 else (32, 64, 64)
        if isinstance(self.grid, int):
            self.grid = (self.grid,) * d
        if isinstance(self.patch_size, int):
            self.patch_size = (self.patch_size,) * d
        self.grid = tuple(int(g) for g in self.grid)
        self.patch_size = tuple(int(p) for p in self.patch_size)
        self.percentiles = tuple(float(p) for p in self.percentiles)
        if self.unet_pool is not None:
            self.unet_pool = tuple(int(p) for p in self.unet_pool)
        if self.anisotropy is not None:
            self.anisotropy = tuple(float(a) for a in self.anisotropy)
        self.backbone = str(self.backbone).lower()
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad field."""
        d = self.ndim
        if int(self.n_rays) < (3 if d == 2 else 8):
            raise ValueError(f"n_rays={self.n_rays} is too small")
        if len(self.grid) != d or any(g < 1 or g & (g - 1) for g in self.grid):
            raise ValueError(f"grid must be {d} powers of two, got {self.grid}")
        if len(self.patch_size) != d:
            raise ValueError(f"patch_size needs {d} entries, got {self.patch_size}")
        if self.unet_pool is not None and len(self.unet_pool) != d:
            raise ValueError(f"unet_pool needs {d} entries, got {self.unet_pool}")
        if self.backbone not in ("unet", "resnet"):
            raise ValueError(f"backbone must be 'unet' or 'resnet', got {self.backbone!r}")
        if self.train_precision not in ("float32", "bfloat16", "auto"):
            raise ValueError(f"train_precision must be 'float32', 'bfloat16' or 'auto', "
                             f"got {self.train_precision!r}")
        if self.backbone == "resnet":
            need = max(int(g).bit_length() - 1 for g in self.grid)
            if int(self.resnet_n_blocks) < max(need, 1):
                raise ValueError(f"resnet_n_blocks={self.resnet_n_blocks} is too few for grid "
                                 f"{self.grid} (needs {max(need, 1)})")
            if int(self.resnet_n_conv_per_block) < 2:
                raise ValueError(f"resnet_n_conv_per_block must be >= 2, got {self.resnet_n_conv_per_block}")
            if int(self.resnet_kernel_size) % 2 != 1:
                raise ValueError(f"resnet_kernel_size must be odd, got {self.resnet_kernel_size}")
        div = self.divisor
        bad = [p for p, q in zip(self.patch_size, div) if p % q]
        if bad:
            raise ValueError(f"patch_size {self.patch_size} must be divisible by {div} "
                             "(grid × 2**unet_depth; the grid for the ResNet)")
        if self.anisotropy is not None and (d != 3 or len(self.anisotropy) != 3):
            raise ValueError("anisotropy is for 3D models and needs 3 values (z, y, x)")
        if self.anisotropy is not None and any(not a > 0 for a in self.anisotropy):
            raise ValueError(f"anisotropy must be positive, got {self.anisotropy}")
        if self.n_channels < 1:
            raise ValueError(f"n_channels must be >= 1, got {self.n_channels}")
        lo, hi = self.percentiles
        if not 0 <= lo < hi <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles}")
        for name in ("batch_size", "epochs", "steps_per_epoch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.original is not None:
            o = self.original
            if (int(o.get("n_dim", d)), int(o.get("n_rays", self.n_rays)), tuple(o.get("grid", self.grid)),
                    int(o.get("n_channel_in", self.n_channels))) != (d, self.n_rays, self.grid, self.n_channels):
                raise ValueError("the original architecture (original=) disagrees with ndim / n_rays / "
                                 "grid / n_channels")
        if not 0 < self.learning_rate:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")

    @property
    def divisor(self) -> tuple[int, ...]:
        """Input sizes must be multiples of this (grid × U-Net pooling; the grid for the ResNet)."""
        if self.original is not None:
            from .original import architecture_divisor

            return architecture_divisor(self.original)
        if self.backbone == "resnet":
            return tuple(self.grid)
        pool = self.unet_pool or (2,) * self.ndim
        return tuple(g * p**self.unet_depth for g, p in zip(self.grid, pool))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StarDistConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        extra = dict(d.get("extra", {}))
        extra.update({k: d[k] for k in unknown})
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names}
        kw["extra"] = extra
        return cls(**kw)
