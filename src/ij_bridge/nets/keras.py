"""Keras semantics in PyTorch, and a reader of Keras 2 HDF5 weight files.

Only what the original StarDist and Noise2Void networks use:

* :class:`KerasConv`: a convolution with Keras' ``padding="same"`` (for even
  kernels and strides Keras pads more at the end than at the start), with
  weights converted from the channels-last layout (``HWIO`` / ``DHWIO``);
* :func:`keras_batch_norm`: batch normalisation with Keras' defaults
  (``epsilon=1e-3``, ``momentum=0.99``, i.e. PyTorch ``momentum=0.01``);
* :func:`read_keras_h5`: the layers of a ``model.save_weights("x.h5")`` file
  (Keras 2, or Keras 3's legacy HDF5 writer) in the model's own layer order.

No TensorFlow is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

__all__ = ["KerasConv", "keras_batch_norm", "KerasLayer", "read_keras_h5", "KerasFormatError",
           "activation"]


class KerasFormatError(ValueError):
    """A weights file that is not a Keras 2 HDF5 weights file (the message names the fix)."""


def _same_pads(size: int, k: int, s: int) -> tuple[int, int]:
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class KerasConv(nn.Module):
    """Convolution with Keras' ``padding="same"`` (or ``"valid"``) semantics.

    Parameters
    ----------
    ndim : int
        2 or 3 spatial dimensions.
    c_in, c_out : int
        Channels.
    kernel_size, strides : int or sequence of int
        As in Keras.
    bias : bool
        Whether the layer has a bias.
    padding : {"same", "valid"}
        Keras padding mode.
    """

    def __init__(self, ndim: int, c_in: int, c_out: int, kernel_size: int | Sequence[int],
                 strides: int | Sequence[int] = 1, bias: bool = True, padding: str = "same"):
        super().__init__()
        k = (int(kernel_size),) * ndim if np.isscalar(kernel_size) else tuple(int(v) for v in kernel_size)
        s = (int(strides),) * ndim if np.isscalar(strides) else tuple(int(v) for v in strides)
        if len(k) != ndim or len(s) != ndim:
            raise ValueError(f"kernel_size {k} / strides {s} need {ndim} entries")
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
        self.ndim, self.kernel_size, self.strides, self.padding = ndim, k, s, padding
        self.weight = nn.Parameter(torch.empty(c_out, c_in, *k))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        nn.init.xavier_uniform_(self.weight)  # Keras' default (glorot_uniform)
        # stride 1: the padding does not depend on the input size
        self._static = None
        if padding == "valid":
            self._static = (0,) * ndim
        elif all(v == 1 for v in s) and all(kk % 2 for kk in k):  # odd kernels: symmetric
            self._static = tuple(kk // 2 for kk in k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = F.conv2d if self.ndim == 2 else F.conv3d
        if self._static is not None:
            return conv(x, self.weight, self.bias, self.strides, self._static)
        pads: list[int] = []
        for size, k, s in zip(reversed(x.shape[2:]), reversed(self.kernel_size), reversed(self.strides)):
            pads += list(_same_pads(int(size), k, s))
        return conv(F.pad(x, pads), self.weight, self.bias, self.strides)

    def set_keras_weights(self, kernel: np.ndarray, bias: np.ndarray | None) -> None:
        """Copy a Keras kernel (spatial..., in, out) and bias into this layer."""
        want = tuple(self.kernel_size) + (self.weight.shape[1], self.weight.shape[0])
        if tuple(kernel.shape) != want:
            raise ValueError(f"kernel shape {tuple(kernel.shape)}, expected {want}")
        perm = (self.ndim + 1, self.ndim) + tuple(range(self.ndim))
        with torch.no_grad():
            self.weight.copy_(torch.from_numpy(np.ascontiguousarray(np.transpose(kernel, perm))).float())
            if self.bias is not None:
                if bias is None or tuple(bias.shape) != (self.weight.shape[0],):
                    raise ValueError(f"bias shape {None if bias is None else tuple(bias.shape)}, "
                                     f"expected {(self.weight.shape[0],)}")
                self.bias.copy_(torch.from_numpy(np.asarray(bias)).float())
            elif bias is not None:
                raise ValueError("the file has a bias where the architecture has none")


def keras_batch_norm(ndim: int, channels: int) -> nn.Module:
    """Batch normalisation with Keras' defaults (eps 1e-3, moving average 0.99)."""
    bn = (nn.BatchNorm2d if ndim == 2 else nn.BatchNorm3d)(channels, eps=1e-3, momentum=0.01)
    return bn


def set_keras_batch_norm(bn: nn.Module, weights: dict[str, np.ndarray]) -> None:
    """Copy Keras ``gamma``/``beta``/``moving_mean``/``moving_variance`` into ``bn``."""
    n = bn.num_features
    for key in ("moving_mean", "moving_variance"):
        if key not in weights:
            raise ValueError(f"batch normalisation without {key}")
    for key, v in weights.items():
        if tuple(np.shape(v)) != (n,):
            raise ValueError(f"{key} shape {tuple(np.shape(v))}, expected {(n,)}")
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(np.asarray(weights.get("gamma", np.ones(n)))).float())
        bn.bias.copy_(torch.from_numpy(np.asarray(weights.get("beta", np.zeros(n)))).float())
        bn.running_mean.copy_(torch.from_numpy(np.asarray(weights["moving_mean"])).float())
        bn.running_var.copy_(torch.from_numpy(np.asarray(weights["moving_variance"])).float())


_ACTIVATIONS = {"relu": nn.ReLU, "linear": nn.Identity, None: nn.Identity, "sigmoid": nn.Sigmoid,
                "tanh": nn.Tanh, "elu": nn.ELU, "softplus": nn.Softplus, "selu": nn.SELU}


def activation(name: str | None) -> nn.Module:
    """The PyTorch module of a Keras activation name."""
    key = name.lower() if isinstance(name, str) else name
    if key not in _ACTIVATIONS:
        raise ValueError(f"activation {name!r} is not supported (supported: "
                         f"{', '.join(str(k) for k in _ACTIVATIONS if k)})")
    return _ACTIVATIONS[key]()


# ------------------------------------------------------------------------------ HDF5 reader

@dataclass
class KerasLayer:
    """One layer of a Keras weights file: its name and its weights by short name."""

    name: str
    weights: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        w = self.weights
        if "kernel" in w:
            return "conv"
        if "moving_mean" in w:
            return "batch_norm"
        return "other" if w else "none"

    def describe(self) -> str:
        return f"{self.name} ({', '.join(f'{k} {tuple(v.shape)}' for k, v in self.weights.items())})"


def _s(v: Any) -> str:
    return v.decode("utf8") if isinstance(v, bytes) else str(v)


def read_keras_h5(path: str | Path | Any, name: str | None = None) -> list[KerasLayer]:
    """Read the layers of a Keras HDF5 weights file, in the model's layer order.

    Parameters
    ----------
    path : path or file-like
        A file written by ``keras_model.save_weights("weights.h5")`` or
        ``keras_model.save("model.h5")`` (Keras 2; or Keras 3 with a name not
        ending in ``.weights.h5``, which CSBDeep/StarDist use).
    name : str, optional
        Shown in error messages (default: ``path``).

    Returns
    -------
    list of KerasLayer
        Every layer (also those without weights), in ``model.layers`` order.

    Raises
    ------
    KerasFormatError
        Not an HDF5 file, or Keras 3's own ``.weights.h5`` layout.
    """
    import h5py

    label = name or str(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise KerasFormatError(f"{label} is not a readable HDF5 file ({exc}); give the Keras "
                               "weights file (e.g. weights_best.h5) of the model") from None
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in root.attrs:
            if "layers" in f or "vars" in f or "_layer_checkpoint_dependencies" in f:
                raise KerasFormatError(
                    f"{label} is a Keras 3 '.weights.h5' file, which this reader does not take; "
                    "save the weights in the Keras 2 HDF5 format instead (with stardist/csbdeep "
                    "under Keras 3: model.keras_model.save_weights('weights_best.h5'), a name not "
                    "ending in '.weights.h5'; or use TensorFlow <= 2.15)")
            raise KerasFormatError(f"{label} is an HDF5 file but not Keras weights (no 'layer_names'); "
                                   "give the model's weights_best.h5 or weights_last.h5")
        layers = []
        for lname in (_s(n) for n in root.attrs["layer_names"]):
            g = root[lname] if lname in root else None
            weights: dict[str, np.ndarray] = {}
            if g is not None:
                for wn in (_s(w) for w in g.attrs.get("weight_names", [])):
                    short = wn.split("/")[-1].split(":")[0]
                    weights[short] = np.asarray(g[wn])
            layers.append(KerasLayer(lname, weights))
    return layers
