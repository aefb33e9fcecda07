"""Models of the original n2v package (juglab) and of CAREamics, read without TensorFlow.

Accepted (see :func:`load_original`):

* an n2v model folder (``config.json`` with ``means``/``stds``, and
  ``weights_best.h5``, else ``weights_last.h5``, else another Keras 2 ``*.h5``),
  or one of its ``.h5`` files with the ``config.json`` beside it;
* a zip of such a folder, with or without a top-level folder inside;
* n2v's TF SavedModel export ``tf_model.zip`` (from ``export_TF``), or the
  graph-mode SavedModel of CSBDeep's ``export_SavedModel``, read with
  :mod:`ij_bridge.tfsaved`; a SavedModel holds no normalisation, so the
  model's ``config.json`` must lie beside it (or both in a folder or zip, as
  in n2v's bioimage.io package);
* a CAREamics checkpoint (``*.ckpt``, PyTorch Lightning) of an N2V/N2V2 UNet,
  or CAREamics' bioimage.io export (``careamics.yaml`` and ``weights.pth``):
  the network is :class:`ij_bridge.nets.careamics_unet.CAREamicsUNet`, its
  state dict loads as it is, the normalisation is the config's
  ``input_means``/``input_stds``.

The network is rebuilt from ``config.json`` as
:class:`ij_bridge.nets.n2v_original.N2VOriginalNet` and filled by Keras layer
name; every layer's shape is checked against the file. The result is an
ordinary :class:`ij_bridge.n2v.N2V` model (predicts, saves, loads, trains on)
whose ``provenance`` records the source, its sha256 and the original config.

Refused with one clear message naming the file and what to do: Keras 3
``.keras`` / ``.weights.h5`` files, weights that do not fit their config,
truncated zips and checkpoints, CAREamics packages without their config,
SavedModels of other graphs, bioimage.io packages of other model families
(a StarDist package or folder says to use StarDist).
"""

from __future__ import annotations

import io
import json
import re
import warnings
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

import numpy as np

from ..model_files import FolderOrZip, sha256_bytes
from .config import N2VConfig, StructMask

__all__ = ["OriginalModelError", "detect", "load_original", "n2v_config_from_original"]

_H5_PREFERENCE = ("weights_best.h5", "weights_last.h5")


class OriginalModelError(ValueError):
    """A model file of another tool that cannot be imported; the message names the file and the fix."""


# ----------------------------------------------------------------------------- sources
class _Source:
    """Read access to the files of a folder or a zip (top-level folder stripped)."""

    def __init__(self, path: Path):
        self.path = path
        # a folder: the files at its top level only (it may be any folder, e.g. the one of an .h5)
        self.files = FolderOrZip(path, error=OriginalModelError, recursive=False,
                                 open_message="{path}: cannot read the zip ({exc}); it is truncated or "
                                              "corrupt: copy or download it again",
                                 read_message="{path}: cannot read {name} from the zip ({exc}); it is "
                                              "truncated or corrupt: copy or download it again")
        self.zip = self.files.zip
        self.names = self.files.names
        self.prefix = self.files.top_folder()

    def members(self) -> list[str]:
        return [n[len(self.prefix):] for n in self.names if n.startswith(self.prefix)]

    def has(self, name: str) -> bool:
        return self.files.has(self.prefix + name)

    def read(self, name: str) -> bytes:
        return self.files.read(self.prefix + name)

    def where(self, name: str) -> str:
        return f"{self.path}" + (f"!{self.prefix}{name}" if self.zip is not None else f"/{self.prefix}{name}")


def _is_keras3_h5(data: bytes) -> bool:
    import h5py

    with h5py.File(io.BytesIO(data), "r") as f:
        return "layer_names" not in f.attrs and "model_weights" not in f and (
            "vars" in f or "layers" in f or "_layer_checkpoint_dependencies" in f)


_KERAS3_FIX = ("Keras 3 files cannot be imported (their layout has no layer names to check): "
               "load the model with n2v on TensorFlow <= 2.15 / Keras 2 and save it there "
               "(n2v writes weights_best.h5 and config.json), then import that folder")


def detect(path: str | Path) -> str | None:
    """What kind of foreign model ``path`` is, or ``None`` for ij-bridge's own format.

    Returns one of ``"n2v"`` (folder, zip or ``.h5`` with ``config.json``),
    ``"savedmodel"`` (``tf_model.zip`` or a SavedModel folder), ``"keras3"``,
    ``"careamics"``, ``"bioimageio"``, ``"stardist"``, ``"badzip"`` or ``None``.
    Cheap: reads names and at most the small JSON/YAML files.
    """
    p = Path(path)
    name = p.name.lower()
    if p.is_file():
        if name.endswith(".keras") or name.endswith(".weights.h5"):
            return "keras3"
        if name.endswith(".ckpt"):
            return "careamics"
        if name.endswith((".h5", ".hdf5")):
            return "n2v"
        if not zipfile.is_zipfile(p):
            return "badzip" if name.endswith(".zip") else None
    elif not p.is_dir():
        return None
    src = _Source(p)
    members = set(src.members())
    if "n2v_model.json" in members:
        return None
    if "model.weights.h5" in members and "metadata.json" in members:
        return "keras3"
    if "rdf.yaml" in members or "rdf.yml" in members:
        return "bioimageio"
    if any(m.endswith(".ckpt") for m in members) and "config.json" not in members:
        return "careamics"
    if "config.json" in members and _n2v_config_or_none(src) is not None:
        return "n2v"
    if "config.json" in members and "n2v_model.json" not in members:
        try:
            other = json.loads(src.read("config.json").decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, OriginalModelError, OSError):
            other = None
        if isinstance(other, dict) and "n_rays" in other:
            return "stardist"
    if "saved_model.pb" in members:
        return "savedmodel"
    return None


# ----------------------------------------------------------------------------- config
_REQUIRED = ("means", "stds", "n_dim", "unet_n_depth", "unet_kern_size", "unet_n_first")


def _n2v_config_or_none(src: _Source, name: str = "config.json") -> dict | None:
    if not src.has(name):
        return None
    try:
        cfg = json.loads(src.read(name).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, OriginalModelError, OSError):
        return None
    if isinstance(cfg, dict) and "means" in cfg and "stds" in cfg and "n2v_patch_shape" in cfg:
        return cfg
    return None


def _check_original_config(cfg: Mapping[str, Any], where: str) -> None:
    missing = [k for k in _REQUIRED if k not in cfg]
    if missing:
        raise OriginalModelError(f"{where}: not an n2v config (missing {', '.join(missing)}); "
                                 "pass the folder that n2v wrote (config.json with weights_best.h5)")
    if cfg.get("probabilistic"):
        raise OriginalModelError(f"{where}: probabilistic n2v models are not supported; "
                                 "retrain with probabilistic=False")
    n_in, n_out = int(cfg.get("n_channel_in", 1)), int(cfg.get("n_channel_out", 1))
    if n_in != n_out or len(cfg["means"]) != n_in or len(cfg["stds"]) != n_in:
        raise OriginalModelError(
            f"{where}: channel counts disagree (n_channel_in={n_in}, n_channel_out={n_out}, "
            f"{len(cfg['means'])} means, {len(cfg['stds'])} stds); the config is damaged: "
            "use the config.json that was saved with the weights")
    if int(cfg["n_dim"]) not in (2, 3):
        raise OriginalModelError(f"{where}: n_dim must be 2 or 3, got {cfg['n_dim']}")
    if cfg.get("blurpool") and int(cfg["n_dim"]) == 3:
        raise OriginalModelError(f"{where}: blurpool=True with n_dim=3 cannot be built by n2v either")


def _valid_patch(patch: Any, nd: int, div: int) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in patch)
    except (TypeError, ValueError):
        vals = ()
    if len(vals) != nd:
        vals = (64,) * nd if nd == 2 else (32, 64, 64)
    return tuple(max(2 * div, -(-v // div) * div) for v in vals)


def n2v_config_from_original(cfg: Mapping[str, Any]) -> tuple[N2VConfig, np.ndarray, np.ndarray]:
    """ij-bridge's config and the per-channel mean/std for an n2v ``config.json``.

    The network is described by ``original_net`` (n2v's layer layout); the
    training settings (patch size, batch size, learning rate, masked fraction,
    neighbourhood radius, manipulator) carry over so that training can go on.
    """
    nd = int(cfg["n_dim"])
    n_ch = int(cfg.get("n_channel_in", 1))
    depth = int(cfg["unet_n_depth"])
    mask = cfg.get("structN2Vmask")
    variant, struct = "N2V", None
    if cfg.get("n2v_manipulator") == "median" or (cfg.get("blurpool") and cfg.get("skip_skipone")):
        variant = "N2V2"
    if mask is not None:
        # a row (along X) or a column (along Y) of ones centred on the pixel carries over to
        # ij-bridge's line mask for further training; prediction does not depend on it
        m = np.asarray(mask)
        ones = np.flatnonzero(m.ravel()) if m.ndim == 2 and 1 in m.shape else np.array([], int)
        centre = m.size // 2
        span = len(ones)
        line = (span >= 3 and span % 2 == 1 and ones[-1] - ones[0] + 1 == span
                and ones[span // 2] == centre)
        if line and nd == 2 and variant == "N2V":
            variant = "structN2V"
            struct = StructMask("horizontal" if m.shape[0] == 1 else "vertical", int(span))
        else:
            warnings.warn(f"structN2Vmask {mask} is not a centred line: further training here uses "
                          "plain N2V masking (predictions are not affected)", stacklevel=3)
    perc = float(cfg.get("n2v_perc_pix", 0.198)) / 100.0
    config = N2VConfig(
        axes=("ZYX" if nd == 3 else "YX") + ("C" if n_ch > 1 else ""),
        patch_size=_valid_patch(cfg.get("n2v_patch_shape"), nd, 2**depth),
        batch_size=int(cfg.get("train_batch_size", 16)),
        epochs=int(cfg.get("train_epochs", 10)),
        steps_per_epoch=int(cfg.get("train_steps_per_epoch", 100)),
        variant=variant, struct_mask=struct,
        masked_fraction=min(max(perc, 1e-4), 0.49),
        neighborhood_radius=max(1, int(cfg.get("n2v_neighborhood_radius", 5))),
        learning_rate=float(cfg.get("train_learning_rate", 4e-4)),
        unet_depth=depth, unet_filters=int(cfg["unet_n_first"]),
        unet_kernel_size=int(cfg["unet_kern_size"]), unet_n_conv_per_depth=2,
        unet_batch_norm=bool(cfg.get("batch_norm", True)), n_channels=n_ch,
        original_net={
            "family": "n2v",
            "single_net_per_channel": bool(cfg.get("single_net_per_channel", True)),
            "residual": bool(cfg.get("unet_residual", False)),
            "blurpool": bool(cfg.get("blurpool", False)),
            "skip_skipone": bool(cfg.get("skip_skipone", False)),
            "last_activation": str(cfg.get("unet_last_activation", "linear")),
            "batch_norm_eps": 1e-3,
            # n2v's per-channel U-Nets all read the last channel (see ij_bridge.nets.n2v_original)
            "per_channel_input": "last",
        },
    )
    mean = np.array([float(v) for v in cfg["means"]], dtype=np.float64)
    std = np.array([float(v) for v in cfg["stds"]], dtype=np.float64)
    return config, mean, std


# ----------------------------------------------------------------------------- weights
Layers = dict[str, dict[str, np.ndarray]]


def _h5_layers(data: bytes, where: str) -> Layers:
    """``{keras layer name: {weight name: array}}`` of a Keras 2 weights (or full-model) h5."""
    import h5py

    try:
        f = h5py.File(io.BytesIO(data), "r")
    except OSError as exc:
        raise OriginalModelError(f"{where}: not a readable HDF5 file ({exc}); it is truncated or "
                                 "corrupt: copy it again from the n2v model folder") from None
    with f:
        root = f["model_weights"] if "model_weights" in f and "layer_names" not in f.attrs else f
        if "layer_names" not in root.attrs:
            if _is_keras3_h5(data):
                raise OriginalModelError(f"{where}: {_KERAS3_FIX}")
            raise OriginalModelError(f"{where}: not a Keras weights file (no layer_names); pass the "
                                     "weights_best.h5 that n2v wrote")
        out: Layers = {}
        for lname in root.attrs["layer_names"]:
            lname = lname.decode() if isinstance(lname, bytes) else str(lname)
            g = root[lname]
            wnames = [w.decode() if isinstance(w, bytes) else str(w) for w in g.attrs.get("weight_names", [])]
            if not wnames:
                continue
            out[lname] = {w.split("/")[-1].split(":")[0]: np.asarray(g[w]) for w in wnames}
    return out


def _savedmodel_layers(src: _Source, name: str, where: str) -> Layers:
    """Layers of n2v's ``tf_model.zip`` (a Keras 2 SavedModel), named by its ``keras_metadata.pb``."""
    import tempfile

    from .. import tfsaved

    data = src.read(name) if name else None
    with tempfile.TemporaryDirectory() as tmp:
        if data is not None:
            zpath = Path(tmp) / "tf_model.zip"
            zpath.write_bytes(data)
        else:
            zpath = src.path
        try:
            variables = tfsaved.read_checkpoint(zpath)
        except tfsaved.SavedModelError as exc:
            raise OriginalModelError(f"{where}: {str(exc).replace(str(zpath), 'tf_model.zip')}") from None
        if not any(k.startswith("layer_with_weights-") for k in variables):
            # a graph-mode export (CSBDeep's export_SavedModel, as older n2v and the Fiji
            # plugins use): variables are named "<keras layer>/<weight>"
            out: Layers = {}
            for key, arr in variables.items():
                parts = key.split("/")
                if len(parts) == 2 and not key.startswith("_"):
                    out.setdefault(parts[0], {})[parts[1]] = np.asarray(arr)
            if not out:
                raise OriginalModelError(f"{where}: the SavedModel holds no Keras layer weights; "
                                         "it is not an n2v export: import the model folder instead")
            return out
        inner = _Source(zpath) if data is not None else src
        meta_name = next((m for m in inner.members() if PurePosixPath(m).name == "keras_metadata.pb"), None)
        if meta_name is None:
            raise OriginalModelError(
                f"{where}: the SavedModel has no keras_metadata.pb, so its layers cannot be named; "
                "only n2v's exports (export_TF, CSBDeep's export_SavedModel) are supported: import "
                "the model folder (config.json, weights_best.h5) instead")
        names = _keras_metadata_names(inner.read(meta_name), where)
    out = {}
    pat = re.compile(r"^layer_with_weights-(\d+)/([^/]+)/\.ATTRIBUTES/VARIABLE_VALUE$")
    for key, arr in variables.items():
        m = pat.match(key)
        if not m:
            continue
        idx = int(m.group(1))
        if idx not in names:
            raise OriginalModelError(f"{where}: variable {key} has no layer in keras_metadata.pb; "
                                     "the export is damaged: export it again")
        out.setdefault(names[idx], {})[m.group(2)] = np.asarray(arr)
    if not out:
        raise OriginalModelError(f"{where}: the SavedModel holds no Keras layer weights; "
                                 "it is not an n2v export")
    return out


def _keras_metadata_names(data: bytes, where: str) -> dict[int, str]:
    """``{k: keras layer name}`` for the nodes ``root.layer_with_weights-k``."""
    from ..tfsaved import SavedModelError, parse_message

    out: dict[int, str] = {}
    try:
        msg = parse_message(data)
        for node in msg.get(1, []):
            fields = parse_message(node)
            path = (fields.get(3) or [b""])[0].decode()
            m = re.fullmatch(r"root\.layer_with_weights-(\d+)", path)
            if not m:
                continue
            meta = json.loads((fields.get(5) or [b"{}"])[0].decode())
            out[int(m.group(1))] = str(meta.get("name"))
    except (SavedModelError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
        raise OriginalModelError(f"{where}: keras_metadata.pb is unreadable ({exc}); "
                                 "export the model again") from None
    return out


def _suffix(name: str) -> int:
    m = re.search(r"_(\d+)$", name)
    return int(m.group(1)) if m else 0


def _fill(net: Any, layers: Layers, cfg: Mapping[str, Any], where: str) -> None:
    """Copy Keras weights into ``net`` by layer name; every shape is checked."""
    import torch

    from ..nets.n2v_original import KerasMaxBlurPool2D, _Block

    ndim = net.ndim
    conv_re = re.compile(rf"^conv{ndim}d(_\d+)?$")
    bn_re = re.compile(r"^batch_normalization(_\d+)?$")
    bns = sorted((n for n in layers if bn_re.match(n)), key=_suffix)
    heads = sorted((n for n in layers if conv_re.match(n)), key=_suffix)
    hint = (f"config.json says n_dim={cfg.get('n_dim')}, unet_n_depth={cfg.get('unet_n_depth')}, "
            f"unet_kern_size={cfg.get('unet_kern_size')}, unet_n_first={cfg.get('unet_n_first')}, "
            f"n_channel_in={cfg.get('n_channel_in', 1)}, batch_norm={cfg.get('batch_norm')}, "
            f"single_net_per_channel={cfg.get('single_net_per_channel')}, "
            f"blurpool={cfg.get('blurpool')}, skip_skipone={cfg.get('skip_skipone')}; "
            "use the config.json that was saved with these weights")
    used: set[str] = set()

    def put(param: torch.Tensor, arr: np.ndarray, what: str, transpose: bool) -> None:
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        if transpose:  # keras (*k, c_in, c_out) -> torch (c_out, c_in, *k)
            t = t.permute(t.ndim - 1, t.ndim - 2, *range(t.ndim - 2))
        if tuple(t.shape) != tuple(param.shape):
            shown = tuple(arr.shape)
            want = tuple(param.shape)
            if transpose:
                want = tuple(want[2:]) + (want[1], want[0])
            raise OriginalModelError(f"{where}: layer {what} has shape {shown} in the file, but the "
                                     f"network of config.json needs {want} ({hint})")
        param.data.copy_(t)

    def get(lname: str, wname: str) -> np.ndarray:
        if lname not in layers or wname not in layers[lname]:
            raise OriginalModelError(f"{where}: layer {lname} ({wname}) is missing from the weights "
                                     f"({hint})")
        used.add(lname)
        return layers[lname][wname]

    expected = [k for k, _ in net.keras_layers()]
    if not any(k in layers for k in expected):
        found = ", ".join(sorted(layers)[:4])
        raise OriginalModelError(f"{where}: holds no layer of n2v's U-Net (none named like "
                                 f"{expected[0]}; found {found}, ...): it is a model of another kind, "
                                 "not the n2v model of config.json; import the n2v model folder")
    blocks = []
    for kname, mod in net.keras_layers():
        if isinstance(mod, KerasMaxBlurPool2D):
            blur = get(kname, "blur_kernel")  # keras depthwise (3, 3, C, 1) -> torch (C, 1, 3, 3)
            if blur.ndim != 4 or blur.shape[-1] != 1:
                raise OriginalModelError(f"{where}: layer {kname}/blur_kernel has shape {blur.shape}, "
                                         f"expected (3, 3, C, 1) ({hint})")
            put(mod.kernel, np.transpose(blur[..., 0], (2, 0, 1))[:, None], f"{kname}/blur_kernel", False)
            continue
        assert isinstance(mod, _Block)
        put(mod.conv.weight, get(kname, "kernel"), f"{kname}/kernel", True)
        put(mod.conv.bias, get(kname, "bias"), f"{kname}/bias", False)
        blocks.append((kname, mod))
    if net.branches[0].down[0][0].bn is not None:
        if len(bns) != len(blocks):
            raise OriginalModelError(f"{where}: {len(bns)} batch-normalisation layers in the file, "
                                     f"the network of config.json has {len(blocks)} ({hint})")
        for bname, (kname, mod) in zip(bns, blocks):
            for wname, buf in (("gamma", mod.bn.weight), ("beta", mod.bn.bias),
                               ("moving_mean", mod.bn.running_mean),
                               ("moving_variance", mod.bn.running_var)):
                put(buf, get(bname, wname), f"{bname}/{wname} (after {kname})", False)
    elif bns:
        raise OriginalModelError(f"{where}: the file has batch-normalisation layers but config.json "
                                 f"says batch_norm=false ({hint})")
    if len(heads) != len(net.branches):
        raise OriginalModelError(f"{where}: {len(heads)} output convolutions in the file, the network "
                                 f"of config.json has {len(net.branches)} ({hint})")
    for hname, br in zip(heads, net.branches):
        put(br.head.weight, get(hname, "kernel"), f"{hname}/kernel", True)
        put(br.head.bias, get(hname, "bias"), f"{hname}/bias", False)
    extra = sorted(set(layers) - used)
    if extra:
        raise OriginalModelError(f"{where}: layers {', '.join(extra[:5])} of the file have no place in "
                                 f"the network of config.json ({hint})")


# ----------------------------------------------------------------------------- entry point
def _reject(kind: str, p: Path, src: _Source | None = None) -> None:
    if kind == "keras3":
        raise OriginalModelError(f"{p}: {_KERAS3_FIX}")
    if kind == "badzip":
        raise OriginalModelError(f"{p}: not a readable zip (truncated or corrupt): copy or download "
                                 "it again")
    if kind == "stardist":
        raise OriginalModelError(f"{p} is a StarDist model, not N2V: load it with StarDist2D.load / "
                                 "StarDist3D.load or `ij-bridge stardist import`")
    if kind == "careamics" and (p.suffix.lower() == ".ckpt" or (src is not None and src.has("careamics.yaml"))):
        return
    if kind == "careamics":
        raise OriginalModelError(
            f"{p}: a CAREamics package without careamics.yaml cannot be read; import the CAREamics "
            "checkpoint instead (checkpoints/<experiment>_last.ckpt of its training folder), "
            "e.g. `ij-bridge n2v import last.ckpt --model n2v.zip`")
    if kind == "bioimageio":
        text = ""
        if src is not None:
            name = "rdf.yaml" if src.has("rdf.yaml") else "rdf.yml"
            text = src.read(name).decode("utf-8", "replace").lower()
        if "careamics" in text:
            return _reject("careamics", p, src)
        if "stardist" in text:
            raise OriginalModelError(f"{p}: this bioimage.io package is a StarDist model, not N2V: "
                                     "load it with StarDist2D.load / StarDist3D.load or "
                                     "`ij-bridge stardist import`")
        raise OriginalModelError(f"{p}: this bioimage.io package is not an n2v model (no n2v "
                                 "config.json with means/stds inside); pass an n2v model folder, "
                                 "its zip, or n2v's bioimage.io export")


def load_original(cls: type, path: str | Path, device: Any = None) -> Any:
    """Load an n2v (juglab) model as an ij-bridge :class:`~ij_bridge.n2v.N2V`.

    Parameters
    ----------
    cls : type
        :class:`ij_bridge.n2v.N2V` (or a subclass).
    path : str or Path
        Model folder, its zip, a weights ``.h5`` with ``config.json`` beside it,
        or ``tf_model.zip`` with ``config.json`` beside it.
    device : str or torch.device, optional

    Returns
    -------
    N2V
        Trained model; ``model.provenance`` holds ``source``, ``sha256``,
        ``format``, ``weights`` and ``original_config``.

    Raises
    ------
    OriginalModelError
        The file cannot be imported; the message names it and the fix.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"N2V model not found: {p}")
    kind = detect(p)
    src: _Source | None = None
    if kind in ("bioimageio", "savedmodel", "n2v", "keras3", "careamics", "stardist") and (
            p.is_dir() or zipfile.is_zipfile(p)):
        src = _Source(p)
    if kind == "bioimageio" and src is not None and _n2v_config_or_none(src) is not None:
        kind = "n2v"  # n2v's own bioimage.io export carries its config.json
    _reject(kind or "", p, src)
    if kind == "careamics" or (kind == "bioimageio" and src is not None and src.has("careamics.yaml")):
        return _load_careamics(cls, p, device)
    config_src: _Source
    weights_name: str
    if p.is_file() and p.suffix.lower() in (".h5", ".hdf5"):
        data = p.read_bytes()
        if _is_keras3_h5_safe(data):
            raise OriginalModelError(f"{p}: {_KERAS3_FIX}")
        config_src, weights_name = _Source(p.parent), p.name
        if not config_src.has("config.json"):
            raise OriginalModelError(f"{p}: no config.json beside it; n2v keeps the architecture and "
                                     "normalisation there: pass the whole model folder")
    elif kind == "savedmodel":
        if p.is_file():
            config_src, weights_name = _Source(p.parent), p.name
            if _n2v_config_or_none(config_src) is None:
                raise OriginalModelError(
                    f"{p}: a SavedModel holds no normalisation (means/stds); put the n2v model's "
                    "config.json beside it, or pass the folder or bioimage.io zip that holds both")
        else:
            raise OriginalModelError(f"{p}: a SavedModel folder without an n2v config.json; pass the "
                                     "n2v model folder (config.json beside tf_model.zip)")
    elif kind == "n2v" and src is not None:
        config_src = src
        members = src.members()
        h5s = [m for m in members if "/" not in m and m.lower().endswith((".h5", ".hdf5"))]
        pref = [n for n in _H5_PREFERENCE if n in h5s]
        if pref:
            weights_name = pref[0]
        elif h5s:
            weights_name = sorted(h5s)[0]
        elif "tf_model.zip" in members:
            weights_name = "tf_model.zip"
        else:
            raise OriginalModelError(f"{p}: config.json but no weights (weights_best.h5, "
                                     "weights_last.h5 or tf_model.zip); copy the whole n2v model folder")
    else:
        raise OriginalModelError(f"{p} is neither an ij-bridge N2V model nor an n2v model folder "
                                 "(config.json with means/stds and weights_best.h5)")
    raw_cfg = config_src.read("config.json")
    try:
        orig = json.loads(raw_cfg.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OriginalModelError(f"{config_src.where('config.json')}: unreadable JSON ({exc}); copy "
                                 "the model folder again") from None
    if not isinstance(orig, dict):
        raise OriginalModelError(f"{config_src.where('config.json')}: not an n2v config")
    _check_original_config(orig, config_src.where("config.json"))
    config, mean, std = n2v_config_from_original(orig)
    wdata = config_src.read(weights_name)
    wwhere = config_src.where(weights_name)
    if weights_name.lower().endswith(".zip"):
        fmt = "n2v-savedmodel"
        layers = _savedmodel_layers(config_src, weights_name, wwhere)
    else:
        fmt = "n2v-keras-h5"
        if _is_keras3_h5_safe(wdata):
            raise OriginalModelError(f"{wwhere}: {_KERAS3_FIX}")
        layers = _h5_layers(wdata, wwhere)
    if config.n_channels > 1 and config.original_net["single_net_per_channel"]:
        warnings.warn(
            f"{p}: this n2v model has one U-Net per channel; n2v feeds every one of them the last "
            "channel (a late-binding bug in its per-channel slicing), so each output channel is "
            "predicted from the last input channel. The import reproduces the original exactly.",
            stacklevel=3)
    model = cls(config, device=device)
    model._build(config.n_channels)
    _fill(model.net, layers, orig, wwhere)
    model.net.eval()
    model.mean, model.std = mean, std
    source_sha = sha256_bytes(p.read_bytes()) if p.is_file() else None
    model.provenance = {
        "source": str(p.resolve()),
        "sha256": source_sha,
        "format": fmt,
        "weights": {"file": weights_name, "sha256": sha256_bytes(wdata)},
        "config_sha256": sha256_bytes(raw_cfg),
        "original_config": orig,
    }
    return model


def build_original_net(config: N2VConfig) -> Any:
    """The torch network of an imported model (``config.original_net`` set)."""
    desc = config.original_net or {}
    if desc.get("family") == "careamics":
        from ..nets.careamics_unet import CAREamicsUNet

        return CAREamicsUNet.from_description(desc["model"])
    from ..nets.n2v_original import N2VOriginalNet

    return N2VOriginalNet.from_description(**config.original_net_kwargs())


def _plain(obj: Any) -> Any:
    """JSON-safe copy (tuples to lists, other objects to strings)."""
    return json.loads(json.dumps(obj, default=str))


def _yaml_scalar(text: str) -> Any:
    t = text.strip()
    if t in ("null", "~", ""):
        return None
    if t in ("true", "True"):
        return True
    if t in ("false", "False"):
        return False
    if t == "{}":
        return {}
    if t == "[]":
        return []
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"":
        return t[1:-1]
    for conv in (int, float):
        try:
            return conv(t)
        except ValueError:
            pass
    return t


def _simple_yaml(text: str, where: str) -> Any:
    """Parse the block-style YAML that CAREamics writes (``careamics.yaml``).

    Only what that file uses: nested mappings by indentation, ``- `` lists of
    scalars or of mappings, plain scalars, ``{}``/``[]``/``null``. Anything
    else is an error naming the line.
    """
    lines = [(len(ln) - len(ln.lstrip(" ")), ln.strip()) for ln in text.splitlines()
             if ln.strip() and not ln.lstrip().startswith("#") and ln.strip() not in ("---", "%YAML 1.2")]
    pos = 0

    def block(indent: int) -> Any:
        nonlocal pos
        if pos < len(lines) and (lines[pos][1].startswith("- ") or lines[pos][1] == "-"):
            out_list: list[Any] = []
            while pos < len(lines) and lines[pos][0] == indent and lines[pos][1].startswith("-"):
                item = lines[pos][1][1:].strip()
                if ":" in item and not item.startswith(("'", '"')):
                    # a mapping inside the list: re-read this line as its first key
                    lines[pos] = (indent + 2, item)
                    out_list.append(block(indent + 2))
                else:
                    pos += 1
                    out_list.append(_yaml_scalar(item))
            return out_list
        out: dict[str, Any] = {}
        while pos < len(lines) and lines[pos][0] == indent:
            ind, ln = lines[pos]
            if ln.startswith("- ") or ":" not in ln:
                raise OriginalModelError(f"{where}: cannot read line {ln!r} of its YAML; export the "
                                         "model again with CAREamics")
            key, _, rest = ln.partition(":")
            pos += 1
            if rest.strip():
                out[key.strip()] = _yaml_scalar(rest)
            elif pos < len(lines) and (lines[pos][0] > ind or (lines[pos][0] == ind and lines[pos][1].startswith("-"))):
                out[key.strip()] = block(lines[pos][0])
            else:
                out[key.strip()] = None
        return out

    result = block(lines[0][0] if lines else 0)
    if pos != len(lines):
        raise OriginalModelError(f"{where}: cannot read line {lines[pos][1]!r} of its YAML; export the "
                                 "model again with CAREamics")
    return result


def _careamics_bmz(p: Path) -> tuple[dict, dict, bytes]:
    """(hyper-parameter-like dict, state dict, weights bytes) of a CAREamics bioimage.io zip."""
    import torch

    src = _Source(p)
    if not src.has("careamics.yaml"):
        raise OriginalModelError(f"{p}: a CAREamics bioimage.io package without careamics.yaml; "
                                 "import the CAREamics checkpoint (.ckpt) instead")
    cfg = _simple_yaml(src.read("careamics.yaml").decode("utf-8", "replace"), src.where("careamics.yaml"))
    names = [m for m in src.members() if m.endswith((".pth", ".pt"))]
    if not names:
        raise OriginalModelError(f"{p}: no weights (.pth) in the package; export it again with CAREamics")
    wdata = src.read(names[0])
    try:
        state = torch.load(io.BytesIO(wdata), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types
        raise OriginalModelError(f"{src.where(names[0])}: cannot read the weights ({type(exc).__name__}); "
                                 "the package is damaged: export it again") from None
    ckpt = {"hyper_parameters": {"algorithm_config": cfg.get("algorithm_config")},
            "datamodule_hyper_parameters": {"data_config": cfg.get("data_config")},
            "careamics_info": {"version": cfg.get("version"), "experiment_name": cfg.get("experiment_name")},
            "state_dict": {"model." + k: v for k, v in state.items()}}
    return ckpt, {"file": names[0]}, wdata


def _load_careamics(cls: type, p: Path, device: Any) -> Any:
    """An N2V model from a CAREamics checkpoint (PyTorch Lightning) or bioimage.io zip."""
    import torch

    data = p.read_bytes()
    fmt = "careamics-ckpt"
    weights = {"file": p.name, "sha256": sha256_bytes(data)}
    if zipfile.is_zipfile(p) and p.suffix.lower() != ".ckpt":
        fmt = "careamics-bioimageio"
        ckpt, weights, wdata = _careamics_bmz(p)
        weights["sha256"] = sha256_bytes(wdata)
    else:
        try:
            ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for broken or unsafe pickles
            raise OriginalModelError(f"{p}: cannot read the checkpoint safely ({type(exc).__name__}: "
                                     f"{str(exc).splitlines()[0][:200]}); it is truncated, not a CAREamics "
                                     "checkpoint, or holds objects other than tensors and plain data: "
                                     "save it again with CAREamics") from None
    try:
        algo = ckpt["hyper_parameters"]["algorithm_config"]
        model_desc = dict(algo["model"])
        data_cfg = ckpt["datamodule_hyper_parameters"]["data_config"]
        state = ckpt["state_dict"]
    except (KeyError, TypeError) as exc:
        raise OriginalModelError(f"{p}: not a CAREamics checkpoint (no {exc} in it); pass the .ckpt "
                                 "that CAREamics wrote in its checkpoints folder") from None
    where = str(p)
    if model_desc.get("architecture") != "UNet":
        raise OriginalModelError(f"{where}: a CAREamics {model_desc.get('architecture')} model; only "
                                 "its UNet (N2V, N2V2) can be imported")
    if algo.get("algorithm") != "n2v":
        raise OriginalModelError(f"{where}: a CAREamics {algo.get('algorithm')!r} model, not Noise2Void; "
                                 "only N2V/N2V2 models are imported as N2V")
    norm = data_cfg.get("normalization") or {}
    means = norm.get("input_means", data_cfg.get("image_means"))
    stds = norm.get("input_stds", data_cfg.get("image_stds"))
    if norm.get("name", "mean_std") != "mean_std" or not means or not stds:
        raise OriginalModelError(f"{where}: normalisation {norm.get('name')!r} without means/stds; "
                                 "only CAREamics' mean_std normalisation is supported")
    tm, ts = norm.get("target_means"), norm.get("target_stds")
    if (tm and list(tm) != list(means)) or (ts and list(ts) != list(stds)):
        raise OriginalModelError(f"{where}: target normalisation differs from the input's; not an "
                                 "N2V model ij-bridge can reproduce")
    n_ch = int(model_desc.get("in_channels", 1))
    if int(model_desc.get("num_classes", 1)) != n_ch or len(means) != n_ch or len(stds) != n_ch:
        raise OriginalModelError(f"{where}: {n_ch} input channels, {model_desc.get('num_classes')} "
                                 f"outputs, {len(means)} means: an N2V model has as many of each")
    nd = int(model_desc.get("conv_dims", 2))
    depth = int(model_desc.get("depth", 3))
    axes = "".join(a for a in str(data_cfg.get("axes", "YX")).upper() if a not in "ST")
    if "C" not in axes and n_ch > 1:
        axes = "C" + axes
    if "C" in axes and n_ch == 1:
        axes = axes.replace("C", "")
    n2v = algo.get("n2v_config") or {}
    patch = (data_cfg.get("patching") or {}).get("patch_size", data_cfg.get("patch_size"))
    opt = (algo.get("optimizer") or {}).get("parameters") or {}
    config = N2VConfig(
        axes=axes, patch_size=_valid_patch(patch, nd, 2**depth),
        batch_size=int(data_cfg.get("batch_size", 16)),
        variant="N2V2" if model_desc.get("n2v2") or n2v.get("strategy") == "median" else "N2V",
        masked_fraction=min(max(float(n2v.get("masked_pixel_percentage", 0.2)) / 100, 1e-4), 0.49),
        neighborhood_radius=max(1, int(n2v.get("roi_size", 11)) // 2),
        learning_rate=float(opt.get("lr", 1e-4)),
        unet_depth=depth, unet_filters=int(model_desc.get("num_channels_init", 64)), unet_kernel_size=3,
        unet_n_conv_per_depth=2, unet_batch_norm=bool(model_desc.get("use_batch_norm", True)),
        n_channels=n_ch, original_net={"family": "careamics", "model": _plain(model_desc)},
    )
    model = cls(config, device=device)
    model._build(n_ch)
    own = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    try:
        model.net.load_state_dict(own, strict=True)
    except RuntimeError as exc:
        first = str(exc).split("\n\t")[1] if "\n\t" in str(exc) else str(exc)[:300]
        raise OriginalModelError(f"{where}: the weights do not fit the UNet of its own config "
                                 f"({first.strip()}); the checkpoint is damaged: save it again") from None
    model.net.eval()
    model.mean = np.asarray([float(v) for v in means], dtype=np.float64)
    model.std = np.asarray([float(v) for v in stds], dtype=np.float64)
    model.provenance = {
        "source": str(p.resolve()), "sha256": sha256_bytes(data), "format": fmt, "weights": weights,
        "original_config": _plain({k: ckpt.get(k) for k in ("hyper_parameters", "datamodule_hyper_parameters",
                                                           "careamics_info", "pytorch-lightning_version")}),
    }
    return model


def pad_like_n2v(x: np.ndarray, divisor: tuple[int, ...]) -> tuple[np.ndarray, tuple[slice, ...] | None]:
    """Pad ``(S, C, *spatial)`` images to multiples of ``divisor`` as n2v does before its network.

    n2v predicts through CSBDeep's ``PadAndCropResizer``: each spatial axis is
    padded by ``(d - s % d) % d`` pixels, half (rounded down) before and the
    rest after, by reflection; the result is cropped back. Padding the whole
    image once (not each tile) keeps tiled predictions equal to untiled ones.

    Returns
    -------
    padded : ndarray
    crop : tuple of slice or None
        Index that cuts the padded result back to the input's size (None: no padding).
    """
    spatial = x.shape[2:]
    pads = [((d - s % d) % d) for s, d in zip(spatial, divisor)]
    if not any(pads):
        return x, None
    widths = [(0, 0), (0, 0)] + [(p // 2, p - p // 2) for p in pads]
    mode = "reflect" if all(p - p // 2 < s for p, s in zip(pads, spatial)) else "edge"
    crop = (slice(None), slice(None)) + tuple(slice(w[0], w[0] + s) for w, s in zip(widths[2:], spatial))
    return np.pad(x, widths, mode=mode), crop


def _is_keras3_h5_safe(data: bytes) -> bool:
    try:
        return _is_keras3_h5(data)
    except OSError:
        return False


def readme_text(provenance: Mapping[str, Any]) -> str:
    """README for a model imported from another tool."""
    cfg = provenance.get("original_config") or {}
    careamics = str(provenance.get("format", "")).startswith("careamics")
    lines = [
        "# Imported N2V model",
        "",
        ("Converted by ij-bridge from a CAREamics checkpoint." if careamics else
         "Converted by ij-bridge from a model of the original n2v package (juglab)."),
        "",
        f"- source: `{provenance.get('source')}`",
    ]
    if provenance.get("sha256"):
        lines.append(f"- source sha256: `{provenance['sha256']}`")
    w = provenance.get("weights") or {}
    lines += [
        f"- format: {provenance.get('format')}",
        f"- weights: `{w.get('file')}` (sha256 `{w.get('sha256')}`)",
    ]
    if provenance.get("config_sha256"):
        lines.append(f"- config.json sha256: `{provenance.get('config_sha256')}`")
    lines += [
        "",
        ("The network is CAREamics' UNet (ij_bridge.nets.careamics_unet)" if careamics else
         "The network is n2v's own U-Net (ij_bridge.nets.n2v_original)") + ", so predictions",
        "reproduce the original's. The original configuration is kept in n2v_model.json",
        "under `provenance.original_config`:",
        "",
        "```json",
        json.dumps(cfg, indent=2, sort_keys=True),
        "```",
        "",
    ]
    return "\n".join(lines)
