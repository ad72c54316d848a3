"""The users of one scoring partition: ids, export rows, segments, histories and optional vectors.

Histories are CSR rows of export item indices, oldest first, with items that are not in the
export already removed. A partition can be stored as one parquet file (``write_input_file``),
which is how precomputed user vectors reach the job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

PAD = -1


@dataclass(frozen=True)
class PartitionInput:
    """B users to score; every array has one row per user."""

    user_ids: pa.Array            # (B,) original user ids
    export_users: np.ndarray      # (B,) int64 row of the user in the export, -1 when the model never saw it
    segments: np.ndarray          # (B,) int64 segment index, -1 for none
    slots: np.ndarray             # (B,) int64 adapter slot, -1 for the base model
    attributes: np.ndarray        # (B, A) int64 attribute codes, 0 = unknown
    history_offsets: np.ndarray   # (B + 1,) int64
    history_items: np.ndarray     # int64 export item indices, each user's oldest first
    new_item_events: int = 0      # history events on items not in the export, left out
    vectors: np.ndarray | None = field(default=None)  # (B, D) float32 precomputed user vectors

    def __post_init__(self) -> None:
        rows = len(self.user_ids)
        for name in ("export_users", "segments", "slots", "attributes"):
            if len(getattr(self, name)) != rows:
                raise ValueError(f"PartitionInput.{name} has {len(getattr(self, name))} rows, expected {rows}")
        if len(self.history_offsets) != rows + 1 or self.history_offsets[-1] != len(self.history_items):
            raise ValueError(
                f"PartitionInput.history_offsets must have {rows + 1} entries ending at "
                f"{len(self.history_items)}, got {len(self.history_offsets)} ending at {self.history_offsets[-1]}"
            )
        if self.vectors is not None and len(self.vectors) != rows:
            raise ValueError(f"PartitionInput.vectors has {len(self.vectors)} rows, expected {rows}")

    def __len__(self) -> int:
        return len(self.user_ids)

    @property
    def history_lengths(self) -> np.ndarray:
        return np.diff(self.history_offsets)


def csr_rows(offsets: np.ndarray, values: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the CSR (offsets, values) of ``rows`` of another CSR matrix, in the order given."""
    rows = np.asarray(rows, dtype=np.int64)
    lengths = offsets[rows + 1] - offsets[rows]
    new_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    index = np.repeat(offsets[rows] - new_offsets[:-1], lengths) + np.arange(new_offsets[-1])
    return new_offsets, values[index]


def recent_history(offsets: np.ndarray, values: np.ndarray, rows: np.ndarray, length: int) -> np.ndarray:
    """Return the last ``length`` items of each of ``rows``, most recent first, padded with -1.

    For a row with items [5, 7, 9] (oldest first), length 4 gives ``[9, 7, 5, -1]``.
    """
    rows = np.asarray(rows, dtype=np.int64)
    starts, ends = offsets[rows], offsets[rows + 1]
    source = ends[:, None] - np.arange(1, length + 1)[None, :]            # (N, length)
    valid = source >= starts[:, None]
    if len(values) == 0:
        return np.full(source.shape, PAD, dtype=np.int64)
    return np.where(valid, values[np.maximum(source, 0)], PAD).astype(np.int64)


def write_input_file(path: str | Path, data: PartitionInput) -> None:
    """Write a partition's users, histories and vectors (if any) as one parquet file."""
    columns = {
        "user_id": data.user_ids,
        "export_user": pa.array(data.export_users, pa.int64()),
        "segment": pa.array(data.segments, pa.int64()),
        "adapter_slot": pa.array(data.slots, pa.int64()),
        "history": pa.ListArray.from_arrays(pa.array(data.history_offsets.astype(np.int32)),
                                            pa.array(data.history_items.astype(np.int32))),
    }
    for column in range(data.attributes.shape[1]):
        columns[f"attribute_{column}"] = pa.array(data.attributes[:, column], pa.int64())
    if data.vectors is not None:
        vectors = np.ascontiguousarray(data.vectors, dtype=np.float32)
        columns["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
    pq.write_table(pa.table(columns), path)


def read_input_file(path: str | Path) -> PartitionInput:
    """Read a file written by ``write_input_file``."""
    table = pq.read_table(path)
    required = {"user_id", "export_user", "segment", "adapter_slot", "history"}
    missing = sorted(required - set(table.column_names))
    if missing:
        raise ValueError(f"scoring input {path} lacks columns {missing}; found {table.column_names}")
    history = table.column("history").combine_chunks()
    lengths = pc.list_value_length(history).fill_null(0).to_numpy()
    vectors = None
    if "vector" in table.column_names:
        flat = table.column("vector").combine_chunks()
        vectors = flat.flatten().to_numpy().reshape(table.num_rows, flat.type.list_size)
    return input_from_users(table, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                            pc.list_flatten(history).to_numpy().astype(np.int64), vectors=vectors)


def input_from_users(users: pa.Table, history_offsets: np.ndarray, history_items: np.ndarray,
                     new_item_events: int = 0, vectors: np.ndarray | None = None) -> PartitionInput:
    """Build a partition from a table with one row per user and the users' histories.

    The table has the columns of ``write_input_file``: user_id, export_user, segment,
    adapter_slot and attribute_0, attribute_1, ... in the order of the export's encoders.
    """
    attribute_columns = sorted((c for c in users.column_names if c.startswith("attribute_")),
                               key=lambda c: int(c.split("_")[1]))
    attributes = (np.stack([users.column(c).to_numpy() for c in attribute_columns], axis=1)
                  if attribute_columns else np.zeros((users.num_rows, 0), dtype=np.int64))
    return PartitionInput(
        user_ids=users.column("user_id").combine_chunks(),
        export_users=users.column("export_user").to_numpy(),
        segments=users.column("segment").to_numpy(),
        slots=users.column("adapter_slot").to_numpy(),
        attributes=attributes,
        history_offsets=history_offsets,
        history_items=history_items,
        new_item_events=new_item_events,
        vectors=vectors,
    )
