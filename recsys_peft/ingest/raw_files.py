"""Open a raw input file as text or bytes, through gzip when its name ends in ``.gz``."""

from __future__ import annotations

import gzip
import io
from pathlib import Path


def open_text(path: Path, encoding: str) -> io.TextIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding=encoding)
    return open(path, encoding=encoding)


def open_binary(path: Path) -> io.BufferedIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return open(path, "rb")
