"""Merge a run's spilled rows into date partitions: index ids, deduplicate, order, write.

Dates are merged in ascending order, a few at a time (up to ``rows_per_chunk`` new and stored
rows), so memory stays bounded. One date larger than that is merged alone. New ids get
vocabulary indices in order of first appearance by (timestamp, ingest order). A date whose
rows do not change is not written, and the commit keeps its old file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys_peft.ingest.dedup import duplicate_mask
from recsys_peft.ingest.spill import Spill
from recsys_peft.ingest.state import StoreState
from recsys_peft.ingest.store import (
    INTERACTION_SCHEMA, MICROS_PER_DAY, partition_name, partition_path, read_partition, write_parquet,
)
from recsys_peft.ingest.vocab import Vocabulary

_TIMESTAMP = pa.timestamp("us", tz="UTC")


@dataclass
class MergeResult:
    users: Vocabulary
    items: Vocabulary
    rows_written: int = 0        # new rows now in the store
    rows_deduplicated: int = 0   # rows dropped as duplicates, new or stored
    partitions_written: list[str] = field(default_factory=list)


def _chunks(day_counts: dict[int, int], state: StoreState, rows_per_chunk: int) -> list[list[int]]:
    chunks: list[list[int]] = []
    rows = 0
    for day, count in day_counts.items():
        size = count + state.partition_rows(day)
        if chunks and rows + size <= rows_per_chunk:
            chunks[-1].append(day)
            rows += size
        else:
            chunks.append([day])
            rows = size
    return chunks


def merge_spill(spill: Spill, state: StoreState, staging: Path, file_names: list[str], rule: str,
                rows_per_chunk: int) -> MergeResult:
    """Write every date partition that the spilled rows change into ``staging``."""
    result = MergeResult(state.users, state.items)
    names = pa.array(file_names, pa.string())
    for days in _chunks(spill.day_counts(), state, rows_per_chunk):
        new = spill.read_days(days)
        timestamps = new.column("timestamp").to_numpy()
        if (np.diff(timestamps) < 0).any():
            new = new.take(pa.array(np.argsort(timestamps, kind="stable")))  # ties keep input order
        result.users = result.users.extended(new.column("user_id"))
        result.items = result.items.extended(new.column("item_id"))
        new_rows = pa.table({
            "user_id": new.column("user_id"),
            "item_id": new.column("item_id"),
            "user_idx": result.users.lookup(new.column("user_id")),
            "item_idx": result.items.lookup(new.column("item_id")),
            "timestamp": new.column("timestamp"),
            "event_type": new.column("event_type"),
            "weight": new.column("weight"),
            "source_file": pc.take(names, new.column("file_index")),
            "source_line": new.column("source_line"),
            "ingest_order": new.column("ingest_order"),
        })
        stored = [read_partition(state.store_dir, day) for day in days if day in state.partitions]
        _merge_days(days, stored, new_rows, staging, rule, result)
    return result


def _merge_days(days: list[int], stored_parts: list[pa.Table], new_rows: pa.Table, staging: Path, rule: str,
                result: MergeResult) -> None:
    stored = pa.concat_tables(stored_parts) if stored_parts else INTERACTION_SCHEMA.empty_table()
    stored = stored.set_column(stored.schema.get_field_index("timestamp"), "timestamp",
                               stored.column("timestamp").cast(pa.int64()))
    combined = pa.concat_tables([stored, new_rows.cast(stored.schema)])
    is_new = np.arange(combined.num_rows) >= stored.num_rows
    if stored.num_rows:
        # Stored rows have smaller ingest orders, so a stable sort by timestamp gives
        # (timestamp, ingest order) order.
        order = pc.sort_indices(combined, [("timestamp", "ascending")]).to_numpy()
        combined, is_new = combined.take(pa.array(order)), is_new[order]
    drop = duplicate_mask(combined, rule)
    result.rows_deduplicated += int(drop.sum())
    result.rows_written += int((is_new & ~drop).sum())
    kept = combined.filter(pa.array(~drop))
    day_of_row = np.floor_divide(combined.column("timestamp").to_numpy(), MICROS_PER_DAY)
    changed = day_of_row[(is_new & ~drop) | (~is_new & drop)]
    changed_days = set((np.flatnonzero(np.bincount(changed - changed.min())) + changed.min()).tolist()) \
        if len(changed) else set()

    kept_days = np.floor_divide(kept.column("timestamp").to_numpy(), MICROS_PER_DAY)
    for day in days:
        if day not in changed_days:
            continue
        rows = np.flatnonzero(kept_days == day)
        part = kept.slice(int(rows[0]), len(rows)) if len(rows) else kept.slice(0, 0)
        part = part.set_column(part.schema.get_field_index("timestamp"), "timestamp",
                               part.column("timestamp").cast(_TIMESTAMP))
        write_parquet(part.cast(INTERACTION_SCHEMA), partition_path(staging, day))
        result.partitions_written.append(partition_name(day).removeprefix("date="))
