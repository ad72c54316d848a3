"""The interaction log as arrays grouped by user, in time order.

Events of user ``u`` are ``items[offsets[u]:offsets[u + 1]]``, ordered by timestamp and then by
ingest order (the position in the source), which is the stable tie-break of every split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from recsys_peft import atomic
from recsys_peft.ingest.store import read_interactions


@dataclass(frozen=True)
class InteractionLog:
    users: np.ndarray       # (N,) int64 user index of each event, grouped by user
    items: np.ndarray       # (N,) int64 item index
    timestamps: np.ndarray  # (N,) int64 UTC microseconds
    offsets: np.ndarray     # (U + 1,) start of each user's events
    num_users: int
    num_items: int
    vocabulary_version: str = ""

    @classmethod
    def from_arrays(cls, users: np.ndarray, items: np.ndarray, timestamps: np.ndarray,
                    num_users: int, num_items: int, vocabulary_version: str = "") -> "InteractionLog":
        """Group events by user; events must already be in (timestamp, ingest order) order."""
        order = np.argsort(users, kind="stable")
        users, items, timestamps = users[order], items[order], timestamps[order]
        counts = np.bincount(users, minlength=num_users)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(users.astype(np.int64), items.astype(np.int64), timestamps.astype(np.int64),
                   offsets, num_users, num_items, vocabulary_version)

    def user_counts(self) -> np.ndarray:
        return np.diff(self.offsets)


def load_log(store_dir: str | Path) -> InteractionLog:
    """Read a store into an ``InteractionLog`` sized by its vocabulary (not only seen ids)."""
    store_dir = Path(store_dir)
    table = read_interactions(store_dir)
    manifest = atomic.read_json(store_dir / "manifest.json")
    return InteractionLog.from_arrays(
        table.column("user_idx").to_numpy(),
        table.column("item_idx").to_numpy(),
        table.column("timestamp").cast("int64").to_numpy(),
        num_users=int(manifest["users"]),
        num_items=int(manifest["items"]),
        vocabulary_version=str(manifest["vocabulary_version"]),
    )


def load_attributes(store_dir: str | Path, kind: str) -> "pq.Table":
    """``users.parquet`` or ``items.parquet`` of a store, in index order."""
    return pq.read_table(Path(store_dir) / f"{kind}s.parquet").sort_by(f"{kind}_idx")
