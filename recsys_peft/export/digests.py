"""SHA-256 digests of an export's files, recorded in its manifest and checked when it loads.

A truncated or altered weights file would otherwise load into NaN or garbage scores, or fail
with a library error that does not say which export is broken.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK_BYTES = 1 << 20
MANIFEST = "manifest.json"


class ExportCorrupted(ValueError):
    """An export's file is missing, or its size or digest differs from the manifest."""


def file_sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            hasher.update(chunk)
    return hasher.hexdigest()


def folder_digests(folder: Path) -> dict[str, dict]:
    """Size and SHA-256 of every file under ``folder`` except the manifest, by relative path."""
    return {str(path.relative_to(folder)): {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
            for path in sorted(folder.rglob("*")) if path.is_file() and path.name != MANIFEST}


def verify_digests(folder: Path, recorded: dict[str, dict]) -> None:
    """Raise ``ExportCorrupted`` naming the first file that does not match ``recorded``."""
    for name, expected in sorted(recorded.items()):
        path = folder / name
        if not path.is_file():
            raise ExportCorrupted(f"{path}: listed in {folder / MANIFEST} but missing; export the model again")
        size = path.stat().st_size
        if size != expected["bytes"]:
            raise ExportCorrupted(f"{path}: {size} bytes, but {folder / MANIFEST} records {expected['bytes']}; "
                                  f"the file is truncated or was replaced; export the model again")
        digest = file_sha256(path)
        if digest != expected["sha256"]:
            raise ExportCorrupted(f"{path}: SHA-256 {digest[:16]}... differs from {expected['sha256'][:16]}... "
                                  f"in {folder / MANIFEST}; the file was altered; export the model again")
