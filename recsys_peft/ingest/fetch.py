"""Fetch MovieLens-100K from the RecBole 1.2.1 wheel on the package registry.

The wheel carries ``recbole/dataset_example/ml-100k/``. Only the three atomic files are unpacked
(into a git-ignored folder): the MovieLens licence forbids redistributing them, so they are never
committed and never vendored.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

RECBOLE_WHEEL = "recbole==1.2.1"
MOVIELENS_100K_FILES = ("ml-100k.inter", "ml-100k.user", "ml-100k.item")
_MEMBER_PREFIX = "recbole/dataset_example/ml-100k/"


def fetch_movielens_100k(raw_dir: str | Path) -> Path:
    """Make sure ``raw_dir`` holds the MovieLens-100K atomic files; return ``raw_dir``.

    Reuses files already there. Otherwise runs ``pip download --no-deps recbole==1.2.1`` and
    unpacks the three files, each written atomically.
    """
    raw_dir = Path(raw_dir)
    if all((raw_dir / name).is_file() for name in MOVIELENS_100K_FILES):
        return raw_dir

    raw_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as download_dir:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                   "--dest", download_dir, RECBOLE_WHEEL]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(
                f"pip download {RECBOLE_WHEEL} failed (exit {result.returncode}): "
                f"{result.stderr.strip()[-500:]}"
            )
        wheels = list(Path(download_dir).glob("recbole-*.whl"))
        if not wheels:
            raise RuntimeError(f"pip download {RECBOLE_WHEEL} produced no wheel in {download_dir}")

        with zipfile.ZipFile(wheels[0]) as wheel:
            for name in MOVIELENS_100K_FILES:
                data = wheel.read(_MEMBER_PREFIX + name)
                tmp = raw_dir / f".{name}.tmp"
                tmp.write_bytes(data)
                tmp.replace(raw_dir / name)
    return raw_dir
