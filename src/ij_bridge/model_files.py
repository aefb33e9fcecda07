"""Safe model and output files: checked destinations, atomic writes, checksums, format versions.

Every model write in ij-bridge goes through this module (no Java here):

* :func:`check_destination` is called *before* long work (training, a batch run):
  an existing destination without ``overwrite``, a read-only place or a file
  where a folder is wanted is one clear :class:`DestinationError`.
* :func:`staged` yields a hidden temporary sibling of the destination to write
  a file or a folder into; on success the data are flushed to disk and the
  sibling is renamed into place, on failure it is removed and the old
  destination is left untouched.
* :func:`write_members` writes a model's named members as a folder, or as a
  zip (with fixed entry times, so the bytes are reproducible) when the path
  ends in ``.zip``.
* :func:`read_members` reads them back from a folder or a zip, with one
  clear error for a damaged zip or an unreadable member; :class:`FolderOrZip`,
  the reader under it, also serves the importers of other tools' models.
* :func:`sha256_bytes` / :func:`sha256_file` / :func:`verify_sha256` checksum
  the weights, :func:`check_format_version` refuses models of a newer format.
* :func:`export_bioimageio` writes a model (StarDist or N2V) as a BioImage
  Model Zoo package; the package format is :mod:`ij_bridge.bioimageio`,
  whose writes go through :func:`write_members` too.

The model formats built on it: :mod:`ij_bridge.stardist.model_io`,
:mod:`ij_bridge.n2v.model_io`.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> with staged(d / "a.txt") as tmp:
...     _ = tmp.write_text("hello")
>>> (d / "a.txt").read_text()
'hello'
>>> check_destination(d / "a.txt")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ij_bridge.model_files.DestinationExistsError: output ... exists; pass --overwrite (CLI) or overwrite=True (API) to replace it
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import io
import os
import secrets
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

__all__ = [
    "DestinationError", "DestinationExistsError", "ModelFormatError", "ChecksumError",
    "check_destination", "check_output_folder", "staged", "staged_group", "write_members", "replace_path",
    "sha256_bytes", "sha256_file", "verify_sha256", "check_format_version",
    "is_staging_name", "ZIP_DATE_TIME", "FolderOrZip", "read_members", "require_member",
    "write_bioimageio_package", "export_bioimageio",
]

#: entry time of every zip member we write (the zip epoch), for byte-reproducible files
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
_TMP_TAG = ".ij-bridge-tmp-"
_OLD_TAG = ".ij-bridge-old-"


class DestinationError(ValueError):
    """A destination that cannot or must not be written; the message names the fix."""


class DestinationExistsError(DestinationError, FileExistsError):
    """The destination exists and replacing it was not asked for (also a :class:`FileExistsError`)."""


class ModelFormatError(ValueError):
    """A model file of a format (version) this ij-bridge does not read."""


class ChecksumError(ValueError):
    """A file whose content does not match the checksum recorded for it."""


# ----------------------------------------------------------------------------- checksums

def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of the file at ``path`` (read in chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def verify_sha256(data: bytes, expected: str | None, *, where: str | os.PathLike, name: str) -> None:
    """Raise :class:`ChecksumError` unless ``sha256(data) == expected``.

    ``expected=None`` (a model saved before checksums were recorded) passes.
    ``where`` is the model path and ``name`` the member, both for the message.
    """
    if expected is None:
        return
    actual = sha256_bytes(data)
    if actual != str(expected).lower():
        raise ChecksumError(f"{where}: {name} does not match the SHA-256 checksum recorded in the model "
                            f"({actual[:12]}… instead of {str(expected)[:12]}…); the file is corrupt - "
                            "restore it from a backup or save/download the model again")


# ------------------------------------------------------------------------- format versions

def check_format_version(meta: Mapping[str, Any], supported: int, *, where: str | os.PathLike,
                         what: str = "model") -> int:
    """Return the model's ``format_version``; refuse one newer than ``supported``.

    The message names both *format* versions (the package version that wrote
    the file is only context), e.g. ``model format 3 is newer than this
    ij-bridge reads (format 1)``.
    """
    raw = meta.get("format_version", 1)
    try:
        version = int(raw)
        if version != raw and not isinstance(raw, str):
            raise ValueError
    except (TypeError, ValueError):
        raise ModelFormatError(f"{where}: invalid format_version {raw!r} in the {what} file; "
                               "the file is corrupt or not an ij-bridge model") from None
    if version > supported:
        writer = meta.get("ij_bridge_version")
        by = f", written by ij-bridge {writer}" if writer else ""
        raise ModelFormatError(f"{where}: {what} format {version} is newer than this ij-bridge reads "
                               f"(format {supported}{by}); upgrade ij-bridge to load it")
    if version < 1:
        raise ModelFormatError(f"{where}: invalid format_version {raw!r} in the {what} file")
    return version


# ---------------------------------------------------------------------------- destinations

def is_staging_name(name: str) -> bool:
    """True for the hidden temporary names this module creates (for listings that skip them)."""
    return name.startswith(".") and (_TMP_TAG in name or _OLD_TAG in name)


def _nearest_existing(path: Path) -> Path:
    p = path
    while not os.path.lexists(p):
        if p.parent == p:
            break
        p = p.parent
    return p


def _probe_writable(folder: Path) -> OSError | None:
    """Create and remove a hidden file in ``folder``; the error, or None when writable.

    A real probe rather than permission bits: root ignores those, while a
    read-only mount, an immutable folder or a network share still refuse.
    """
    try:
        fd, name = tempfile.mkstemp(prefix="." + _TMP_TAG.strip(".") + "probe-", dir=folder)
    except OSError as exc:
        return exc
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return None


def _why(exc: OSError) -> str:
    if exc.errno == errno.EROFS:
        return "it is on a read-only file system"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    return exc.strerror or str(exc)


def check_destination(path: str | os.PathLike, *, overwrite: bool = False, kind: str = "output",
                      folder: bool | None = None, markers: Sequence[str] = ()) -> Path:
    """Check, before any long work, that ``path`` may be written; return it as a :class:`Path`.

    Parameters
    ----------
    path
        The file or folder that will be written (through :func:`staged`).
    overwrite
        Whether an existing ``path`` may be replaced.
    kind
        What is written, for the message ("model", "output", ...).
    folder
        True when ``path`` will be a folder, False for a file, None for either.
        A model path is a folder unless it ends in ``.zip``.
    markers
        For an existing *folder* that would be replaced: it must hold at least
        one of these names (e.g. ``config.json`` for a StarDist model), so that a
        folder ij-bridge did not write is never replaced, even with ``overwrite``.

    Raises
    ------
    DestinationError
        The path exists (and not ``overwrite``), is a folder where a file is
        wanted or the reverse, a parent is a file, or the place is not writable.
    """
    p = Path(path).expanduser()
    if str(path) == "" or p.name in ("", ".", ".."):
        raise DestinationError(f"{kind} path {str(path)!r} names no file or folder; give a file or folder name")
    if os.path.lexists(p):
        is_dir = p.is_dir()
        if folder is True and not is_dir:
            raise DestinationError(f"{kind} {p} should be a folder, but a file of that name exists; "
                                   "remove it or choose another path (or end the name in .zip)")
        if folder is False and is_dir:
            raise DestinationError(f"{kind} {p} should be a file, but a folder of that name exists; "
                                   "choose another path")
        if not overwrite:
            raise DestinationExistsError(f"{kind} {p} exists; pass --overwrite (CLI) or overwrite=True (API) "
                                   "to replace it")
        if is_dir and markers and not any((p / m).exists() for m in markers):
            raise DestinationError(f"{kind} {p} is an existing folder that ij-bridge did not write "
                                   f"(it holds no {' or '.join(markers)}); it is never replaced - "
                                   "choose another path")
    anchor = _nearest_existing(p.parent)
    if not anchor.is_dir():
        raise DestinationError(f"cannot write {kind} {p}: {anchor} is a file, not a folder; "
                               "choose another path")
    err = _probe_writable(anchor)
    if err is not None:
        raise DestinationError(f"cannot write {kind} {p}: {anchor} is not writable ({_why(err)}); "
                               "choose a writable place")
    return p


# ------------------------------------------------------------------------------ renaming

_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_libc: Any = None


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """Linux ``renameat2``; False where unavailable (other OS, old kernel, file system)."""
    global _libc
    if not hasattr(os, "uname") or os.uname().sysname != "Linux":
        return False
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            _libc.renameat2  # noqa: B018 - glibc >= 2.28
        except (OSError, AttributeError):
            _libc = False
    if not _libc:
        return False
    at_fdcwd = -100
    res = _libc.renameat2(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), flags)
    if res == 0:
        return True
    e = ctypes.get_errno()
    if e in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(e, os.strerror(e), str(dst))


def _fsync(p: Path, flags: int = os.O_RDONLY) -> None:
    """fsync ``p``; its errors (ENOSPC, EIO) are raised."""
    fd = os.open(p, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_path(p: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems refuse fsync on folders
        _fsync(p, (os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if p.is_dir() else os.O_RDONLY)


def _fsync_tree(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        for root, dirs, files in os.walk(p):
            for f in files:
                fp = Path(root) / f
                if not fp.is_symlink():
                    _fsync(fp)  # ENOSPC / EIO surface here, before the rename
            for d in dirs:
                _fsync_path(Path(root) / d)
        _fsync_path(p)
    else:
        _fsync(p)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def replace_path(src: str | os.PathLike, dst: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Move ``src`` (a file or folder) to ``dst``, replacing an existing ``dst`` only with ``overwrite``.

    Where the OS allows (Linux ``renameat2``), the move is one atomic step:
    without ``overwrite`` it fails if ``dst`` appeared meanwhile, with it the
    two are exchanged and the old one removed afterwards. Elsewhere an existing
    ``dst`` is first renamed to a hidden sibling and put back if the final
    rename fails. Both must be on the same file system (siblings are).
    """
    src, dst = Path(src), Path(dst)
    if not os.path.lexists(dst):
        try:
            if _renameat2(src, dst, _RENAME_NOREPLACE):
                return
        except FileExistsError:
            raise DestinationExistsError(f"{dst} appeared while it was written; nothing was replaced") from None
        if os.path.lexists(dst):  # fallback: check, then rename
            raise DestinationExistsError(f"{dst} appeared while it was written; nothing was replaced")
        os.rename(src, dst)
        return
    if not overwrite:
        raise DestinationExistsError(f"{dst} exists; pass --overwrite (CLI) or overwrite=True (API) to replace it")
    if src.is_file() and dst.is_file() and not dst.is_symlink():
        os.replace(src, dst)  # atomic for files everywhere
        return
    if _renameat2(src, dst, _RENAME_EXCHANGE):
        _remove(src)  # src now holds the old content
        return
    old = dst.with_name(f".{dst.name}{_OLD_TAG}{secrets.token_hex(4)}")
    os.rename(dst, old)
    try:
        os.rename(src, dst)
    except BaseException:
        os.rename(old, dst)
        raise
    _remove(old)


@contextlib.contextmanager
def staged(path: str | os.PathLike, *, overwrite: bool = False, mkdir: bool = False) -> Iterator[Path]:
    """Write ``path`` through a hidden temporary sibling; rename it into place on success.

    Yields a path that does not exist yet, in the same folder as ``path``
    (``.<name>.ij-bridge-tmp-<random><suffix>``: writers that go by the
    suffix still work); write one file there, or (with ``mkdir=True``, the
    folder is created for you) a folder's files. On a
    normal exit everything is flushed to disk (``fsync``, so a full disk shows
    *here*, not later) and moved into place with :func:`replace_path`. On any
    exception, KeyboardInterrupt included, the temporary sibling and any
    parent folders this call created are removed, and an existing ``path`` is
    untouched.

    Raises
    ------
    DestinationError
        ``path`` exists and not ``overwrite`` (checked before and after writing).
    OSError
        Writing failed (e.g. ``ENOSPC``); the message names ``path`` and says
        that nothing was changed.
    """
    dest = Path(path).expanduser()
    if os.path.lexists(dest) and not overwrite:
        raise DestinationExistsError(f"{dest} exists; pass --overwrite (CLI) or overwrite=True (API) to replace it")
    created: list[Path] = []
    parent = dest.parent
    missing = []
    q = parent
    while not q.exists():
        missing.append(q)
        if q.parent == q:
            break
        q = q.parent
    try:
        for d in reversed(missing):
            d.mkdir()
            created.append(d)
    except OSError as exc:
        for d in reversed(created):
            with contextlib.suppress(OSError):
                d.rmdir()
        raise DestinationError(f"cannot create folder {parent} for {dest.name}: {_why(exc)}; "
                               "choose a writable place") from None
    tmp = parent / f".{dest.name}{_TMP_TAG}{secrets.token_hex(4)}{dest.suffix}"
    try:
        if mkdir:
            tmp.mkdir()
        yield tmp
        if not os.path.lexists(tmp):
            raise RuntimeError(f"nothing was written to the temporary file for {dest}")
        _fsync_tree(tmp)
        replace_path(tmp, dest, overwrite=overwrite)
        _fsync_path(parent)
    except BaseException as exc:
        _remove(tmp)
        for d in reversed(created):
            with contextlib.suppress(OSError):
                d.rmdir()
        if isinstance(exc, OSError) and not isinstance(exc, DestinationError) and exc.errno is not None:
            nothing = "the existing one is unchanged" if os.path.lexists(dest) else "nothing was left behind"
            raise OSError(exc.errno, f"cannot write {dest}: {_why(exc)}; {nothing}", str(dest)) from exc
        raise


# ------------------------------------------------------------------------------ output groups

def check_output_folder(folder: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), *,
                        option: str = "--output") -> Path:
    """Check, before any work, an output folder that will receive files; return it as a :class:`Path`.

    Refused with :class:`DestinationError`: a file where the folder is wanted,
    the folder of one of ``inputs`` (outputs must never be written beside, or
    over, the inputs), and a place that is not writable (read-only mount,
    permission). The folder itself may exist; single outputs are checked by
    their writers.
    """
    out = Path(folder).expanduser()
    if os.path.lexists(out) and not out.is_dir():
        raise DestinationError(f"{option} {out} is a file, not a folder; choose a folder")
    resolved = out.resolve()
    for f in inputs:
        if Path(f).expanduser().resolve().parent == resolved:
            raise DestinationError(f"{option} {out} is the folder of input {f}; choose another folder "
                                   "so that inputs are never overwritten")
    anchor = _nearest_existing(out)
    if not anchor.is_dir():
        raise DestinationError(f"cannot write to {option} {out}: {anchor} is a file, not a folder; "
                               "choose another folder")
    err = _probe_writable(anchor)
    if err is not None:
        raise DestinationError(f"cannot write to {option} {out}: {anchor} is not writable ({_why(err)}); "
                               "choose a writable folder")
    return out


@contextlib.contextmanager
def staged_group(paths: Sequence[str | os.PathLike], *, overwrite: bool = False) -> Iterator[list[Path]]:
    """Stage the files that together form one result (e.g. one input's outputs); replace them as a set.

    Yields one temporary sibling per destination. On success every staged
    file that was written is flushed and renamed into place; a destination
    whose temporary was *not* written is removed if it exists (with
    ``overwrite`` only), so no stale output of an earlier run is left beside
    the new ones (an empty result writes no ROI file, say). On an exception
    nothing is renamed, removed or left behind. Without ``overwrite`` any
    existing destination is a :class:`DestinationExistsError`, before writing.
    Each rename is atomic; the set is replaced in one quick sequence after
    everything has been written.
    """
    dests = [Path(p).expanduser() for p in paths]
    if not overwrite:
        for d in dests:
            if os.path.lexists(d):
                raise DestinationExistsError(f"{d} exists; pass --overwrite (CLI) or overwrite=True (API) "
                                             "to replace it")
    for d in dests:
        if d.is_dir() and not d.is_symlink():
            raise DestinationError(f"{d} is a folder, where a file would be written; move it away")
    for parent in dict.fromkeys(d.parent for d in dests):
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DestinationError(f"cannot create folder {parent}: {_why(exc)}; choose a writable place") from None
    tmps = [d.parent / f".{d.name}{_TMP_TAG}{secrets.token_hex(4)}{d.suffix}" for d in dests]
    try:
        yield tmps
        written = [(t, d) for t, d in zip(tmps, dests) if os.path.lexists(t)]
        for t, _ in written:
            _fsync_tree(t)
        for t, d in written:
            replace_path(t, d, overwrite=overwrite)
        done = {t for t, _ in written}
        for t, d in zip(tmps, dests):
            if t not in done and overwrite and d.is_file():
                d.unlink()  # a stale output of an earlier run
        for parent in dict.fromkeys(d.parent for d in dests):
            _fsync_path(parent)
    except BaseException as exc:
        for t in tmps:
            _remove(t)
        if isinstance(exc, OSError) and not isinstance(exc, DestinationError) and exc.errno is not None:
            names = {str(t): d for t, d in zip(tmps, dests)}
            where = names.get(str(exc.filename), exc.filename or dests[0])
            raise OSError(exc.errno, f"cannot write {where}: {_why(exc)}", str(where)) from exc
        raise


# ------------------------------------------------------------------------------ model members

def write_members(path: str | os.PathLike, members: Mapping[str, bytes | str] | Iterable[tuple[str, bytes | str]],
                  *, overwrite: bool = False, markers: Sequence[str] = ()) -> Path:
    """Write named members as a folder, or as a zip when ``path`` ends in ``.zip``; atomically.

    Zip entries carry :data:`ZIP_DATE_TIME` and a fixed order, so saving the
    same model twice gives the same bytes. ``markers``: see
    :func:`check_destination` (an existing folder is replaced only if it holds one).
    """
    dest = Path(path).expanduser()
    items = list(members.items() if isinstance(members, Mapping) else members)
    as_zip = dest.suffix.lower() == ".zip"
    check_destination(dest, overwrite=overwrite, kind="model", folder=not as_zip, markers=markers)
    with staged(dest, overwrite=overwrite, mkdir=not as_zip) as tmp:
        if as_zip:
            with zipfile.ZipFile(tmp, "w") as zf:
                for name, data in items:
                    info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.external_attr = (stat.S_IFREG | 0o644) << 16
                    zf.writestr(info, data.encode() if isinstance(data, str) else data)
        else:
            for name, data in items:
                target = tmp / name
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "wb") as f:
                    f.write(data.encode() if isinstance(data, str) else data)
    return dest


# ------------------------------------------------------------------------------ reading

#: what opening a damaged or foreign zip raises
_ZIP_OPEN_ERRORS = (zipfile.BadZipFile, OSError, EOFError)
#: what reading a member of a damaged zip raises (truncated data, CRC and zlib errors,
#: a compression or encryption zipfile does not support)
_ZIP_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, zlib.error,
                    RuntimeError, NotImplementedError)


class FolderOrZip:
    """The files of a folder or of a zip archive, read with one kind of error.

    The one reader under every model loader: :func:`read_members`, the
    importers of the original StarDist and n2v models and
    :mod:`ij_bridge.tfsaved`; each keeps its own rules for the layout inside
    (a top-level folder, where the model's files start).

    Parameters
    ----------
    path : path
        A folder or a zip file; with ``data``, only the name of the archive.
    error : callable, default ValueError
        The exception (type or factory, called with the message) raised for a
        zip that cannot be opened and for a member that cannot be read.
    open_message, read_message : str
        Those two messages; ``{path}``, ``{exc}`` and (read) ``{name}`` are
        filled in.
    recursive : bool, default True
        For a folder: list the files of its sub-folders too (as
        ``/``-separated paths), or those at its top level only.
    data : bytes, optional
        The zip's bytes (a zip held inside another archive).

    Attributes
    ----------
    path : Path
    zip : zipfile.ZipFile or None
        None for a folder.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = write_members(d / "m.zip", {"top/a.txt": b"A", "top/b/c.txt": b"C"})
    >>> with FolderOrZip(d / "m.zip") as files:
    ...     files.names, files.top_folder(), files.read("top/b/c.txt")
    (['top/a.txt', 'top/b/c.txt'], 'top/', b'C')
    >>> with FolderOrZip(d) as folder:  # a folder: the same calls
    ...     folder.names, folder.has("m.zip"), folder.top_folder()
    (['m.zip'], True, '')
    """

    def __init__(self, path: str | os.PathLike, *, error: Any = ValueError,
                 open_message: str = "{path} is not a folder or a valid .zip ({exc})",
                 read_message: str = "{path}: cannot read {name} from the zip ({exc})",
                 recursive: bool = True, data: bytes | None = None):
        self.path = Path(path)
        self._error = error
        self._read_message = read_message
        self._recursive = recursive
        self._names: list[str] | None = None
        self._name_set: frozenset[str] = frozenset()
        self.zip: zipfile.ZipFile | None = None
        if data is None and self.path.is_dir():
            return
        try:
            self.zip = zipfile.ZipFile(self.path if data is None else io.BytesIO(data))
        except _ZIP_OPEN_ERRORS as exc:
            raise error(open_message.format(path=self.path, exc=exc)) from None
        self._set_names(n for n in self.zip.namelist() if not n.endswith("/"))

    def _set_names(self, names: Iterable[str]) -> None:
        self._names = sorted(names)
        self._name_set = frozenset(self._names)

    @property
    def names(self) -> list[str]:
        """Every file, sorted (``/``-separated paths; a zip's folder entries left out)."""
        if self._names is None:  # a folder, listed when first asked
            if self._recursive:
                self._set_names(str(p.relative_to(self.path)).replace("\\", "/")
                                for p in self.path.rglob("*") if p.is_file())
            else:
                self._set_names(p.name for p in self.path.iterdir() if p.is_file())
        return self._names

    def has(self, name: str) -> bool:
        """Whether the file ``name`` (a path from the top) is one of :attr:`names`."""
        if self._names is None and self._recursive:  # a folder: no need to list it all
            return (self.path / name).is_file()
        return name in self._name_set if self._names is not None else name in self.names

    def read(self, name: str, *, label: str | None = None) -> bytes:
        """The bytes of the file ``name`` (a path from the top).

        ``label``: what the error message calls the file (default ``name``).

        Raises
        ------
        FileNotFoundError, KeyError
            A folder or a zip without ``name``.
        error
            The zip's member cannot be read (a truncated or corrupt archive).
        """
        if self.zip is None:
            return (self.path / name).read_bytes()
        try:
            return self.zip.read(name)
        except _ZIP_READ_ERRORS as exc:
            message = self._read_message.format(path=self.path, name=name if label is None else label, exc=exc)
            raise self._error(message) from None

    def top_folder(self) -> str:
        """``"top/"`` when every file of the zip lies inside one top-level folder ``top``, else ``""``."""
        if self.zip is None:
            return ""
        tops = {n.split("/", 1)[0] for n in self.names}
        if len(tops) == 1 and all("/" in n for n in self.names):
            return tops.pop() + "/"
        return ""

    def close(self) -> None:
        """Close the zip (a folder has nothing to close)."""
        if self.zip is not None:
            self.zip.close()

    def __enter__(self) -> FolderOrZip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_members(path: str | os.PathLike, names: Iterable[str], *, what: str = "model") -> dict[str, bytes]:
    """Read the named members of a model folder or zip; those absent are left out.

    Parameters
    ----------
    path : path
        A folder, or a zip archive (any other file is refused).
    names : iterable of str
        Member names (paths inside the folder / zip).
    what : str
        What the file is, for the messages (``"StarDist model"``).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        ``path`` is a file but not a valid zip, or a member cannot be read
        (a truncated or corrupt archive); the message says so and how to fix it.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} not found: {p}")
    with FolderOrZip(p, open_message=f"{{path}} is not a {what} folder or a valid .zip ({{exc}}); the file "
                                     "is corrupt or of another kind",
                     read_message="{path}: cannot read {name} from the zip ({exc}); the file is "
                                  "corrupt - restore it or save the model again") as files:
        return {name: files.read(name) for name in names if files.has(name)}


def require_member(files: Mapping[str, bytes], name: str, *, where: str | os.PathLike,
                   what: str = "model") -> bytes:
    """``files[name]``, or a :class:`FileNotFoundError` saying the model is incomplete."""
    if name not in files:
        raise FileNotFoundError(f"{what} {where} is incomplete: {name} is missing")
    return files[name]


# ---------------------------------------------------------------------------- bioimage.io

def write_bioimageio_package(path: str | os.PathLike, files: Mapping[str, bytes], *,
                             overwrite: bool = False) -> Path:
    """Write a bioimage.io package's files (see :func:`ij_bridge.bioimageio.write_package`)."""
    from .bioimageio import write_package

    return write_package(path, files, overwrite=overwrite)


def export_bioimageio(model: Any, path: str | os.PathLike, test_input: Any, **kwargs: Any) -> Path:
    """Write ``model`` (a StarDist or an N2V model) as a BioImage Model Zoo package.

    Dispatches to :func:`ij_bridge.stardist.bioimageio.export_bioimageio` or
    :func:`ij_bridge.n2v.bioimageio.export_bioimageio`; ``kwargs`` are theirs.
    """
    from .n2v.model import N2V
    from .stardist.model import StarDistBase

    if isinstance(model, StarDistBase):
        from .stardist.bioimageio import export_bioimageio as export
    elif isinstance(model, N2V):
        from .n2v.bioimageio import export_bioimageio as export
    else:
        raise TypeError(f"cannot export a {type(model).__name__} to bioimage.io; "
                        "a StarDist2D/StarDist3D or N2V model is needed")
    return export(model, path, test_input, **kwargs)
