"""StarDist 2D models from the Fiji plugin's TensorFlow SavedModel zips.

The original package's ``export_TF()`` (and the three models inside the Fiji
plugin's jar) wrap the Keras network in CSBDeep's ``export_SavedModel``:

* the network itself: an optional *grid stem* (``n_conv_per_depth``
  convolutions and a max-pooling per factor of two of ``grid``), CSBDeep's
  ``unet_block`` (``down_level_i_no_j``, ``middle_k``, ``up_level_i_no_j``),
  an optional 3×3 ``features`` convolution, and the 1×1 heads ``prob``
  (sigmoid) and ``dist`` (linear);
* an *upsampling to full resolution* for Fiji: ``prob`` through a 1×1
  ``Conv2DTranspose`` with stride ``grid`` and a kernel of ones (so the full
  resolution probability is the grid probability at every ``grid``-th pixel
  and 0 elsewhere), ``dist`` through a nearest-neighbour ``UpSampling2D``;
* a concatenation ``[prob, dist]`` along channels, the single output.

There is no config.json and no thresholds inside. This module derives the
original's configuration from the variable names and shapes, checks it against
the graph (every convolution's strides, padding, dilation and activation, the
poolings, upsamplings and concatenation order), and returns the configuration
in the form of the original's ``config.json`` together with the Keras layer
weights, the same pair the HDF5 reader produces. The upsampling wrapper is not
part of the model: :meth:`StarDist2D.predict` returns the grid-resolution maps,
which equal the SavedModel's output at every ``grid``-th pixel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..tfsaved import Node, SavedModel, SavedModelError, read_savedmodel

__all__ = ["read_stardist_savedmodel", "load_stardist_savedmodel", "StarDistSavedModel", "is_savedmodel"]

_FIX = ("load the original model folder (config.json + weights_best.h5) instead, or export "
        "the model again with stardist's export_TF()")

_ACTIVATIONS = {"Relu": "relu", "Elu": "elu", "Sigmoid": "sigmoid", "Tanh": "tanh",
                "Softplus": "softplus", "Selu": "selu", "Relu6": "relu6"}
_PASS = {"Identity", "Snapshot", "StopGradient"}
_VAR_READS = {"ReadVariableOp", "Identity"}


@dataclass
class _Rec:
    """A Keras-level layer recovered from (or expected in) the graph."""

    kind: str                      # input, conv, pool, up, concat, convT
    name: str | None = None        # Keras layer name (named layers only)
    params: tuple = ()
    inputs: list["_Rec"] = field(default_factory=list)
    bn: str | None = None          # batch normalisation layer after a convolution

    def describe(self) -> str:
        if self.kind == "conv":
            shape, act, _, bn = self.params
            return (f"convolution {self.name or '(unnamed)'} (kernel {tuple(shape)}, {act}"
                    f"{', batch norm' if bn else ''})")
        what = {"conv": "convolution", "pool": "max-pooling", "up": "upsampling",
                "concat": "concatenation", "convT": "transposed convolution",
                "input": "input"}[self.kind]
        return f"{what} {self.name or ''} {self.params}".replace("  ", " ").strip()


@dataclass
class StarDistSavedModel:
    """What :func:`read_stardist_savedmodel` returns.

    Attributes
    ----------
    config : dict
        The original's configuration, in the keys of its ``config.json``
        (``n_dim``, ``n_channel_in``, ``n_rays``, ``grid``, ``unet_*``,
        ``net_conv_after_unet``, ...).
    weights : dict
        ``{Keras layer name: {"kernel": ..., "bias": ...}}`` (batch
        normalisations: ``gamma``, ``beta``, ``moving_mean``,
        ``moving_variance``) in Keras layout (kernels ``(kh, kw, c_in,
        c_out)``), in the network's layer order (each batch normalisation
        after its convolution); unnamed layers (the grid stem, batch
        normalisations) keep their Keras names (``conv2d``, ...).
    stem_layers : list of str
        The grid stem's convolutions, input first.
    upsampled : bool
        The export upsamples its output to full resolution (the Fiji format).
    meta : dict
        ``meta.json`` beside ``saved_model.pb`` if there is one (CSBDeep writes
        it when given metadata), else empty.
    source : Path
        The file read.
    """

    config: dict[str, Any]
    weights: dict[str, dict[str, np.ndarray]]
    stem_layers: list[str]
    upsampled: bool
    meta: dict[str, Any]
    source: Path


def is_savedmodel(path: str | Path) -> bool:
    """Whether ``path`` is a SavedModel folder or a zip holding ``saved_model.pb``."""
    import zipfile

    p = Path(path)
    if p.is_dir():
        return (p / "saved_model.pb").is_file() or any(p.glob("*/saved_model.pb"))
    if p.is_file() and zipfile.is_zipfile(p):
        try:
            with zipfile.ZipFile(p) as zf:
                return any(n.rsplit("/", 1)[-1] == "saved_model.pb" for n in zf.namelist())
        except (zipfile.BadZipFile, OSError):
            return False
    return False


# ----------------------------------------------------------------- graph → layers


class _Tracer:
    def __init__(self, sm: SavedModel):
        self.sm = sm
        self.nodes = sm.nodes
        self.memo: dict[str, _Rec] = {}
        self.kernels: dict[str, str] = {}   # layer name → activation found after it

    def fail(self, msg: str) -> SavedModelError:
        return SavedModelError(f"{self.sm.path}: {msg}; not a StarDist 2D export that ij-bridge "
                               f"knows: {_FIX}")

    def var_name(self, name: str) -> str:
        """Follow reads/identities back to a variable node; return its name."""
        seen = 0
        while True:
            n = self.nodes.get(name)
            if n is None:
                raise self.fail(f"graph refers to a missing node {name!r}")
            if n.op in ("VarHandleOp", "VariableV2", "Variable"):
                return n.attr.get("shared_name") or n.name
            if n.op in _VAR_READS and n.data_inputs:
                name = n.data_inputs[0]
            else:
                raise self.fail(f"weights of node {n.name!r} do not come from a variable "
                                f"(op {n.op})")
            seen += 1
            if seen > 20:
                raise self.fail(f"cannot find the variable behind {name!r}")

    def const(self, name: str) -> np.ndarray | None:
        n = self.nodes.get(name)
        while n is not None and n.op in _PASS:
            n = self.nodes.get(n.data_inputs[0])
        if n is not None and n.op == "Const" and isinstance(n.attr.get("value"), np.ndarray):
            return n.attr["value"]
        return None

    @staticmethod
    def _spatial(v: list[int] | None) -> tuple[int, ...]:
        return tuple(v[1:-1]) if v else ()

    def _check_nhwc(self, n: Node) -> None:
        fmt = n.attr.get("data_format", "NHWC")
        if fmt not in ("NHWC", "NDHWC"):
            raise self.fail(f"node {n.name!r} uses data format {fmt} (expected channels last)")

    def trace(self, name: str) -> _Rec:
        """Layer record of the tensor produced by node ``name``."""
        name = name.split(":")[0]
        if name in self.memo:
            return self.memo[name]
        stack = [name]
        while stack:  # resolve inputs first (no deep recursion on big graphs)
            top = stack[-1]
            n = self.nodes.get(top)
            if n is None:
                raise self.fail(f"graph refers to a missing node {top!r}")
            pending = [i for i in self._tensor_inputs(n) if i not in self.memo]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            if top not in self.memo:
                self.memo[top] = self._make(n)
        return self.memo[name]

    def _tensor_inputs(self, n: Node) -> list[str]:
        ins = n.data_inputs
        if n.op in _PASS or n.op in _ACTIVATIONS or n.op in ("MaxPool", "MaxPool3D"):
            return ins[:1]
        if n.op in ("Conv2D", "Conv3D", "BiasAdd", "Add", "AddV2"):
            return ins[:1]
        if n.op == "ResizeNearestNeighbor":
            return ins[:1]
        if n.op in ("ConcatV2",):
            return ins[:-1]
        if n.op in ("If", "StatelessIf"):
            return [i for i in ins[1:] if self.nodes.get(i) is not None
                    and self.nodes[i].op not in ("VarHandleOp", "VariableV2")]
        if n.op.startswith("FusedBatchNorm"):
            return ins[:1]
        if n.op == "Conv2DBackpropInput":
            return ins[2:3]
        return []

    def _make(self, n: Node) -> _Rec:
        op = n.op
        ins = n.data_inputs
        if op in ("Placeholder", "PlaceholderWithDefault"):
            return _Rec("input")
        if op in _PASS:
            return self.memo[ins[0]]
        if op in ("Conv2D", "Conv3D"):
            self._check_nhwc(n)
            if op == "Conv3D":
                raise self.fail(f"node {n.name!r} is a 3D convolution (the Fiji format is 2D only)")
            var = self.var_name(ins[1])
            layer = var.rsplit("/", 1)[0]
            strides, dil = self._spatial(n.attr.get("strides")), self._spatial(n.attr.get("dilations"))
            if any(s != 1 for s in strides) or any(d != 1 for d in dil) or n.attr.get("padding") != "SAME":
                raise self.fail(f"convolution {layer!r} has strides {strides}, dilations {dil}, "
                                f"padding {n.attr.get('padding')} (expected 1, 1, SAME)")
            ker = self.sm.variables.get(var)
            if ker is None:
                raise self.fail(f"convolution {layer!r}: variable {var!r} is not in the checkpoint")
            return _Rec("conv", layer, (tuple(ker.shape), "linear", False, False), [self.memo[ins[0]]])
        if op in ("BiasAdd", "Add", "AddV2"):
            src = self.memo[ins[0]]
            if src.kind != "conv" or src.params[2] or src.params[3]:
                raise self.fail(f"node {n.name!r} ({op}) does not follow a convolution")
            var = self.var_name(ins[1])
            if var != f"{src.name}/bias":
                raise self.fail(f"convolution {src.name!r} gets its bias from {var!r}")
            return _Rec("conv", src.name, (src.params[0], src.params[1], True, False), src.inputs)
        if op in _ACTIVATIONS:
            src = self.memo[ins[0]]
            if src.kind != "conv" or src.params[1] != "linear":
                raise self.fail(f"activation {n.name!r} ({op}) does not follow a convolution")
            return _Rec("conv", src.name, (src.params[0], _ACTIVATIONS[op]) + src.params[2:],
                        src.inputs, src.bn)
        if op in ("If", "StatelessIf", "FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"):
            return self._batch_norm(n)
        if op == "MaxPool":
            self._check_nhwc(n)
            k, s = self._spatial(n.attr.get("ksize")), self._spatial(n.attr.get("strides"))
            if k != s or n.attr.get("padding") != "VALID":
                raise self.fail(f"max-pooling {n.name!r} has size {k}, strides {s}, padding "
                                f"{n.attr.get('padding')} (expected size = strides, VALID)")
            return _Rec("pool", None, (k,), [self.memo[ins[0]]])
        if op == "ResizeNearestNeighbor":
            if n.attr.get("align_corners"):
                raise self.fail(f"upsampling {n.name!r} uses align_corners")
            return _Rec("up", None, (self._resize_factor(n),), [self.memo[ins[0]]])
        if op == "ConcatV2":
            axis = self.const(ins[-1])
            if axis is None or int(axis) not in (-1, 3):
                raise self.fail(f"concatenation {n.name!r} is not along channels (axis {axis})")
            return _Rec("concat", None, (), [self.memo[i] for i in ins[:-1]])
        if op == "Conv2DBackpropInput":
            var = self.var_name(ins[1])
            layer = var.rsplit("/", 1)[0]
            ker = self.sm.variables.get(var)
            strides = self._spatial(n.attr.get("strides"))
            if ker is None or ker.shape[:2] != (1, 1) or n.attr.get("padding") != "SAME":
                raise self.fail(f"transposed convolution {layer!r} is not the 1×1 upsampling of "
                                "export_TF")
            if not np.allclose(ker, 1.0):
                raise self.fail(f"transposed convolution {layer!r} has a kernel other than ones "
                                f"({ker.ravel()[:4]})")
            return _Rec("convT", None, (strides,), [self.memo[ins[2]]])
        if op in ("StatefulPartitionedCall", "PartitionedCall"):
            raise self.fail(f"node {n.name!r} calls a function ({op}): a TF2 object-graph "
                            "SavedModel (Keras model.save), not the graph export_TF() writes")
        raise self.fail(f"node {n.name!r} has op {op!r}, which a StarDist network does not use")

    def _batch_norm(self, n: Node) -> _Rec:
        """Keras BatchNormalization at inference: a FusedBatchNorm, or the ``If`` on the
        learning phase that TF2's graph-mode Keras writes (its else branch: is_training False)."""
        if n.op.startswith("FusedBatchNorm"):
            x, var_ins, fbn = n.data_inputs[0], n.data_inputs[1:5], n
        else:
            cond = self.nodes.get(n.data_inputs[0])
            while cond is not None and cond.op in _PASS:
                cond = self.nodes.get(cond.data_inputs[0])
            default = self.const(cond.data_inputs[0]) if cond is not None and cond.data_inputs else None
            if cond is None or cond.op != "PlaceholderWithDefault" or default is None or bool(default):
                raise self.fail(f"node {n.name!r} is a condition ({n.op}) on something other than "
                                "Keras' learning phase (dropout or a custom layer?)")
            ins = n.data_inputs[1:]
            var_ins = [i for i in ins if self.nodes.get(i) is not None
                       and self.nodes[i].op in ("VarHandleOp", "VariableV2")]
            rest = [i for i in ins if i not in var_ins]
            if len(var_ins) != 4 or len(rest) != 1:
                raise self.fail(f"node {n.name!r} ({n.op}) is not a batch normalisation (inputs "
                                f"{n.data_inputs})")
            x = rest[0]
            fn = self.sm.functions.get((n.attr.get("else_branch") or {}).get("func", ""), {})
            fbns = [m for m in fn.values() if m.op.startswith("FusedBatchNorm")]
            if len(fbns) != 1 or fbns[0].attr.get("is_training", True):
                raise self.fail(f"node {n.name!r} ({n.op}): its inference branch is not one "
                                "batch normalisation")
            fbn = fbns[0]
        names = {self.var_name(i) for i in var_ins}
        prefix = {v.rsplit("/", 1)[0] for v in names}
        if len(prefix) != 1 or {v.rsplit("/", 1)[1] for v in names} != \
                {"gamma", "beta", "moving_mean", "moving_variance"}:
            raise self.fail(f"node {n.name!r} is not a Keras batch normalisation (variables "
                            f"{sorted(names)})")
        eps = float(fbn.attr.get("epsilon", 1e-3))
        if abs(eps - 1e-3) > 1e-6:
            raise self.fail(f"batch normalisation {prefix.pop()!r} has epsilon {eps:g} (Keras' "
                            "default 1e-3 expected)")
        src = self.memo[x]
        if src.kind != "conv" or src.params[1] != "linear" or src.params[3]:
            raise self.fail(f"batch normalisation {n.name!r} does not follow a convolution")
        return _Rec("conv", src.name, src.params[:3] + (True,), src.inputs, prefix.pop())

    def _resize_factor(self, n: Node) -> tuple[int, ...]:
        size = self.nodes.get(n.data_inputs[1])
        if size is not None and size.op == "Mul":
            for i in size.data_inputs:
                c = self.const(i)
                if c is not None:
                    return tuple(int(v) for v in np.atleast_1d(c))
        raise self.fail(f"cannot read the factor of upsampling {n.name!r} (its size is not "
                        "input size × constant)")


# ----------------------------------------------------------------- expected layers


def _expected(cfg: dict[str, Any], stem: list[str], upsample: tuple[int, ...] | None,
              kernels: dict[str, tuple[int, ...]]) -> tuple[_Rec, _Rec | None]:
    """Layer records of the original's 2D network for ``cfg`` (mirrors its Keras build)."""
    k = tuple(cfg["unet_kernel_size"])
    act, last = cfg["unet_activation"], cfg["unet_last_activation"]
    pre = cfg["unet_prefix"]
    base, exp = cfg["unet_n_filter_base"], cfg["unet_expansion"]
    ncv, depth = cfg["unet_n_conv_per_depth"], cfg["unet_n_depth"]
    pool = tuple(cfg["unet_pool"])
    bn = bool(cfg["unet_batch_norm"])
    c_in = [cfg["n_channel_in"]]

    def conv(x, name, n_out, kernel=k, activation=act, bn=False):
        r = _Rec("conv", name, (tuple(kernel) + (c_in[0], n_out), activation, True, bn), [x])
        c_in[0] = n_out
        return r

    x = _Rec("input")
    stem_iter = iter(stem)
    pooled = np.ones(2, int)
    grid = np.asarray(cfg["grid"])
    while tuple(pooled) != tuple(grid):
        p = 1 + (grid > pooled)
        pooled = pooled * p
        for _ in range(ncv):
            x = conv(x, next(stem_iter, "?stem"), base)
        x = _Rec("pool", None, (tuple(int(v) for v in p),), [x])
    skips = []
    for n in range(depth):
        for i in range(ncv):
            x = conv(x, f"{pre}down_level_{n}_no_{i}", int(base * exp ** n), bn=bn)
        skips.append((x, c_in[0]))
        x = _Rec("pool", None, (pool,), [x])
    for i in range(ncv - 1):
        x = conv(x, f"{pre}middle_{i}", int(base * exp ** depth), bn=bn)
    x = conv(x, f"{pre}middle_{ncv}", int(base * exp ** max(0, depth - 1)), bn=bn)
    for n in reversed(range(depth)):
        skip, c_skip = skips[n]
        x = _Rec("concat", None, (), [_Rec("up", None, (pool,), [x]), skip])
        c_in[0] += c_skip
        for i in range(ncv - 1):
            x = conv(x, f"{pre}up_level_{n}_no_{i}", int(base * exp ** n), bn=bn)
        x = conv(x, f"{pre}up_level_{n}_no_{ncv}", int(base * exp ** max(0, n - 1)),
                 activation=act if n > 0 else last, bn=bn)
    if cfg["net_conv_after_unet"] > 0:
        x = conv(x, "features", cfg["net_conv_after_unet"])
    c_feat = c_in[0]
    prob = conv(x, "prob", 1, kernel=(1, 1), activation="sigmoid")
    c_in[0] = c_feat
    dist = conv(x, "dist", cfg["n_rays"], kernel=(1, 1), activation="linear")
    if upsample is not None:
        prob = _Rec("convT", None, (upsample,), [prob])
        dist = _Rec("up", None, (upsample,), [dist])
    return prob, dist


def _canonical(out: list[_Rec]) -> list[tuple[_Rec, tuple]]:
    """Post-order listing with inputs as indices (auto-named layers compared by position)."""
    index: dict[int, int] = {}
    order: list[tuple[_Rec, tuple]] = []

    def visit(r: _Rec) -> int:
        if id(r) in index:
            return index[id(r)]
        ids = tuple(visit(i) for i in r.inputs)
        index[id(r)] = len(order)
        order.append((r, ids))
        return index[id(r)]

    for r in out:
        visit(r)
    return order


def _key(r: _Rec, ids: tuple, stem: set[str]) -> tuple:
    name = None if (r.name in stem or r.name == "?stem") else r.name
    return (r.kind, name, r.params, ids)


# ----------------------------------------------------------------- derivation


def read_stardist_savedmodel(path: str | Path | SavedModel) -> StarDistSavedModel:
    """Read a StarDist 2D TF SavedModel (folder or zip) without TensorFlow.

    Parameters
    ----------
    path : str, Path or SavedModel
        The Fiji plugin's model zip (``TF_SavedModel.zip`` of ``export_TF()``),
        its unpacked folder, or an already read :class:`SavedModel`.

    Returns
    -------
    StarDistSavedModel

    Raises
    ------
    SavedModelError
        Not readable, or a graph that is not the original's StarDist 2D network
        (the message names the file, the layer and the fix).
    """
    sm = path if isinstance(path, SavedModel) else read_savedmodel(path)
    where = sm.path

    def fail(msg: str) -> SavedModelError:
        return SavedModelError(f"{where}: {msg}; not a StarDist 2D export that ij-bridge knows: {_FIX}")

    kernels = {k[:-len("/kernel")]: v for k, v in sm.variables.items() if k.endswith("/kernel")}
    if "prob" not in kernels or "dist" not in kernels:
        if "keras_metadata.pb" in sm.extra_files or any(".ATTRIBUTES/" in k for k in sm.variables):
            raise SavedModelError(
                f"{where}: a Keras SavedModel of another network (no StarDist 'prob' and 'dist' "
                "heads; n2v's export_TF writes such tf_model.zip files: load those with N2V.load); "
                f"for StarDist, {_FIX}")
        have = ", ".join(sorted(kernels)[:8]) or "none"
        raise fail(f"no 'prob' and 'dist' layers (layers: {have}); a StarDist export has both")
    downs = {}
    prefix = None
    for name in kernels:
        m = re.fullmatch(r"(.*)down_level_(\d+)_no_(\d+)", name)
        if m:
            if prefix is not None and m.group(1) != prefix:
                raise fail(f"U-Net layers with two prefixes ({prefix!r}, {m.group(1)!r})")
            prefix = m.group(1)
            downs.setdefault(int(m.group(2)), set()).add(int(m.group(3)))
    if not downs:
        if any(re.fullmatch(r".*resnet.*|.*block.*", n) for n in kernels):
            raise fail("a ResNet backbone (the Fiji format holds StarDist 2D U-Nets only)")
        raise fail("no U-Net layers (down_level_*_no_*)")
    depth = len(downs)
    ncv = len(downs[0])
    if sorted(downs) != list(range(depth)) or any(downs[d] != set(range(ncv)) for d in downs):
        raise fail(f"incomplete U-Net levels {dict(sorted(downs.items()))}")
    k0 = kernels[f"{prefix}down_level_0_no_0"]
    if k0.ndim != 4:
        raise fail(f"layer '{prefix}down_level_0_no_0' has a {k0.ndim - 2}D kernel {k0.shape} "
                   "(the Fiji format is 2D)")
    base = int(k0.shape[-1])
    expansion = (kernels[f"{prefix}down_level_1_no_0"].shape[-1] / base) if depth > 1 else 2
    if expansion != int(expansion):
        raise fail(f"U-Net width grows by {expansion} per level (expected an integer)")

    # output(s) of the serving signature
    outs = sm.outputs
    if len(outs) == 1:
        out_rec_names = [next(iter(outs.values()))[0]]
    elif set(outs) >= {"prob", "dist"}:
        out_rec_names = [outs["prob"][0], outs["dist"][0]]
    else:
        raise fail(f"serving signature has outputs {sorted(outs)} (expected one, or prob and dist)")
    if len(sm.inputs) != 1:
        raise fail(f"serving signature has {len(sm.inputs)} inputs (expected one)")
    in_shape = next(iter(sm.inputs.values()))[1]

    tracer = _Tracer(sm)
    traced = [tracer.trace(n) for n in out_rec_names]
    if len(traced) == 1:
        top = traced[0]
        if top.kind != "concat" or len(top.inputs) != 2:
            raise fail("the output is not the concatenation [prob, dist] of export_TF(single_output=True)")
        prob_r, dist_r = top.inputs
    else:
        prob_r, dist_r = traced
    upsample = None
    if prob_r.kind == "convT":
        upsample = tuple(int(v) for v in prob_r.params[0])
    # the stem: convolutions between the input and down_level_0_no_0, in graph order
    all_recs = _canonical([prob_r, dist_r])
    stem = []
    for r, _ in all_recs:
        if r.kind == "conv" and r.name == f"{prefix}down_level_0_no_0":
            break
        if r.kind == "conv":
            stem.append(r.name)
    pools = [r for r, _ in all_recs if r.kind == "pool"]
    grid = [1, 1]
    n_stem_pools = len(stem) // ncv if ncv else 0
    for r in pools[:n_stem_pools]:
        grid = [g * p for g, p in zip(grid, r.params[0])]
    unet_pool = tuple(pools[n_stem_pools].params[0]) if len(pools) > n_stem_pools else (2, 2)
    acts = {r.name: r.params[1] for r, _ in all_recs if r.kind == "conv"}
    c_in = int(in_shape[-1]) if in_shape and in_shape[-1] and in_shape[-1] > 0 else \
        int(kernels[stem[0] if stem else f"{prefix}down_level_0_no_0"].shape[2])

    cfg: dict[str, Any] = {
        "n_dim": 2,
        "axes": "YXC",
        "n_channel_in": c_in,
        "n_rays": int(kernels["dist"].shape[-1]),
        "grid": list(grid),
        "backbone": "unet",
        "n_classes": None,
        "unet_n_depth": depth,
        "unet_kernel_size": list(k0.shape[:2]),
        "unet_n_filter_base": base,
        "unet_n_conv_per_depth": ncv,
        "unet_pool": list(unet_pool),
        "unet_activation": acts.get(f"{prefix}down_level_0_no_0", "relu"),
        "unet_last_activation": acts.get(f"{prefix}up_level_0_no_{ncv}", "relu"),
        "unet_batch_norm": any(r.bn is not None for r, _ in all_recs),
        "unet_dropout": 0.0,
        "unet_expansion": int(expansion),
        "unet_prefix": prefix,
        "net_conv_after_unet": int(kernels["features"].shape[-1]) if "features" in kernels else 0,
    }
    cfg["n_channel_out"] = 1 + cfg["n_rays"]
    cfg["net_input_shape"] = [None, None, c_in]
    if upsample is not None and tuple(upsample) != tuple(grid):
        raise fail(f"the output is upsampled by {upsample} but the network's grid is {tuple(grid)}")

    # compare the graph with the network this configuration builds, layer by layer
    exp_prob, exp_dist = _expected(cfg, stem, upsample, {k: v.shape for k, v in kernels.items()})
    got = _canonical([prob_r, dist_r])
    want = _canonical([exp_prob, exp_dist])
    stem_set = set(stem)
    for i, ((g, gi), (w, wi)) in enumerate(zip(got, want)):
        if _key(g, gi, stem_set) != _key(w, wi, stem_set):
            raise fail(f"layer {i} of the graph is the {g.describe()}, but a StarDist U-Net with "
                       f"depth {depth}, {base} filters and grid {tuple(grid)} has the "
                       f"{w.describe()} there")
    if len(got) != len(want):
        raise fail(f"the graph has {len(got)} layers, a StarDist U-Net of this configuration "
                   f"{len(want)}")

    weights: dict[str, dict[str, np.ndarray]] = {}
    for r, _ in got:
        if r.kind == "conv":
            weights[r.name] = {"kernel": sm.variables[f"{r.name}/kernel"],
                               "bias": sm.variables[f"{r.name}/bias"]}
            if r.bn is not None:
                weights[r.bn] = {k: sm.variables[f"{r.bn}/{k}"]
                                 for k in ("gamma", "beta", "moving_mean", "moving_variance")}
    meta: dict[str, Any] = {}
    if "meta.json" in sm.extra_files:
        import json

        try:
            meta = json.loads(sm.extra_files["meta.json"])
        except ValueError:
            meta = {}
    return StarDistSavedModel(config=cfg, weights=weights, stem_layers=stem,
                              upsampled=upsample is not None, meta=meta, source=Path(where))


# ----------------------------------------------------------------- loading


def _source_sha256(path: str) -> str | None:
    import hashlib

    from ..tfsaved import read_member

    outer, sep, member = path.partition("!/")
    if sep:
        return hashlib.sha256(read_member(outer, member)).hexdigest()
    p = Path(path)
    if not p.is_file():
        return None
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_stardist_savedmodel(path: str | Path, device=None,
                             thresholds: dict[str, float] | None = None,
                             fiji_model: Any = None):
    """An ij-bridge :class:`StarDist2D` from a StarDist TF SavedModel (the Fiji format).

    Parameters
    ----------
    path : str or Path
        The SavedModel zip or folder; or ``<jar>!/<member>`` for a zip inside
        a jar (the Fiji plugin's resources).
    device : str or torch.device, optional
        As for the model.
    thresholds : dict, optional
        ``{"prob": ..., "nms": ...}``. The SavedModel carries none: without
        this, a ``fiji_model``'s thresholds (the plugin's defaults for its
        built-in models) are used, else the original's defaults (prob 0.5,
        nms 0.4) with a warning.
    fiji_model : FijiModel, optional
        The plugin's model this file is (:mod:`ij_bridge.stardist.fiji_models`).

    Returns
    -------
    StarDist2D
        Predicting at the network's grid resolution: its ``predict`` equals the
        SavedModel's full-resolution output at every ``grid``-th pixel.

    Raises
    ------
    SavedModelError
        Unreadable, truncated, or an unknown graph (one line naming the file
        and the fix).
    """
    import warnings

    from ..nets.keras import KerasLayer
    from .model import StarDist2D
    from .original import DEFAULT_THRESHOLDS, config_from_original, original_architecture

    src = str(path)
    r = read_stardist_savedmodel(src)
    if thresholds:
        ths = {k: float(thresholds[k]) for k in ("prob", "nms") if k in thresholds}
        origin = "caller"
    elif fiji_model is not None:
        ths = {"prob": float(fiji_model.prob_thresh), "nms": float(fiji_model.nms_thresh)}
        origin = f"the StarDist Fiji plugin's defaults for '{fiji_model.name}'"
    else:
        ths = {}
        origin = "defaults"
        warnings.warn(f"{src}: a TF SavedModel carries no thresholds; using the original's "
                      f"defaults prob={DEFAULT_THRESHOLDS['prob']}, nms={DEFAULT_THRESHOLDS['nms']} "
                      "(give thresholds, or optimise them with "
                      "ij_bridge.stardist.optimize_thresholds)", stacklevel=2)
    for k, v in DEFAULT_THRESHOLDS.items():
        ths.setdefault(k, float(v))
    arch = original_architecture(r.config)
    cfg = config_from_original(r.config, arch, ths)
    model = StarDist2D(cfg, device=device)
    layers = [KerasLayer(name, dict(w)) for name, w in r.weights.items()]
    model.net.load_keras_layers(layers, f"{src} (variables)", f"{src} (saved_model.pb)")
    model.net.to(model.device, memory_format=model._memory_format)
    model._fresh_weights = False
    model.thresholds = dict(ths)
    model.provenance = {
        "imported_from": "tf-savedmodel",
        "source": src if "!/" in src else str(Path(src).resolve()),
        "sha256": _source_sha256(src),
        "thresholds_from": origin,
        "original_config": r.config,
        "savedmodel_upsampled_output": r.upsampled,
        **({"fiji_model": fiji_model.name} if fiji_model is not None else {}),
    }
    model.source = src
    return model
