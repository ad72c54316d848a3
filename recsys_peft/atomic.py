"""Atomic writes: every artifact appears whole or not at all.

Files are written to a temporary sibling and moved into place with ``os.replace``, which is
atomic on POSIX file systems when source and destination share a directory. Folders are built
in a temporary sibling and swapped in with two renames; a reader may see the old folder or the
new one, never a half-written one.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` as indented, key-sorted JSON atomically."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"
    write_bytes(path, text.encode("utf-8"))


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


@contextmanager
def replace_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary folder and swap it in for ``target`` when the block succeeds.

    When the block raises, the temporary folder is removed and ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}.staging")
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    retired = target.with_name(f".{target.name}.{uuid.uuid4().hex}.retired")
    if target.exists():
        os.replace(target, retired)
    os.replace(staging, target)
    shutil.rmtree(retired, ignore_errors=True)
