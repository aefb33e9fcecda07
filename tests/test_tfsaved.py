"""TensorFlow-free reading of TF SavedModels (ij_bridge.tfsaved) and StarDist's export_TF zips.

The fixtures under tests/fixtures/reference/stardist/ were made by the original
stardist 0.9.2 / TensorFlow 2.15 (scripts/reference_models/make_stardist.py):
each folder holds the original's model (config.json, weights_best.h5), its
``export_TF()`` zip (the Fiji plugin's format) and the original's own
predictions on a small image (reference.npz).
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from ij_bridge.metrics import matching
from ij_bridge.stardist import StarDist2D
from ij_bridge.stardist.savedmodel import load_stardist_savedmodel, read_stardist_savedmodel
from ij_bridge.tfsaved import (SavedModelError, _snappy_decompress, _unmask, crc32c,
                               read_checkpoint, read_savedmodel)

REF = Path(__file__).resolve().parent / "fixtures" / "reference" / "stardist"
MODELS_2D = ["2d_grid1", "2d_grid2", "2d_rgb_bn"]


def _h5_weights(path: Path) -> dict[str, np.ndarray]:
    """Every weight of a Keras 2 HDF5 file, as ``layer/name`` (the checkpoint's keys)."""
    out = {}
    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                layer, rest = name.split("/", 1)
                short = rest.rsplit("/", 1)[-1].split(":")[0]
                out[f"{layer}/{short}"] = obj[()]

        root.visititems(visit)
    return out


def _rewrite_member(src: Path, dst: Path, member: str, fn) -> None:
    """Copy a zip, passing one member's bytes through ``fn``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info, fn(data) if info.filename.endswith(member) else data)


def test_crc32c_and_mask():
    assert crc32c(b"123456789") == 0xE3069283  # the Castagnoli check value
    assert crc32c(b"") == 0
    assert crc32c(np.zeros(32, np.uint8)) == 0x8A9136AA  # RFC 3720 B.4: 32 bytes of zeros
    c = crc32c(b"tensor bytes")
    masked = ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF
    assert _unmask(masked) == c


def test_snappy_literal_and_overlapping_copy():
    # 12 bytes: literal "abc", then a 1-byte-offset copy of 9 bytes from 3 back (overlapping)
    assert _snappy_decompress(b"\x0c\x08abc\x15\x03") == b"abcabcabcabc"
    with pytest.raises(SavedModelError, match="snappy"):
        _snappy_decompress(b"\x0c\x08abc\x15\x09")  # offset beyond the output


@pytest.mark.parametrize("name", MODELS_2D)
def test_checkpoint_equals_h5_weights(name):
    """The reader returns exactly the weights the original saved in its HDF5 file."""
    variables = read_checkpoint(REF / name / "TF_SavedModel.zip")
    h5 = _h5_weights(REF / name / "weights_best.h5")
    assert h5 and set(h5) <= set(variables)
    for key, value in h5.items():
        assert variables[key].dtype == value.dtype and np.array_equal(variables[key], value), key
    # all that the export adds is the upsampling of prob for Fiji: a 1x1 kernel of ones
    extra = set(variables) - set(h5)
    assert len(extra) == (1 if json.loads((REF / name / "config.json").read_text())["grid"] != [1, 1]
                          else 0)
    for key in extra:
        assert key.endswith("/kernel") and np.array_equal(variables[key], np.ones((1, 1, 1, 1)))


def test_graph_and_signature():
    sm = read_savedmodel(REF / "2d_grid2" / "TF_SavedModel.zip")
    assert sm.tags == ["serve"]
    (inp, in_shape), = sm.inputs.values()
    (out, out_shape), = sm.outputs.values()
    assert in_shape[-1] == 1 and out_shape[-1] == 1 + 24
    ops = {n.op for n in sm.ancestors(out)}
    assert {"Conv2D", "MaxPool", "ResizeNearestNeighbor", "ConcatV2", "Sigmoid",
            "Conv2DBackpropInput"} <= ops
    convs = [n for n in sm.nodes.values() if n.op == "Conv2D"]
    assert all(n.attr["padding"] == "SAME" and n.attr["strides"] == [1, 1, 1, 1] for n in convs)


@pytest.mark.parametrize("name", MODELS_2D)
def test_config_derived_from_graph_equals_original(name):
    """Without config.json: the architecture from variable names, shapes and the graph."""
    r = read_stardist_savedmodel(REF / name / "TF_SavedModel.zip")
    orig = json.loads((REF / name / "config.json").read_text())
    for key, value in r.config.items():
        if key in orig:
            assert orig[key] == value, key
    assert r.upsampled == (orig["grid"] != [1, 1])


@pytest.mark.parametrize("name", MODELS_2D)
def test_savedmodel_predictions_equal_original(name):
    """prob to 1e-4 and dist to 1e-3 px of the original's predict; the same objects.

    The zip's own output is at full resolution (prob through a strided 1x1 transposed
    convolution of ones, dist repeated); the model predicts at the grid, where the two agree.
    """
    ref = np.load(REF / name / "reference.npz")
    p_th, n_th = (float(v) for v in ref["thresholds"])
    model = StarDist2D.load(REF / name / "TF_SavedModel.zip")
    assert model.provenance["imported_from"] == "tf-savedmodel"
    prob, dist = model.predict(ref["x"], normalize=False)
    assert prob.shape == ref["prob"].shape
    assert np.abs(prob - ref["prob"]).max() < 1e-4
    got = dist.reshape(-1, dist.shape[-1])[ref["dist_index"]]
    assert np.abs(got - ref["dist_values"]).max() < 1e-3
    labels, _ = model.predict_instances(ref["x"], normalize=False, prob_thresh=p_th, nms_thresh=n_th)
    # the same network as the one built from config.json + weights_best.h5, to the bit
    h5 = StarDist2D.load(REF / name)
    assert np.array_equal(h5.predict(ref["x"], normalize=False)[0], prob)
    assert ref["labels"].max() >= 1
    assert matching(ref["labels"], labels, 0.5).f1 >= 0.99


def test_thresholds_from_caller_fiji_or_defaults():
    from ij_bridge.stardist.fiji_models import FIJI_MODELS

    zp = REF / "2d_grid1" / "TF_SavedModel.zip"
    with pytest.warns(UserWarning, match="carries no thresholds"):
        m = load_stardist_savedmodel(zp)
    assert m.thresholds == {"prob": 0.5, "nms": 0.4}
    fm = FIJI_MODELS["DSB 2018 (from StarDist 2D paper)"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = load_stardist_savedmodel(zp, fiji_model=fm)
        assert m.thresholds == {"prob": 0.417819, "nms": 0.5}
        m = load_stardist_savedmodel(zp, thresholds={"prob": 0.7, "nms": 0.2})
        assert m.thresholds == {"prob": 0.7, "nms": 0.2}


def test_import_roundtrip_to_own_format(tmp_path):
    """A loaded SavedModel saves in ij-bridge's format and predicts the same after reloading."""
    ref = np.load(REF / "2d_grid2" / "reference.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = StarDist2D.load(REF / "2d_grid2" / "TF_SavedModel.zip")
    out = m.save(tmp_path / "converted")
    again = StarDist2D.load(out)
    a, _ = m.predict(ref["x"], normalize=False)
    b, _ = again.predict(ref["x"], normalize=False)
    assert np.array_equal(a, b)


def test_unknown_graph_is_a_clear_error(tmp_path):
    # the same bytes, but every max-pooling is now an average pooling: not a StarDist U-Net
    bad = tmp_path / "avgpool.zip"
    _rewrite_member(REF / "2d_grid2" / "TF_SavedModel.zip", bad, "saved_model.pb",
                    lambda b: b.replace(b"MaxPool", b"AvgPool"))
    with pytest.raises(SavedModelError) as e:
        StarDist2D.load(bad)
    msg = str(e.value)
    assert str(bad) in msg and "AvgPool" in msg and "config.json + weights_best.h5" in msg
    assert "\n" not in msg
    # a SavedModel of another network: n2v's export (made by n2v 0.3.3 / TF 2.15)
    n2v = REF.parent / "n2v" / "n2v_2d" / "tf_model.zip"
    with pytest.raises(SavedModelError, match="N2V.load"):
        StarDist2D.load(n2v)
    # the graph without its variables
    only_graph = tmp_path / "only_graph.zip"
    with zipfile.ZipFile(only_graph, "w") as zf:
        zf.writestr("saved_model.pb", zipfile.ZipFile(REF / "2d_grid1" / "TF_SavedModel.zip")
                    .read("saved_model.pb"))
    with pytest.raises(SavedModelError, match="no variables/variables.index"):
        read_savedmodel(only_graph)


def test_truncated_or_corrupt_zip_is_a_clear_error(tmp_path):
    data = (REF / "2d_grid1" / "TF_SavedModel.zip").read_bytes()
    cut = tmp_path / "TF_SavedModel.zip"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(SavedModelError, match="truncated") as e:
        read_savedmodel(cut)
    assert str(cut) in str(e.value)
    with pytest.raises(ValueError, match=str(cut).replace(".", r"\.")):
        StarDist2D.load(cut)
    # one flipped byte in the tensor data: the crc32c check names the variable
    flipped = tmp_path / "flipped.zip"

    def flip(b: bytes) -> bytes:
        arr = bytearray(b)
        arr[len(arr) // 2] ^= 0xFF
        return bytes(arr)

    _rewrite_member(REF / "2d_grid1" / "TF_SavedModel.zip", flipped, "variables.data-00000-of-00001", flip)
    with pytest.raises(SavedModelError, match="crc32c"):
        read_checkpoint(flipped)
    assert read_checkpoint(flipped, verify=False)  # readable when asked not to check


def test_zip_with_a_top_folder_and_unpacked_folder(tmp_path):
    src = REF / "2d_grid1" / "TF_SavedModel.zip"
    nested = tmp_path / "nested.zip"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(nested, "w") as zout:
        for info in zin.infolist():
            if not info.is_dir():
                zout.writestr("my_model/" + info.filename, zin.read(info))
    folder = tmp_path / "unpacked"
    zipfile.ZipFile(src).extractall(folder)
    a = read_checkpoint(src)
    for other in (nested, folder):
        b = read_checkpoint(other)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as jar:
        jar.writestr("models/2D/m.zip", src.read_bytes())
    (tmp_path / "x.jar").write_bytes(buf.getvalue())
    c = read_checkpoint(f"{tmp_path / 'x.jar'}!/models/2D/m.zip")
    assert c.keys() == a.keys()


def _encode(msg: dict[int, list]) -> bytes:
    """Serialise parse_message's output again (ints as varints, bytes length-delimited)."""
    def varint(v: int) -> bytes:
        out = bytearray()
        while True:
            b, v = v & 0x7F, v >> 7
            out.append(b | (0x80 if v else 0))
            if not v:
                return bytes(out)

    out = bytearray()
    for num, vals in msg.items():
        for v in vals:
            if isinstance(v, int):
                out += varint(num << 3) + varint(v)
            else:
                out += varint(num << 3 | 2) + varint(len(v)) + v
    return bytes(out)


def _as_tf1_graph(pb: bytes) -> bytes:
    """The graph as TensorFlow 1 writes it (the Fiji plugin's zips): reference variables
    (VariableV2) read through Identity ops, instead of resource handles and ReadVariableOp."""
    from ij_bridge.tfsaved import parse_message

    sm = parse_message(pb)
    meta = parse_message(sm[2][0])
    graph = parse_message(meta[2][0])
    nodes = []
    for nb in graph[1]:
        node = parse_message(nb)
        op = node[2][0]
        if op == b"VarHandleOp":
            node[2] = [b"VariableV2"]
        elif op == b"ReadVariableOp":
            node[2] = [b"Identity"]
        nodes.append(_encode(node))
    graph[1] = nodes
    meta[2] = [_encode(graph)]
    sm[2] = [_encode(meta)] + sm[2][1:]
    return _encode(sm)


def test_tf1_style_graph(tmp_path):
    """Variables read through Identity from VariableV2 nodes (TF1 exports) map the same way."""
    tf1 = tmp_path / "tf1.zip"
    _rewrite_member(REF / "2d_grid1" / "TF_SavedModel.zip", tf1, "saved_model.pb", _as_tf1_graph)
    sm = read_savedmodel(tf1)
    assert "VariableV2" in sm.ops() and "VarHandleOp" not in sm.ops()
    a = read_stardist_savedmodel(tf1)
    b = read_stardist_savedmodel(REF / "2d_grid1" / "TF_SavedModel.zip")
    assert a.config == b.config and a.weights.keys() == b.weights.keys()


def test_cli_import_of_a_savedmodel(tmp_path):
    """`ij-bridge stardist import TF_SavedModel.zip --model DST --prob P`: ij-bridge's format,
    with provenance, predicting as the zip does."""
    import subprocess
    import sys

    cli = str(Path(sys.executable).with_name("ij-bridge"))
    src = REF / "2d_grid1" / "TF_SavedModel.zip"
    dst = tmp_path / "imported.zip"
    r = subprocess.run([cli, "stardist", "import", str(src), "--model", str(dst), "--prob", "0.6",
                        "--nms", "0.35"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "grid (1, 1)" in r.stdout
    m = StarDist2D.load(dst)
    assert m.thresholds == {"prob": 0.6, "nms": 0.35}
    assert m.provenance["imported_from"] == "tf-savedmodel"
    assert m.provenance["sha256"] == __import__("hashlib").sha256(src.read_bytes()).hexdigest()
    ref = np.load(REF / "2d_grid1" / "reference.npz")
    prob, _ = m.predict(ref["x"], normalize=False)
    assert np.abs(prob - ref["prob"]).max() < 1e-4
