"""Export a trained N2V model to the BioImage Model Zoo format (bioimage.io, spec 0.5).

The package written holds ``rdf.yaml``, TorchScript and state-dict weights
(with the U-Net source as the architecture), a README, and a test input and
output. Normalisation is declared in the description (fixed mean/std before,
the inverse linear scaling after), so any bioimage.io consumer reproduces
:meth:`N2V.predict` on inputs whose size fits the network.

``rdf.yaml`` is written as JSON, which every YAML reader accepts; this keeps
PyYAML out of the dependencies. Validation needs ``bioimageio.spec``, which
ij-bridge does not depend on.
"""

from __future__ import annotations

import inspect
import io
import json
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..bioimageio import FORMAT_VERSION, sha256, write_package

__all__ = ["export_bioimageio"]

_CITE = [
    {"text": "Krull, Buchholz, Jug. Noise2Void - Learning Denoising from Single Noisy Images. CVPR 2019.",
     "doi": "10.1109/CVPR.2019.00223"},
    {"text": "Höck et al. N2V2 - Fixing Noise2Void checkerboard artifacts. ECCV Workshops 2022.",
     "doi": "10.1007/978-3-031-25069-9_33"},
]


def export_bioimageio(
    model: Any,
    path: str | Path,
    test_input: Any,
    axes: str | None = None,
    name: str = "ij-bridge Noise2Void",
    description: str = "Noise2Void denoising model trained with ij-bridge.",
    authors: Sequence[str] = ("ij-bridge user",),
    license: str = "CC-BY-4.0",
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as a bioimage.io model package (folder, or zip if ``path`` ends with .zip).

    Parameters
    ----------
    model : N2V
        A trained 2D or 3D model.
    path : str or Path
        Output folder or ``.zip`` file.
    test_input : ndarray or xarray.DataArray
        An example image, laid out as for :meth:`N2V.predict` (numpy axes
        ``axes`` or ``config.axes``). Its first sample is cropped to at most
        256 pixels per axis and to multiples of the network's divisor, and
        becomes the package's test input; the model's prediction of it is the
        test output.
    axes : str, optional
        Axes of a numpy ``test_input`` if they differ from ``config.axes``.
    name, description, authors, license
        Metadata of the package.
    overwrite : bool
        Replace an existing package at ``path``.

    Returns
    -------
    Path
    """
    from ..nets import unet as unet_module
    from .. import __version__

    cfg = model.config
    if not model.is_trained:
        raise RuntimeError("the model is not trained")
    from .data import to_samples

    nd = cfg.ndim
    samples, _ = to_samples(test_input, axes or cfg.axes, nd, "test_input")
    x = samples[0]
    if x.shape[0] != cfg.n_channels:
        raise ValueError(f"test_input has {x.shape[0]} channel(s), the model {cfg.n_channels}")
    crop = tuple(min(s, 256) // d * d for s, d in zip(x.shape[1:], cfg.divisor))
    if min(crop) < 1:
        raise ValueError(f"test_input {x.shape[1:]} is smaller than the network's divisor {cfg.divisor}")
    x = np.ascontiguousarray(x[(slice(None),) + tuple(slice(0, c) for c in crop)])

    net = model.net.eval()
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    sd_bytes = buf.getvalue()
    # TorchScript of a plain-format CPU copy of the network
    from ..nets.unet import UNet

    cpu_net = UNet(**cfg.unet_kwargs())
    cpu_net.load_state_dict(state)
    cpu_net.eval()
    with torch.no_grad(), warnings.catch_warnings():
        # TorchScript is what bioimage.io consumers load; torch >= 2.10 flags it as deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(cpu_net, torch.zeros((1,) + x.shape), check_trace=False)
        buf = io.BytesIO()
        torch.jit.save(traced, buf)
    ts_bytes = buf.getvalue()

    out = model.predict(x, axes="C" + ("ZYX" if nd == 3 else "YX"))
    test_in = io.BytesIO()
    np.save(test_in, x[None])
    test_out = io.BytesIO()
    np.save(test_out, np.asarray(out, dtype=np.float32)[None])
    arch_src = Path(inspect.getfile(unet_module)).read_bytes()
    readme = (f"# {name}\n\n{description}\n\nTrained with ij-bridge {__version__} "
              f"(variant {cfg.variant}). Config:\n\n```json\n{json.dumps(cfg.to_dict(), indent=2)}\n```\n\n"
              "# Validation\n\nSelf-supervised: trained on the noisy images themselves; inspect the "
              "results against the raw data.\n")

    files = {
        "weights.pt": sd_bytes, "weights_torchscript.pt": ts_bytes, "unet.py": arch_src,
        "test_input.npy": test_in.getvalue(), "test_output.npy": test_out.getvalue(),
        "README.md": readme.encode(),
    }
    spatial_ids = ["z", "y", "x"][-nd:]
    names = [f"c{i}" for i in range(cfg.n_channels)]

    def axes(kind: str) -> list[dict[str, Any]]:
        ax: list[dict[str, Any]] = [{"type": "batch"}, {"type": "channel", "channel_names": names}]
        for i, (a, d) in enumerate(zip(spatial_ids, cfg.divisor)):
            if kind == "input":
                ax.append({"type": "space", "id": a, "size": {"min": d, "step": d}})
            else:
                ax.append({"type": "space", "id": a,
                           "size": {"tensor_id": "input", "axis_id": a}})
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
    rdf = {
        "type": "model",
        "format_version": FORMAT_VERSION,
        "name": name,
        "description": description,
        "authors": [{"name": a} for a in authors],
        "cite": _CITE,
        "license": license,
        "documentation": "README.md",
        "tags": ["denoising", "noise2void", "n2v", "ij-bridge", f"{nd}d"],
        "inputs": [{"id": "input", "axes": axes("input"),
                    "test_tensor": {"source": "test_input.npy", "sha256": sha256(files["test_input.npy"])},
                    "preprocessing": pre}],
        "outputs": [{"id": "output", "axes": axes("output"),
                     "test_tensor": {"source": "test_output.npy", "sha256": sha256(files["test_output.npy"])},
                     "postprocessing": post}],
        "weights": {
            "pytorch_state_dict": {
                "source": "weights.pt", "sha256": sha256(sd_bytes),
                "architecture": {"source": "unet.py", "sha256": sha256(arch_src), "callable": "UNet",
                                 "kwargs": {k: (list(v) if isinstance(v, tuple) else v)
                                            for k, v in cfg.unet_kwargs().items()}},
                "pytorch_version": torch_version,
            },
            "torchscript": {"source": "weights_torchscript.pt", "sha256": sha256(ts_bytes),
                            "pytorch_version": torch_version, "parent": "pytorch_state_dict"},
        },
        "config": {"ij_bridge": {"version": __version__, "n2v_config": cfg.to_dict()}},
    }
    files["rdf.yaml"] = json.dumps(rdf, indent=2).encode()

    return write_package(path, files, overwrite=overwrite)
