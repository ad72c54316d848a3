"""The interaction store on disk, the pinned schema of its files, and how a change is committed.

Layout of a store folder::

    interactions/date=YYYY-MM-DD/part-0.parquet   events of one UTC date, time-ordered
    users.parquet, items.parquet                  attributes keyed by original id and index
    vocab/users.parquet, vocab/items.parquet      the id vocabulary (id -> index, tombstones)
    vocab/version.json                            the vocabulary version
    quarantine/run-NNNNNN.parquet                 rejected rows of one run: file, line, column, reason
    runs/run-NNNNNN.json                          the manifest of one run
    manifest.json                                 the store now: files ingested with hashes, counts,
                                                  schema and vocabulary versions

Every file is written once and never changed in place. A run builds the next version of the
store in a sibling staging folder, hard-linking the files it keeps, and swaps it in with two
renames (``commit``). A run that fails or is killed before the swap leaves the store as it
was, and ``recover`` finishes or discards what such a run left behind.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from recsys_peft import atomic
from recsys_peft.ingest.validate import QUARANTINE_SCHEMA

SCHEMA_VERSION = 2

INTERACTION_SCHEMA = pa.schema([
    pa.field("user_id", pa.string(), nullable=False),
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("user_idx", pa.int64(), nullable=False),
    pa.field("item_idx", pa.int64(), nullable=False),
    pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("event_type", pa.string(), nullable=False),
    pa.field("weight", pa.float64()),
    pa.field("source_file", pa.string(), nullable=False),
    pa.field("source_line", pa.int64(), nullable=False),
    # Position of the row in the input of all runs: the tie-break after the timestamp.
    pa.field("ingest_order", pa.int64(), nullable=False),
])

# Rows per row group: large enough for fast scans, small enough to read part of a date cheaply.
ROW_GROUP_SIZE = 256 * 1024
# Columns worth dictionary encoding: ids and labels repeat, the numbers mostly do not.
DICTIONARY_COLUMNS = ["user_id", "item_id", "event_type", "source_file"]
MICROS_PER_DAY = 86_400 * 1_000_000
EPOCH = date(1970, 1, 1)
_COMPLETE_MARKER = ".complete"


def partition_name(day: int) -> str:
    """Return the folder name of the partition of ``day`` (days since 1970-01-01, UTC)."""
    return f"date={(EPOCH + timedelta(days=day)).isoformat()}"


def partition_path(store_dir: Path, day: int) -> Path:
    return Path(store_dir) / "interactions" / partition_name(day) / "part-0.parquet"


def read_interactions(store_dir: str | Path) -> pa.Table:
    """Return all interactions of a store, sorted by (timestamp, ingest_order)."""
    folder = Path(store_dir) / "interactions"
    if not folder.is_dir():
        raise FileNotFoundError(f"no interactions in store {store_dir}: {folder} is missing")
    dataset = ds.dataset(folder, format="parquet", schema=INTERACTION_SCHEMA, partitioning="hive")
    return dataset.to_table().sort_by([("timestamp", "ascending"), ("ingest_order", "ascending")])


def read_partition(store_dir: Path, day: int) -> pa.Table:
    """Return the rows of one date partition, or an empty table when it does not exist."""
    path = partition_path(store_dir, day)
    if not path.is_file():
        return INTERACTION_SCHEMA.empty_table()
    return pq.read_table(path, schema=INTERACTION_SCHEMA)


def read_quarantine(store_dir: str | Path) -> pa.Table:
    """Return the quarantined rows of every run of a store, oldest run first."""
    folder = Path(store_dir) / "quarantine"
    parts = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    tables = [pq.read_table(part, schema=QUARANTINE_SCHEMA) for part in parts]
    return pa.concat_tables(tables) if tables else QUARANTINE_SCHEMA.empty_table()


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write ``table`` to a new file at ``path`` (the folders are created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    dictionary = [name for name in DICTIONARY_COLUMNS if name in table.column_names]
    pq.write_table(table, path, row_group_size=ROW_GROUP_SIZE, use_dictionary=dictionary or False)


def read_manifest(store_dir: Path) -> dict | None:
    path = Path(store_dir) / "manifest.json"
    return atomic.read_json(path) if path.is_file() else None


def _siblings(store_dir: Path, kind: str) -> list[Path]:
    return sorted(store_dir.parent.glob(f".{store_dir.name}.{kind}-*"))


def staging_dir(store_dir: Path, run_id: str) -> Path:
    """Create and return the empty staging folder of a run, next to the store."""
    path = store_dir.parent / f".{store_dir.name}.staging-{run_id}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def link_file(source: Path, target: Path) -> None:
    """Put ``source`` at ``target`` by a hard link (a copy where links are not supported)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def link_tree(store_dir: Path, staging: Path, keep: Callable[[Path], bool]) -> None:
    """Link every file of the store for which ``keep(relative path)`` is true into ``staging``."""
    for path in sorted(store_dir.rglob("*")):
        if path.is_file():
            relative = path.relative_to(store_dir)
            if keep(relative):
                link_file(path, staging / relative)


def commit(store_dir: Path, staging: Path) -> None:
    """Swap ``staging`` in as the store.

    The marker written first shows ``recover`` that the staging folder is complete, so a run
    killed between the two renames is finished by the next one instead of losing the store.
    """
    atomic.write_bytes(staging / _COMPLETE_MARKER, b"")
    previous = store_dir.parent / f".{store_dir.name}.previous-{staging.name.rsplit('-', 1)[-1]}"
    if store_dir.exists():
        os.replace(store_dir, previous)
    os.replace(staging, store_dir)
    (store_dir / _COMPLETE_MARKER).unlink()
    shutil.rmtree(previous, ignore_errors=True)


def recover(store_dir: Path) -> None:
    """Finish or discard what an interrupted run left next to the store.

    A complete staging folder with no store is the one ``commit`` was swapping in: it becomes
    the store. Every other staging or previous folder is removed.
    """
    complete = [path for path in _siblings(store_dir, "staging") if (path / _COMPLETE_MARKER).is_file()]
    if not store_dir.exists() and complete:
        os.replace(complete[-1], store_dir)
        (store_dir / _COMPLETE_MARKER).unlink()
    for path in _siblings(store_dir, "staging") + _siblings(store_dir, "previous"):
        shutil.rmtree(path, ignore_errors=True)
