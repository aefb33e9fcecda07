"""Read TensorFlow SavedModels without TensorFlow.

A SavedModel (as written by CSBDeep's ``export_SavedModel``, which the StarDist
and Noise2Void Fiji plugins consume) is a folder or zip holding

* ``saved_model.pb``: a ``SavedModel`` protobuf message; its first
  ``MetaGraphDef`` carries the ``GraphDef`` (nodes with op names, inputs and
  attributes) and the serving signature (input and output tensor names);
* ``variables/variables.index``: a LevelDB-format table (SSTable) whose keys are
  variable names and whose values are ``BundleEntryProto`` records (dtype,
  shape, shard, offset, size, crc32c); the empty key holds a
  ``BundleHeaderProto`` (number of shards, endianness);
* ``variables/variables.data-0000N-of-0000M``: the raw tensors, little-endian.

This module decodes all three with numpy and the standard library: the protobuf
wire format (varints, fixed-width and length-delimited fields), the table's
blocks (restart points, prefix-compressed keys, optional snappy compression)
and the CRC-32C (Castagnoli) checksums TensorFlow stores.

The entry points are :func:`read_checkpoint` (``{variable name: ndarray}``)
and :func:`read_savedmodel` (variables, graph and signature together).
Nothing here imports TensorFlow, Java or torch.
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

import numpy as np
from numba import njit

from .model_files import FolderOrZip

__all__ = [
    "SavedModelError",
    "Node",
    "SavedModel",
    "read_checkpoint",
    "read_savedmodel",
    "read_sstable",
    "crc32c",
    "parse_message",
    "read_member",
]


class SavedModelError(ValueError):
    """A SavedModel or checkpoint that cannot be read; the message names the file."""


# --------------------------------------------------------------------------- protobuf


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; return (value, next position)."""
    result = 0
    shift = 0
    n = len(buf)
    while True:
        if pos >= n:
            raise SavedModelError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise SavedModelError("varint longer than 10 bytes")


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def parse_message(buf: bytes) -> dict[int, list[Any]]:
    """Split one protobuf message into its fields.

    Parameters
    ----------
    buf : bytes
        The serialised message.

    Returns
    -------
    dict
        ``{field number: [values in order]}``. Varints come back as ``int``
        (unsigned; use :func:`_signed64` for int64 fields), fixed32/fixed64 as
        their raw 4 or 8 ``bytes``, length-delimited fields as ``bytes``
        (a sub-message, string or packed array: the schema decides).

    Raises
    ------
    SavedModelError
        A truncated message or an unknown wire type.
    """
    out: dict[int, list[Any]] = {}
    pos = 0
    n = len(buf)
    while pos < n:
        tag, pos = _varint(buf, pos)
        num, wt = tag >> 3, tag & 7
        if wt == 0:
            val, pos = _varint(buf, pos)
        elif wt == 2:
            ln, pos = _varint(buf, pos)
            if pos + ln > n:
                raise SavedModelError("truncated length-delimited field")
            val = bytes(buf[pos:pos + ln])
            pos += ln
        elif wt == 5:
            if pos + 4 > n:
                raise SavedModelError("truncated fixed32 field")
            val = bytes(buf[pos:pos + 4])
            pos += 4
        elif wt == 1:
            if pos + 8 > n:
                raise SavedModelError("truncated fixed64 field")
            val = bytes(buf[pos:pos + 8])
            pos += 8
        else:
            raise SavedModelError(f"unsupported protobuf wire type {wt}")
        out.setdefault(num, []).append(val)
    return out


def _first(msg: dict[int, list[Any]], num: int, default: Any = None) -> Any:
    v = msg.get(num)
    return v[0] if v else default


def _packed_varints(vals: list[Any]) -> list[int]:
    """Repeated varint field: packed (bytes) and unpacked (int) entries mixed."""
    out: list[int] = []
    for v in vals:
        if isinstance(v, bytes):
            pos = 0
            while pos < len(v):
                x, pos = _varint(v, pos)
                out.append(x)
        else:
            out.append(v)
    return out


def _packed_floats(vals: list[Any]) -> list[float]:
    out: list[float] = []
    for v in vals:
        out.extend(struct.unpack(f"<{len(v) // 4}f", v))
    return out


def _shape(buf: bytes | None) -> tuple[int, ...] | None:
    """TensorShapeProto → tuple (``None`` for unknown rank, -1 for unknown dims)."""
    if buf is None:
        return ()
    msg = parse_message(buf)
    if _first(msg, 3, 0):
        return None
    return tuple(_signed64(_first(parse_message(d), 1, 0)) for d in msg.get(2, []))


# TensorFlow DataType enum → numpy dtype (little-endian)
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"), 2: np.dtype("<f8"), 3: np.dtype("<i4"), 4: np.dtype("u1"),
    5: np.dtype("<i2"), 6: np.dtype("i1"), 9: np.dtype("<i8"), 10: np.dtype("?"),
    17: np.dtype("<u2"), 19: np.dtype("<f2"), 22: np.dtype("<u4"), 23: np.dtype("<u8"),
}
_DT_STRING = 7
_DT_BFLOAT16 = 14
_DTYPE_NAMES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8",
                7: "string", 9: "int64", 10: "bool", 14: "bfloat16", 17: "uint16",
                19: "float16", 22: "uint32", 23: "uint64", 20: "resource", 21: "variant"}


def _tensor_proto(buf: bytes) -> np.ndarray | list[bytes]:
    """Decode a TensorProto (the value of a graph ``Const``)."""
    msg = parse_message(buf)
    dt = _first(msg, 1, 0)
    shape = _shape(_first(msg, 2)) or ()
    count = int(np.prod(shape)) if shape else 1
    if dt == _DT_STRING:
        return list(msg.get(8, []))
    if dt not in _DTYPES:
        raise SavedModelError(f"constant of unsupported dtype {_DTYPE_NAMES.get(dt, dt)}")
    dtype = _DTYPES[dt]
    content = _first(msg, 4)
    if content is not None:
        arr = np.frombuffer(content, dtype=dtype)
    else:
        if dt == 1:
            vals: list[Any] = _packed_floats(msg.get(5, []))
        elif dt == 2:
            vals = [struct.unpack("<d", v)[0] for v in msg.get(6, []) if len(v) == 8]
            for v in msg.get(6, []):
                if len(v) != 8:
                    vals.extend(struct.unpack(f"<{len(v) // 8}d", v))
        elif dt == 9:
            vals = [_signed64(v) for v in _packed_varints(msg.get(10, []))]
        elif dt == 10:
            vals = _packed_varints(msg.get(11, []))
        else:
            vals = [_signed64(v) if v >= 1 << 63 else (v - (1 << 32) if v >= 1 << 31 else v)
                    for v in _packed_varints(msg.get(7, []))]
        arr = np.asarray(vals, dtype=dtype)
    if arr.size == count:
        return arr.reshape(shape)
    if arr.size == 1:  # TF stores a splat value once
        return np.full(shape, arr[0], dtype=dtype)
    if arr.size == 0:
        return np.zeros(shape, dtype=dtype)
    raise SavedModelError(f"constant holds {arr.size} values for shape {shape}")


def _attr_value(buf: bytes) -> Any:
    """Decode an AttrValue into a plain Python value."""
    msg = parse_message(buf)
    if 2 in msg:
        return msg[2][0].decode("utf-8", "replace")
    if 3 in msg:
        return _signed64(msg[3][0])
    if 4 in msg:
        return struct.unpack("<f", msg[4][0])[0]
    if 5 in msg:
        return bool(msg[5][0])
    if 6 in msg:
        return _DTYPE_NAMES.get(msg[6][0], msg[6][0])
    if 7 in msg:
        return _shape(msg[7][0])
    if 8 in msg:
        return _tensor_proto(msg[8][0])
    if 9 in msg:
        return msg[9][0].decode()
    if 10 in msg:  # NameAttrList: a function reference (If/While branches)
        return {"func": _first(parse_message(msg[10][0]), 1, b"").decode()}
    if 1 in msg:
        lst = parse_message(msg[1][0])
        if 2 in lst:
            return [s.decode("utf-8", "replace") for s in lst[2]]
        if 3 in lst:
            return [_signed64(v) for v in _packed_varints(lst[3])]
        if 4 in lst:
            return _packed_floats(lst[4])
        if 5 in lst:
            return [bool(v) for v in _packed_varints(lst[5])]
        if 6 in lst:
            return [_DTYPE_NAMES.get(v, v) for v in _packed_varints(lst[6])]
        if 7 in lst:
            return [_shape(s) for s in lst[7]]
        return []
    return None


# --------------------------------------------------------------------------- crc32c


def _crc32c_table() -> np.ndarray:
    poly = 0x82F63B78  # Castagnoli, reflected
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table[i] = c
    return table


_CRC_TABLE = _crc32c_table()


@njit(cache=True, nogil=True)
def _crc32c_update(crc: np.uint32, data: np.ndarray, table: np.ndarray) -> np.uint32:
    c = crc ^ np.uint32(0xFFFFFFFF)
    for i in range(data.shape[0]):
        c = table[(c ^ data[i]) & np.uint32(0xFF)] ^ (c >> np.uint32(8))
    return c ^ np.uint32(0xFFFFFFFF)


def crc32c(data: bytes | memoryview | np.ndarray) -> int:
    """CRC-32C (Castagnoli) of ``data``, as used by LevelDB and TensorFlow.

    >>> hex(crc32c(b"123456789"))
    '0xe3069283'
    """
    arr = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8).ravel()
    return int(_crc32c_update(np.uint32(0), arr, _CRC_TABLE))


def _unmask(masked: int) -> int:
    """Undo LevelDB's crc masking (rotate right 15 bits after subtracting the delta)."""
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# --------------------------------------------------------------------------- snappy


def _snappy_decompress(buf: bytes) -> bytes:
    """Decompress a raw snappy block (literal and copy elements)."""
    n, pos = _varint(buf, 0)
    out = bytearray()
    while pos < len(buf):
        tag = buf[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:
            ln = tag >> 2
            if ln >= 60:
                nb = ln - 59
                ln = int.from_bytes(buf[pos:pos + nb], "little")
                pos += nb
            ln += 1
            out += buf[pos:pos + ln]
            pos += ln
            continue
        if kind == 1:
            ln = ((tag >> 2) & 7) + 4
            off = ((tag >> 5) << 8) | buf[pos]
            pos += 1
        elif kind == 2:
            ln = (tag >> 2) + 1
            off = int.from_bytes(buf[pos:pos + 2], "little")
            pos += 2
        else:
            ln = (tag >> 2) + 1
            off = int.from_bytes(buf[pos:pos + 4], "little")
            pos += 4
        if off == 0 or off > len(out):
            raise SavedModelError("corrupt snappy block")
        start = len(out) - off
        for i in range(ln):  # copies may overlap their own output
            out.append(out[start + i])
    if len(out) != n:
        raise SavedModelError("corrupt snappy block (length mismatch)")
    return bytes(out)


# --------------------------------------------------------------------------- SSTable

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER = 48


def _block_handle(buf: bytes, pos: int = 0) -> tuple[int, int, int]:
    off, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return off, size, pos


def _read_block(data: bytes, off: int, size: int, verify: bool) -> bytes:
    if off + size + 5 > len(data):
        raise SavedModelError("table block beyond the end of the file (truncated?)")
    raw = data[off:off + size]
    ctype = data[off + size]
    if verify:
        stored = struct.unpack("<I", data[off + size + 1:off + size + 5])[0]
        if crc32c(data[off:off + size + 1]) != _unmask(stored):
            raise SavedModelError(f"table block at byte {off} fails its crc32c check (corrupt file)")
    if ctype == 0:
        return bytes(raw)
    if ctype == 1:
        return _snappy_decompress(raw)
    raise SavedModelError(f"table block compressed with unknown method {ctype}")


def _block_entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise SavedModelError("table block too short")
    n_restarts = struct.unpack("<I", block[-4:])[0]
    end = len(block) - 4 - 4 * n_restarts
    if end < 0:
        raise SavedModelError("table block has a bad restart array")
    pos = 0
    key = b""
    while pos < end:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        vlen, pos = _varint(block, pos)
        if shared > len(key) or pos + non_shared + vlen > end:
            raise SavedModelError("table block entry out of bounds")
        key = key[:shared] + block[pos:pos + non_shared]
        pos += non_shared
        yield key, block[pos:pos + vlen]
        pos += vlen


def read_sstable(data: bytes, verify: bool = True) -> list[tuple[bytes, bytes]]:
    """All (key, value) pairs of a LevelDB-format table, in key order.

    Parameters
    ----------
    data : bytes
        The whole table file.
    verify : bool
        Check each block's crc32c.

    Raises
    ------
    SavedModelError
        Not a table (bad magic), truncated, or corrupt.
    """
    if len(data) < _FOOTER:
        raise SavedModelError("file too short for a table footer (truncated?)")
    footer = data[-_FOOTER:]
    magic = struct.unpack("<Q", footer[-8:])[0]
    if magic != _TABLE_MAGIC:
        raise SavedModelError("not a TensorFlow/LevelDB table (bad magic number; truncated?)")
    _, _, pos = _block_handle(footer, 0)  # metaindex (unused)
    idx_off, idx_size, _ = _block_handle(footer, pos)
    index = _read_block(data, idx_off, idx_size, verify)
    out: list[tuple[bytes, bytes]] = []
    for _, handle in _block_entries(index):
        off, size, _ = _block_handle(handle)
        out.extend(_block_entries(_read_block(data, off, size, verify)))
    return out


# --------------------------------------------------------------------------- checkpoint


@dataclass
class _Entry:
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc: int | None
    sliced: bool


def _bundle_entry(buf: bytes) -> _Entry:
    msg = parse_message(buf)
    crc = _first(msg, 6)
    return _Entry(
        dtype=_first(msg, 1, 0),
        shape=_shape(_first(msg, 2)) or (),
        shard=_first(msg, 3, 0),
        offset=_signed64(_first(msg, 4, 0)),
        size=_signed64(_first(msg, 5, 0)),
        crc=struct.unpack("<I", crc)[0] if crc is not None else None,
        sliced=bool(msg.get(7)),
    )


def read_member(archive: str | Path, member: str) -> bytes:
    """The bytes of ``member`` inside the zip or jar ``archive``.

    Raises
    ------
    SavedModelError
        The archive is missing, not a zip, truncated, or lacks the member.
    """
    where = f"{archive}!/{member}"
    try:
        with zipfile.ZipFile(archive) as zf:
            return zf.read(member)
    except FileNotFoundError:
        raise SavedModelError(f"{archive}: no such file") from None
    except KeyError:
        raise SavedModelError(f"{archive} has no {member} inside") from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise SavedModelError(f"{where}: cannot read it ({e}); the archive is truncated or "
                              "corrupt: reinstall or download it again") from None


class _Files:
    """Uniform read access to a SavedModel folder or zip (with or without a top folder)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.prefix = ""
        outer, sep, member = str(path).partition("!/")
        read_message = ("{path}: cannot read {name} from the zip ({exc}); the file is truncated or "
                        "corrupt: download or export it again")
        if sep:  # a zip inside a zip or jar, as in Java's jar: URLs (outer.jar!/models/x.zip)
            self._files = FolderOrZip(path, data=read_member(outer, member), error=SavedModelError,
                                      open_message="{path}: not a readable zip ({exc}); reinstall or "
                                                   "download it again", read_message=read_message)
        elif self.path.is_dir() or self.path.is_file():
            self._files = FolderOrZip(self.path, error=SavedModelError, read_message=read_message,
                                      open_message="{path}: not a readable zip ({exc}); the file is truncated "
                                                   "or not a SavedModel zip: download or export it again")
        else:
            raise SavedModelError(f"{self.path}: no such file or folder")
        self.names = self._files.names
        pbs = sorted((n for n in self.names if PurePosixPath(n).name == "saved_model.pb"),
                     key=lambda n: n.count("/"))
        idx = sorted((n for n in self.names if n.endswith("variables/variables.index")),
                     key=lambda n: n.count("/"))
        if pbs:
            self.prefix = pbs[0][:-len("saved_model.pb")]
        elif idx:
            self.prefix = idx[0][:-len("variables/variables.index")]

    def has(self, name: str) -> bool:
        return self._files.has(self.prefix + name)

    def read(self, name: str) -> bytes:
        if not self.has(name):
            raise SavedModelError(f"{self.path}: has no {name}")
        return self._files.read(self.prefix + name)

    def close(self) -> None:
        self._files.close()


def _decode_tensor(e: _Entry, raw: bytes, name: str) -> np.ndarray:
    if e.dtype == _DT_STRING:
        count = int(np.prod(e.shape)) if e.shape else 1
        pos = 0
        lens = []
        for _ in range(count):
            ln, pos = _varint(raw, pos)
            lens.append(ln)
        pos += 4  # crc32c of the lengths
        vals = []
        for ln in lens:
            vals.append(raw[pos:pos + ln])
            pos += ln
        return np.array(vals, dtype=object).reshape(e.shape)
    if e.dtype == _DT_BFLOAT16:
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(e.shape)
    if e.dtype not in _DTYPES:
        raise SavedModelError(f"variable {name!r} has unsupported dtype "
                              f"{_DTYPE_NAMES.get(e.dtype, e.dtype)}")
    arr = np.frombuffer(raw, dtype=_DTYPES[e.dtype])
    if arr.size != (int(np.prod(e.shape)) if e.shape else 1):
        raise SavedModelError(f"variable {name!r}: {arr.size} values for shape {e.shape}")
    return arr.reshape(e.shape).astype(_DTYPES[e.dtype].newbyteorder("="), copy=True)


def _tensor_crc(e: _Entry, raw: bytes) -> int:
    """The crc32c TensorFlow records for a stored tensor.

    Numeric tensors: the crc of their bytes. String tensors are stored as varint
    lengths, a masked crc of the lengths, then the bytes; but the recorded crc
    covers each length as a little-endian uint32 (uint64 beyond 4 GiB), then
    that masked crc and the bytes (TensorFlow's ``WriteStringTensor``).
    """
    if e.dtype != _DT_STRING:
        return crc32c(raw)
    count = int(np.prod(e.shape)) if e.shape else 1
    pos = 0
    parts = []
    for _ in range(count):
        ln, pos = _varint(raw, pos)
        parts.append(struct.pack("<I", ln) if ln <= 0xFFFFFFFF else struct.pack("<Q", ln))
    return crc32c(b"".join(parts) + raw[pos:])


def _read_variables(files: _Files, verify: bool) -> dict[str, np.ndarray]:
    where = f"{files.path}: variables/variables.index"
    try:
        table = read_sstable(files.read("variables/variables.index"), verify=verify)
    except SavedModelError as e:
        raise SavedModelError(f"{where}: {e}") from None
    entries: dict[str, _Entry] = {}
    n_shards = 1
    for key, value in table:
        if key == b"":
            hdr = parse_message(value)
            n_shards = _first(hdr, 1, 1) or 1
            if _first(hdr, 2, 0) != 0:
                raise SavedModelError(f"{where}: big-endian checkpoints are not supported")
            continue
        entries[key.decode("utf-8", "replace")] = _bundle_entry(value)
    shards: dict[int, bytes] = {}
    out: dict[str, np.ndarray] = {}
    for name, e in entries.items():
        if e.sliced:
            raise SavedModelError(f"{where}: variable {name!r} is stored in slices "
                                  "(partitioned variables are not supported)")
        if e.shard not in shards:
            shard = f"variables/variables.data-{e.shard:05d}-of-{n_shards:05d}"
            shards[e.shard] = files.read(shard)
        data = shards[e.shard]
        if e.offset < 0 or e.offset + e.size > len(data):
            raise SavedModelError(f"{files.path}: data shard {e.shard} ends before variable "
                                  f"{name!r} (truncated?): export the model again")
        raw = data[e.offset:e.offset + e.size]
        if verify and e.crc is not None and _unmask(e.crc) != _tensor_crc(e, raw):
            raise SavedModelError(f"{files.path}: variable {name!r} fails its crc32c check "
                                  "(corrupt file): export the model again")
        out[name] = _decode_tensor(e, raw, name)
    return out


def read_checkpoint(path: str | Path, verify: bool = True) -> dict[str, np.ndarray]:
    """Read the variables of a TF checkpoint in a SavedModel folder or zip.

    Parameters
    ----------
    path : str or Path
        A SavedModel folder or zip (holding ``variables/variables.index``).
    verify : bool
        Check table-block and tensor crc32c checksums.

    Returns
    -------
    dict
        ``{variable name: ndarray}`` in the checkpoint's own layout
        (Keras kernels are ``(*kernel_size, c_in, c_out)``).
    """
    files = _Files(path)
    try:
        return _read_variables(files, verify)
    finally:
        files.close()


# --------------------------------------------------------------------------- graph


@dataclass
class Node:
    """One node of a GraphDef."""

    name: str
    op: str
    inputs: list[str]
    attr: dict[str, Any] = field(default_factory=dict)

    @property
    def data_inputs(self) -> list[str]:
        """Inputs without control dependencies and with ``:0`` output suffixes removed."""
        out = []
        for i in self.inputs:
            if i.startswith("^"):
                continue
            out.append(i.split(":")[0])
        return out


@dataclass
class SavedModel:
    """What :func:`read_savedmodel` returns.

    Attributes
    ----------
    path : Path
        The file or folder read.
    variables : dict
        ``{variable name: ndarray}``.
    nodes : dict
        ``{node name: Node}`` of the first meta graph.
    inputs, outputs : dict
        The serving signature: ``{key: (tensor name, shape)}``.
    tags : list of str
        The meta graph's tags (``serve``).
    functions : dict
        The graph's function library (branches of ``If`` ops, ...):
        ``{function name: {node name: Node}}``.
    extra_files : dict
        Other small files found beside ``saved_model.pb`` (e.g. ``meta.json``),
        ``{name: bytes}``.
    """

    path: Path
    variables: dict[str, np.ndarray]
    nodes: dict[str, Node]
    inputs: dict[str, tuple[str, tuple[int, ...] | None]]
    outputs: dict[str, tuple[str, tuple[int, ...] | None]]
    tags: list[str]
    extra_files: dict[str, bytes] = field(default_factory=dict)
    functions: dict[str, dict[str, Node]] = field(default_factory=dict)

    def ops(self) -> set[str]:
        """All op types in the graph."""
        return {n.op for n in self.nodes.values()}

    def ancestors(self, tensor: str) -> list[Node]:
        """Nodes the tensor depends on (data inputs only), in topological order."""
        order: list[Node] = []
        seen: set[str] = set()
        stack: list[tuple[str, bool]] = [(tensor.split(":")[0], False)]
        while stack:
            name, done = stack.pop()
            if done:
                order.append(self.nodes[name])
                continue
            if name in seen:
                continue
            if name not in self.nodes:
                raise SavedModelError(f"{self.path}: graph refers to a missing node {name!r}")
            seen.add(name)
            stack.append((name, True))
            for i in reversed(self.nodes[name].data_inputs):
                if i not in seen:
                    stack.append((i, False))
        return order


def _node(buf: bytes) -> Node:
    msg = parse_message(buf)
    attr = {}
    for entry in msg.get(5, []):
        kv = parse_message(entry)
        key = _first(kv, 1, b"").decode()
        val = _first(kv, 2)
        try:
            attr[key] = _attr_value(val) if val is not None else None
        except SavedModelError:
            attr[key] = None
    return Node(name=_first(msg, 1, b"").decode(), op=_first(msg, 2, b"").decode(),
                inputs=[i.decode() for i in msg.get(3, [])], attr=attr)


def _tensor_info(buf: bytes) -> tuple[str, tuple[int, ...] | None]:
    msg = parse_message(buf)
    return _first(msg, 1, b"").decode(), _shape(_first(msg, 3))


def _parse_saved_model_pb(data: bytes, where: str):
    try:
        sm = parse_message(data)
        metas = sm.get(2, [])
        if not metas:
            raise SavedModelError("no meta graph")
        meta = parse_message(metas[0])
        info = parse_message(_first(meta, 1, b""))
        tags = [t.decode() for t in info.get(4, [])]
        graph = parse_message(_first(meta, 2, b""))
        nodes = {}
        for nb in graph.get(1, []):
            n = _node(nb)
            nodes[n.name] = n
        functions: dict[str, dict[str, Node]] = {}
        for lib in graph.get(2, []):
            for fb in parse_message(lib).get(1, []):
                fmsg = parse_message(fb)
                fname = _first(parse_message(_first(fmsg, 1, b"")), 1, b"").decode()
                functions[fname] = {n.name: n for n in map(_node, fmsg.get(3, []))}
        if not nodes:
            raise SavedModelError("empty graph (a TF2 object-graph SavedModel? only graph-mode "
                                  "exports such as CSBDeep's export_SavedModel are supported)")
        inputs: dict = {}
        outputs: dict = {}
        sigs = {}
        for entry in meta.get(5, []):
            kv = parse_message(entry)
            sigs[_first(kv, 1, b"").decode()] = parse_message(_first(kv, 2, b""))
        sig = sigs.get("serving_default") or (next(iter(sigs.values())) if sigs else None)
        if sig is not None:
            for num, dst in ((1, inputs), (2, outputs)):
                for entry in sig.get(num, []):
                    kv = parse_message(entry)
                    dst[_first(kv, 1, b"").decode()] = _tensor_info(_first(kv, 2, b""))
    except SavedModelError as e:
        raise SavedModelError(f"{where}: {e}; the file is not a readable SavedModel graph") from None
    return nodes, inputs, outputs, tags, functions


def read_savedmodel(path: str | Path, verify: bool = True) -> SavedModel:
    """Read a SavedModel folder or zip: variables, graph and serving signature.

    Parameters
    ----------
    path : str or Path
        SavedModel folder, or a zip of one (with or without a top-level folder).
    verify : bool
        Check crc32c checksums of the variables.

    Raises
    ------
    SavedModelError
        Missing files, a truncated zip, or data that does not decode; the
        message names the file.
    """
    files = _Files(path)
    try:
        if not files.has("saved_model.pb"):
            raise SavedModelError(
                f"{files.path}: no saved_model.pb inside; not a TensorFlow SavedModel "
                "(export one with the original package's export_TF())")
        if not files.has("variables/variables.index"):
            raise SavedModelError(f"{files.path}: no variables/variables.index inside; the "
                                  "SavedModel is incomplete: export it again")
        nodes, inputs, outputs, tags, functions = _parse_saved_model_pb(
            files.read("saved_model.pb"), f"{files.path}: saved_model.pb")
        variables = _read_variables(files, verify)
        extra = {}
        for n in files.names:
            rel = n[len(files.prefix):]
            if n.startswith(files.prefix) and "/" not in rel and rel != "saved_model.pb":
                extra[rel] = files.read(rel)
        return SavedModel(path=files.path, variables=variables, nodes=nodes, inputs=inputs,
                          outputs=outputs, tags=tags, extra_files=extra, functions=functions)
    finally:
        files.close()
