"""Export a trained N2V model to the BioImage Model Zoo format (bioimage.io, spec 0.5).

The package holds ``rdf.yaml``; TorchScript weights (what deepImageJ and JDLL
run; they need only torch) and a PyTorch state dict whose architecture is
:func:`n2v_network`, imported from ij-bridge (the model's own network: ij-bridge's
U-Net, or the original n2v U-Net of an imported model); a README with a
validation section; a cover; citations and the licence; a test input and
output (``.npy``) and sample tensors (``.tif``). Normalisation is declared in the
description (the model's fixed mean/std before, the inverse linear scaling
after), so any bioimage.io consumer reproduces :meth:`N2V.predict` on inputs
whose size fits the network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..bioimageio import (FORMAT_VERSION, authors_list, check_name, check_package_destination, cover_png,
                          file_entry, npy_bytes, provenance_entry, state_dict_bytes, tiff_bytes, torchscript_bytes,
                          write_model_package)

__all__ = ["export_bioimageio", "n2v_network"]

_CITE = [
    {"text": "Krull, Buchholz, Jug. Noise2Void - Learning Denoising from Single Noisy Images. CVPR 2019.",
     "doi": "10.1109/CVPR.2019.00223"},
    {"text": "Höck et al. N2V2 - Fixing Noise2Void checkerboard artifacts. ECCV Workshops 2022.",
     "doi": "10.1007/978-3-031-25069-9_33"},
]

#: the largest test input written, per axis (2D, 3D)
_MAX_TEST = {2: (256, 256), 3: (32, 128, 128)}


def n2v_network(config: dict[str, Any]) -> nn.Module:
    """The network of an N2V model with this configuration (untrained), as the model builds it.

    The architecture callable of the exported ``pytorch_state_dict`` weights:
    ij-bridge's :class:`~ij_bridge.nets.unet.UNet`, or for a model imported from
    the original n2v its layer-for-layer U-Net
    (:class:`~ij_bridge.nets.n2v_original.N2VOriginalNet`).

    Parameters
    ----------
    config : dict
        :meth:`N2VConfig.to_dict` of the model (``n_channels`` set).
    """
    from ..nets.unet import UNet
    from .config import N2VConfig

    cfg = N2VConfig.from_dict(dict(config))
    if getattr(cfg, "original_net", None) is not None:
        from ..nets.n2v_original import N2VOriginalNet

        return N2VOriginalNet.from_description(**cfg.original_net_kwargs())
    return UNet(**cfg.unet_kwargs())


def export_bioimageio(
    model: Any,
    path: str | Path,
    test_input: Any,
    axes: str | None = None,
    name: str = "ij-bridge Noise2Void",
    description: str = "Noise2Void denoising model trained with ij-bridge.",
    authors: Sequence[str] | str = ("ij-bridge user",),
    license: str = "CC-BY-4.0",
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as a bioimage.io model package (folder, or zip if ``path`` ends with .zip).

    Parameters
    ----------
    model : N2V
        A trained (or imported) 2D or 3D model.
    path : str or Path
        Output folder or ``.zip`` file; written through a temporary sibling
        and renamed into place.
    test_input : ndarray or xarray.DataArray
        An example image, laid out as for :meth:`N2V.predict` (numpy axes
        ``axes`` or ``config.axes``). Its first sample is cropped to at most
        256 × 256 (2D) or 32 × 128 × 128 (3D) pixels and to multiples of the
        network's divisor, and becomes the package's test input; the model's
        prediction of it is the test output.
    axes : str, optional
        Axes of a numpy ``test_input`` if they differ from ``config.axes``.
    name, description, authors, license
        Metadata of the package (``license`` an SPDX identifier).
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
    RuntimeError
        The model is not trained.
    """
    from .._version import __version__
    from .data import to_samples

    check_name(name)
    authors_list(authors)
    check_package_destination(path, overwrite=overwrite)
    cfg = model.config
    if not model.is_trained:
        raise RuntimeError("the model is not trained; train or load it before exporting")
    nd = cfg.ndim
    samples, _ = to_samples(test_input, axes or cfg.axes, nd, "test_input")
    x = samples[0]
    if x.shape[0] != cfg.n_channels:
        raise ValueError(f"test_input has {x.shape[0]} channel(s), the model {cfg.n_channels}")
    div = tuple(int(d) for d in cfg.divisor)
    crop = tuple(min(s, m) // d * d for s, m, d in zip(x.shape[1:], _MAX_TEST[nd], div))
    if min(crop) < 1:
        raise ValueError(f"test_input of spatial shape {x.shape[1:]} is smaller than the network's "
                         f"divisor {div}; give a larger image")
    x = np.ascontiguousarray(x[(slice(None),) + tuple(slice(0, c) for c in crop)], np.float32)

    # the consumers' network, rebuilt from the exported kwargs and filled from the state dict
    cfg_dict = json.loads(json.dumps(cfg.to_dict()))
    net = n2v_network(cfg_dict)
    net.load_state_dict({k: v.detach().cpu().float().contiguous() for k, v in model.net.state_dict().items()})
    net.eval()
    xn = model._norm(x[None]).astype(np.float32)
    bigger = np.pad(xn, [(0, 0), (0, 0)] + [(0, d) for d in div], mode="reflect")
    ts_bytes = torchscript_bytes(net, xn, check=bigger)
    sd_bytes = state_dict_bytes(net)

    out = np.asarray(model.predict(x, axes="C" + ("ZYX" if nd == 3 else "YX")), dtype=np.float32)
    mid = (lambda a: a[a.shape[0] // 2]) if nd == 3 else (lambda a: a)
    files: dict[str, bytes] = {
        "weights.pt": sd_bytes, "weights_torchscript.pt": ts_bytes,
        "test_input.npy": npy_bytes(x[None]), "test_output.npy": npy_bytes(out[None]),
        "sample_input.tif": tiff_bytes(x[0] if cfg.n_channels == 1 else x),
        "sample_output.tif": tiff_bytes(out[0] if cfg.n_channels == 1 else out),
        "cover.png": cover_png(mid(x[0]), mid(out[0]), right_cmap="gray"),
    }
    prov = getattr(model, "provenance", None)
    src = (f"Imported from `{prov.get('source')}` (sha256 `{prov.get('sha256')}`).\n\n"
           if prov and isinstance(prov, dict) else "")
    spatial_ids = ["z", "y", "x"][-nd:]
    readme = f"""# {name}

{description}

{src}Exported by ij-bridge {__version__} (variant {cfg.variant}, {nd}D, {cfg.n_channels} channel(s)).

## Inputs and outputs

* Input `input`: axes b, c, {', '.join(spatial_ids)}; each spatial size a multiple of {div}. Preprocessing
  `fixed_zero_mean_unit_variance` with the training data's mean and standard deviation.
* Output `output`: the denoised image, same axes and size, in the input's units (postprocessing
  `scale_linear` undoes the normalisation).

## Validation

Self-supervised: the model was trained on the noisy images themselves, so there is no ground truth;
compare the results with the raw data. The test output was computed by ij-bridge's `N2V.predict` from
the test input; `bioimageio.core`'s `test_model` reproduces it with both weight formats. The
TorchScript weights were checked on a second input size.

## Configuration

```json
{json.dumps(cfg_dict, indent=2)}
```
"""
    files["README.md"] = readme.encode()
    names = [f"c{i}" for i in range(cfg.n_channels)]

    def tensor_axes(kind: str) -> list[dict[str, Any]]:
        ax: list[dict[str, Any]] = [{"type": "batch"}, {"type": "channel", "channel_names": names}]
        for a, d in zip(spatial_ids, div):
            if kind == "input":
                ax.append({"type": "space", "id": a, "size": {"min": d, "step": d}})
            else:
                ax.append({"type": "space", "id": a, "size": {"tensor_id": "input", "axis_id": a}})
        return ax

    mean = [float(v) for v in model.mean]
    std = [float(v) for v in model.std]
    per_channel = len(mean) > 1
    norm_axis = {"axis": "channel"} if per_channel else {}
    pre = [{"id": "fixed_zero_mean_unit_variance",
            "kwargs": dict(mean=mean if per_channel else mean[0], std=std if per_channel else std[0],
                           **norm_axis)}]
    post = [{"id": "scale_linear",
             "kwargs": dict(gain=std if per_channel else std[0], offset=mean if per_channel else mean[0],
                            **norm_axis)}]
    torch_version = torch.__version__.split("+")[0]
    config: dict[str, Any] = {"version": __version__, "n2v_config": cfg_dict}
    if prov:
        config["provenance"] = provenance_entry(prov)
    rdf = {
        "type": "model",
        "format_version": FORMAT_VERSION,
        "name": name,
        "description": description,
        "authors": authors_list(authors),
        "cite": _CITE,
        "license": license,
        "documentation": "README.md",
        "covers": ["cover.png"],
        "tags": ["denoising", "noise2void", "n2v", "ij-bridge", "pytorch", f"{nd}d"],
        "inputs": [{"id": "input", "axes": tensor_axes("input"),
                    "test_tensor": file_entry("test_input.npy", files),
                    "sample_tensor": file_entry("sample_input.tif", files),
                    "preprocessing": pre}],
        "outputs": [{"id": "output", "axes": tensor_axes("output"),
                     "test_tensor": file_entry("test_output.npy", files),
                     "sample_tensor": file_entry("sample_output.tif", files),
                     "postprocessing": post}],
        "weights": {
            "pytorch_state_dict": {
                **file_entry("weights.pt", files),
                "architecture": {"callable": "n2v_network", "import_from": "ij_bridge.n2v.bioimageio",
                                 "kwargs": {"config": cfg_dict}},
                "pytorch_version": torch_version,
            },
            "torchscript": {**file_entry("weights_torchscript.pt", files),
                            "pytorch_version": torch_version, "parent": "pytorch_state_dict"},
        },
        "config": {"ij_bridge": config},
    }
    return write_model_package(path, files, rdf, overwrite=overwrite)
