"""Duplicate events: the same user, item, timestamp and event type, collapsed by a rule.

Rules: ``first`` keeps the event ingested first, ``last`` the one ingested last, and
``max_weight`` the one with the largest weight. A missing weight counts as the smallest, and
ties go to the event ingested first. Because the timestamp is part of the key, every duplicate of an
event lies in the same date partition, so checking a partition's stored rows together with the
run's new rows finds duplicates across the whole store.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

KEY = ["timestamp", "user_idx", "item_idx", "event_type"]
# Odd 64-bit constants (from splitmix64) that spread each key column over all bits of the hash.
_MULTIPLIERS = [np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB),
                np.uint64(0xD6E8FEB86659FD93)]


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

    # A 64-bit hash of the key finds the few rows that may repeat one; the exact key is
    # compared below, so a hash collision cannot drop a row.
    event = pc.dictionary_encode(subset.column("event_type")).combine_chunks().indices.to_numpy()
    hashed = np.zeros(len(positions), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for values, multiplier in zip(
            [subset.column(name).to_numpy() for name in ("timestamp", "user_idx", "item_idx")] + [event],
            _MULTIPLIERS,
        ):
            hashed = (hashed ^ values.astype(np.uint64)) * multiplier
    ordered = np.sort(hashed)
    repeated_hashes = ordered[1:][ordered[1:] == ordered[:-1]]
    if len(repeated_hashes) == 0:
        return drop
    repeated_hashes = np.unique(repeated_hashes)
    slot = np.minimum(np.searchsorted(repeated_hashes, hashed), len(repeated_hashes) - 1)
    chosen = repeated_hashes[slot] == hashed
    rows = subset.filter(pa.array(chosen)).append_column("position", pa.array(positions[chosen], pa.int64()))

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
