"""Delete users: their events leave the store, their recommendations are removed, and their
vocabulary index becomes a tombstone so that no other id ever takes it.

What stays: the raw input files (outside the store) and quarantined rows, which record only
the file, line, column and rejected value. Ingesting a file whose content was ingested
before the deletion changes nothing, because its hash is in the manifest. A later file that
has events of a deleted id gives that id a new index.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recsys_peft import atomic
from recsys_peft.ingest.attributes import attributes_table
from recsys_peft.ingest.lock import store_lock
from recsys_peft.ingest.state import StoreState
from recsys_peft.ingest.store import commit, link_tree, read_partition, recover, staging_dir, write_parquet
from recsys_peft.ingest.vocab import vocabulary_version


@dataclass(frozen=True)
class DeletionSummary:
    """Counts and indices of what ``delete_users`` removed."""

    user_indices: tuple[int, ...]
    events_removed: int
    partitions_rewritten: tuple[str, ...]
    recommendations_removed: int
    vocabulary_version: str


def delete_users(store_dir: str | Path, user_ids: list[str],
                 recommendation_dirs: tuple[str | Path, ...] = ()) -> DeletionSummary:
    """Remove every event of ``user_ids`` from the store and their rows from ``recommendation_dirs``.

    Raises ``KeyError`` naming the ids the store's vocabulary does not contain, before
    anything changes. The store changes in one commit, and each recommendation file is
    replaced atomically after it.
    """
    if not (Path(store_dir) / "manifest.json").is_file():
        raise FileNotFoundError(f"no store to delete from: {Path(store_dir) / 'manifest.json'} is missing")
    with store_lock(store_dir):
        return _delete_locked(Path(store_dir), user_ids, recommendation_dirs)


def _delete_locked(store_dir: Path, user_ids: list[str],
                   recommendation_dirs: tuple[str | Path, ...]) -> DeletionSummary:
    recover(store_dir)
    state = StoreState.load(store_dir)
    if not state.current:
        raise FileNotFoundError(f"no store to delete from: {store_dir / 'manifest.json'} is missing")
    indices = state.users.lookup(pa.array(user_ids, pa.string()))
    unknown = [user for user, index in zip(user_ids, indices) if index < 0]
    if unknown:
        raise KeyError(f"user id(s) {unknown} not found in the vocabulary of store {store_dir}")
    targets = pa.array(sorted(set(indices.tolist())), pa.int64())

    run_id = f"delete-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S%f')}"
    staging = staging_dir(store_dir, run_id)
    try:
        removed, rewritten, emptied = 0, [], set()
        for day, path in sorted(state.partitions.items()):
            user_column = pq.read_table(path, columns=["user_idx"]).column("user_idx")
            hits = int(pc.sum(pc.is_in(user_column, value_set=targets)).as_py() or 0)
            if hits == 0:
                continue
            table = read_partition(store_dir, day)
            remaining = table.filter(pc.invert(pc.is_in(table.column("user_idx"), value_set=targets)))
            removed += hits
            relative = path.relative_to(store_dir)
            rewritten.append(relative.parent.name.removeprefix("date="))
            if remaining.num_rows:
                write_parquet(remaining, staging / relative)
            else:
                emptied.add(relative)

        users = state.users.with_tombstones(targets.to_pylist())
        version = vocabulary_version(users, state.items)
        users.save(staging / "vocab")
        atomic.write_json(staging / "vocab" / "version.json", {"version": version})
        previous = pq.read_table(store_dir / "users.parquet").sort_by("user_idx")
        write_parquet(attributes_table(users, "user", None, previous), staging / "users.parquet")

        manifest = dict(state.manifest)
        manifest.update(vocabulary_version=version, rows=manifest.get("rows", 0) - removed,
                        deleted_users=state.deleted_users + len(targets))
        atomic.write_json(staging / "runs" / f"{run_id}.json", {
            "run_id": run_id, "deleted_user_indices": targets.to_pylist(), "events_removed": removed,
            "partitions_rewritten": rewritten, "vocabulary_version": version,
        })

        def keep(relative: Path) -> bool:
            return not (staging / relative).exists() and relative not in emptied and relative != Path("manifest.json")

        link_tree(store_dir, staging, keep)
        manifest["partitions"] = len(list((staging / "interactions").glob("date=*/part-0.parquet")))
        atomic.write_json(staging / "manifest.json", manifest)
        commit(store_dir, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    deleted_ids = pa.array(sorted(set(user_ids)), pa.string())
    recommendations_removed = sum(_remove_recommendations(Path(folder), deleted_ids)
                                  for folder in recommendation_dirs)
    return DeletionSummary(tuple(targets.to_pylist()), removed, tuple(rewritten), recommendations_removed,
                           version)


def _remove_recommendations(folder: Path, user_ids: pa.Array) -> int:
    """Rewrite each parquet file under ``folder`` without the rows of ``user_ids``; return rows removed."""
    removed = 0
    for path in sorted(folder.rglob("*.parquet")):
        table = pq.read_table(path)
        if "user_id" not in table.column_names:
            continue
        hit = pc.is_in(table.column("user_id"), value_set=user_ids)
        count = int(pc.sum(hit).as_py() or 0)
        if count:
            sink = pa.BufferOutputStream()
            pq.write_table(table.filter(pc.invert(hit)), sink)
            atomic.write_bytes(path, sink.getvalue().to_pybytes())
            removed += count
    return removed

