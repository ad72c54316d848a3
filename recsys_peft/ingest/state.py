"""The store as a run finds it: files ingested, vocabularies, partitions and counters."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq

from recsys_peft.ingest.store import EPOCH, SCHEMA_VERSION, INTERACTION_SCHEMA, read_manifest
from recsys_peft.ingest.vocab import Vocabulary

_PARTITION = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
_RUN = re.compile(r"^run-(\d+)\.json$")


@dataclass
class StoreState:
    """The store as a run finds it. An absent store, or one of an older schema, is empty.

    A store of an older schema version was always rebuilt whole from its input files, so a
    run that finds one starts afresh from the current files and replaces it.
    """

    store_dir: Path
    manifest: dict | None
    users: Vocabulary
    items: Vocabulary
    files: dict[str, dict] = field(default_factory=dict)  # relative path -> {"sha256", "bytes"}
    next_ingest_order: int = 0
    partitions: dict[int, Path] = field(default_factory=dict)  # day -> parquet file
    last_run: int = 0
    deleted_users: int = 0

    @property
    def current(self) -> bool:
        """Whether the store exists with the schema this version writes."""
        return self.manifest is not None

    @property
    def known_hashes(self) -> set[str]:
        return {entry["sha256"] for entry in self.files.values()}

    def partition_rows(self, day: int) -> int:
        path = self.partitions.get(day)
        return pq.read_metadata(path).num_rows if path is not None else 0

    @classmethod
    def load(cls, store_dir: Path) -> "StoreState":
        manifest = read_manifest(store_dir)
        last_run = _last_run(store_dir)
        if manifest is None or manifest.get("schema_version") != SCHEMA_VERSION:
            return cls(store_dir, None, Vocabulary("users", ()), Vocabulary("items", ()), last_run=last_run)
        return cls(
            store_dir=store_dir,
            manifest=manifest,
            users=Vocabulary.load(store_dir / "vocab", "users"),
            items=Vocabulary.load(store_dir / "vocab", "items"),
            files=dict(manifest["files"]),
            next_ingest_order=int(manifest["next_ingest_order"]),
            partitions=_partitions(store_dir),
            last_run=last_run,
            deleted_users=int(manifest.get("deleted_users", 0)),
        )


def _partitions(store_dir: Path) -> dict[int, Path]:
    folder = store_dir / "interactions"
    found = {}
    for path in sorted(folder.glob("date=*/part-0.parquet")) if folder.is_dir() else []:
        match = _PARTITION.match(path.parent.name)
        if match:
            found[(date.fromisoformat(match.group(1)) - EPOCH).days] = path
    return found


def _last_run(store_dir: Path) -> int:
    folder = store_dir / "runs"
    numbers = [int(m.group(1)) for p in folder.glob("run-*.json") if (m := _RUN.match(p.name))] if folder.is_dir() else []
    return max(numbers, default=0)


def schema_description() -> list[dict]:
    """Return the pinned interaction schema as written into manifests."""
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in INTERACTION_SCHEMA]
