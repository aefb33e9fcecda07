"""Configuration of a Noise2Void model (no torch import here)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping

__all__ = ["N2VConfig", "StructMask", "VARIANTS", "AXES_LETTERS"]

VARIANTS = ("N2V", "N2V2", "structN2V")

#: Letters allowed in :attr:`N2VConfig.axes`: ``T`` independent samples (stacks of
#: images, time points; the old ``S`` too, deprecated), ``C`` channels, ``Z``, ``Y``, ``X`` space.
AXES_LETTERS = "STCZYX"


@dataclass
class StructMask:
    """Line mask of structN2V (Broaddus et al. 2020).

    Pixels on a line through each masked pixel are masked too, so that noise
    correlated along that line (stripes, scan lines) cannot be learnt.

    Attributes
    ----------
    direction : {"horizontal", "vertical"}
        ``"horizontal"`` masks along X (rows of the image, e.g. line-scan
        noise), ``"vertical"`` along Y.
    span : int
        Length of the line in pixels, centre included; odd, >= 3.
    """

    direction: Literal["horizontal", "vertical"] = "horizontal"
    span: int = 5

    def __post_init__(self) -> None:
        if self.direction not in ("horizontal", "vertical"):
            raise ValueError(
                f"struct_mask direction must be 'horizontal' or 'vertical', got {self.direction!r}")
        self.span = int(self.span)
        if self.span < 3 or self.span % 2 == 0:
            raise ValueError(f"struct_mask span must be an odd number >= 3, got {self.span}")


@dataclass
class N2VConfig:
    """Everything that defines a Noise2Void model and its training.

    The defaults follow the published N2V (Krull et al. 2019) and CAREamics:
    64×64 patches (32×64×64 in 3D) augmented with flips and 90° rotations,
    0.2 % of the pixels masked with a neighbourhood radius of 5, a U-Net of
    depth 2 with 32 first-layer filters and 3×3 kernels, MSE on the masked
    pixels only, Adam at 1e-3 (CAREamics' rate; the published N2V used
    4e-4, which trains slower on short budgets) with the learning rate halved
    when the validation loss plateaus, and 10 % of the data kept for
    validation.

    Attributes
    ----------
    axes : str
        Meaning of the axes of *numpy* inputs, e.g. ``"YX"``, ``"ZYX"``,
        ``"CYX"``, ``"YXC"``, ``"TYX"``, ``"TZYXC"``. Letters: ``T``
        independent samples, ``C`` channels, ``Z``, ``Y``, ``X``. ``Y`` and
        ``X`` are required; with ``Z`` the model is 3D. ``S`` still means
        independent samples, with a :class:`DeprecationWarning` when data are
        read (``S`` is ImageJ's RGB sample axis, see :mod:`ij_bridge.layout`).
        xarray inputs are read by their dim names instead (``t``, ``c``, ``z``,
        ``y``, ``x`` and the aliases of :data:`ij_bridge.layout.ALIASES`; RGB
        samples ``s`` are channels) and must agree with the model's
        dimensionality (``z`` iff ``Z`` here).
    patch_size : tuple of int, optional
        Training patch size per spatial axis (``(Y, X)`` or ``(Z, Y, X)``);
        each a multiple of ``2**unet_depth`` along pooled axes. Default
        ``(64, 64)`` or ``(32, 64, 64)``.
    batch_size : int
        Patches per gradient step.
    epochs : int
        Number of epochs; validation, checkpointing and the learning-rate
        schedule act once per epoch.
    steps_per_epoch : int
        Gradient steps per epoch.
    variant : {"N2V", "N2V2", "structN2V"}
        ``N2V``: masked pixels replaced by a uniformly drawn neighbour.
        ``N2V2``: replaced by the neighbourhood median, U-Net with
        blur-pooling and no top skip connection (no checkerboard artefacts).
        ``structN2V``: as N2V plus the line mask :attr:`struct_mask`.
    masked_fraction : float
        Fraction of the pixels of each patch that are masked (0.002 = 0.2 %).
    neighborhood_radius : int
        Replacement values come from the ``(2r+1)**ndim`` box around the
        masked pixel, the pixel itself excluded.
    struct_mask : StructMask, optional
        Required for ``structN2V``; a dict ``{"direction", "span"}`` works too.
    seed : int
        Seeds weights, patch sampling, augmentation and masking: the same seed
        on the same device gives the same weights.
    learning_rate : float
        Initial Adam learning rate.
    lr_patience : int
        Epochs without validation improvement before the rate is halved.
    lr_schedule : {"plateau", "cosine"}
        ``plateau`` (published N2V) or cosine decay to 1 % over all steps,
        which suits short fixed budgets.
    validation_fraction : float
        Share of the data held out for validation when ``train`` gets no
        ``validation``: whole samples if there are several, otherwise a band
        at the end of the longest in-plane axis. 0 disables validation (the
        last weights are kept).
    max_val_patches : int
        At most this many validation patches; few patches are repeated with
        independent masks (up to this number) to steady the validation loss.
    augment : bool
        Random flips and 90° rotations in the YX plane.
    precision : {"auto", "float32", "bfloat16"}
        Arithmetic of the training forward/backward pass (weights, optimizer,
        loss and prediction stay float32). ``bfloat16`` runs the network under
        ``torch.autocast`` (CPU: about 2.5x faster per step on CPUs with
        AMX/AVX512-BF16; results differ from float32 by rounding). ``auto``:
        bfloat16 on such CPUs (:func:`bf16_native`) and on CUDA GPUs of compute
        capability 8.0 and later, float32 elsewhere. Default ``float32``, the
        arithmetic every CPU has natively. Over the
        17 image x noise cases of the benchmark grid (seed 0) bfloat16 was
        +0.16 dB from float32 on average but -2.5 to +6.1 dB case by case
        (docs/benchmarks.md), so it is opt-in. Without bfloat16 arithmetic
        (AVX2-only CPUs) torch emulates it, 9x float32's time per step on
        an AMD EPYC, and training warns (:class:`ij_bridge.device.EmulatedBfloat16Warning`).
    unet_depth, unet_filters, unet_kernel_size, unet_n_conv_per_depth, unet_batch_norm
        U-Net shape (see :class:`ij_bridge.nets.unet.UNet`).
    unet_pool : tuple of int, optional
        Pooling per spatial axis, e.g. ``(1, 2, 2)`` for anisotropic stacks.
    n_channels : int, optional
        Number of image channels; set by training.
    original_net : dict, optional
        Set for imported models. ``family="n2v"`` (juglab): the network is
        n2v's own U-Net (:class:`ij_bridge.nets.n2v_original.N2VOriginalNet`)
        with these settings (``single_net_per_channel``, ``residual``,
        ``blurpool``, ``skip_skipone``, ``last_activation``,
        ``batch_norm_eps``) and the ``unet_*`` fields above.
        ``family="careamics"``: CAREamics' UNet
        (:class:`ij_bridge.nets.careamics_unet.CAREamicsUNet`) built from
        ``model`` (CAREamics' ``algorithm_config.model``). Otherwise the
        network is :class:`ij_bridge.nets.unet.UNet`.
    """

    axes: str = "YX"
    patch_size: tuple[int, ...] | None = None
    batch_size: int = 16
    epochs: int = 10
    steps_per_epoch: int = 100
    variant: str = "N2V"
    masked_fraction: float = 0.002
    neighborhood_radius: int = 5
    struct_mask: StructMask | None = None
    seed: int = 0
    learning_rate: float = 1e-3
    lr_patience: int = 10
    lr_schedule: str = "plateau"
    validation_fraction: float = 0.1
    max_val_patches: int = 32
    augment: bool = True
    precision: str = "float32"
    unet_depth: int = 2
    unet_filters: int = 32
    unet_kernel_size: int = 3
    unet_n_conv_per_depth: int = 2
    unet_batch_norm: bool = True
    unet_pool: tuple[int, ...] | None = None
    n_channels: int | None = None
    original_net: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.original_net is not None:
            if not isinstance(self.original_net, Mapping) or self.original_net.get("family") not in (
                    "n2v", "careamics"):
                raise ValueError("original_net must be a dict with family 'n2v' or 'careamics', "
                                 f"got {self.original_net!r}")
            self.original_net = dict(self.original_net)
        axes = str(self.axes).upper()
        bad = [a for a in axes if a not in AXES_LETTERS]
        if bad or len(set(axes)) != len(axes) or "Y" not in axes or "X" not in axes:
            raise ValueError(
                f"axes={self.axes!r} is invalid: use each of the letters S,T,C,Z,Y,X at most once, "
                "with Y and X present, e.g. 'YX', 'ZYX', 'CYX', 'YXC', 'TYX'")
        self.axes = axes
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if isinstance(self.struct_mask, Mapping):
            self.struct_mask = StructMask(**self.struct_mask)
        if self.variant == "structN2V" and self.struct_mask is None:
            raise ValueError("variant 'structN2V' needs struct_mask=StructMask(direction, span)")
        if self.variant != "structN2V" and self.struct_mask is not None:
            raise ValueError(f"struct_mask is only used by variant 'structN2V', not {self.variant!r}")
        nd = self.ndim
        if self.patch_size is None:
            self.patch_size = (64, 64) if nd == 2 else (32, 64, 64)
        if isinstance(self.patch_size, int):
            self.patch_size = (self.patch_size,) * nd
        self.patch_size = tuple(int(p) for p in self.patch_size)
        if len(self.patch_size) != nd:
            raise ValueError(f"patch_size needs {nd} values for axes {self.axes!r}, got {self.patch_size}")
        if self.unet_pool is not None:
            self.unet_pool = tuple(int(p) for p in self.unet_pool)
            if len(self.unet_pool) != nd:
                raise ValueError(f"unet_pool needs {nd} values, got {self.unet_pool}")
        div = self.divisor
        for p, d in zip(self.patch_size, div):
            if p % d or p < 2 * d:
                raise ValueError(
                    f"patch_size {self.patch_size} must be multiples of {div} (2**unet_depth) "
                    f"and at least twice that")
        for name in ("batch_size", "epochs", "steps_per_epoch", "unet_depth", "unet_filters"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.masked_fraction < 0.5:
            raise ValueError(f"masked_fraction must be in (0, 0.5), got {self.masked_fraction}")
        if int(self.neighborhood_radius) < 1:
            raise ValueError(f"neighborhood_radius must be >= 1, got {self.neighborhood_radius}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        if self.lr_schedule not in ("plateau", "cosine"):
            raise ValueError(f"lr_schedule must be 'plateau' or 'cosine', got {self.lr_schedule!r}")
        if self.precision not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"precision must be 'auto', 'float32' or 'bfloat16', got {self.precision!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")

    # --- derived -------------------------------------------------------
    @property
    def ndim(self) -> int:
        """Number of spatial dimensions of the model (2 or 3)."""
        return 3 if "Z" in self.axes.upper() else 2

    @property
    def pool(self) -> tuple[int, ...]:
        return self.unet_pool if self.unet_pool is not None else (2,) * self.ndim

    @property
    def divisor(self) -> tuple[int, ...]:
        """Spatial sizes the network needs multiples of."""
        return tuple(p ** self.unet_depth for p in self.pool)

    @property
    def receptive_radius(self) -> tuple[int, ...]:
        """A safe upper bound of the network's receptive-field radius per axis (pixels)."""
        k = (self.unet_kernel_size - 1) // 2
        n = self.unet_n_conv_per_depth
        radius = []
        for p in self.pool:
            r = 0
            for level in range(self.unet_depth):
                r += 2 * n * k * p**level + 2 * p**level  # down + up convs, pooling/blur
            r += 2 * n * k * p**self.unet_depth + p**self.unet_depth  # bottleneck + upsampling
            radius.append(r)
        return tuple(radius)

    def unet_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :class:`ij_bridge.nets.unet.UNet`."""
        n2v2 = self.variant == "N2V2"
        return dict(
            in_channels=int(self.n_channels or 1), ndim=self.ndim, depth=self.unet_depth,
            n_filters=self.unet_filters, kernel_size=self.unet_kernel_size,
            n_conv_per_depth=self.unet_n_conv_per_depth, batch_norm=self.unet_batch_norm,
            pool=self.pool, blur_pool=n2v2, skip_top=not n2v2, out_channels=int(self.n_channels or 1),
        )

    def original_net_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``N2VOriginalNet.from_description`` (imported n2v models)."""
        return dict(
            in_channels=int(self.n_channels or 1), ndim=self.ndim, depth=self.unet_depth,
            n_filters=self.unet_filters, kernel_size=self.unet_kernel_size,
            n_conv_per_depth=self.unet_n_conv_per_depth, batch_norm=self.unet_batch_norm,
            desc=dict(self.original_net or {}),
        )

    # --- JSON ----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dictionary (tuples become lists)."""
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "N2VConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown N2VConfig fields: {sorted(unknown)}")
        d = dict(d)
        for k in ("patch_size", "unet_pool"):
            if d.get(k) is not None and not isinstance(d[k], int):
                d[k] = tuple(d[k])
        return cls(**d)

    def replace(self, **changes: Any) -> "N2VConfig":
        """Copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def training_dtype(self, device: Any) -> Any:
        """The autocast dtype for training on ``device`` (``None``: float32)."""
        from ..device import autocast_dtype

        return autocast_dtype(self.precision, device)

    @property
    def n_masked_per_patch(self) -> float:
        """Expected number of masked pixels per patch and channel."""
        return self.masked_fraction * math.prod(self.patch_size)


def bf16_native() -> bool:
    """Whether this CPU computes bfloat16 natively (:func:`ij_bridge.device.bf16_native`)."""
    from ..device import bf16_native as native

    return native()
