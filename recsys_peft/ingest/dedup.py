"""Duplicate events: the same user, item, timestamp and event type, collapsed by a rule.

Rules: ``first`` keeps the event ingested first, ``last`` the one ingested last, and
``max_weight`` the one with the largest weight (a missing weight counts as the smallest; ties go
to the one ingested first). Because the timestamp is part of the key, every duplicate of an
event lies in the same date partition, so checking a partition's stored rows together with the
run's new rows finds duplicates across the whole store.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

KEY = ["timestamp", "user_idx", "item_idx", "event_type"]


def duplicate_mask(events: pa.Table, rule: str) -> np.ndarray:
    """Return a mask of the rows of ``events`` that ``rule`` drops as duplicates.

    ``events`` must be sorted by timestamp and have the ``KEY`` columns (``timestamp`` as
    int64), ``weight`` and ``ingest_order``.
    """
    drop = np.zeros(events.num_rows, dtype=bool)
    timestamps = events.column("timestamp").to_numpy()
    if len(timestamps) < 2:
        return drop
    # Only rows that share their timestamp with a neighbour can have a duplicate.
    same = timestamps[1:] == timestamps[:-1]
    candidate = np.concatenate([[False], same]) | np.concatenate([same, [False]])
    if not candidate.any():
        return drop
    positions = np.flatnonzero(candidate)
    subset = events.select(KEY + ["weight", "ingest_order"]).take(pa.array(positions))
    subset = subset.append_column("position", pa.array(positions, pa.int64()))

    groups = subset.group_by(KEY).aggregate([("ingest_order", "count")])
    repeated = groups.filter(pc.greater(groups.column("ingest_order_count"), 1)).select(KEY)
    if repeated.num_rows == 0:
        return drop
    rows = subset.join(repeated, keys=KEY, join_type="inner")

    # Sort each group so that the row to keep comes first, then drop the rest of the group.
    order = rows.column("ingest_order").to_numpy()
    event = pc.dictionary_encode(rows.column("event_type")).combine_chunks().indices.to_numpy()
    keys = [rows.column(name).to_numpy() for name in ("timestamp", "user_idx", "item_idx")] + [event]
    if rule == "first":
        tie_breaks = [order]
    elif rule == "last":
        tie_breaks = [-order]
    elif rule == "max_weight":
        weight = pc.fill_null(rows.column("weight"), -np.inf).to_numpy(zero_copy_only=False)
        tie_breaks = [np.where(np.isnan(weight), np.inf, -weight), order]
    else:
        raise ValueError(f"dedup rule must be one of first, last, max_weight, got {rule!r}")
    sort = np.lexsort(list(reversed(keys + tie_breaks)))
    sorted_keys = np.stack([k[sort] for k in keys])
    starts = np.concatenate([[True], (sorted_keys[:, 1:] != sorted_keys[:, :-1]).any(axis=0)])
    drop[rows.column("position").to_numpy()[sort][~starts]] = True
    return drop
