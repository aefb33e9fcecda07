"""What the N2V and StarDist BioImage Model Zoo exports share (no Java).

Each model writes its own ``rdf.yaml``; this module holds the format version, the
checksum and the writing of a package as a folder or a zip.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Mapping

__all__ = ["FORMAT_VERSION", "sha256", "write_package"]

FORMAT_VERSION = "0.5.4"


def sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``, as ``rdf.yaml`` lists it for every file."""
    return hashlib.sha256(data).hexdigest()


def write_package(path: str | Path, files: Mapping[str, bytes]) -> Path:
    """Write a model package: a zip when ``path`` ends with ``.zip``, else a folder."""
    path = Path(path)
    if path.suffix.lower() == ".zip":
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, data in files.items():
                zf.writestr(name, data)
    else:
        path.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (path / name).write_bytes(data)
    return path
