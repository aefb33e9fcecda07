"""A residual backbone for StarDist (the original StarDist3D's ``backbone='resnet'``).

The layout follows the original's description: two linear convolutions
(7 and 3 wide), then ``n_blocks`` residual blocks. The first convolution of a
block is strided where the output grid still needs subsampling, and the
width doubles at every such block; each block ends with a linear
convolution, adds its (1×1, strided when needed) shortcut and applies the
activation.

Unlike the Keras original (``'same'`` padding, which centres strided
windows between pixels for even sizes), convolutions here are padded
symmetrically, so output pixel ``i`` sits on input pixel ``i * grid``: the
pixel where :mod:`ij_bridge.stardist.training` places its targets.
An imported Keras ResNet keeps the Keras padding
(:class:`ij_bridge.stardist.original.OriginalStarDistNet`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["ResNet", "ResidualBlock"]


def _conv(ndim: int):
    return nn.Conv2d if ndim == 2 else nn.Conv3d


class ResidualBlock(nn.Module):
    """``n_conv`` convolutions (the first strided by ``stride``, the last linear) plus a shortcut.

    Parameters
    ----------
    ndim : int
        2 or 3.
    c_in, c_out : int
        Channels in and out.
    kernel_size : int
        Odd kernel size.
    stride : sequence of int
        Subsampling of the first convolution per axis (1 or 2).
    n_conv : int
        Convolutions in the block (at least 2).
    batch_norm : bool
        Batch normalisation after every convolution.
    """

    def __init__(self, ndim: int, c_in: int, c_out: int, kernel_size: int, stride: Sequence[int],
                 n_conv: int = 3, batch_norm: bool = False):
        super().__init__()
        if n_conv < 2:
            raise ValueError(f"a residual block needs at least 2 convolutions, got {n_conv}")
        conv = _conv(ndim)
        norm = nn.BatchNorm2d if ndim == 2 else nn.BatchNorm3d
        stride = tuple(int(s) for s in stride)
        pad = kernel_size // 2
        layers: list[nn.Module] = []
        c = c_in
        for i in range(n_conv):
            layers.append(conv(c, c_out, kernel_size, stride=stride if i == 0 else 1, padding=pad,
                               bias=not batch_norm))
            if batch_norm:
                layers.append(norm(c_out))
            if i < n_conv - 1:
                layers.append(nn.ReLU(inplace=True))
            c = c_out
        self.body = nn.Sequential(*layers)
        self.shortcut = (conv(c_in, c_out, 1, stride=stride, bias=not batch_norm)
                         if any(s != 1 for s in stride) or c_in != c_out else None)
        self.act = nn.ReLU(inplace=True)
        self.stride = stride
        self.n_conv = n_conv
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x if self.shortcut is None else self.shortcut(x)
        return self.act(self.body(x) + s)


class ResNet(nn.Module):
    """Residual feature extractor that brings the input to the output ``grid``.

    Parameters
    ----------
    in_channels : int
        Input channels.
    ndim : int
        2 or 3 spatial dimensions.
    grid : sequence of int
        Output subsampling per axis (powers of two); the first blocks stride
        by 2 on the axes that still need it.
    n_blocks : int
        Residual blocks (4 as in the original); at least ``log2(max(grid))``.
    n_filters : int
        Width of the stem; doubled at every strided block.
    kernel_size : int
        Kernel size of the block convolutions.
    n_conv_per_block : int
        Convolutions per block (3 as in the original).
    batch_norm : bool
        Batch normalisation in the blocks (off, as in the original).

    Examples
    --------
    >>> net = ResNet(1, ndim=3, grid=(1, 2, 2), n_blocks=2, n_filters=4)
    >>> net(torch.zeros(1, 1, 8, 16, 16)).shape
    torch.Size([1, 8, 8, 8, 8])
    """

    def __init__(self, in_channels: int = 1, ndim: int = 3, grid: Sequence[int] = (1, 2, 2),
                 n_blocks: int = 4, n_filters: int = 32, kernel_size: int = 3,
                 n_conv_per_block: int = 3, batch_norm: bool = False):
        super().__init__()
        if ndim not in (2, 3):
            raise ValueError(f"ndim must be 2 or 3, got {ndim}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        grid = np.asarray([int(g) for g in grid])
        if len(grid) != ndim:
            raise ValueError(f"grid needs {ndim} entries, got {tuple(grid)}")
        need = int(np.log2(grid.max()))
        if n_blocks < max(need, 1):
            raise ValueError(f"grid {tuple(grid)} needs at least {max(need, 1)} residual blocks, "
                             f"got n_blocks={n_blocks}")
        conv = _conv(ndim)
        # the original's stem: a 7-wide and a 3-wide convolution, both linear
        self.stem = nn.Sequential(conv(in_channels, n_filters, 7, padding=3),
                                  conv(n_filters, n_filters, 3, padding=1))
        blocks = []
        pooled = np.ones(ndim, int)
        c, nf = n_filters, n_filters
        self.strides: list[tuple[int, ...]] = []
        for _ in range(n_blocks):
            stride = tuple(int(v) for v in 1 + (grid > pooled))
            pooled *= np.asarray(stride)
            if any(s > 1 for s in stride):
                nf *= 2
            blocks.append(ResidualBlock(ndim, c, nf, kernel_size, stride, n_conv_per_block, batch_norm))
            self.strides.append(stride)
            c = nf
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = c
        self.ndim = ndim
        self.kernel_size = kernel_size
        self.n_conv_per_block = n_conv_per_block
        # the original's kernel initialisation (he_normal), zero biases
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))

    def receptive_radius(self) -> tuple[int, ...]:
        """Upper bound of the receptive-field radius (input pixels) per axis.

        A convolution of width ``k`` after the network adds ``k // 2 * grid``.
        """
        r = self.kernel_size // 2
        out = []
        for ax in range(self.ndim):
            rad, s = 3 + 1, 1
            for stride in self.strides:
                rad += r * s           # the strided first convolution
                s *= stride[ax]
                rad += (self.n_conv_per_block - 1) * r * s
            out.append(rad)
        return tuple(out)
