"""Ingest one data set: read, validate, quarantine, deduplicate, order, index and write.

Nothing is written until every input file exists and has the columns its source spec names, so
a wrong file stops the run with the file name and the problem, and the previous store stays as
it was. The store itself is built in a temporary folder and swapped in atomically.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recsys_peft import atomic
from recsys_peft.ingest.readers import SOURCE_LINE, read_raw_table, strip_strings
from recsys_peft.ingest.spec import AttributeSource, SourceSpec
from recsys_peft.ingest.store import INTERACTION_SCHEMA, SCHEMA_VERSION, write_interactions
from recsys_peft.ingest.validate import validate_interactions
from recsys_peft.ingest.vocab import Vocabulary, vocabulary_version


class TooManyBadRowsError(ValueError):
    """More rows were quarantined than the configured fraction allows."""


@dataclass(frozen=True)
class IngestSummary:
    store_dir: Path
    rows_read: int
    rows_written: int
    rows_quarantined: int
    rows_deduplicated: int
    users: int
    items: int
    vocabulary_version: str


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def _require_columns(table: pa.Table, path: Path, needed: list[str], spec: SourceSpec) -> None:
    missing = [name for name in needed if name not in table.column_names]
    if missing:
        found = [name for name in table.column_names if name != SOURCE_LINE]
        raise ValueError(
            f"{path}: missing column(s) {missing} required by source spec {spec.path or spec.name}; "
            f"found columns {found}"
        )


def _read_attributes(source: AttributeSource, raw_dir: Path, spec: SourceSpec) -> pa.Table:
    path = raw_dir / source.file
    table = read_raw_table(path, spec.format)
    _require_columns(table, path, [source.id, *source.attributes.values()], spec)
    columns = {"id": table.column(source.id)}
    for name, src in source.attributes.items():
        column = table.column(src)
        if name in source.multi_valued:
            column = pc.split_pattern(pc.utf8_trim_whitespace(column), source.multi_valued[name])
        columns[name] = column
    result = strip_strings(pa.table(columns), ["id"])
    null_ids = result.column("id").null_count
    if null_ids:
        raise ValueError(f"{path}: column {source.id!r} has {null_ids} empty id(s)")
    # The first row of an id wins; a repeated id is a data error worth reporting, not a crash.
    first = pc.equal(pa.array(np.arange(result.num_rows)),
                     pa.array(_first_positions(result.column("id"))))
    return result.filter(first)


def _first_positions(ids: pa.ChunkedArray) -> np.ndarray:
    position: dict[str, int] = {}
    values = ids.to_pylist()
    out = np.empty(len(values), dtype=np.int64)
    for i, value in enumerate(values):
        out[i] = position.setdefault(value, i)
    return out


def _deduplicate(events: pa.Table, rule: str) -> pa.Table:
    """Collapse events with the same (user_id, item_id, timestamp) by ``rule``."""
    order = np.arange(events.num_rows)
    keyed = events.append_column("_order", pa.array(order, pa.int64()))
    if rule == "max_weight":
        weight = pc.fill_null(keyed.column("weight"), -np.inf)
        keyed = keyed.append_column("_rank", pc.negate(weight))
        keyed = keyed.sort_by([("_rank", "ascending"), ("_order", "ascending")])
        keyed = keyed.drop_columns(["_rank"])
    elif rule == "last":
        keyed = keyed.sort_by([("_order", "descending")])
    grouped = keyed.group_by(["user_id", "item_id", "timestamp"], use_threads=False).aggregate(
        [("_order", "first")]
    )
    kept = np.sort(grouped.column("_order_first").to_numpy())
    return events.take(pa.array(kept))


def _table_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def ingest_source(
    spec: SourceSpec,
    raw_dir: str | Path,
    store_dir: str | Path,
    max_bad_fraction: float = 0.05,
    now: datetime | None = None,
) -> IngestSummary:
    """Build the store at ``store_dir`` from the files of ``spec`` found in ``raw_dir``."""
    raw_dir, store_dir = Path(raw_dir), Path(store_dir)

    # Check every input before anything is written.
    files = [raw_dir / spec.interactions.file]
    files += [raw_dir / s.file for s in (spec.users, spec.items) if s is not None]
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(
                f"input file not found: {path} (named by source spec {spec.path or spec.name})"
            )
    inter_path = files[0]
    raw = read_raw_table(inter_path, spec.format)
    mapping = spec.interactions.columns
    _require_columns(raw, inter_path, list(mapping.values()), spec)
    users_attr = _read_attributes(spec.users, raw_dir, spec) if spec.users else None
    items_attr = _read_attributes(spec.items, raw_dir, spec) if spec.items else None

    # Validate rows: canonical names, trimmed strings, parsed timestamps and weights.
    canonical = pa.table({name: raw.column(src) for name, src in mapping.items()})
    canonical = canonical.append_column(SOURCE_LINE, raw.column(SOURCE_LINE))
    canonical = strip_strings(canonical, [c for c in mapping if c != "timestamp"] + ["timestamp"])
    checked = validate_interactions(
        canonical, inter_path.name, spec.interactions.timestamp_unit,
        spec.interactions.timezone, "weight" in mapping, now=now,
    )
    rows_read = raw.num_rows
    rows_bad = checked.quarantine.num_rows
    if rows_read and rows_bad / rows_read > max_bad_fraction:
        reasons = pc.value_counts(checked.quarantine.column("reason")).to_pylist()
        summary = ", ".join(f"{r['values']}: {r['counts']}" for r in reasons)
        first = checked.quarantine.slice(0, 1).to_pylist()[0]
        raise TooManyBadRowsError(
            f"{inter_path}: {rows_bad} of {rows_read} rows are invalid "
            f"(more than max_bad_fraction={max_bad_fraction}); reasons: {summary}; first: line "
            f"{first['source_line']} column {first['column']!r} value {first['value']!r}: "
            f"{first['reason']}. Nothing was written."
        )

    # Order by (timestamp, position in the source), then collapse duplicates.
    events = checked.good.sort_by([("timestamp", "ascending"), (SOURCE_LINE, "ascending")])
    deduplicated = _deduplicate(events, spec.dedup)
    rows_dup = events.num_rows - deduplicated.num_rows

    # Index ids: first appearance in time order, then ids known only from attribute files.
    users = Vocabulary("users", ()).extended(deduplicated.column("user_id").combine_chunks())
    items = Vocabulary("items", ()).extended(deduplicated.column("item_id").combine_chunks())
    if users_attr is not None:
        users = users.extended(users_attr.column("id").combine_chunks())
    if items_attr is not None:
        items = items.extended(items_attr.column("id").combine_chunks())
    version = vocabulary_version(users, items)

    interactions = pa.table({
        "user_id": deduplicated.column("user_id"),
        "item_id": deduplicated.column("item_id"),
        "user_idx": users.lookup(deduplicated.column("user_id").combine_chunks()),
        "item_idx": items.lookup(deduplicated.column("item_id").combine_chunks()),
        "timestamp": deduplicated.column("timestamp"),
        "weight": deduplicated.column("weight"),
        "source_file": deduplicated.column("source_file"),
        "source_line": deduplicated.column(SOURCE_LINE),
        "ingest_order": pa.array(np.arange(deduplicated.num_rows), pa.int64()),
    }, schema=INTERACTION_SCHEMA)

    manifest = {
        "schema_version": SCHEMA_VERSION,
        "source_spec": spec.name,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "files": {path.name: {"sha256": _sha256(path), "bytes": path.stat().st_size} for path in files},
        "rows_read": rows_read,
        "rows_written": interactions.num_rows,
        "rows_quarantined": rows_bad,
        "rows_deduplicated": rows_dup,
        "users": len(users),
        "items": len(items),
        "vocabulary_version": version,
    }

    # Write everything into a staging folder, then swap it in.
    with atomic.replace_dir(store_dir) as staging:
        write_interactions(interactions, staging / "interactions")
        users.save(staging / "vocab")
        items.save(staging / "vocab")
        atomic.write_json(staging / "vocab" / "version.json", {"version": version})
        atomic.write_bytes(staging / "users.parquet", _table_bytes(_attributes_table(users, users_attr, "user")))
        atomic.write_bytes(staging / "items.parquet", _table_bytes(_attributes_table(items, items_attr, "item")))
        atomic.write_bytes(staging / "quarantine" / "part-0.parquet", _table_bytes(checked.quarantine))
        atomic.write_json(staging / "manifest.json", manifest)

    return IngestSummary(store_dir, rows_read, interactions.num_rows, rows_bad, rows_dup,
                         len(users), len(items), version)


def _attributes_table(vocab: Vocabulary, attributes: pa.Table | None, kind: str) -> pa.Table:
    """One row per vocabulary entry: original id, index and attributes (null when unknown)."""
    base = pa.table({f"{kind}_id": pa.array(vocab.ids, pa.string()),
                     f"{kind}_idx": pa.array(np.arange(len(vocab)), pa.int64())})
    if attributes is None:
        return base
    position = pc.index_in(base.column(f"{kind}_id"), value_set=attributes.column("id"))
    for name in attributes.column_names:
        if name != "id":
            base = base.append_column(name, pc.take(attributes.column(name), position))
    return base
