"""A configurable 2D/3D U-Net.

One network serves both models of the package:

* Noise2Void uses depth 2, 32 filters, batch normalisation and a linear output;
  N2V2 (Höck et al. 2022) swaps max-pooling for max-blur-pooling and drops the
  top-level skip connection, which removes checkerboard artefacts.
* StarDist uses depth 3, 32 filters and no batch normalisation; its heads sit on
  top of :attr:`UNet.out_channels` feature maps.

The network accepts any spatial size that is divisible by ``2**depth`` along
the pooled axes; the models pad their inputs to satisfy this.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F

__all__ = ["UNet", "BlurPool"]


def _conv(ndim: int):
    return nn.Conv2d if ndim == 2 else nn.Conv3d


def _norm(ndim: int):
    return nn.BatchNorm2d if ndim == 2 else nn.BatchNorm3d


class BlurPool(nn.Module):
    """Max-blur-pool (Zhang 2019): dense max, then a binomial blur with stride.

    Parameters
    ----------
    channels : int
        Number of feature channels (the blur is depthwise).
    ndim : int
        2 or 3 spatial dimensions.
    pool : sequence of int
        Downsampling factor per spatial axis (1 or 2).
    """

    def __init__(self, channels: int, ndim: int, pool: Sequence[int]):
        super().__init__()
        self.ndim = ndim
        self.pool = tuple(int(p) for p in pool)
        taps = [torch.tensor([1.0, 2.0, 1.0]) if p > 1 else torch.tensor([1.0]) for p in self.pool]
        kernel = taps[0]
        for t in taps[1:]:
            kernel = kernel[..., None] * t
        kernel = kernel / kernel.sum()
        self.register_buffer("kernel", kernel.expand(channels, 1, *kernel.shape).contiguous())
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maxpool = F.max_pool2d if self.ndim == 2 else F.max_pool3d
        x = maxpool(x, kernel_size=tuple(2 if p > 1 else 1 for p in self.pool), stride=1,
                    padding=0) if any(p > 1 for p in self.pool) else x
        # pad so that the dense max keeps the size, then blur with stride
        pads = []
        for p in reversed(self.pool):
            pads += [0, 1] if p > 1 else [0, 0]
        x = F.pad(x, pads, mode="replicate")
        pads = []
        for p in reversed(self.pool):
            pads += [1, 1] if p > 1 else [0, 0]
        x = F.pad(x, pads, mode="reflect") if any(p > 1 for p in self.pool) else x
        conv = F.conv2d if self.ndim == 2 else F.conv3d
        return conv(x, self.kernel, stride=self.pool, groups=self.channels)


class _ConvBlock(nn.Sequential):
    def __init__(self, ndim, c_in, c_out, kernel_size, n_conv, batch_norm, dropout=0.0):
        layers: list[nn.Module] = []
        for i in range(n_conv):
            layers.append(_conv(ndim)(c_in if i == 0 else c_out, c_out, kernel_size,
                                      padding=kernel_size // 2, bias=not batch_norm))
            if batch_norm:
                layers.append(_norm(ndim)(c_out))
            layers.append(nn.ReLU(inplace=True))
        if dropout:
            layers.append(nn.Dropout(dropout))
        super().__init__(*layers)


class UNet(nn.Module):
    """U-Net for 2D or 3D images.

    Parameters
    ----------
    in_channels : int
        Number of input channels.
    ndim : int
        Number of spatial dimensions, 2 or 3.
    depth : int
        Number of down-sampling steps.
    n_filters : int
        Number of filters in the first level; doubled at each level down.
    kernel_size : int
        Convolution kernel size (odd).
    n_conv_per_depth : int
        Convolutions per level.
    batch_norm : bool
        Batch normalisation after every convolution.
    pool : sequence of int, optional
        Down-sampling factor per spatial axis (default 2 on every axis). Use
        ``(1, 2, 2)`` for strongly anisotropic stacks.
    blur_pool : bool
        Use max-blur-pooling instead of max-pooling (N2V2).
    skip_top : bool
        Keep the skip connection of the top level (N2V2 drops it).
    out_channels : int, optional
        If given, a final 1×1 convolution maps the features to this many
        channels (linear). Otherwise the network returns ``n_filters`` feature
        maps and :attr:`out_channels` equals ``n_filters``.

    Examples
    --------
    >>> net = UNet(in_channels=1, ndim=2, depth=2, out_channels=1)
    >>> net(torch.zeros(1, 1, 32, 48)).shape
    torch.Size([1, 1, 32, 48])
    """

    def __init__(
        self,
        in_channels: int = 1,
        ndim: int = 2,
        depth: int = 2,
        n_filters: int = 32,
        kernel_size: int = 3,
        n_conv_per_depth: int = 2,
        batch_norm: bool = False,
        pool: Sequence[int] | None = None,
        blur_pool: bool = False,
        skip_top: bool = True,
        out_channels: int | None = None,
    ):
        super().__init__()
        if ndim not in (2, 3):
            raise ValueError(f"ndim must be 2 or 3, got {ndim}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.ndim = ndim
        self.depth = depth
        self.pool = tuple(pool) if pool is not None else (2,) * ndim
        if len(self.pool) != ndim:
            raise ValueError(f"pool needs {ndim} entries, got {self.pool}")
        self.skip_top = skip_top
        widths = [n_filters * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        self.pools = nn.ModuleList()
        c = in_channels
        for level in range(depth):
            self.down.append(_ConvBlock(ndim, c, widths[level], kernel_size, n_conv_per_depth, batch_norm))
            c = widths[level]
            if blur_pool:
                self.pools.append(BlurPool(c, ndim, self.pool))
            else:
                mp = nn.MaxPool2d if ndim == 2 else nn.MaxPool3d
                self.pools.append(mp(self.pool))
        # bottleneck: as in CSBDeep, the last conv halves the width again
        self.bottom = nn.Sequential(
            _ConvBlock(ndim, c, widths[depth], kernel_size, n_conv_per_depth - 1 or 1, batch_norm),
            _ConvBlock(ndim, widths[depth], widths[depth - 1] if depth else widths[0], kernel_size, 1, batch_norm),
        )
        self.up = nn.ModuleList()
        for level in reversed(range(depth)):
            c_skip = widths[level] if (level > 0 or skip_top) else 0
            c_in = widths[level] + c_skip
            c_out = widths[level - 1] if level > 0 else widths[0]
            self.up.append(nn.Sequential(
                _ConvBlock(ndim, c_in, widths[level], kernel_size, max(n_conv_per_depth - 1, 1), batch_norm),
                _ConvBlock(ndim, widths[level], c_out, kernel_size, 1, batch_norm),
            ))
        self.head = _conv(ndim)(widths[0], out_channels, 1) if out_channels else None
        self.out_channels = out_channels or widths[0]

    @property
    def divisor(self) -> tuple[int, ...]:
        """Spatial sizes must be multiples of this, per axis."""
        return tuple(p**self.depth for p in self.pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block, pool in zip(self.down, self.pools):
            x = block(x)
            skips.append(x)
            x = pool(x)
        x = self.bottom(x)
        for i, block in enumerate(self.up):
            level = self.depth - 1 - i
            x = F.interpolate(x, scale_factor=self.pool, mode="nearest")
            if level > 0 or self.skip_top:
                x = torch.cat([x, skips[level]], dim=1)
            x = block(x)
        if self.head is not None:
            x = self.head(x)
        return x
