"""Models of the original StarDist (Keras/TensorFlow) in PyTorch, without TensorFlow.

Accepted (by :meth:`StarDist2D.load <ij_bridge.stardist.StarDist2D.load>`,
:meth:`StarDist3D.load`, every ``model=`` key and the CLI's ``--model``):

* the original's model folder: ``config.json``, ``weights_best.h5`` (else
  ``weights_last.h5``, else the only ``*.h5``; or a ``weights=`` choice, or
  the path of the ``.h5`` file itself), ``thresholds.json`` (missing: the
  original's defaults, prob 0.5 and nms 0.4, with a warning);
* a zip of such a folder, with or without one top-level folder inside;
* a bioimage.io StarDist package (folder or zip; ``rdf.yaml`` with
  ``config.stardist``; its ``keras_hdf5`` weights or the attached
  ``stardist_weights.h5``).

The architecture is read from the model's own config (CSBDeep's U-Net with the
grid stem before it, or StarDist3D's ResNet), built with Keras' semantics
(``same`` padding, batch normalisation eps 1e-3, nearest up-sampling,
concatenation ``[up-sampled, skip]``), and every layer of the weights file is
checked against it: a file that does not fit names the layer and the shapes.
The result is an ordinary ij-bridge model (it predicts, trains, and saves in
ij-bridge's own format) whose ``config.original`` holds the architecture and
whose ``provenance`` records the source, its SHA-256 and the original config.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import warnings
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from ..model_files import FolderOrZip
from ..nets.keras import (
    KerasConv, KerasFormatError, KerasLayer, activation, keras_batch_norm, read_keras_h5,
    set_keras_batch_norm,
)

__all__ = ["OriginalStarDistNet", "original_architecture", "is_original_model", "load_original",
           "OriginalModelError", "rays_from_original", "DEFAULT_THRESHOLDS"]

#: thresholds the original uses when a model has no thresholds.json
DEFAULT_THRESHOLDS = {"prob": 0.5, "nms": 0.4}


class OriginalModelError(ValueError):
    """An original StarDist model that cannot be read (the message names the file and the fix)."""


# ------------------------------------------------------------------------- architecture

def _tuple(v: Any, n: int, name: str) -> tuple[int, ...]:
    if np.isscalar(v):
        return (int(v),) * n
    t = tuple(int(x) for x in v)
    if len(t) != n:
        raise OriginalModelError(f"{name}={list(v)} needs {n} entries")
    return t


def original_architecture(cfg: dict[str, Any]) -> dict[str, Any]:
    """The network-defining part of an original ``config.json``, with the original's defaults.

    Parameters
    ----------
    cfg : dict
        The original StarDist ``Config2D`` / ``Config3D`` as saved in ``config.json``.

    Returns
    -------
    dict
        ``n_dim``, ``n_channel_in``, ``n_rays``, ``grid``, ``backbone`` and the
        backbone's keys (``unet_*`` or ``resnet_*``, ``net_conv_after_*``),
        ``n_classes`` and, in 3D, ``rays_json`` and ``anisotropy``.
    """
    if "n_dim" in cfg:
        d = int(cfg["n_dim"])
    elif "axes" in cfg:
        d = len(str(cfg["axes"]).replace("C", ""))
    elif cfg.get("net_input_shape"):
        d = len(cfg["net_input_shape"]) - 1
    else:
        d = 3 if "rays_json" in cfg else 2
    if d not in (2, 3):
        raise OriginalModelError(f"n_dim={d}; StarDist models are 2D or 3D")
    backbone = str(cfg.get("backbone", "unet")).lower()
    a: dict[str, Any] = {"n_dim": d, "n_channel_in": int(cfg.get("n_channel_in", 1)),
                         "grid": list(_tuple(cfg.get("grid", 1), d, "grid")), "backbone": backbone,
                         "n_classes": cfg.get("n_classes")}
    if d == 3:
        rays = cfg.get("rays_json") or {"name": "Rays_GoldenSpiral",
                                        "kwargs": {"n": int(cfg.get("n_rays", 96)),
                                                   "anisotropy": cfg.get("anisotropy")}}
        a["rays_json"] = copy.deepcopy(rays)
        a["anisotropy"] = list(cfg["anisotropy"]) if cfg.get("anisotropy") is not None else None
        a["n_rays"] = int(cfg.get("n_rays", rays.get("kwargs", {}).get("n", 96)))
    else:
        a["n_rays"] = int(cfg.get("n_rays", 32))
    if backbone == "unet":
        a.update(
            unet_n_depth=int(cfg.get("unet_n_depth", 3 if d == 2 else 2)),
            unet_kernel_size=list(_tuple(cfg.get("unet_kernel_size", 3), d, "unet_kernel_size")),
            unet_n_filter_base=int(cfg.get("unet_n_filter_base", 32)),
            unet_n_conv_per_depth=int(cfg.get("unet_n_conv_per_depth", 2)),
            unet_pool=list(_tuple(cfg.get("unet_pool", 2), d, "unet_pool")),
            unet_activation=cfg.get("unet_activation", "relu"),
            unet_last_activation=cfg.get("unet_last_activation", "relu"),
            unet_batch_norm=bool(cfg.get("unet_batch_norm", False)),
            unet_dropout=float(cfg.get("unet_dropout", 0.0) or 0.0),
            unet_expansion=cfg.get("unet_expansion", 2),
            unet_prefix=str(cfg.get("unet_prefix", "") or ""),
            net_conv_after_unet=int(cfg.get("net_conv_after_unet", 128)),
        )
        if a["unet_last_activation"] is None:
            a["unet_last_activation"] = a["unet_activation"]
    elif backbone == "resnet":
        if d != 3:
            raise OriginalModelError("the ResNet backbone exists only for StarDist3D")
        a.update(
            resnet_n_blocks=int(cfg.get("resnet_n_blocks", 4)),
            resnet_kernel_size=list(_tuple(cfg.get("resnet_kernel_size", 3), d, "resnet_kernel_size")),
            resnet_n_filter_base=int(cfg.get("resnet_n_filter_base", 32)),
            resnet_n_conv_per_block=int(cfg.get("resnet_n_conv_per_block", 3)),
            resnet_activation=cfg.get("resnet_activation", "relu"),
            resnet_batch_norm=bool(cfg.get("resnet_batch_norm", False)),
            net_conv_after_resnet=int(cfg.get("net_conv_after_resnet", 128)),
        )
        if a["resnet_n_conv_per_block"] < 2:
            raise OriginalModelError("resnet_n_conv_per_block must be >= 2")
    else:
        raise OriginalModelError(f"backbone {backbone!r} is unknown (the original has 'unet' and "
                                 "'resnet')")
    return a


def architecture_divisor(a: dict[str, Any]) -> tuple[int, ...]:
    """Input sizes the original network needs (its ``_axes_div_by``)."""
    if a["backbone"] == "unet":
        return tuple(g * p ** a["unet_n_depth"] for g, p in zip(a["grid"], a["unet_pool"]))
    return tuple(a["grid"])


class _Block(nn.Module):
    """Keras conv (+ batch norm) + activation (+ dropout), as CSBDeep's ``conv_block``."""

    def __init__(self, d, c_in, c_out, k, act, batch_norm=False, dropout=0.0, name=None,
                 strides=1, bias=True):
        super().__init__()
        self.conv = KerasConv(d, c_in, c_out, k, strides=strides, bias=bias)
        self.bn = keras_batch_norm(d, c_out) if batch_norm else None
        self.act = activation(act)
        self.drop = nn.Dropout(dropout) if dropout else None
        self.keras_name = name

    def forward(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        x = self.act(x)
        return self.drop(x) if self.drop is not None else x


class _ResBlock(nn.Module):
    """CSBDeep's ``resnet_block``: strided first conv, residual add, activation."""

    def __init__(self, d, c_in, c_out, k, pool, n_conv, batch_norm, act):
        super().__init__()
        convs = [_Block(d, c_in, c_out, k, act, batch_norm, strides=pool, bias=not batch_norm)]
        for _ in range(n_conv - 2):
            convs.append(_Block(d, c_out, c_out, k, act, batch_norm, bias=not batch_norm))
        convs.append(_Block(d, c_out, c_out, k, "linear", batch_norm, bias=not batch_norm))
        self.convs = nn.ModuleList(convs)
        self.shortcut = None
        if any(p != 1 for p in pool) or c_in != c_out:
            # legacy: no bias on the shortcut when the block uses batch normalisation
            self.shortcut = KerasConv(d, c_in, c_out, 1, strides=pool, bias=not batch_norm)
        self.act = activation(act)

    def forward(self, x):
        y = x
        for c in self.convs:
            y = c(y)
        s = self.shortcut(x) if self.shortcut is not None else x
        return self.act(s + y)


class OriginalStarDistNet(nn.Module):
    """The original StarDist network (Keras) in PyTorch.

    Parameters
    ----------
    cfg : StarDistConfig
        A config whose ``original`` holds :func:`original_architecture`.

    Notes
    -----
    ``forward`` returns ``(prob_logit, dist)`` like ij-bridge's own network: the
    original's sigmoid is applied where ij-bridge applies it (prediction), so the
    probabilities are those of the original, and training uses the logits.
    """

    def __init__(self, cfg):
        super().__init__()
        a = cfg.original
        self.arch = a
        d = a["n_dim"]
        self.ndim = d
        c = int(a["n_channel_in"])
        if a["backbone"] == "unet":
            k = tuple(a["unet_kernel_size"])
            nf, ncpd = a["unet_n_filter_base"], a["unet_n_conv_per_depth"]
            act, bn, drop = a["unet_activation"], a["unet_batch_norm"], a["unet_dropout"]
            exp, pre, depth = a["unet_expansion"], a["unet_prefix"], a["unet_n_depth"]
            pool = tuple(a["unet_pool"])
            self.pool = pool
            # grid stem: n_conv_per_depth convolutions, then max-pooling, until the grid is reached
            stem, self.stem_pools = [], []
            pooled, grid = np.ones(d, int), np.asarray(a["grid"])
            while tuple(pooled) != tuple(grid):
                p = tuple(int(v) for v in 1 + (grid > pooled))
                pooled *= np.asarray(p)
                for _ in range(ncpd):
                    stem.append(_Block(d, c, nf, k, act))
                    c = nf
                self.stem_pools.append(p)
            self.stem = nn.ModuleList(stem)
            self.stem_per_pool = ncpd
            width = [int(nf * exp ** n) for n in range(depth + 1)]
            self.down = nn.ModuleList()
            skip_c = []
            for n in range(depth):
                level = nn.ModuleList()
                for i in range(ncpd):
                    level.append(_Block(d, c, width[n], k, act, bn, drop, f"{pre}down_level_{n}_no_{i}"))
                    c = width[n]
                skip_c.append(c)
                self.down.append(level)
            mid = []
            for i in range(ncpd - 1):
                mid.append(_Block(d, c, width[depth], k, act, bn, drop, f"{pre}middle_{i}"))
                c = width[depth]
            w = int(nf * exp ** max(0, depth - 1))
            mid.append(_Block(d, c, w, k, act, bn, drop, f"{pre}middle_{ncpd}"))
            c = w
            self.middle = nn.ModuleList(mid)
            self.up = nn.ModuleList()
            for n in reversed(range(depth)):
                level = nn.ModuleList()
                c = c + skip_c[n]
                for i in range(ncpd - 1):
                    level.append(_Block(d, c, width[n], k, act, bn, drop, f"{pre}up_level_{n}_no_{i}"))
                    c = width[n]
                w = int(nf * exp ** max(0, n - 1))
                level.append(_Block(d, c, w, k, act if n > 0 else a["unet_last_activation"], bn, drop,
                                    f"{pre}up_level_{n}_no_{ncpd}"))
                c = w
                self.up.append(level)
            n_feat, k_feat = a["net_conv_after_unet"], k
        else:
            k = tuple(a["resnet_kernel_size"])
            nf = a["resnet_n_filter_base"]
            # two linear convolutions (7^3, 3^3), then the blocks; strides bring it to the grid
            self.stem = nn.ModuleList([_Block(d, c, nf, 7, "linear"), _Block(d, nf, nf, 3, "linear")])
            c = nf
            blocks = []
            pooled, grid = np.ones(d, int), np.asarray(a["grid"])
            for _ in range(a["resnet_n_blocks"]):
                p = tuple(int(v) for v in 1 + (grid > pooled))
                pooled *= np.asarray(p)
                if any(v > 1 for v in p):
                    nf *= 2
                blocks.append(_ResBlock(d, c, nf, k, p, a["resnet_n_conv_per_block"],
                                        a["resnet_batch_norm"], a["resnet_activation"]))
                c = nf
            if tuple(pooled) != tuple(grid):
                raise OriginalModelError(f"grid {tuple(grid)} needs more ResNet blocks than "
                                         f"resnet_n_blocks={a['resnet_n_blocks']}")
            self.blocks = nn.ModuleList(blocks)
            n_feat, k_feat, act = a["net_conv_after_resnet"], k, a["resnet_activation"]
        self.features = _Block(d, c, n_feat, k_feat, act, name="features") if n_feat > 0 else None
        c = n_feat if n_feat > 0 else c
        self.out_prob = KerasConv(d, c, 1, 1)
        self.out_dist = KerasConv(d, c, int(a["n_rays"]), 1)
        for m in self.modules():  # Keras' default initialisation
            if isinstance(m, KerasConv) and m.bias is not None:
                nn.init.zeros_(m.bias)

    # -- forward ---------------------------------------------------------------------
    def _backbone(self, x: torch.Tensor) -> torch.Tensor:
        pool3 = F.max_pool2d if self.ndim == 2 else F.max_pool3d
        if self.arch["backbone"] == "unet":
            for i, b in enumerate(self.stem):
                x = b(x)
                if (i + 1) % self.stem_per_pool == 0:
                    x = pool3(x, self.stem_pools[i // self.stem_per_pool])
            skips = []
            for level in self.down:
                for b in level:
                    x = b(x)
                skips.append(x)
                x = pool3(x, self.pool)
            for b in self.middle:
                x = b(x)
            for j, level in enumerate(self.up):
                n = len(self.up) - 1 - j
                x = torch.cat([F.interpolate(x, scale_factor=self.pool, mode="nearest"), skips[n]], dim=1)
                for b in level:
                    x = b(x)
            return x
        for b in self.stem:
            x = b(x)
        for b in self.blocks:
            x = b(x)
        return x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self._backbone(x)
        if self.features is not None:
            h = self.features(h)
        return self.out_prob(h), self.out_dist(h)

    def receptive_radius(self) -> tuple[int, ...]:
        """Upper bound of the receptive field radius (input pixels) per axis."""
        a, d = self.arch, self.ndim
        rad = np.zeros(d, int)
        s = np.ones(d, int)

        def conv(k):
            nonlocal rad
            rad = rad + np.asarray(k) // 2 * s

        if a["backbone"] == "unet":
            k = np.asarray(a["unet_kernel_size"])
            for p in self.stem_pools:
                for _ in range(self.stem_per_pool):
                    conv(k)
                rad = rad + (np.asarray(p) - 1) * s
                s = s * np.asarray(p)
            pool = np.asarray(self.pool)
            for _ in range(a["unet_n_depth"]):
                for _ in range(a["unet_n_conv_per_depth"]):
                    conv(k)
                rad = rad + (pool - 1) * s
                s = s * pool
            for _ in range(a["unet_n_conv_per_depth"]):
                conv(k)
            for _ in range(a["unet_n_depth"]):
                s = s // pool
                rad = rad + (pool - 1) * s
                for _ in range(a["unet_n_conv_per_depth"]):
                    conv(k)
        else:
            k = np.asarray(a["resnet_kernel_size"])
            conv(np.full(d, 7))
            conv(np.full(d, 3))
            for b in self.blocks:
                conv(k)
                s = s * np.asarray(b.convs[0].conv.strides)
                for _ in range(len(b.convs) - 1):
                    conv(k)
        if self.features is not None:
            conv(self.features.conv.kernel_size)
        return tuple(int(v) for v in rad)

    # -- weights -----------------------------------------------------------------------
    def _expected(self) -> list[tuple[str | None, nn.Module]]:
        """Weighted layers in Keras' layer order: (Keras name or None for unnamed, module)."""
        out: list[tuple[str | None, nn.Module]] = []

        def block(b: _Block):
            out.append((b.keras_name, b.conv))
            if b.bn is not None:
                out.append((None, b.bn))

        if self.arch["backbone"] == "unet":
            for b in self.stem:
                block(b)
            for level in self.down:
                for b in level:
                    block(b)
            for b in self.middle:
                block(b)
            for level in self.up:
                for b in level:
                    block(b)
        else:
            for b in self.stem:
                block(b)
            for rb in self.blocks:
                for b in rb.convs:
                    block(b)
                if rb.shortcut is not None:
                    out.append((None, rb.shortcut))
        if self.features is not None:
            block(self.features)
        out.append(("prob", self.out_prob))
        out.append(("dist", self.out_dist))
        return out

    def load_keras_layers(self, layers: Sequence[KerasLayer], label: str, cfg_label: str) -> None:
        """Copy the weights of a Keras weights file into the network, checking every layer.

        Raises
        ------
        OriginalModelError
            A layer is missing, has another shape, or the file has layers the
            architecture lacks; the message names the layer and the shapes.
        """
        ignored = {"features_class", "prob_class"}
        weighted = [l for l in layers if l.weights and l.name not in ignored]
        if any(l.name in ignored and l.weights for l in layers):
            warnings.warn(f"{label}: the multi-class head (prob_class) is not used by ij-bridge; "
                          "objects are predicted without classes", stacklevel=3)
        by_name = {l.name: l for l in weighted}
        expected = self._expected()
        named = {n for n, _ in expected if n is not None}
        unnamed = [l for l in weighted if l.name not in named]
        used: set[int] = set()
        fix = f"the weights file and {cfg_label} must come from the same model"

        def shape_of(m):
            if isinstance(m, KerasConv):
                return {"kernel": tuple(m.kernel_size) + (m.weight.shape[1], m.weight.shape[0]),
                        **({"bias": (m.weight.shape[0],)} if m.bias is not None else {})}
            return {"moving_mean": (m.num_features,)}

        def fits(l, m):
            want = shape_of(m)
            if isinstance(m, KerasConv):
                return l.kind == "conv" and {k: tuple(v.shape) for k, v in l.weights.items()} == want
            return l.kind == "batch_norm" and tuple(l.weights["moving_mean"].shape) == want["moving_mean"]

        def put(l, m, what):
            try:
                if isinstance(m, KerasConv):
                    if l.kind != "conv":
                        raise ValueError(f"is a {l.kind} layer, expected a convolution")
                    m.set_keras_weights(l.weights["kernel"], l.weights.get("bias"))
                else:
                    if l.kind != "batch_norm":
                        raise ValueError(f"is a {l.kind} layer, expected batch normalisation")
                    set_keras_batch_norm(m, l.weights)
            except ValueError as exc:
                raise OriginalModelError(f"{label} does not fit {cfg_label}: layer {what} {exc} "
                                         f"({fix})") from None

        pos = 0
        for i, (name, m) in enumerate(expected):
            if name is not None:
                if name not in by_name:
                    raise OriginalModelError(
                        f"{label} does not fit {cfg_label}: layer '{name}' (expected "
                        f"{', '.join(f'{k} {v}' for k, v in shape_of(m).items())}) is missing ({fix})")
                put(by_name[name], m, f"'{name}'")
                continue
            # unnamed layers (grid stem, batch norms, ResNet): in file order; a ResNet shortcut
            # may stand before or after its block's last convolution, so look a little ahead
            cand = [j for j in range(pos, min(pos + 3, len(unnamed))) if j not in used]
            pick = next((j for j in cand if fits(unnamed[j], m)), cand[0] if cand else None)
            if pick is None:
                raise OriginalModelError(
                    f"{label} does not fit {cfg_label}: it has fewer unnamed layers than the "
                    f"architecture; expected one with {', '.join(f'{k} {v}' for k, v in shape_of(m).items())} "
                    f"({fix})")
            put(unnamed[pick], m, f"'{unnamed[pick].name}'")
            used.add(pick)
            while pos in used:
                pos += 1
        rest = [unnamed[j] for j in range(len(unnamed)) if j not in used]
        if rest:
            raise OriginalModelError(
                f"{label} does not fit {cfg_label}: layer(s) the architecture lacks: "
                f"{'; '.join(l.describe() for l in rest[:3])} ({fix})")


# ------------------------------------------------------------------------------------- rays

def rays_from_original(rays_json: dict[str, Any]):
    """The original's ``Rays_GoldenSpiral`` (vertices and the triangulation it uses).

    :func:`ij_bridge.stardist.geometry.rays_golden_spiral` builds them as the
    original does (the anisotropy-warped points triangulated before they are
    normalised, faces in the original's order), so that polyhedra (and their
    overlaps in NMS) are the original's.
    """
    from .geometry import rays_golden_spiral

    name = rays_json.get("name")
    kw = rays_json.get("kwargs", {})
    if name != "Rays_GoldenSpiral":
        raise OriginalModelError(f"rays {name!r} are not supported (only Rays_GoldenSpiral, the "
                                 "original's default)")
    aniso = kw.get("anisotropy")
    return rays_golden_spiral(int(kw.get("n", 70)), None if aniso is None else tuple(float(a) for a in aniso))


# ----------------------------------------------------------------------------- file access

class _Source:
    """Files of a model given as a folder or a zip (with or without one top-level folder)."""

    def __init__(self, path: Path):
        self.path = path
        self.files = FolderOrZip(path, error=OriginalModelError,
                                 open_message="{path} is not a valid .zip ({exc}); the file is truncated "
                                              "or corrupt: copy or download it again",
                                 read_message="{path}: {name} cannot be read from the zip ({exc}); the "
                                              "file is truncated or corrupt: copy or download it again")
        self.zip = self.files.zip
        self.prefix = self.files.top_folder()
        self.names = [n[len(self.prefix):] for n in self.files.names if n.startswith(self.prefix)]

    def has(self, name: str) -> bool:
        return name in self.names

    def read(self, name: str) -> bytes:
        return self.files.read(self.prefix + name, label=name)

    def label(self, name: str) -> str:
        return f"{self.path}/{name}" if self.zip is None else f"{self.path}:{self.prefix}{name}"

    def close(self):
        self.files.close()


def _json(src: _Source, name: str) -> Any:
    try:
        return json.loads(src.read(name))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OriginalModelError(f"{src.label(name)} is not valid JSON ({exc})") from None


def _is_original_config(d: Any) -> bool:
    # early models (e.g. the paper's 2D_dsb2018) have neither n_dim nor axes nor grid
    return isinstance(d, dict) and "format" not in d and ("n_rays" in d or "rays_json" in d)


def _rdf_name(src: _Source) -> str | None:
    for n in ("rdf.yaml", "model.yaml"):
        if src.has(n):
            return n
    cands = [n for n in src.names if n.endswith(".rdf.yaml") and "/" not in n]
    return cands[0] if cands else None


def is_original_model(path: str | Path) -> bool:
    """Whether ``path`` looks like a model of the original StarDist (folder, zip, package, .h5, .keras).

    Cheap: reads at most one small JSON file. ij-bridge's own models and
    anything unrecognised give False (the caller's own loader then reports).
    """
    p = Path(path)
    suffix = p.name.lower()
    if p.is_file() and (suffix.endswith(".h5") or suffix.endswith(".hdf5") or suffix.endswith(".keras")):
        return True
    if not p.exists() or (p.is_file() and not zipfile.is_zipfile(p)):
        # a truncated zip is not a zip: it is ours only when its name says so
        return p.is_file() and suffix.endswith(".zip") and not _looks_like_own_zip(p)
    try:
        src = _Source(p)
    except OriginalModelError:
        return False
    try:
        if src.has("metadata.json") and any(n.endswith(".weights.h5") for n in src.names):
            return True  # a Keras 3 .keras archive (renamed): refused with the fix by load_original
        if _rdf_name(src) is not None and not src.has("config.json"):
            return True
        if src.has("config.json"):
            return _is_original_config(_json(src, "config.json"))
        return any(n.endswith(".h5") for n in src.names) or src.has("metadata.json")
    except OriginalModelError:
        return False
    finally:
        src.close()


def _looks_like_own_zip(p: Path) -> bool:
    """A damaged zip: is it one of ij-bridge's (names its members near the start)?"""
    try:
        head = p.read_bytes()[:4096]
    except OSError:
        return False
    return b"weights.pt" in head or b"history.json" in head or b"saved_model.pb" in head


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _yaml(src: _Source, name: str) -> dict[str, Any]:
    try:
        import yaml
    except ImportError:
        raise OriginalModelError(f"{src.label(name)}: reading a bioimage.io package needs PyYAML "
                                 "(pip install pyyaml)") from None
    try:
        d = yaml.safe_load(src.read(name))
    except yaml.YAMLError as exc:
        raise OriginalModelError(f"{src.label(name)} is not valid YAML ({exc})") from None
    if not isinstance(d, dict):
        raise OriginalModelError(f"{src.label(name)} is not a bioimage.io resource description")
    return d


# ----------------------------------------------------------------------------------- loading

def load_original(cls, path: str | Path, device=None, weights: str | None = None,
                  thresholds: dict[str, float] | None = None):
    """Load an original StarDist model; see the module docstring for the formats.

    Parameters
    ----------
    cls : type
        ``StarDist2D``, ``StarDist3D`` or ``StarDistBase`` (any dimension).
    path : path
        Model folder, its zip, a bioimage.io package, or a ``.h5`` file in a model folder.
    device : str or torch.device, optional
        As for the model.
    weights : str, optional
        Weights file name inside the model (default ``weights_best.h5``, else
        ``weights_last.h5``, else the only ``.h5``).
    thresholds : dict, optional
        ``{"prob": ..., "nms": ...}`` to use instead of the model's.

    Returns
    -------
    StarDist2D or StarDist3D
        With ``provenance`` set.

    Raises
    ------
    OriginalModelError
        One line naming the file and the fix; nothing is written.
    """
    from .model import StarDist2D, StarDist3D, StarDistBase

    p = Path(path)
    low = p.name.lower()
    if low.endswith(".keras"):
        raise OriginalModelError(
            f"{p} is a Keras 3 '.keras' model, which is not read without TensorFlow; give the "
            "original model folder (config.json + weights_best.h5) or save the weights in the "
            "Keras 2 HDF5 format (model.keras_model.save_weights('weights_best.h5'))")
    if low.endswith(".weights.h5"):
        raise OriginalModelError(
            f"{p} is a Keras 3 '.weights.h5' file; save the weights in the Keras 2 HDF5 format "
            "instead (model.keras_model.save_weights('weights_best.h5'), a name not ending in "
            "'.weights.h5'; or TensorFlow <= 2.15) and keep it beside config.json")
    if p.is_file() and (low.endswith(".h5") or low.endswith(".hdf5")):
        if weights is not None and weights != p.name:
            raise OriginalModelError(f"{p} names a weights file and weights={weights!r} another one")
        weights, p = p.name, p.parent
    src = _Source(p)
    try:
        if src.has("metadata.json") and any(n.endswith(".weights.h5") for n in src.names):
            raise OriginalModelError(
                f"{p} is a Keras 3 '.keras' archive; give the original model folder "
                "(config.json + weights_best.h5) instead")
        rdf = _rdf_name(src)
        rdf_info: dict[str, Any] = {}
        if rdf is not None and not src.has("config.json"):
            d = _yaml(src, rdf)
            sd = (d.get("config") or {}).get("stardist") if isinstance(d.get("config"), dict) else None
            if not isinstance(sd, dict) or not isinstance(sd.get("config"), dict):
                raise OriginalModelError(
                    f"{src.label(rdf)}: a bioimage.io package of another kind (name "
                    f"{d.get('name')!r}), not a StarDist model (no config.stardist); load it with the "
                    "tool it was made for (Noise2Void packages: N2V.load)")
            ocfg = sd["config"]
            w = d.get("weights") or {}
            cands = []
            if weights is not None:
                cands.append(weights)
            kh = w.get("keras_hdf5") if isinstance(w, dict) else None
            if isinstance(kh, dict):
                cands.append(str(kh.get("source") or kh.get("uri") or ""))
            if sd.get("weights"):
                cands.append(str(sd["weights"]))
            cands.append("stardist_weights.h5")
            wname = next((c for c in cands if c and src.has(c.lstrip("./"))), None)
            if wname is None and "ij_bridge" in (d.get("config") or {}):
                raise OriginalModelError(
                    f"{p} is a bioimage.io package written by ij-bridge's export (PyTorch weights, no "
                    "Keras weights); load the ij-bridge model it was exported from instead, or rebuild it "
                    "with ij_bridge.stardist.bioimageio.import_bioimageio(path)")
            if wname is None:
                raise OriginalModelError(
                    f"{p}: the bioimage.io package has no Keras HDF5 weights (looked for "
                    f"{', '.join(c for c in cands if c)}); export it with stardist's "
                    "export_bioimageio (it attaches stardist_weights.h5)")
            wname = wname.lstrip("./")
            th = sd.get("thresholds") or {}
            kind = "bioimageio-package"
            rdf_info = {"rdf": rdf, "name": d.get("name")}
        else:
            if not src.has("config.json"):
                raise OriginalModelError(f"{p} has no config.json; an original StarDist model is a "
                                         "folder with config.json and weights_best.h5")
            ocfg = _json(src, "config.json")
            if not _is_original_config(ocfg):
                raise OriginalModelError(f"{src.label('config.json')} is not an original StarDist "
                                         "config (no n_rays / n_dim)")
            h5s = [n for n in src.names if "/" not in n and n.lower().endswith((".h5", ".hdf5"))]
            if weights is not None:
                if not src.has(weights):
                    raise OriginalModelError(f"{p} has no weights file {weights!r}; it has "
                                             f"{', '.join(h5s) or 'none'}")
                wname = weights
            else:
                legacy = [n for n in h5s if not n.endswith(".weights.h5")]
                for pref in ("weights_best.h5", "weights_last.h5"):
                    if pref in legacy:
                        wname = pref
                        break
                else:
                    if len(legacy) == 1:
                        wname = legacy[0]
                    elif not h5s:
                        raise OriginalModelError(f"{p} has config.json but no weights (.h5); copy the "
                                                 "model's weights_best.h5 beside it")
                    elif not legacy:
                        raise OriginalModelError(
                            f"{src.label(h5s[0])} is a Keras 3 '.weights.h5' file; save the weights "
                            "in the Keras 2 HDF5 format (model.keras_model.save_weights("
                            "'weights_best.h5'); or TensorFlow <= 2.15)")
                    else:
                        raise OriginalModelError(f"{p} has several weights files ({', '.join(legacy)}); "
                                                 "choose one with weights=NAME (or give its path)")
            th = _json(src, "thresholds.json") if src.has("thresholds.json") else None
            kind = "stardist-model-zip" if src.zip is not None else "stardist-model-folder"
        if wname.endswith(".weights.h5"):
            raise OriginalModelError(
                f"{src.label(wname)} is a Keras 3 '.weights.h5' file; save the weights in the Keras 2 "
                "HDF5 format (model.keras_model.save_weights('weights_best.h5'); or TensorFlow <= 2.15)")
        arch = original_architecture(ocfg)
        d = arch["n_dim"]
        klass = StarDist2D if d == 2 else StarDist3D
        if cls is not StarDistBase and cls is not klass:
            raise OriginalModelError(f"{p} holds a {d}D model (original config n_dim={d}); load it "
                                     f"with {klass.__name__}.load")
        wbytes = src.read(wname)
        try:
            layers = read_keras_h5(io.BytesIO(wbytes), name=src.label(wname))
        except KerasFormatError as exc:
            raise OriginalModelError(str(exc)) from None
        if th is None:
            warnings.warn(f"{p} has no thresholds.json; using the original's defaults "
                          f"prob={DEFAULT_THRESHOLDS['prob']}, nms={DEFAULT_THRESHOLDS['nms']} "
                          "(optimise them with ij_bridge.stardist.optimize_thresholds)", stacklevel=3)
            th = {}
        ths = {}
        for k in ("prob", "nms"):
            v = th.get(k) if isinstance(th, dict) else None
            ths[k] = float(v) if v is not None and 0 < float(v) < 1 else DEFAULT_THRESHOLDS[k]
        if thresholds:
            ths.update({k: float(v) for k, v in thresholds.items() if k in ("prob", "nms")})
        model = model_from_original(klass, ocfg, layers, ths, device=device, label=src.label(wname),
                                    cfg_label=src.label(rdf or "config.json"))
        files = {wname: _sha256(wbytes)}
        for n in ("config.json", "thresholds.json", rdf):
            if n and src.has(n):
                files[n] = _sha256(src.read(n))
        model.provenance = {
            "imported_from": kind,
            "source": str(p.resolve()),
            # a file: its SHA-256; a folder: the SHA-256 of the sorted "name  hash" lines of the files used
            "sha256": _file_sha256(p) if p.is_file() else _sha256(
                "".join(f"{n}  {h}\n" for n, h in sorted(files.items())).encode()),
            "files_sha256": files,
            "weights_file": wname,
            "thresholds_from": ("thresholds.json" if kind != "bioimageio-package" else rdf)
            if th else "defaults",
            "original_config": ocfg,
            **({"bioimageio": rdf_info} if rdf_info else {}),
        }
        model.source = str(p)
        return model
    finally:
        src.close()


def model_from_original(cls, ocfg: dict[str, Any], layers: Sequence[KerasLayer],
                        thresholds: dict[str, float], device=None, label: str = "weights",
                        cfg_label: str = "config"):
    """An ij-bridge model holding an original network: its config and its Keras layers.

    Parameters
    ----------
    cls : type
        ``StarDist2D`` or ``StarDist3D`` (must fit ``ocfg["n_dim"]``).
    ocfg : dict
        The original's ``config.json`` (or the same keys derived otherwise).
    layers : sequence of KerasLayer
        The weighted layers in Keras' layer order (named layers are found by
        name, unnamed ones, e.g. the grid stem, are taken in order).
    thresholds : dict
        ``{"prob": ..., "nms": ...}``.
    label, cfg_label : str
        Names of the weights and the config in error messages.
    """
    arch = original_architecture(ocfg)
    if arch["n_dim"] != cls.ndim:
        raise OriginalModelError(f"{cfg_label} describes a {arch['n_dim']}D model; {cls.__name__} "
                                 f"is {cls.ndim}D")
    ths = {"prob": float(thresholds["prob"]), "nms": float(thresholds["nms"])}
    cfg = config_from_original(ocfg, arch, ths)
    model = cls(cfg, device=device)
    model.net.load_keras_layers(layers, label, cfg_label)
    model.net.to(model.device, memory_format=model._memory_format)
    model._fresh_weights = False
    model.thresholds = ths
    if arch["n_dim"] == 3:
        model.rays = rays_from_original(arch["rays_json"])
    return model


def config_from_original(ocfg: dict[str, Any], arch: dict[str, Any], thresholds: dict[str, float]):
    """An ij-bridge :class:`StarDistConfig` for an original model (training settings included)."""
    from .config import StarDistConfig

    d = arch["n_dim"]
    div = architecture_divisor(arch)
    patch = ocfg.get("train_patch_size")
    if patch is None or len(patch) != d:
        patch = (128, 128) if d == 2 else (32, 64, 64)
    patch = tuple(max(q, int(v) // q * q) for v, q in zip(patch, div))
    lw = ocfg.get("train_loss_weights") or (1, 0.2)
    kw: dict[str, Any] = dict(
        ndim=d, n_rays=arch["n_rays"], grid=tuple(arch["grid"]), n_channels=arch["n_channel_in"],
        patch_size=patch, original=arch,
        batch_size=int(ocfg.get("train_batch_size", 4) or 4),
        learning_rate=float(ocfg.get("train_learning_rate", 3e-4) or 3e-4),
        dist_loss_weight=float(lw[1]) / float(lw[0] or 1),
        background_reg=float(ocfg.get("train_background_reg", 1e-4) or 0.0),
        foreground_prob=float(ocfg.get("train_foreground_only", 0.9) or 0.0),
        prob_thresh=thresholds["prob"], nms_thresh=thresholds["nms"],
    )
    if d == 3 and arch.get("anisotropy") is not None:
        kw["anisotropy"] = tuple(float(v) for v in arch["anisotropy"])
    if arch["backbone"] == "unet":
        kw.update(unet_depth=arch["unet_n_depth"], unet_n_filters=arch["unet_n_filter_base"],
                  unet_pool=tuple(arch["unet_pool"]))
    else:
        kw.update(unet_n_filters=arch["resnet_n_filter_base"])
    return StarDistConfig(**kw)


def provenance_readme(model) -> str:
    """A README (Markdown) for a model imported from the original StarDist."""
    prov = getattr(model, "provenance", None) or {}
    a = model.config.original or {}
    lines = [f"# {type(model).__name__} imported from the original StarDist", "",
             "Converted by ij-bridge from a model of the original StarDist (Keras/TensorFlow); "
             "the network is the original's architecture, its weights are the original's.", "",
             "## Provenance", "",
             f"- source: `{prov.get('source')}` ({prov.get('imported_from')})",
             f"- source SHA-256: `{prov.get('sha256')}`"
             + (" (a folder: SHA-256 of the sorted `name  hash` lines of the files below)"
                if prov.get("imported_from", "").endswith("folder") else ""),
             f"- weights file: `{prov.get('weights_file')}`",
             f"- thresholds: prob {model.thresholds['prob']:.4g}, nms {model.thresholds['nms']:.4g} "
             f"(from {prov.get('thresholds_from')})"]
    for n, h in (prov.get("files_sha256") or {}).items():
        lines.append(f"- `{n}`: SHA-256 `{h}`")
    lines += ["", "## Architecture", "",
              f"- backbone: {a.get('backbone')}, {a.get('n_dim')}D, {a.get('n_channel_in')} input "
              f"channel(s), {a.get('n_rays')} rays, grid {tuple(a.get('grid', ()))}", "",
              "The original's full config.json is kept in `config.json` under `provenance.original_config`.",
              ""]
    return "\n".join(lines)
