"""Content keys: hashes of a segment's data, of a config and of the code, for caching and retries.

A key names what a result was computed from, never where its inputs lay, so a retried or
repeated task with the same inputs finds the result it wrote before, and a changed input
never reuses a stale one.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from recsys_peft.dataset.snapshot import DataSnapshot

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def digest(*parts: object) -> str:
    """Return the SHA-256 of ``parts`` as JSON (sorted keys), the first 16 hex digits."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def segment_data_hashes(snapshot: DataSnapshot) -> dict[str, str]:
    """Hash each segment's members and their events (user, item, timestamp), by segment name.

    Vocabulary indices are stable because the vocabulary only grows, so an event keeps its
    hash when other users or items arrive. A segment's hash changes when one of its users gets
    an event, loses one, or joins or leaves the segment.
    """
    log = snapshot.log
    hashes = {}
    for index, name in enumerate(snapshot.segments.names):
        members = np.flatnonzero(snapshot.segments.members(index)).astype(np.int64)
        hasher = hashlib.sha256(members.tobytes())
        rows = np.concatenate([np.arange(log.offsets[u], log.offsets[u + 1]) for u in members]) \
            if len(members) else np.zeros(0, dtype=np.int64)
        for column in (log.users[rows], log.items[rows], log.timestamps[rows]):
            hasher.update(np.ascontiguousarray(column, dtype=np.int64).tobytes())
        hashes[name] = hasher.hexdigest()[:16]
    return hashes


@lru_cache(maxsize=1)
def code_version() -> str:
    """Hash the package's Python sources, so a code change invalidates every cached result."""
    hasher = hashlib.sha256()
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        hasher.update(path.relative_to(PACKAGE_ROOT).as_posix().encode("utf-8"))
        hasher.update(path.read_bytes())
    return hasher.hexdigest()[:16]
