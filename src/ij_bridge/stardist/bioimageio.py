"""Export a StarDist model to the BioImage Model Zoo format (bioimage.io, spec 0.5).

The package is laid out like the original StarDist's own bioimage.io export, so
that consumers written for it (deepImageJ with the StarDist plugin's NMS, JDLL,
bioimageio.core) read it the same way:

* one input (``b, c, [z,] y, x``; any size that is a multiple of the network's
  divisor) with ``scale_range`` preprocessing: each channel's percentiles
  (``config.percentiles``, 1 and 99.8 by default) of each sample mapped to 0 and 1;
* one output at the *input's* resolution with ``1 + n_rays`` channels: the
  object probability, then the ray distances in input pixels. As in the
  original's export, the probability is written at every ``grid``-th pixel only
  (zero between; the candidate positions of :meth:`StarDist2D.predict_instances`),
  the distances are repeated over each grid cell;
* weights twice: TorchScript (``weights_torchscript.pt``, what deepImageJ/JDLL
  run; needs only torch) and a PyTorch state dict whose architecture is
  :class:`StarDistBioimageioNet` imported from ij-bridge;
* ``config.stardist``: the thresholds (``prob``, ``nms``) under the original's
  key names, the model's configuration in the original's key names
  (``config``: the backbone, U-Net or ResNet, with its own ``unet_*`` or
  ``resnet_*`` keys), ``n_rays``, ``grid``, the rays of a 3D model and the NMS
  settings, so a consumer reproduces :meth:`predict_instances`; in 2D also a
  Fiji macro (``stardist_postprocessing.ijm``) that runs the StarDist plugin's
  NMS on the output with these thresholds;
* test input and output (``.npy``), sample tensors (``.tif``), a cover, a
  README with a validation section, citations and the licence.

:func:`import_bioimageio` rebuilds the model from a package: the network from
``config.stardist.config`` alone, the weights from ``weights.pt``. The package does
not hold Keras weights, so the original package's ``import_bioimageio`` cannot
read it; ij-bridge's own model folder remains the
lossless format.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..bioimageio import (FORMAT_VERSION, authors_list, check_name, check_package_destination, cover_png,
                          file_entry, npy_bytes, provenance_entry, state_dict_bytes, tiff_bytes, torchscript_bytes,
                          write_model_package)
from .config import StarDistConfig

__all__ = ["export_bioimageio", "import_bioimageio", "config_from_keys", "StarDistBioimageioNet"]

_CITE = [
    {"text": "Schmidt, Weigert, Broaddus, Myers. Cell Detection with Star-convex Polygons. MICCAI 2018.",
     "doi": "10.1007/978-3-030-00934-2_30"},
    {"text": "Weigert, Schmidt, Haase, Sugawara, Myers. Star-convex Polyhedra for 3D Object Detection "
             "and Segmentation in Microscopy. WACV 2020.", "doi": "10.1109/WACV45572.2020.9093435"},
]

#: the largest test input written, per axis (2D, 3D)
_MAX_TEST = {2: (256, 256), 3: (64, 128, 128)}


class StarDistBioimageioNet(nn.Module):
    """The network of an exported StarDist package: input → one full-resolution output.

    Builds the same network as the model (ij-bridge's, or the original's
    architecture for an imported model) from the model's configuration and
    returns ``(N, 1 + n_rays, *spatial)``: channel 0 the object probability at
    every ``grid``-th pixel (zero elsewhere), channels 1.. the ray distances
    (input pixels), repeated over each grid cell. This is the layout of the
    original StarDist's TensorFlow export (``upsample_grid=True``), which the
    Fiji plugin's NMS reads.

    Parameters
    ----------
    config : dict
        :meth:`StarDistConfig.to_dict` of the model.
    """

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        from .model import _make_net

        cfg = StarDistConfig.from_dict(dict(config))
        self.net = _make_net(cfg)
        self.ndim = cfg.ndim
        self.grid = tuple(int(g) for g in cfg.grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prob, dist = self.net(x)
        prob = torch.sigmoid(prob)
        if any(g > 1 for g in self.grid):
            # a 1x1 transposed convolution of stride `grid` with a unit kernel puts each value at
            # its grid position and zeros between (as the original's export); nearest for distances
            ones = torch.ones((1, 1) + (1,) * self.ndim, dtype=prob.dtype, device=prob.device)
            up = F.conv_transpose2d if self.ndim == 2 else F.conv_transpose3d
            prob = up(prob, ones, stride=self.grid, output_padding=tuple(g - 1 for g in self.grid))
            dist = F.interpolate(dist, scale_factor=self.grid, mode="nearest")
        return torch.cat([prob, dist], dim=1)


def _original_keys(model: Any) -> dict[str, Any]:
    """The model's configuration under the original StarDist's key names.

    The backbone is described by its own keys: ``unet_*`` and ``net_conv_after_unet``
    for the U-Net, ``resnet_*`` and ``net_conv_after_resnet`` for the ResNet (the
    original's ``Config3D`` names), so that :func:`import_bioimageio` rebuilds the
    same network from them.
    """
    cfg = model.config
    if getattr(cfg, "original", None):
        return json.loads(json.dumps(cfg.original))  # an imported model: its own description
    d = cfg.ndim
    out: dict[str, Any] = {
        "n_dim": d, "axes": "YXC" if d == 2 else "ZYXC", "n_channel_in": cfg.n_channels,
        "n_channel_out": 1 + cfg.n_rays, "n_rays": cfg.n_rays, "grid": list(cfg.grid),
        "backbone": cfg.backbone,
    }
    if cfg.backbone == "resnet":
        out.update({
            "resnet_n_blocks": cfg.resnet_n_blocks, "resnet_kernel_size": [cfg.resnet_kernel_size] * d,
            "resnet_kernel_init": "he_normal", "resnet_n_filter_base": cfg.resnet_n_filters,
            "resnet_n_conv_per_block": cfg.resnet_n_conv_per_block, "resnet_activation": "relu",
            "resnet_batch_norm": False, "net_conv_after_resnet": cfg.head_channels,
        })
    else:
        out.update({
            "unet_n_depth": cfg.unet_depth, "unet_kernel_size": [cfg.unet_kernel_size] * d,
            "unet_n_filter_base": cfg.unet_n_filters, "unet_n_conv_per_depth": 2,
            "unet_pool": list(cfg.unet_pool or (2,) * d), "unet_activation": "relu",
            "unet_last_activation": "relu", "unet_batch_norm": False, "unet_dropout": 0.0,
            "net_conv_after_unet": cfg.head_channels,
        })
    out.update({
        "train_patch_size": list(cfg.patch_size) if cfg.patch_size else None,
        "train_background_reg": cfg.background_reg, "train_loss_weights": [1.0, cfg.dist_loss_weight],
    })
    if d == 3:
        aniso = list(cfg.anisotropy) if cfg.anisotropy else None
        out["anisotropy"] = aniso
        out["rays_json"] = {"name": "Rays_GoldenSpiral", "kwargs": {"n": cfg.n_rays, "anisotropy": aniso}}
    return out


def _int_of(keys: dict[str, Any], name: str, where: str) -> int:
    """``keys[name]`` as one int (a per-axis list must hold one value: ours are cubic kernels)."""
    v = keys[name]
    vals = {int(a) for a in v} if isinstance(v, (list, tuple)) else {int(v)}
    if len(vals) != 1:
        raise ValueError(f"{where}: {name}={v!r} differs between axes; ij-bridge's networks use one "
                         "kernel size on every axis")
    return vals.pop()


def config_from_keys(keys: dict[str, Any], where: str = "config.stardist.config") -> StarDistConfig:
    """The :class:`StarDistConfig` of ij-bridge's own network that :func:`_original_keys` describes.

    Parameters
    ----------
    keys : dict
        ``config.stardist.config`` of a package written by :func:`export_bioimageio`.
    where : str
        Where the keys come from, for the error messages.

    Raises
    ------
    ValueError
        A key the network needs is missing or has a value ij-bridge's network cannot take.
    """
    try:
        d = int(keys["n_dim"])
        backbone = str(keys.get("backbone", "unet")).lower()
        kw: dict[str, Any] = dict(ndim=d, n_rays=int(keys["n_rays"]), grid=tuple(int(g) for g in keys["grid"]),
                                  n_channels=int(keys["n_channel_in"]), backbone=backbone)
        if backbone == "resnet":
            kw.update(resnet_n_blocks=int(keys["resnet_n_blocks"]),
                      resnet_kernel_size=_int_of(keys, "resnet_kernel_size", where),
                      resnet_n_filters=int(keys["resnet_n_filter_base"]),
                      resnet_n_conv_per_block=int(keys["resnet_n_conv_per_block"]),
                      head_channels=int(keys["net_conv_after_resnet"]))
            bn = keys.get("resnet_batch_norm", False)
        elif backbone == "unet":
            kw.update(unet_depth=int(keys["unet_n_depth"]),
                      unet_kernel_size=_int_of(keys, "unet_kernel_size", where),
                      unet_n_filters=int(keys["unet_n_filter_base"]),
                      unet_pool=tuple(int(p) for p in keys.get("unet_pool") or (2,) * d),
                      head_channels=int(keys["net_conv_after_unet"]))
            bn = keys.get("unet_batch_norm", False)
        else:
            raise ValueError(f"{where}: backbone {backbone!r} is unknown (ij-bridge has 'unet' and 'resnet')")
        if bn:
            raise ValueError(f"{where}: batch normalisation in the backbone is not in ij-bridge's networks")
        if keys.get("train_patch_size"):
            kw["patch_size"] = tuple(int(p) for p in keys["train_patch_size"])
        if d == 3 and keys.get("anisotropy"):
            kw["anisotropy"] = tuple(float(a) for a in keys["anisotropy"])
        if keys.get("train_loss_weights"):
            w = keys["train_loss_weights"]
            kw["dist_loss_weight"] = float(w[1]) / float(w[0] or 1)
        if keys.get("train_background_reg") is not None:
            kw["background_reg"] = float(keys["train_background_reg"])
    except KeyError as exc:
        raise ValueError(f"{where} has no {exc.args[0]!r}; the package does not describe its network") from None
    except (TypeError, ValueError, IndexError) as exc:
        if str(exc).startswith(where):
            raise
        raise ValueError(f"{where}: a network key has an unusable value ({exc})") from None
    return StarDistConfig(**kw)


def _macro(prob: float, nms: float, n_rays: int) -> str:
    return f"""// Post-processing of this bioimage.io StarDist package in Fiji (written by ij-bridge).
// Run the package with deepImageJ on the active image first; its output has
// 1 + {n_rays} channels: the object probability, then the {n_rays} ray distances.
// This macro splits them and calls the StarDist plugin's NMS with the model's thresholds.
probThresh = {prob:.6g};
nmsThresh = {nms:.6g};
out = getTitle();
getDimensions(w, h, channels, slices, frames);
if (channels == 1 && slices > 1)
    run("Properties...", "channels=" + slices + " slices=1 frames=1");
selectImage(out);
run("Duplicate...", "title=stardist_prob duplicate channels=1");
selectImage(out);
run("Duplicate...", "title=stardist_dist duplicate channels=2-{1 + n_rays}");
run("Command From Macro", "command=[de.csbdresden.stardist.StarDist2DNMS], args=['prob':'stardist_prob', "
    + "'dist':'stardist_dist', 'probThresh':'" + probThresh + "', 'nmsThresh':'" + nmsThresh
    + "', 'outputType':'Both', 'excludeBoundary':'0', 'roiPosition':'Stack', 'verbose':'false'], "
    + "process=[false]");
"""


def export_bioimageio(model: Any, path: str | Path, test_input: Any,
                      name: str = "ij-bridge StarDist",
                      description: str = "StarDist star-convex nucleus detection trained with ij-bridge.",
                      authors: Sequence[str] | str = ("ij-bridge user",), license: str = "CC-BY-4.0",
                      overwrite: bool = False) -> Path:
    """Write ``model`` as a bioimage.io model package (folder, or zip if ``path`` ends with .zip).

    Parameters
    ----------
    model : StarDist2D or StarDist3D
    path : str or Path
        Output folder or ``.zip``; written through a temporary sibling and
        renamed into place.
    test_input : array_like
        Example image as for :meth:`predict_instances` (``(Y, X[, C])`` or
        ``(Z, Y, X[, C])``, or a DataArray), not normalised; cropped to at most
        256 × 256 (2D) or 64 × 128 × 128 (3D) and to multiples of the
        network's divisor.
    name, description, authors, license
        Package metadata (``license`` an SPDX identifier).
    overwrite : bool
        Replace an existing package at ``path``.

    Returns
    -------
    Path

    Raises
    ------
    ij_bridge.model_files.DestinationError
        ``path`` exists and not ``overwrite`` (checked before any work).
    ValueError
        ``test_input`` does not fit the model.
    """
    from .._version import __version__

    check_name(name)
    authors_list(authors)
    check_package_destination(path, overwrite=overwrite)
    cfg = model.config
    nd = cfg.ndim
    x = model._to_channels_first(test_input, "test_input")
    div = tuple(int(v) for v in cfg.divisor)
    crop = tuple(min(s, m) // d * d for s, m, d in zip(x.shape[1:], _MAX_TEST[nd], div))
    if min(crop) < 1:
        raise ValueError(f"test_input of spatial shape {x.shape[1:]} is smaller than the network's "
                         f"divisor {div}; give a larger image")
    x = np.ascontiguousarray(x[(slice(None),) + tuple(slice(0, c) for c in crop)], np.float32)
    xn = model._normalize(x)

    # the consumers' network, rebuilt from the exported kwargs and filled from the state dict
    cfg_dict = json.loads(json.dumps(cfg.to_dict()))
    net = StarDistBioimageioNet(cfg_dict)
    state = {k: v.detach().cpu().float().contiguous() for k, v in model.net.state_dict().items()}
    net.net.load_state_dict(state)
    net.eval()
    with torch.no_grad():
        out = net(torch.from_numpy(xn[None])).numpy()
    # the same maps as the model's own prediction at the candidate positions
    ref = model._forward_padded(xn)
    sub = out[0][(slice(None),) + tuple(slice(None, None, g) for g in cfg.grid)]
    if sub.shape != ref.shape or not np.allclose(sub, ref, rtol=1e-4, atol=1e-4):
        raise RuntimeError("internal error: the exported network does not reproduce the model's prediction")
    bigger = np.pad(xn, [(0, 0)] + [(0, d) for d in div], mode="reflect")[None]
    ts_bytes = torchscript_bytes(net, xn[None], check=bigger)
    sd_bytes = state_dict_bytes(net)

    th = {"prob": float(model.thresholds["prob"]), "nms": float(model.thresholds["nms"])}
    spatial = ["z", "y", "x"][-nd:]
    mid = (lambda a: a[a.shape[0] // 2]) if nd == 3 else (lambda a: a)
    files: dict[str, bytes] = {
        "weights_torchscript.pt": ts_bytes, "weights.pt": sd_bytes,
        "test_input.npy": npy_bytes(x[None]), "test_output.npy": npy_bytes(out.astype(np.float32)),
        "sample_input.tif": tiff_bytes(x[0] if cfg.n_channels == 1 else x),
        "sample_output.tif": tiff_bytes(out[0].astype(np.float32)),
        "cover.png": cover_png(mid(x[0]), mid(ref[0])),
    }
    stardist_cfg: dict[str, Any] = {
        "ij_bridge_version": __version__, "model_class": type(model).__name__,
        # which network config.stardist.config describes: ij-bridge's own (StarDistNet) or the
        # original's architecture of an imported model (OriginalStarDistNet); import_bioimageio reads it
        "network": type(model.net).__name__,
        "thresholds": th, "config": _original_keys(model), "n_rays": cfg.n_rays, "grid": list(cfg.grid),
        "nms": {"prob_thresh": th["prob"], "nms_thresh": th["nms"], "exclude_border": 0,
                "candidates": "pixels of the output whose probability > prob_thresh; "
                              "their probability is non-zero only at every grid-th pixel",
                "overlap": "intersection over the smaller object's area" if nd == 2 else
                           "intersection over the smaller object's volume",
                "order": "decreasing probability"},
        "output_layout": {"channels": ["prob"] + [f"dist{k}" for k in range(cfg.n_rays)],
                          "resolution": "input (prob at every grid-th pixel, dist repeated per grid cell)",
                          "dist_units": "input pixels"},
        "normalization": {"method": "percentile", "percentiles": list(cfg.percentiles), "per_channel": True},
    }
    if nd == 2:
        stardist_cfg["ray_convention"] = "ray k at angle 2*pi*k/n_rays; (row, col) offset = dist*(sin, cos)"
        files["stardist_postprocessing.ijm"] = _macro(th["prob"], th["nms"], cfg.n_rays).encode()
        stardist_cfg["postprocessing_macro"] = "stardist_postprocessing.ijm"
    elif model.rays is not None:
        stardist_cfg["ray_convention"] = "rays[k] is a (z, y, x) unit-free direction; vertex = centre + dist*ray"
        stardist_cfg["rays"] = model.rays.to_dict()
    prov = getattr(model, "provenance", None)
    if prov:
        stardist_cfg["provenance"] = provenance_entry(prov)

    src = (f"Imported from `{prov.get('source')}` (sha256 `{prov.get('sha256')}`).\n\n"
           if prov and isinstance(prov, dict) else "")
    readme = f"""# {name}

{description}

{src}Exported by ij-bridge {__version__} from a `{type(model).__name__}` ({cfg.n_rays} rays, grid {tuple(cfg.grid)},
{cfg.n_channels} input channel(s)).

## Inputs and outputs

* Input `input`: axes b, c, {', '.join(spatial)}; each spatial size a multiple of {div}. Preprocessing
  `scale_range`: per sample and channel, the {cfg.percentiles[0]} and {cfg.percentiles[1]} percentiles are
  mapped to 0 and 1.
* Output `output`: axes b, c, {', '.join(spatial)} at the input's size; channel 0 the object probability
  (at every grid-th pixel, zero between), channels 1-{cfg.n_rays} the ray distances in input pixels.

## Post-processing (instances)

Candidates are the pixels whose probability exceeds `prob` = {th['prob']:.4g}; each is a star-convex
{'polygon' if nd == 2 else 'polyhedron'} with the given ray distances. Non-maximum suppression, in
decreasing probability, drops a candidate that overlaps a kept one by more than `nms` = {th['nms']:.4g}.
The values are under `config.stardist` in `rdf.yaml` (`thresholds`, `nms`, `n_rays`, `grid`{', `rays`' if nd == 3 else ''}).
{'In Fiji, run the package with deepImageJ and then `stardist_postprocessing.ijm` (the StarDist plugin must be installed).' if nd == 2 else ''}
In Python, ij-bridge gives the same objects: `StarDist{nd}D.load(...)` of the original ij-bridge model,
or `ij_bridge.stardist.bioimageio.import_bioimageio(package)` (it rebuilds the network from
`config.stardist.config` and loads `weights.pt`), then `predict_instances`.

## Validation

The test output was computed by ij-bridge from the test input; `bioimageio.core`'s `test_model`
reproduces it with both weight formats. The TorchScript weights were checked on a second input size.
Segmentation quality on the user's data has to be checked on held-out annotated images.

## Configuration

```json
{json.dumps(cfg_dict, indent=2)}
```
"""
    files["README.md"] = readme.encode()

    in_axes: list[dict[str, Any]] = [{"type": "batch"},
                                     {"type": "channel", "channel_names": [f"c{i}" for i in range(cfg.n_channels)]}]
    in_axes += [{"type": "space", "id": a, "size": {"min": d, "step": d}} for a, d in zip(spatial, div)]
    out_axes: list[dict[str, Any]] = [{"type": "batch"},
                                      {"type": "channel",
                                       "channel_names": ["prob"] + [f"dist{k}" for k in range(cfg.n_rays)]}]
    out_axes += [{"type": "space", "id": a, "size": {"tensor_id": "input", "axis_id": a}} for a in spatial]
    lo, hi = cfg.percentiles
    torch_version = torch.__version__.split("+")[0]
    attachments = [file_entry("stardist_postprocessing.ijm", files)] if nd == 2 else []
    rdf = {
        "type": "model", "format_version": FORMAT_VERSION, "name": name, "description": description,
        "authors": authors_list(authors), "cite": _CITE, "license": license,
        "documentation": "README.md", "covers": ["cover.png"],
        "tags": ["stardist", "segmentation", "instance-segmentation", "nuclei", "ij-bridge", "pytorch",
                 f"{nd}d"],
        "inputs": [{"id": "input", "axes": in_axes,
                    "test_tensor": file_entry("test_input.npy", files),
                    "sample_tensor": file_entry("sample_input.tif", files),
                    "preprocessing": [{"id": "scale_range",
                                       "kwargs": {"axes": spatial, "min_percentile": float(lo),
                                                  "max_percentile": float(hi)}}]}],
        "outputs": [{"id": "output", "axes": out_axes,
                     "test_tensor": file_entry("test_output.npy", files),
                     "sample_tensor": file_entry("sample_output.tif", files)}],
        "weights": {
            "pytorch_state_dict": {
                **file_entry("weights.pt", files),
                "architecture": {"callable": "StarDistBioimageioNet", "import_from": "ij_bridge.stardist.bioimageio",
                                 "kwargs": {"config": cfg_dict}},
                "pytorch_version": torch_version,
            },
            "torchscript": {**file_entry("weights_torchscript.pt", files), "pytorch_version": torch_version,
                            "parent": "pytorch_state_dict"},
        },
        "attachments": attachments,
        "config": {"stardist": stardist_cfg, "ij_bridge": {"version": __version__, "stardist_config": cfg_dict}},
    }
    return write_model_package(path, files, rdf, overwrite=overwrite)


def import_bioimageio(path: str | Path, device: str | torch.device | None = None) -> Any:
    """Rebuild the model of a package written by :func:`export_bioimageio` (folder, its ``rdf.yaml``, or zip).

    The network is built from ``config.stardist.config`` alone (the original's key
    names: the backbone and its parameters, :func:`config_from_keys`), filled with the
    state dict ``weights.pt`` (checked against its SHA-256 in ``rdf.yaml``); the
    thresholds, the rays of a 3D model and the normalisation percentiles come from
    ``config.stardist`` too. The model predicts as the one that was exported.

    Parameters
    ----------
    path : str or Path
    device : str or torch.device, optional

    Returns
    -------
    StarDist2D or StarDist3D

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        Not a StarDist package of ij-bridge's export, or its description and weights
        disagree (one line naming the file).
    """
    from ..model_files import read_members, verify_sha256
    from .geometry import Rays
    from .model import StarDist2D, StarDist3D
    from .original import config_from_original, original_architecture

    p = Path(path)
    if p.is_file() and p.name == "rdf.yaml":
        p = p.parent
    files = read_members(p, ("rdf.yaml", "weights.pt"), what="bioimage.io package")
    if "rdf.yaml" not in files:
        raise ValueError(f"{p} has no rdf.yaml; it is not a bioimage.io package")
    try:
        rdf = json.loads(files["rdf.yaml"])  # ij-bridge writes rdf.yaml as JSON (a subset of YAML)
    except (json.JSONDecodeError, UnicodeDecodeError):
        rdf = None
    sd = ((rdf.get("config") or {}).get("stardist") if isinstance(rdf, dict) else None)
    if not isinstance(sd, dict) or not isinstance(sd.get("config"), dict) or "weights.pt" not in files:
        raise ValueError(f"{p} is not a StarDist package written by ij-bridge's export (no config.stardist "
                         "or weights.pt); load packages of the original StarDist with StarDist2D/3D.load")
    where = "rdf.yaml config.stardist.config"
    expected = ((rdf.get("weights") or {}).get("pytorch_state_dict") or {}).get("sha256")
    verify_sha256(files["weights.pt"], expected, where=p, name="weights.pt")
    keys = sd["config"]
    th = {k: float((sd.get("thresholds") or {}).get(k, v)) for k, v in (("prob", 0.5), ("nms", 0.4))}
    if sd.get("network", "StarDistNet") == "OriginalStarDistNet":
        cfg = config_from_original(keys, original_architecture(keys), th)
    else:
        cfg = config_from_keys(keys, f"{p}: {where}")
    cfg.prob_thresh, cfg.nms_thresh = th["prob"], th["nms"]
    perc = (sd.get("normalization") or {}).get("percentiles")
    if perc:
        cfg.percentiles = tuple(float(v) for v in perc)
    cfg.validate()
    klass = StarDist2D if cfg.ndim == 2 else StarDist3D
    model = klass(cfg, device=device)
    state = torch.load(io.BytesIO(files["weights.pt"]), map_location="cpu", weights_only=True)
    # the package's state dict is StarDistBioimageioNet's: the model's network under "net."
    state = {k[len("net."):]: v.float() if v.is_floating_point() else v
             for k, v in state.items() if k.startswith("net.")}
    try:
        model.net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ValueError(f"{p}: weights.pt does not fit the network that {where} describes ({first})") from None
    model.net.to(model.device, memory_format=model._memory_format)
    model._fresh_weights = False
    model.thresholds = th
    if cfg.ndim == 3 and sd.get("rays"):
        model.rays = Rays.from_dict(sd["rays"])
    model.source = str(p)
    return model
