"""What the N2V and StarDist BioImage Model Zoo exports share (no Java).

Each model writes its own ``rdf.yaml``; this module holds the format version, the
checksum and the writing of a package as a folder or a zip.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Mapping

from .model_files import write_members

__all__ = ["FORMAT_VERSION", "sha256", "write_package"]

FORMAT_VERSION = "0.5.4"


def sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``, as ``rdf.yaml`` lists it for every file."""
    return hashlib.sha256(data).hexdigest()


def write_package(path: str | Path, files: Mapping[str, bytes], *, overwrite: bool = False) -> Path:
    """Write a model package: a zip when ``path`` ends with ``.zip``, else a folder.

    Atomic (a temporary sibling renamed into place, see
    :func:`ij_bridge.model_files.write_members`); an existing package is
    replaced only with ``overwrite`` (a folder only if it holds ``rdf.yaml``).
    """
    return write_members(path, files, overwrite=overwrite, markers=("rdf.yaml",))
