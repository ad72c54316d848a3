"""The interaction store on disk, and the pinned schema of its files.

Layout of a store folder::

    interactions/date=YYYY-MM-DD/part-0.parquet   events, time-ordered, partitioned by UTC date
    users.parquet, items.parquet                  attributes keyed by original id and index
    vocab/users.parquet, vocab/items.parquet      the id vocabulary (id -> index)
    quarantine/part-0.parquet                     rejected rows with file, line, column, reason
    manifest.json                                 inputs with hashes, row counts, versions
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

SCHEMA_VERSION = 1

INTERACTION_SCHEMA = pa.schema([
    pa.field("user_id", pa.string(), nullable=False),
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("user_idx", pa.int64(), nullable=False),
    pa.field("item_idx", pa.int64(), nullable=False),
    pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("weight", pa.float64()),
    pa.field("source_file", pa.string(), nullable=False),
    pa.field("source_line", pa.int64(), nullable=False),
    # Position in the ingest order of all events: the tie-break after the timestamp.
    pa.field("ingest_order", pa.int64(), nullable=False),
])

# Rows per row group: large enough for fast scans, small enough to read one date cheaply.
ROW_GROUP_SIZE = 256 * 1024


def read_interactions(store_dir: str | Path) -> pa.Table:
    """All interactions of a store, sorted by (timestamp, ingest_order)."""
    folder = Path(store_dir) / "interactions"
    if not folder.is_dir():
        raise FileNotFoundError(f"no interactions in store {store_dir}: {folder} is missing")
    dataset = ds.dataset(folder, format="parquet", schema=INTERACTION_SCHEMA, partitioning="hive")
    return dataset.to_table().sort_by([("timestamp", "ascending"), ("ingest_order", "ascending")])


def write_interactions(table: pa.Table, folder: Path) -> None:
    """Write ``table`` (``INTERACTION_SCHEMA``) partitioned by the UTC date of each event."""
    dates = pa.compute.strftime(table.column("timestamp"), format="%Y-%m-%d")
    with_date = table.append_column("date", dates)
    ds.write_dataset(
        with_date,
        folder,
        format="parquet",
        partitioning=ds.partitioning(pa.schema([pa.field("date", pa.string())]), flavor="hive"),
        basename_template="part-{i}.parquet",
        max_rows_per_group=ROW_GROUP_SIZE,
        min_rows_per_group=min(ROW_GROUP_SIZE, 1024),
        existing_data_behavior="delete_matching",
    )
