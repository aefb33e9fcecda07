"""CAREamics' UNet (``careamics.models.unet.UNet``), rebuilt so its checkpoints load as they are.

CAREamics is PyTorch; its checkpoints hold a state dict whose names follow its
module tree. This network has the same tree (``encoder.encoder_blocks.*``,
``decoder.bottleneck``, ``decoder.decoder_blocks.*``, ``final_conv``) and the
same arithmetic, which differs from :class:`ij_bridge.nets.unet.UNet`:

* each level is one block of two 3×3 convolutions (bias, optional batch norm
  with torch's defaults, ReLU); the blocks always own both batch norms;
* the bottleneck runs at the deepest resolution and widens to twice its
  width inside; decoder blocks widen twice inside except the last;
* upsampling is bilinear (trilinear in 3D), not nearest;
* independent channels (CAREamics' default) are grouped convolutions, one
  group per channel, and the skip connections are interleaved group by group;
* N2V2: max-blur-pool (2×2 max with stride 1 and no padding, then a
  normalised 3×3 binomial blur with stride 2 and zero padding 1) and no skip
  connection at the top level;
* a grouped 1×1 output convolution, optional residual, final activation.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CAREamicsUNet"]

_ACTIVATIONS = {"None": nn.Identity, "Sigmoid": nn.Sigmoid, "Tanh": nn.Tanh, "ReLU": nn.ReLU,
                "LeakyReLU": nn.LeakyReLU, "ELU": nn.ELU}


class _Pair(nn.Module):
    """Two 3×3 convolutions (``conv1``, ``conv2``) with batch norms ``batch_norm1/2`` and ReLU."""

    def __init__(self, ndim: int, c_in: int, c_out: int, widen: int, groups: int, batch_norm: bool):
        super().__init__()
        conv = nn.Conv2d if ndim == 2 else nn.Conv3d
        norm = nn.BatchNorm2d if ndim == 2 else nn.BatchNorm3d
        mid = c_out * widen
        self.conv1 = conv(c_in, mid, 3, padding=1, groups=groups)
        self.conv2 = conv(mid, c_out, 3, padding=1, groups=groups)
        self.batch_norm1 = norm(mid)
        self.batch_norm2 = norm(c_out)
        self.use_bn = batch_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        if self.use_bn:
            x = self.batch_norm1(x)
        x = self.conv2(F.relu(x))
        if self.use_bn:
            x = self.batch_norm2(x)
        return F.relu(x)


class _BlurPool(nn.Module):
    """2×2 dense max (stride 1, no padding), then a strided normalised binomial 3×3(×3) blur."""

    def __init__(self, ndim: int):
        super().__init__()
        self.ndim = ndim
        g = torch.tensor([1.0, 2.0, 1.0])
        k = g[:, None] * g[None, :] if ndim == 2 else g[:, None, None] * g[None, :, None] * g[None, None, :]
        self.register_buffer("kernel", k / k.sum(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        w = self.kernel.to(x.dtype).expand(c, 1, *self.kernel.shape)
        if self.ndim == 2:
            return F.conv2d(F.max_pool2d(x, 2, stride=1), w, padding=1, stride=2, groups=c)
        return F.conv3d(F.max_pool3d(x, 2, stride=1), w, padding=1, stride=2, groups=c)


class _Up(nn.Module):
    def __init__(self, ndim: int):
        super().__init__()
        self.mode = "bilinear" if ndim == 2 else "trilinear"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode=self.mode, align_corners=False)


def _interleave(a: torch.Tensor, b: torch.Tensor, groups: int) -> torch.Tensor:
    """Concatenate channel groups alternately: a0, b0, a1, b1, ..."""
    ca, cb = a.shape[1] // groups, b.shape[1] // groups
    parts = []
    for g in range(groups):
        parts += [a[:, g * ca:(g + 1) * ca], b[:, g * cb:(g + 1) * cb]]
    return torch.cat(parts, dim=1)


class _Encoder(nn.Module):
    def __init__(self, ndim, in_channels, depth, init, batch_norm, n2v2, groups):
        super().__init__()
        pool: nn.Module = _BlurPool(ndim) if n2v2 else (nn.MaxPool2d(2) if ndim == 2 else nn.MaxPool3d(2))
        blocks: list[nn.Module] = []
        for n in range(depth):
            c_out = init * 2**n * groups
            blocks += [_Pair(ndim, in_channels if n == 0 else c_out // 2, c_out, 1, groups, batch_norm), pool]
        self.encoder_blocks = nn.ModuleList(blocks)


class _Decoder(nn.Module):
    def __init__(self, ndim, depth, init, batch_norm, n2v2, groups):
        super().__init__()
        c = init * groups * 2 ** (depth - 1)
        self.bottleneck = _Pair(ndim, c, c, 2, groups, batch_norm)
        blocks: list[nn.Module] = []
        for n in range(depth):
            c_in = init * 2 ** (depth - n - 1) * groups
            c_out = c_in // 2 if n != depth - 1 else c_in
            if not (n2v2 and n == depth - 1):
                c_in *= 2
            blocks += [_Up(ndim), _Pair(ndim, c_in, c_out, 2 if n != depth - 1 else 1, groups, batch_norm)]
        self.decoder_blocks = nn.ModuleList(blocks)


class CAREamicsUNet(nn.Module):
    """CAREamics' UNet; parameters as in its ``algorithm_config.model``.

    Parameters
    ----------
    conv_dims : int
        2 or 3.
    num_classes, in_channels, depth, num_channels_init, use_batch_norm, residual,
    final_activation, n2v2, independent_channels
        As CAREamics names them.

    Examples
    --------
    >>> net = CAREamicsUNet(2, depth=2, num_channels_init=4)
    >>> net(torch.zeros(1, 1, 16, 16)).shape
    torch.Size([1, 1, 16, 16])
    """

    def __init__(self, conv_dims: int = 2, num_classes: int = 1, in_channels: int = 1, depth: int = 3,
                 num_channels_init: int = 64, use_batch_norm: bool = True, residual: bool = False,
                 final_activation: str = "None", n2v2: bool = False, independent_channels: bool = True):
        super().__init__()
        if conv_dims not in (2, 3):
            raise ValueError(f"conv_dims must be 2 or 3, got {conv_dims}")
        if str(final_activation) not in _ACTIVATIONS:
            raise ValueError(f"final_activation {final_activation!r} is not supported")
        groups = in_channels if independent_channels else 1
        self.ndim, self.depth, self.groups, self.n2v2 = conv_dims, depth, groups, bool(n2v2)
        self.encoder = _Encoder(conv_dims, in_channels, depth, num_channels_init, use_batch_norm, n2v2, groups)
        self.decoder = _Decoder(conv_dims, depth, num_channels_init, use_batch_norm, n2v2, groups)
        conv = nn.Conv2d if conv_dims == 2 else nn.Conv3d
        self.final_conv = conv(num_channels_init * groups, num_classes, 1, groups=groups)
        self.residual = bool(residual)
        self.final_activation = _ACTIVATIONS[str(final_activation)]()
        self.out_channels = num_classes
        self.pool = (2,) * conv_dims

    @classmethod
    def from_description(cls, desc: Mapping[str, Any]) -> "CAREamicsUNet":
        """Build from CAREamics' ``algorithm_config.model`` dict (``architecture`` ignored)."""
        keys = ("conv_dims", "num_classes", "in_channels", "depth", "num_channels_init", "use_batch_norm",
                "residual", "final_activation", "n2v2", "independent_channels")
        return cls(**{k: desc[k] for k in keys if k in desc})

    @property
    def divisor(self) -> tuple[int, ...]:
        return (2**self.depth,) * self.ndim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inp = x
        skips = []
        for m in self.encoder.encoder_blocks:
            x = m(x)
            if isinstance(m, _Pair):
                skips.append(x)
        x = self.decoder.bottleneck(x)
        level = 0
        for m in self.decoder.decoder_blocks:
            x = m(x)
            if isinstance(m, _Up):
                skip = skips[len(skips) - 1 - level]
                if not (self.n2v2 and level == self.depth - 1):
                    x = _interleave(x, skip, self.groups)
                level += 1
        x = self.final_conv(x)
        if self.residual:
            x = x + inp
        return self.final_activation(x)
