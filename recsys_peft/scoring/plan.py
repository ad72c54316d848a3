"""Plan a scoring job: resolve its users, split them into partitions, stage each partition's input.

The plan lives in the job's staging folder (``output.staging_folder``)::

    plan.json                     settings, fingerprint, partition count and the planning counts
    catalogue.safetensors         (I,) bool mask of unavailable items, in export rows
    users/part-NNNNN.parquet      one row per user: id, store and export rows, segment, slot, attributes
    events/partition=N/*.parquet  the store's events of partition N's users, items in export rows
    inputs/part-NNNNN.parquet     prepared inputs with precomputed vectors (no store), see ``inputs.py``
    parts/part-NNNNN.parquet      recommendations of partition N, with part-NNNNN.json beside it

A plan is identified by a fingerprint of everything its result depends on. A later run with the
same fingerprint reuses the plan and, when ``resume`` is set, every finished part. Planning keeps
the id vocabularies of all users and a few integer arrays per user in memory, about 100 bytes
per user. A partition's task reads only its own users.

NOTE: nothing stops two jobs with the same export, run date and output folder from running at
once. The second one to plan deletes the first one's staging folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file, save_file

from recsys_peft import atomic
from recsys_peft.export.model import check_export_folder
from recsys_peft.ingest.store import INTERACTION_SCHEMA
from recsys_peft.scoring.catalogue import CatalogueView, catalogue_view, index_in, vocabulary_ids
from recsys_peft.scoring.inputs import PartitionInput, write_input_file
from recsys_peft.scoring.output import run_folder, staging_folder
from recsys_peft.scoring.settings import ScoringInputError, ScoringSettings
from recsys_peft.scoring.users import encoder_names, user_features

PLAN_FILE = "plan.json"
# Part of every fingerprint: raise it when the plan or part format changes.
PLAN_FORMAT_VERSION = 1
EVENT_SCHEMA = pa.schema([("partition", pa.int32()), ("user", pa.int64()), ("item", pa.int64()),
                          ("timestamp", pa.int64()), ("ingest_order", pa.int64())])
# Rows buffered per partition before a row group is written while grouping events.
EVENT_ROWS_PER_GROUP = 32_768


@dataclass(frozen=True)
class JobPlan:
    """A planned job: where its files go and how many partitions it has."""

    settings: ScoringSettings
    model_version: str
    staging: Path
    target: Path
    partitions: int
    fingerprint: str
    input_kind: str                      # "store" or "precomputed"
    counts: dict = field(default_factory=dict)
    reused: bool = False                 # found in staging, left by an earlier run

    def users_file(self, index: int) -> Path:
        return self.staging / "users" / f"part-{index:05d}.parquet"

    def events_dir(self, index: int) -> Path:
        return self.staging / "events" / f"partition={index}"

    def input_file(self, index: int) -> Path:
        return self.staging / "inputs" / f"part-{index:05d}.parquet"

    def part_file(self, index: int) -> Path:
        return self.staging / "parts" / f"part-{index:05d}.parquet"

    def part_summary_file(self, index: int) -> Path:
        return self.staging / "parts" / f"part-{index:05d}.json"

    def unavailable(self) -> np.ndarray:
        return load_file(self.staging / "catalogue.safetensors")["unavailable"].numpy()

    def to_dict(self) -> dict:
        return {"model_version": self.model_version, "partitions": self.partitions, "fingerprint": self.fingerprint,
                "input_kind": self.input_kind, "counts": self.counts, "settings": self.settings.to_dict()}


def _file_digest(path: str | Path | None) -> str | None:
    if path is None:
        return None
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def job_fingerprint(settings: ScoringSettings) -> str:
    """Hash everything a job's output depends on: export, store, users, catalogue and settings."""
    store_manifest = Path(settings.store_dir) / "manifest.json" if settings.store_dir else None
    parts = {
        "format": PLAN_FORMAT_VERSION,
        "export": _file_digest(Path(settings.export_dir) / "manifest.json"),
        "store": _file_digest(store_manifest),
        "users": [settings.users.kind, settings.users.value,
                  _file_digest(settings.users.value) if settings.users.kind == "list" else None],
        "catalogue": _file_digest(settings.catalogue),
        "k": settings.k, "partition_users": settings.partition_users,
        "user_chunk": settings.user_chunk, "item_chunk": settings.item_chunk, "run_date": settings.run_date,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _paths(settings: ScoringSettings) -> tuple[str, Path, Path]:
    export_dir = Path(settings.export_dir)
    check_export_folder(export_dir)
    model_version = str(atomic.read_json(export_dir / "manifest.json")["model_version"])
    output_dir = Path(settings.output_dir)
    return (model_version, staging_folder(output_dir, settings.run_date, model_version),
            run_folder(output_dir, settings.run_date, model_version))


def _reuse(settings: ScoringSettings, staging: Path, target: Path, fingerprint: str) -> JobPlan | None:
    """Return the plan left in ``staging`` when it has this fingerprint; drop its parts unless resuming."""
    path = staging / PLAN_FILE
    if not path.is_file():
        return None
    saved = atomic.read_json(path)
    if saved.get("fingerprint") != fingerprint:
        return None
    if not settings.resume:
        shutil.rmtree(staging / "parts", ignore_errors=True)
    return JobPlan(settings, saved["model_version"], staging, target, int(saved["partitions"]), fingerprint,
                   saved["input_kind"], saved.get("counts", {}), reused=True)


def plan_job(settings: ScoringSettings) -> JobPlan:
    """Plan ``settings``, or reuse the plan an interrupted run with the same fingerprint left."""
    model_version, staging, target = _paths(settings)
    fingerprint = job_fingerprint(settings)
    reused = _reuse(settings, staging, target, fingerprint)
    if reused is not None:
        return reused
    if settings.store_dir is None:
        raise FileNotFoundError(
            f"no store_dir given and no prepared inputs with fingerprint {fingerprint} in {staging}; "
            "pass the store to score from, or call prepare_precomputed first")
    if not (Path(settings.store_dir) / "manifest.json").is_file():
        raise FileNotFoundError(f"not a store: {Path(settings.store_dir) / 'manifest.json'} is missing")

    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    catalogue = catalogue_view(Path(settings.export_dir), Path(settings.store_dir),
                               Path(settings.catalogue) if settings.catalogue else None)
    save_file({"unavailable": torch.from_numpy(catalogue.unavailable)}, str(staging / "catalogue.safetensors"))
    users, counts = _resolve_users(settings)
    plan = JobPlan(settings, model_version, staging, target, math.ceil(users.num_rows / settings.partition_users),
                   fingerprint, "store", {**counts, "new_items": catalogue.new_items,
                                          "unavailable_items": catalogue.unavailable_items})
    _stage_users(plan, users)
    _stage_events(plan, users, catalogue)
    atomic.write_json(staging / PLAN_FILE, plan.to_dict())
    return plan


def prepare_precomputed(settings: ScoringSettings, partitions: Iterable[PartitionInput],
                        unavailable: np.ndarray | None = None) -> JobPlan:
    """Stage inputs that already carry user vectors, for a job without a store.

    Each item of ``partitions`` becomes one partition; it is consumed one at a time, so a
    generator keeps memory to one partition.
    """
    if settings.store_dir is not None:
        raise ValueError(f"prepare_precomputed needs settings without a store_dir, got {settings.store_dir!r}")
    model_version, staging, target = _paths(settings)
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "inputs").mkdir(parents=True)
    num_items = len(vocabulary_ids(Path(settings.export_dir), "items"))
    mask = np.zeros(num_items, dtype=bool) if unavailable is None else np.asarray(unavailable, dtype=bool)
    save_file({"unavailable": torch.from_numpy(mask)}, str(staging / "catalogue.safetensors"))
    plan = JobPlan(settings, model_version, staging, target, 0, job_fingerprint(settings), "precomputed")
    users = count = 0
    for data in partitions:
        write_input_file(plan.input_file(count), data)
        users += len(data)
        count += 1
    plan = JobPlan(settings, model_version, staging, target, count, plan.fingerprint, "precomputed",
                   {"users": users, "new_items": 0, "unavailable_items": int(mask.sum())})
    atomic.write_json(staging / PLAN_FILE, plan.to_dict())
    return plan


def _resolve_users(settings: ScoringSettings) -> tuple[pa.Table, dict]:
    """Return one row per selected user (store row order, then ids unknown to the store) and counts."""
    export_dir, store_dir = Path(settings.export_dir), Path(settings.store_dir)
    spec = atomic.read_json(export_dir / "model.json")
    export_ids = vocabulary_ids(export_dir, "users")
    store_vocabulary = pq.read_table(store_dir / "vocab" / "users.parquet").sort_by("index")
    store_ids = store_vocabulary.column("id").combine_chunks()
    deleted = (store_vocabulary.column("deleted").to_numpy(zero_copy_only=False)
               if "deleted" in store_vocabulary.column_names else np.zeros(len(store_ids), dtype=bool))
    deleted = deleted | (pc.equal(store_ids, "").to_numpy(zero_copy_only=False))
    counts = {"deleted_users": 0, "duplicate_ids": 0, "ids_not_in_store": 0}

    if settings.users.kind == "list":
        listed = _read_user_list(Path(settings.users.value))
        unique = pc.unique(listed)
        counts["duplicate_ids"] = len(listed) - len(unique)
        store_rows = index_in(unique, store_ids)
        export_rows = index_in(unique, export_ids)
        # An id the store no longer has but the export does is a deleted user when its row is a tombstone.
        in_range = (export_rows >= 0) & (export_rows < len(store_ids))
        was_deleted = (store_rows < 0) & in_range & deleted[np.where(in_range, export_rows, 0)]
        counts["deleted_users"] = int(was_deleted.sum())
        found = np.flatnonzero(store_rows >= 0)
        found = found[np.argsort(store_rows[found], kind="stable")]
        missing = np.flatnonzero((store_rows < 0) & ~was_deleted)
        counts["ids_not_in_store"] = len(missing)
        order = np.concatenate([found, missing])
        rows_store = store_rows[order]
        rows_ids = unique.take(pa.array(order))
        rows_export = export_rows[order]
    else:
        rows_store = np.flatnonzero(~deleted)
        rows_ids = store_ids.take(pa.array(rows_store))
        rows_export = index_in(rows_ids, export_ids)

    # With a segment spec, every attribute column is read: the spec may use any of them.
    columns = None if spec.get("segment_spec") else encoder_names(spec)
    features = user_features(spec, export_dir, _store_user_attributes(store_dir, rows_store, columns), rows_export)
    segments, slots, attributes = features.segments, features.slots, features.attributes
    counts["new_users_without_segment"] = features.new_users_without_segment
    if settings.users.kind == "segment":
        names = list(spec.get("segment_names", []))
        if settings.users.value not in names:
            raise ScoringInputError(f"segment {settings.users.value!r} is not in the export at {export_dir}; "
                                    f"its segments are {names}")
        keep = segments == names.index(settings.users.value)
        rows_store, rows_export, segments, slots, attributes = (
            rows_store[keep], rows_export[keep], segments[keep], slots[keep], attributes[keep])
        rows_ids = pc.filter(rows_ids, pa.array(keep))

    columns = {"user_id": rows_ids, "store_user": pa.array(rows_store), "export_user": pa.array(rows_export),
               "segment": pa.array(segments), "adapter_slot": pa.array(slots)}
    for column in range(attributes.shape[1]):
        columns[f"attribute_{column}"] = pa.array(attributes[:, column])
    counts["users"] = len(rows_store)
    counts["unknown_users"] = int((rows_export < 0).sum())
    return pa.table(columns), counts


def _read_user_list(path: Path) -> pa.Array:
    if not path.is_file():
        raise FileNotFoundError(f"user list not found: {path}")
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise ScoringInputError(f"user list {path} is not a parquet file ({error}); write the ids as parquet "
                                f"with a user_id column") from error
    if "user_id" not in schema.names:
        raise ScoringInputError(f"user list {path} needs a user_id column, found {schema.names}")
    ids = pq.read_table(path, columns=["user_id"]).column("user_id").combine_chunks()
    try:
        ids = ids.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise ScoringInputError(f"user list {path}: column user_id has type {ids.type}, expected strings or "
                                f"integers") from error
    empty = pc.fill_null(pc.equal(ids, ""), True).to_numpy(zero_copy_only=False)
    if empty.any():
        raise ScoringInputError(f"user list {path}: {int(empty.sum())} empty or null user_id value(s), the first "
                                f"at row {int(np.flatnonzero(empty)[0])}; remove them or fill them in")
    return ids


def _store_user_attributes(store_dir: Path, rows_store: np.ndarray, names: list[str] | None) -> pa.Table:
    """Return attributes of ``rows_store`` (nulls for -1 and for users without a row); None: all."""
    path = store_dir / "users.parquet"
    columns = [n for n in pq.read_schema(path).names if n not in ("user_id", "user_idx")] if path.is_file() else []
    available = [n for n in columns if names is None or n in names]
    if not available:
        return pa.table({"_row": pa.array(np.arange(len(rows_store)))}).drop_columns(["_row"])
    table = pq.read_table(path, columns=["user_idx", *available])
    position = np.full(int(max(table.column("user_idx").to_numpy().max(initial=-1), rows_store.max(initial=-1))) + 1,
                       -1, dtype=np.int64)
    position[table.column("user_idx").to_numpy()] = np.arange(table.num_rows)
    at = np.where(rows_store >= 0, position[np.maximum(rows_store, 0)], -1)
    index = pa.array(at, mask=at < 0)
    return pa.table({name: table.column(name).take(index) for name in available})


def _stage_users(plan: JobPlan, users: pa.Table) -> None:
    (plan.staging / "users").mkdir(parents=True, exist_ok=True)
    size = plan.settings.partition_users
    for index in range(plan.partitions):
        pq.write_table(users.slice(index * size, size), plan.users_file(index))


def _stage_events(plan: JobPlan, users: pa.Table, catalogue: CatalogueView) -> None:
    """Copy the events of the selected users from the store, grouped by partition, in one streamed pass."""
    folder = Path(plan.settings.store_dir) / "interactions"
    if plan.partitions == 0 or not folder.is_dir():
        return
    rows_store = users.column("store_user").to_numpy()
    partition_of = np.full(int(rows_store.max(initial=-1)) + 1, -1, dtype=np.int32)
    selected = rows_store >= 0
    partition_of[rows_store[selected]] = (np.flatnonzero(selected) // plan.settings.partition_users).astype(np.int32)
    item_map = catalogue.store_to_export

    def batches():
        dataset = ds.dataset(folder, format="parquet", schema=INTERACTION_SCHEMA, partitioning="hive")
        scan = dataset.to_batches(columns=["user_idx", "item_idx", "timestamp", "ingest_order"],
                                  batch_readahead=2, fragment_readahead=1)
        for batch in scan:
            user = batch.column("user_idx").to_numpy()
            part = np.where(user < len(partition_of), partition_of[np.minimum(user, len(partition_of) - 1)], -1)
            keep = part >= 0
            if not keep.any():
                continue
            store_item = batch.column("item_idx").to_numpy()[keep]
            in_map = store_item < len(item_map)
            item = np.where(in_map, item_map[np.where(in_map, store_item, 0)] if len(item_map) else -1, -1)
            yield pa.record_batch([
                pa.array(part[keep]), pa.array(user[keep]), pa.array(item),
                pa.array(pc.cast(batch.column("timestamp"), pa.int64()).to_numpy()[keep]),
                pa.array(batch.column("ingest_order").to_numpy()[keep]),
            ], schema=EVENT_SCHEMA)

    ds.write_dataset(
        batches(), plan.staging / "events", schema=EVENT_SCHEMA, format="parquet",
        partitioning=ds.partitioning(pa.schema([("partition", pa.int32())]), flavor="hive"),
        max_partitions=plan.partitions + 1, max_open_files=min(plan.partitions + 1, 512),
        min_rows_per_group=EVENT_ROWS_PER_GROUP, max_rows_per_group=4 * EVENT_ROWS_PER_GROUP,
        existing_data_behavior="overwrite_or_ignore", basename_template="part-{i}.parquet",
    )
