"""A training data snapshot: everything the models read from one version of the store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from recsys_peft import atomic
from recsys_peft.dataset.features import FeatureTables, build_feature_tables
from recsys_peft.dataset.log import InteractionLog, load_attributes, load_log
from recsys_peft.dataset.split import LeaveOneOutSplit, leave_one_out
from recsys_peft.ingest.store import read_interactions
from recsys_peft.segments import SegmentAssignment, SegmentSpec, assign_segments


@dataclass(frozen=True)
class DataSnapshot:
    log: InteractionLog
    split: LeaveOneOutSplit
    features: FeatureTables
    segments: SegmentAssignment
    users: pa.Table
    items: pa.Table
    snapshot_id: str  # store manifest hash: which data a model was trained on

    @property
    def user_ids(self) -> list[str]:
        return self.users.column("user_id").to_pylist()

    @property
    def item_ids(self) -> list[str]:
        return self.items.column("item_id").to_pylist()


def load_snapshot(
    store_dir: str | Path,
    segment_spec: SegmentSpec,
    user_attributes: Mapping[str, Sequence[float]],
    tag_column: str | None = "genres",
) -> DataSnapshot:
    """Load the store, split it leave-one-out by time, encode features and assign segments."""
    store_dir = Path(store_dir)
    log = load_log(store_dir)
    users = load_attributes(store_dir, "user")
    items = load_attributes(store_dir, "item")
    available = {name: bins for name, bins in user_attributes.items() if name in users.column_names}
    features = build_feature_tables(users, items, available, tag_column)
    manifest = atomic.read_json(store_dir / "manifest.json")
    files = manifest["files"]
    snapshot_id = "-".join(sorted(v["sha256"][:8] for v in files.values()))
    return DataSnapshot(
        log=log,
        split=leave_one_out(log),
        features=features,
        segments=assign_segments(segment_spec, users, _log_for_segments(store_dir, segment_spec)),
        users=users,
        items=items,
        snapshot_id=f"{manifest['vocabulary_version']}/{snapshot_id}",
    )


def _log_for_segments(store_dir: Path, spec: SegmentSpec) -> pa.Table | None:
    """Return the interactions a ``log_column`` level reads (user id plus its column), or None."""
    columns = sorted({level.column for level in spec.levels if level.source == "log_column"})
    if not columns:
        return None
    log = read_interactions(store_dir)
    if not all(column in log.column_names for column in columns):
        return log  # the segment level then names the missing column and lists the ones there are
    return log.select(["user_id", *[c for c in columns if c != "user_id"]])


def segment_of_users(snapshot: DataSnapshot, users: np.ndarray) -> np.ndarray:
    return snapshot.segments.user_segments[np.asarray(users, dtype=np.int64)]
