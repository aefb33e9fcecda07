"""The U-Net of the original n2v package (juglab), layer for layer, in torch.

Models trained with n2v (Keras 2 on TensorFlow) use CSBDeep's convolution
blocks assembled by n2v's own ``unet_block``. It differs from
:class:`ij_bridge.nets.unet.UNet` in ways that change the numbers, so an
imported model runs on this network instead:

* every convolution has a bias, also when batch normalisation follows it, and
  batch normalisation uses Keras' ``epsilon=1e-3`` (torch's default is 1e-5);
* in the decoder, the convolutions before the last one of a level have
  ``n_filters`` channels (``n_filters * 2**level`` only with N2V2's
  ``skip_skipone`` below the top level); the last one has
  ``n_filters * 2**max(0, level - 1)``;
* N2V2's max-blur-pool is a dense 2×2 max with TensorFlow's "same" padding
  (one extra row/column at the end), then a depthwise 3×3 blur with stride 2
  and zero "same" padding; the blur kernel is a weight of the model file;
* with ``skip_skipone`` the top-level skip connection is dropped;
* a final linear 1×1 convolution per U-Net, an optional residual (input
  added), then the last activation (``linear`` or ``relu``);
* several channels: by default one independent U-Net per channel
  (``single_net_per_channel``), otherwise one U-Net for all channels. n2v
  slices the channel for each U-Net with ``Lambda(lambda x: x[..., i:i+1])``
  inside a loop over ``i``; Python binds ``i`` late, so every time the Keras
  model runs (training, prediction, SavedModel tracing) *every* U-Net reads
  the **last** channel. Trained models therefore map the last channel to each
  output channel; ``per_channel_input="last"`` (the default) reproduces this,
  ``"own"`` feeds each U-Net its own channel as n2v intended.

The parameter names of the Keras layers are kept in :attr:`keras_layers` so
that a loader can fill the network from a Keras weights file by name.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["N2VOriginalNet", "KERAS_BN_EPS", "ORIGINAL_NET_KEYS"]

#: Keras' default ``BatchNormalization(epsilon=...)``
KERAS_BN_EPS = 1e-3
#: keys of the ``original_net`` description of :class:`ij_bridge.n2v.N2VConfig`
ORIGINAL_NET_KEYS = ("family", "single_net_per_channel", "residual", "blurpool", "skip_skipone",
                     "last_activation", "batch_norm_eps", "per_channel_input")


def _conv(ndim: int) -> type:
    return nn.Conv2d if ndim == 2 else nn.Conv3d


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" padding (before, after) of one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class KerasMaxBlurPool2D(nn.Module):
    """n2v's ``MaxBlurPool2D``: dense 2×2 max ("same"), then a strided depthwise 3×3 blur.

    Parameters
    ----------
    channels : int
        Feature channels (the blur is depthwise).
    """

    def __init__(self, channels: int):
        super().__init__()
        g = torch.tensor([1.0, 2.0, 1.0])
        k = g[:, None] * g[None, :]
        self.register_buffer("kernel", (k / k.sum()).expand(channels, 1, 3, 3).contiguous())
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # max over a 2x2 window, stride 1; "same" pads one at the end, ignored by max
        x = F.max_pool2d(F.pad(x, (0, 1, 0, 1), mode="replicate"), kernel_size=2, stride=1)
        h, w = x.shape[-2:]
        ph, pw = _same_pads(h, 3, 2), _same_pads(w, 3, 2)
        x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]))
        return F.conv2d(x, self.kernel, stride=2, groups=self.channels)


class _Block(nn.Module):
    """Keras Conv (with bias) → optional BatchNorm → ReLU, as CSBDeep's ``conv_block``."""

    def __init__(self, ndim: int, c_in: int, c_out: int, kernel: int, batch_norm: bool, eps: float):
        super().__init__()
        self.conv = _conv(ndim)(c_in, c_out, kernel, padding=kernel // 2, bias=True)
        norm = nn.BatchNorm2d if ndim == 2 else nn.BatchNorm3d
        # Keras momentum 0.99 is torch momentum 0.01
        self.bn = norm(c_out, eps=eps, momentum=0.01) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x)


class _Branch(nn.Module):
    """One n2v ``unet_block`` plus its final 1×1 convolution."""

    def __init__(self, ndim: int, c_in: int, c_out: int, depth: int, n_filters: int, kernel: int,
                 n_conv: int, batch_norm: bool, eps: float, blurpool: bool, skip_skipone: bool,
                 prefix: str):
        super().__init__()
        self.ndim, self.depth, self.skip_skipone = ndim, depth, skip_skipone
        self.names: list[tuple[str, str]] = []  # (torch path, keras layer name)

        def block(name: str, ci: int, co: int) -> _Block:
            self.names.append((name, prefix + name))
            return _Block(ndim, ci, co, kernel, batch_norm, eps)

        self.down = nn.ModuleList()
        self.pools = nn.ModuleList()
        c = c_in
        skip_width = {}
        for n in range(depth):
            convs = nn.ModuleList()
            for i in range(n_conv):
                convs.append(block(f"down_level_{n}_no_{i}", c, n_filters * 2**n))
                c = n_filters * 2**n
            self.down.append(convs)
            if not (skip_skipone and n == 0):
                skip_width[n] = c
            if blurpool:
                if ndim != 2:
                    raise ValueError("n2v's blur-pool exists in 2D only")
                self.names.append((f"max_{n}", prefix + f"max_{n}"))
                self.pools.append(KerasMaxBlurPool2D(c))
            else:
                self.pools.append((nn.MaxPool2d if ndim == 2 else nn.MaxPool3d)(2))
        self.middle = nn.ModuleList()
        for i in range(n_conv - 1):
            self.middle.append(block(f"middle_{i}", c, n_filters * 2**depth))
            c = n_filters * 2**depth
        self.middle.append(block(f"middle_{n_conv}", c, n_filters * 2**max(0, depth - 1)))
        c = n_filters * 2**max(0, depth - 1)
        self.up = nn.ModuleList()
        for n in reversed(range(depth)):
            c += skip_width.get(n, 0)
            convs = nn.ModuleList()
            for i in range(n_conv - 1):
                width = n_filters * 2**n if (skip_skipone and n > 0) else n_filters
                convs.append(block(f"up_level_{n}_no_{i}", c, width))
                c = width
            convs.append(block(f"up_level_{n}_no_{n_conv}", c, n_filters * 2**max(0, n - 1)))
            c = n_filters * 2**max(0, n - 1)
            self.up.append(convs)
        self.skip_levels = sorted(skip_width)
        self.head = _conv(ndim)(c, c_out, 1, bias=True)

    def module_for(self, name: str) -> nn.Module:
        """The torch module of one entry of :attr:`names`."""
        if name.startswith("down_level_"):
            n, i = (int(v) for v in name[len("down_level_"):].split("_no_"))
            return self.down[n][i]
        if name.startswith("up_level_"):
            n, i = (int(v) for v in name[len("up_level_"):].split("_no_"))
            convs = self.up[self.depth - 1 - n]
            return convs[min(i, len(convs) - 1)]
        if name.startswith("middle_"):
            i = int(name[len("middle_"):])
            return self.middle[min(i, len(self.middle) - 1)]
        if name.startswith("max_"):
            return self.pools[int(name[4:])]
        raise KeyError(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = {}
        for n in range(self.depth):
            for b in self.down[n]:
                x = b(x)
            if n in self.skip_levels:
                skips[n] = x
            x = self.pools[n](x)
        for b in self.middle:
            x = b(x)
        for j, convs in enumerate(self.up):
            n = self.depth - 1 - j
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            if n in skips:
                x = torch.cat([x, skips[n]], dim=1)
            for b in convs:
                x = b(x)
        return self.head(x)


class N2VOriginalNet(nn.Module):
    """n2v's network (``build_unet`` / ``build_single_unet_per_channel``) in torch.

    Parameters
    ----------
    in_channels : int
        Image channels (the output has as many).
    ndim : int
        2 or 3.
    depth, n_filters, kernel_size, n_conv_per_depth, batch_norm
        n2v's ``unet_n_depth``, ``unet_n_first``, ``unet_kern_size``, the
        convolutions per level (2 in n2v) and ``batch_norm``.
    single_net_per_channel : bool
        One U-Net per channel (n2v's default) or one for all channels.
    residual : bool
        Add the input to the output (n2v's ``unet_residual``; one channel per U-Net).
    blurpool, skip_skipone : bool
        N2V2's max-blur-pool and dropped top skip connection.
    last_activation : {"linear", "relu"}
        Activation after the final convolution (and residual).
    batch_norm_eps : float
        Batch-normalisation epsilon (Keras: 1e-3).
    per_channel_input : {"last", "own"}
        With one U-Net per channel: ``"last"`` feeds every U-Net the last
        channel, as n2v's models actually run (see the module docstring);
        ``"own"`` feeds U-Net ``i`` channel ``i``.

    Examples
    --------
    >>> net = N2VOriginalNet(in_channels=1, ndim=2, depth=2, n_filters=4)
    >>> net(torch.zeros(1, 1, 16, 16)).shape
    torch.Size([1, 1, 16, 16])
    """

    def __init__(self, in_channels: int = 1, ndim: int = 2, depth: int = 2, n_filters: int = 32,
                 kernel_size: int = 3, n_conv_per_depth: int = 2, batch_norm: bool = True,
                 single_net_per_channel: bool = True, residual: bool = False, blurpool: bool = False,
                 skip_skipone: bool = False, last_activation: str = "linear",
                 batch_norm_eps: float = KERAS_BN_EPS, per_channel_input: str = "last"):
        super().__init__()
        if per_channel_input not in ("last", "own"):
            raise ValueError(f"per_channel_input must be 'last' or 'own', got {per_channel_input!r}")
        self.per_channel_input = per_channel_input
        if ndim not in (2, 3):
            raise ValueError(f"ndim must be 2 or 3, got {ndim}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        if last_activation not in ("linear", "relu"):
            raise ValueError(f"last_activation must be 'linear' or 'relu', got {last_activation!r}")
        per_channel = bool(single_net_per_channel)
        if residual and not per_channel and in_channels != 1:
            raise ValueError("n2v's residual U-Net needs one channel per network")
        if residual and per_channel and in_channels != 1:
            raise ValueError("n2v's residual per-channel U-Nets with several channels are not supported")
        self.ndim, self.depth = ndim, depth
        self.in_channels = in_channels
        self.per_channel = per_channel
        self.residual = bool(residual)
        self.last_activation = last_activation
        self.pool = (2,) * ndim
        kw = dict(ndim=ndim, depth=depth, n_filters=n_filters, kernel=kernel_size, n_conv=n_conv_per_depth,
                  batch_norm=batch_norm, eps=batch_norm_eps, blurpool=blurpool, skip_skipone=skip_skipone)
        if per_channel:
            self.branches = nn.ModuleList(
                _Branch(c_in=1, c_out=1, prefix=f"channel_{i}", **kw) for i in range(in_channels))
        else:
            self.branches = nn.ModuleList([_Branch(c_in=in_channels, c_out=in_channels,
                                                   prefix="channel_0", **kw)])
        self.out_channels = in_channels

    @classmethod
    def from_description(cls, in_channels: int, ndim: int, depth: int, n_filters: int, kernel_size: int,
                         n_conv_per_depth: int, batch_norm: bool, desc: Mapping[str, Any]) -> "N2VOriginalNet":
        """Build from the ``original_net`` dict of an :class:`~ij_bridge.n2v.N2VConfig`."""
        return cls(in_channels=in_channels, ndim=ndim, depth=depth, n_filters=n_filters,
                   kernel_size=kernel_size, n_conv_per_depth=n_conv_per_depth, batch_norm=batch_norm,
                   single_net_per_channel=desc.get("single_net_per_channel", True),
                   residual=desc.get("residual", False), blurpool=desc.get("blurpool", False),
                   skip_skipone=desc.get("skip_skipone", False),
                   last_activation=desc.get("last_activation", "linear"),
                   batch_norm_eps=float(desc.get("batch_norm_eps", KERAS_BN_EPS)),
                   per_channel_input=str(desc.get("per_channel_input", "last")))

    @property
    def divisor(self) -> tuple[int, ...]:
        """Spatial sizes must be multiples of this, per axis."""
        return (2**self.depth,) * self.ndim

    def keras_layers(self) -> list[tuple[str, nn.Module]]:
        """(Keras layer name, torch module) of every named layer, branch by branch."""
        out = []
        for br in self.branches:
            for path, kname in br.names:
                out.append((kname, br.module_for(path)))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.per_channel:
            if self.per_channel_input == "last":
                y = torch.cat([br(x[:, -1:]) for br in self.branches], dim=1)
            else:
                y = torch.cat([br(x[:, i:i + 1]) for i, br in enumerate(self.branches)], dim=1)
        else:
            y = self.branches[0](x)
        if self.residual:
            y = y + x
        if self.last_activation == "relu":
            y = F.relu(y)
        return y
