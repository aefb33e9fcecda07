"""Export a StarDist model to the BioImage Model Zoo format (bioimage.io, spec 0.5).

The package holds ``rdf.yaml`` (written as JSON, which YAML readers accept), TorchScript
weights of the network with its output activations (channel 0: object probability after
the sigmoid; channels 1..n_rays: distances), a README, and a test input / output pair.
Preprocessing is declared as bioimage.io ``scale_range`` with the model's percentiles, so
a consumer reproduces :meth:`StarDist2D.predict`'s maps on inputs whose size is a multiple
of the network's divisor. Candidate selection and NMS are not part of the network: the
thresholds and ray geometry are given under ``config.stardist`` (as the original's
exports do), and the ij-bridge model folder itself is the lossless format.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..bioimageio import FORMAT_VERSION, sha256, write_package

__all__ = ["export_bioimageio"]

_CITE = [
    {"text": "Schmidt, Weigert, Broaddus, Myers. Cell Detection with Star-convex Polygons. MICCAI 2018.",
     "doi": "10.1007/978-3-030-00934-2_30"},
    {"text": "Weigert, Schmidt, Haase, Sugawara, Myers. Star-convex Polyhedra for 3D Object Detection "
             "and Segmentation in Microscopy. WACV 2020.", "doi": "10.1109/WACV45572.2020.9093435"},
]


class _Exported(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prob, dist = self.net(x)
        return torch.cat([torch.sigmoid(prob), dist], dim=1)


def export_bioimageio(model: Any, path: str | Path, test_input: Any,
                      name: str = "ij-bridge StarDist",
                      description: str = "StarDist star-convex nucleus detection trained with ij-bridge.",
                      authors: Sequence[str] = ("ij-bridge user",), license: str = "CC-BY-4.0",
                      overwrite: bool = False) -> Path:
    """Write ``model`` as a bioimage.io model package (folder, or zip if ``path`` ends with .zip).

    Parameters
    ----------
    model : StarDist2D or StarDist3D
    path : str or Path
        Output folder or ``.zip``.
    test_input : array_like
        Example image as for :meth:`predict_instances`; cropped to at most 256
        pixels per axis and to multiples of the divisor.
    name, description, authors, license
        Package metadata.
    overwrite : bool
        Replace an existing package at ``path``.
    """
    import copy

    from .. import __version__

    cfg = model.config
    x = model._to_channels_first(test_input, "test_input")
    crop = tuple(min(s, 256) // d * d for s, d in zip(x.shape[1:], cfg.divisor))
    if min(crop) < 1:
        raise ValueError(f"test_input {x.shape[1:]} is smaller than the network's divisor {cfg.divisor}")
    x = np.ascontiguousarray(x[(slice(None),) + tuple(slice(0, c) for c in crop)])
    xn = model._normalize(x)

    net = copy.deepcopy(model.net).cpu().float().to(memory_format=torch.contiguous_format).eval()
    wrapped = _Exported(net).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(wrapped, torch.zeros((1,) + xn.shape), check_trace=False)
        buf = io.BytesIO()
        torch.jit.save(traced, buf)
        out = wrapped(torch.from_numpy(xn[None])).numpy()
    ts_bytes = buf.getvalue()
    t_in, t_out = io.BytesIO(), io.BytesIO()
    np.save(t_in, x[None].astype(np.float32))
    np.save(t_out, out.astype(np.float32))
    readme = (f"# {name}\n\n{description}\n\nTrained with ij-bridge {__version__}. The network outputs "
              f"{1 + cfg.n_rays} channels at grid {cfg.grid}: probability, then {cfg.n_rays} ray "
              f"distances (pixels; clip at 0). Thresholds: prob {model.thresholds['prob']:.3f}, nms "
              f"{model.thresholds['nms']:.2f}.\n\nConfig:\n\n```json\n"
              f"{json.dumps(cfg.to_dict(), indent=2)}\n```\n")
    files = {"weights_torchscript.pt": ts_bytes, "test_input.npy": t_in.getvalue(),
             "test_output.npy": t_out.getvalue(), "README.md": readme.encode()}
    spatial = ["z", "y", "x"][-cfg.ndim:]
    in_axes: list[dict[str, Any]] = [{"type": "batch"},
                                     {"type": "channel", "channel_names": [f"c{i}" for i in range(cfg.n_channels)]}]
    in_axes += [{"type": "space", "id": a, "size": {"min": d, "step": d}} for a, d in zip(spatial, cfg.divisor)]
    out_axes: list[dict[str, Any]] = [{"type": "batch"},
                                      {"type": "channel",
                                       "channel_names": ["prob"] + [f"dist{k}" for k in range(cfg.n_rays)]}]
    out_axes += [{"type": "space", "id": a, "size": {"tensor_id": "input", "axis_id": a}, "scale": float(g)}
                 for a, g in zip(spatial, cfg.grid)]
    lo, hi = cfg.percentiles
    torch_version = torch.__version__.split("+")[0]
    stardist_cfg = {"ij_bridge_version": __version__, "model_class": type(model).__name__,
                    "thresholds": dict(model.thresholds), "n_rays": cfg.n_rays, "grid": list(cfg.grid),
                    "ray_convention": "2D: ray k at angle 2*pi*k/n_rays, (row, col) = (sin, cos)"}
    if model.rays is not None:
        stardist_cfg["rays"] = model.rays.to_dict()
    rdf = {
        "type": "model", "format_version": FORMAT_VERSION, "name": name, "description": description,
        "authors": [{"name": a} for a in authors], "cite": _CITE, "license": license,
        "documentation": "README.md",
        "tags": ["stardist", "segmentation", "instance-segmentation", "nuclei", "ij-bridge", f"{cfg.ndim}d"],
        "inputs": [{"id": "input", "axes": in_axes,
                    "test_tensor": {"source": "test_input.npy", "sha256": sha256(files["test_input.npy"])},
                    "preprocessing": [{"id": "scale_range",
                                       "kwargs": {"axes": spatial, "min_percentile": lo, "max_percentile": hi}}]}],
        "outputs": [{"id": "output", "axes": out_axes,
                     "test_tensor": {"source": "test_output.npy", "sha256": sha256(files["test_output.npy"])}}],
        "weights": {"torchscript": {"source": "weights_torchscript.pt", "sha256": sha256(ts_bytes),
                                    "pytorch_version": torch_version}},
        "config": {"stardist": stardist_cfg, "ij_bridge": {"stardist_config": cfg.to_dict()}},
    }
    files["rdf.yaml"] = json.dumps(rdf, indent=2).encode()
    return write_package(path, files, overwrite=overwrite)
