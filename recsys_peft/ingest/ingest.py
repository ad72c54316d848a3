"""Ingest one data set into a store, incrementally: read, validate, quarantine, deduplicate, write.

A run hashes every input file and skips those whose content the store already holds, so
ingesting the same file twice changes nothing. The other files are streamed in batches:
validated (bad rows go to quarantine with file, line, column and reason), spilled to disk by
date, then merged into the date partitions they touch together with the rows already stored
there. Everything the run writes goes to a staging folder that replaces the store in one
commit, so a run that fails at any point leaves the store as it was.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recsys_peft import atomic
from recsys_peft.ingest.attributes import attributes_table, read_attributes, require_columns
from recsys_peft.ingest.lock import DEFAULT_TIMEOUT_SECONDS, store_lock
from recsys_peft.ingest.merge import merge_spill
from recsys_peft.ingest.readers import (SOURCE_LINE, iter_raw_batches, json_type_column, list_input_files,
                                        strip_strings)
from recsys_peft.ingest.spec import SourceSpec
from recsys_peft.ingest.spill import Spill
from recsys_peft.ingest.state import StoreState, schema_description
from recsys_peft.ingest.store import SCHEMA_VERSION, commit, link_tree, recover, staging_dir, write_parquet
from recsys_peft.ingest.validate import QUARANTINE_SCHEMA, validate_interactions
from recsys_peft.ingest.vocab import vocabulary_version
from recsys_peft.progress import progress

LOGGER = logging.getLogger(__name__)
# Rows held in memory at once while spilling and while merging: about 100 bytes each.
ROWS_IN_MEMORY = 500_000


class TooManyBadRowsError(ValueError):
    """More rows of one file were quarantined than the configured fraction allows."""


@dataclass(frozen=True)
class IngestSummary:
    """Counts of one run. ``users``, ``items`` and the version describe the whole store after it."""

    store_dir: Path
    rows_read: int
    rows_written: int
    rows_quarantined: int
    rows_deduplicated: int
    users: int
    items: int
    vocabulary_version: str
    run_id: str = ""
    files_ingested: tuple[str, ...] = ()
    files_skipped: tuple[str, ...] = ()
    partitions_written: tuple[str, ...] = ()
    files_empty: tuple[str, ...] = ()   # ingested with no rows: a failed upstream export looks like this

    def log_line(self) -> str:
        """Return the summary as one ``key=value`` line, as the flow logs it.

        ``dates`` spans the partitions written, so a wrong timestamp unit (events in 1970) shows.
        """
        line = (f"ingest run={self.run_id} files_ingested={len(self.files_ingested)} "
                f"files_skipped={len(self.files_skipped)} rows_read={self.rows_read} "
                f"rows_written={self.rows_written} quarantined={self.rows_quarantined} "
                f"deduplicated={self.rows_deduplicated} partitions_written={len(self.partitions_written)} ")
        if self.partitions_written:
            line += f"dates={min(self.partitions_written)}..{max(self.partitions_written)} "
        line += f"users={self.users} items={self.items} vocab={self.vocabulary_version}"
        if self.files_empty:
            line += f" empty_files={','.join(self.files_empty)}"
        return line


@dataclass
class _FileReport:
    name: str
    sha256: str
    size: int
    status: str = "skipped"    # ingested or skipped (content already in the store)
    rows_read: int = 0
    rows_quarantined: int = 0


def sha256_of(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            hasher.update(block)
    return hasher.hexdigest()


def _input_files(spec: SourceSpec, raw_dir: Path) -> tuple[list[Path], dict[str, Path]]:
    """Resolve every input of ``spec``; raise ``FileNotFoundError`` naming the spec if one is missing."""
    named_by = f"(named by source spec {spec.path or spec.name})"
    try:
        interactions = list_input_files(raw_dir, spec.interactions.file)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{error} {named_by}") from None
    attribute_files = {}
    for kind, source in (("users", spec.users), ("items", spec.items)):
        if source is not None:
            path = raw_dir / source.file
            if not path.is_file():
                raise FileNotFoundError(f"input file not found: {path} {named_by}")
            attribute_files[kind] = path
    return interactions, attribute_files


def _too_many_bad_rows(path: Path, quarantine: pa.Table, rows_read: int, limit: float) -> TooManyBadRowsError:
    reasons = pc.value_counts(quarantine.column("reason")).to_pylist()
    summary = ", ".join(f"{r['values']}: {r['counts']}" for r in reasons)
    first = quarantine.slice(0, 1).to_pylist()[0]
    return TooManyBadRowsError(
        f"{path}: {quarantine.num_rows} of {rows_read} rows are invalid "
        f"(more than max_bad_fraction={limit}); reasons: {summary}; first: line "
        f"{first['source_line']} column {first['column']!r} value {first['value']!r}: "
        f"{first['reason']}. Nothing was written."
    )


def _spill_file(path: Path, report: _FileReport, file_index: int, first_order: int, spec: SourceSpec,
                now: datetime, spill: Spill, limit: float) -> pa.Table:
    """Validate one interaction file into ``spill``; return its quarantined rows."""
    mapping = spec.interactions.columns
    quarantined = []
    for batch in iter_raw_batches(path, spec.format, spec.interactions.layout):
        if report.rows_read == 0:
            require_columns(batch, path, list(mapping.values()), spec)
        canonical = pa.table({name: batch.column(source) for name, source in mapping.items()})
        canonical = strip_strings(canonical, list(mapping)).append_column(SOURCE_LINE, batch.column(SOURCE_LINE))
        for name, source in mapping.items():
            if json_type_column(source) in batch.column_names:
                canonical = canonical.append_column(json_type_column(name), batch.column(json_type_column(source)))
        checked = validate_interactions(canonical, report.name, spec, now=now)
        start = first_order + report.rows_read
        orders = np.arange(start, start + batch.num_rows, dtype=np.int64)
        good = checked.good.append_column("ingest_order", pa.array(orders[checked.valid]))
        good = good.append_column("file_index", pa.array(np.full(good.num_rows, file_index, np.int32)))
        spill.add(good)
        quarantined.append(checked.quarantine)
        report.rows_read += batch.num_rows
    quarantine = pa.concat_tables(quarantined) if quarantined else QUARANTINE_SCHEMA.empty_table()
    report.rows_quarantined = quarantine.num_rows
    if report.rows_read and quarantine.num_rows / report.rows_read > limit:
        raise _too_many_bad_rows(path, quarantine, report.rows_read, limit)
    return quarantine


def ingest_source(
    spec: SourceSpec,
    raw_dir: str | Path,
    store_dir: str | Path,
    max_bad_fraction: float | None = None,
    now: datetime | None = None,
    rows_in_memory: int = ROWS_IN_MEMORY,
    lock_timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> IngestSummary:
    """Add the files of ``spec`` found in ``raw_dir`` to the store at ``store_dir``.

    ``max_bad_fraction`` overrides the spec's limit; ``now`` (default: the current time) is
    the latest timestamp accepted. The store is created when missing. Runs on the same store
    take turns (``store_lock``): a second run waits for the first and then sees its files.
    """
    with store_lock(store_dir, lock_timeout):
        return _ingest_locked(spec, Path(raw_dir), Path(store_dir), max_bad_fraction, now, rows_in_memory)


def _ingest_locked(spec: SourceSpec, raw_dir: Path, store_dir: Path, max_bad_fraction: float | None,
                   now: datetime | None, rows_in_memory: int) -> IngestSummary:
    now = now or datetime.now(timezone.utc)
    limit = spec.max_bad_fraction if max_bad_fraction is None else max_bad_fraction
    started_at = datetime.now(timezone.utc)
    recover(store_dir)

    interaction_files, attribute_files = _input_files(spec, raw_dir)
    state = StoreState.load(store_dir)
    run_id = f"run-{state.last_run + 1:06d}"
    known = set(state.known_hashes)
    reports = []
    for path in interaction_files + list(attribute_files.values()):
        report = _FileReport(path.relative_to(raw_dir).as_posix(), sha256_of(path), path.stat().st_size)
        if report.sha256 not in known:
            report.status = "ingested"
            known.add(report.sha256)
        reports.append(report)
    by_path = dict(zip(interaction_files + list(attribute_files.values()), reports))

    if all(r.status == "skipped" for r in reports):
        return _record_unchanged_run(state, run_id, spec, reports, started_at)

    staging = staging_dir(store_dir, run_id)
    try:
        (staging / "interactions").mkdir()  # present even while the store has no events
        attributes = {kind: read_attributes(getattr(spec, kind), path, spec)
                      for kind, path in attribute_files.items() if by_path[path].status == "ingested"}
        spill = Spill(staging / ".spill", rows_in_memory)
        new_files = [p for p in interaction_files if by_path[p].status == "ingested"]
        quarantine = []
        next_order = state.next_ingest_order
        sizes_mib = [max(1, round(by_path[path].size / 2**20)) for path in new_files]
        with progress("ingest", sum(sizes_mib), "MiB", LOGGER.info) as bar:
            for file_index, path in enumerate(new_files):
                report = by_path[path]
                quarantine.append(_spill_file(path, report, file_index, next_order, spec, now, spill, limit))
                next_order += report.rows_read
                bar.advance(sizes_mib[file_index])
        spill.flush()
        merged = merge_spill(spill, state, staging, [by_path[p].name for p in new_files], spec.dedup,
                             rows_in_memory)
        shutil.rmtree(staging / ".spill", ignore_errors=True)

        users, items = merged.users, merged.items
        for kind, table in attributes.items():
            if kind == "users":
                users = users.extended(table.column("id"))
            else:
                items = items.extended(table.column("id"))
        version = vocabulary_version(users, items)
        for vocab, kind in ((users, "user"), (items, "item")):
            previous = _previous_attributes(state, kind)
            table = attributes_table(vocab, kind, attributes.get(f"{kind}s"), previous)
            write_parquet(table, staging / f"{kind}s.parquet")
            vocab.save(staging / "vocab")
        atomic.write_json(staging / "vocab" / "version.json", {"version": version})
        quarantined = pa.concat_tables(quarantine) if quarantine else QUARANTINE_SCHEMA.empty_table()
        if quarantined.num_rows:
            write_parquet(quarantined, staging / "quarantine" / f"{run_id}.parquet")

        attribute_names = {by_path[path].name for path in attribute_files.values()}
        summary = IngestSummary(
            store_dir, sum(r.rows_read for r in reports), merged.rows_written, quarantined.num_rows,
            merged.rows_deduplicated, len(users), len(items), version, run_id,
            tuple(r.name for r in reports if r.status == "ingested"),
            tuple(r.name for r in reports if r.status == "skipped"),
            tuple(sorted(merged.partitions_written)),
            tuple(r.name for r in reports if r.status == "ingested" and r.rows_read == 0
                  and r.name not in attribute_names),
        )
        for name in summary.files_empty:
            LOGGER.warning("ingest file=%s rows_read=0: the file is empty or has only a header", name)
        files = dict(state.files)
        files.update({r.name: {"sha256": r.sha256, "bytes": r.size} for r in reports if r.status == "ingested"})
        atomic.write_json(staging / "runs" / f"{run_id}.json",
                          _run_manifest(spec, summary, reports, started_at, quarantined.num_rows > 0))
        if state.current:
            keep = (lambda relative: relative != Path("manifest.json") and not (staging / relative).exists())
            link_tree(store_dir, staging, keep=keep)
        manifest = _store_manifest(spec, summary, files, next_order, state, staging)
        atomic.write_json(staging / "manifest.json", manifest)
        commit(store_dir, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def _previous_attributes(state: StoreState, kind: str) -> pa.Table | None:
    path = state.store_dir / f"{kind}s.parquet"
    if not state.current or not path.is_file():
        return None
    return pq.read_table(path).sort_by(f"{kind}_idx")


def _store_manifest(spec: SourceSpec, summary: IngestSummary, files: dict, next_order: int,
                    state: StoreState, staging: Path) -> dict:
    """Describe the store that ``staging`` contains, once every file is in place."""
    partitions = sorted((staging / "interactions").glob("date=*/part-0.parquet"))
    return {
        "schema_version": SCHEMA_VERSION,
        "schema": schema_description(),
        "source_spec": spec.name,
        "files": files,
        "rows": sum(pq.read_metadata(path).num_rows for path in partitions),
        "partitions": len(partitions),
        "users": summary.users,
        "items": summary.items,
        "vocabulary_version": summary.vocabulary_version,
        "next_ingest_order": next_order,
        "last_run": summary.run_id,
        "deleted_users": state.deleted_users,
    }


def _run_manifest(spec: SourceSpec, summary: IngestSummary, reports: list[_FileReport], started_at: datetime,
                  has_quarantine: bool) -> dict:
    return {
        "run_id": summary.run_id,
        "started_at": started_at.isoformat(),
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "source_spec": spec.name,
        "schema_version": SCHEMA_VERSION,
        "schema": schema_description(),
        "files": [vars(r) for r in reports],
        "rows_read": summary.rows_read,
        "rows_written": summary.rows_written,
        "rows_quarantined": summary.rows_quarantined,
        "rows_deduplicated": summary.rows_deduplicated,
        "partitions_written": list(summary.partitions_written),
        "quarantine": f"quarantine/{summary.run_id}.parquet" if has_quarantine else None,
        "users": summary.users,
        "items": summary.items,
        "vocabulary_version": summary.vocabulary_version,
    }


def _record_unchanged_run(state: StoreState, run_id: str, spec: SourceSpec, reports: list[_FileReport],
                          started_at: datetime) -> IngestSummary:
    """Write the manifest of a run that found every file already ingested; nothing else changes."""
    version = state.manifest["vocabulary_version"]
    summary = IngestSummary(state.store_dir, 0, 0, 0, 0, len(state.users), len(state.items), version, run_id,
                            (), tuple(r.name for r in reports))
    atomic.write_json(state.store_dir / "runs" / f"{run_id}.json",
                      _run_manifest(spec, summary, reports, started_at, False))
    return summary
