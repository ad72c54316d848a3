"""Collect what the report shows from a pipeline's work folder; only files are read, no model runs.

    metrics.json                 per-segment and overall metrics with bootstrap intervals (required)
    config.json                  the resolved config of the run
    models/base/model.json       the base model's training history and size
    models/adapters/*/adapter.json  each segment's adapter record: rank, parameters, seconds, bytes
    store/                       data set statistics and the sample users' histories
    recommendations/             the sample users' top-K lists
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recsys_peft import atomic
from recsys_peft.ingest.store import read_interactions

HISTORY_SHOWN = 5


@dataclass
class SampleUser:
    """One user's recent history (before the held-out test event) and top-K list."""

    user_id: str
    segment: str
    history: list[dict]
    held_out: dict | None
    recommendations: list[dict]


@dataclass
class ReportInputs:
    work_dir: Path
    metrics: dict
    config: dict = field(default_factory=dict)
    base: dict = field(default_factory=dict)
    adapters: list[dict] = field(default_factory=list)
    store: dict = field(default_factory=dict)
    samples: list[SampleUser] = field(default_factory=list)


def _item_titles(store_dir: Path) -> dict[str, str]:
    path = store_dir / "items.parquet"
    if not path.is_file():
        return {}
    table = pq.read_table(path)
    if "title" not in table.column_names:
        return {}
    return dict(zip(table.column("item_id").to_pylist(), table.column("title").to_pylist()))


def _store_stats(store_dir: Path) -> dict:
    manifest = atomic.read_json(store_dir / "manifest.json")
    stats = {key: manifest[key] for key in ("rows", "users", "items", "partitions", "vocabulary_version",
                                            "source_spec") if key in manifest}
    if stats.get("users") and stats.get("items"):
        stats["density"] = stats["rows"] / (stats["users"] * stats["items"])
    return stats


def _sample_users(work_dir: Path, count: int) -> list[SampleUser]:
    """Pick the first user (by id) of the first ``count`` segments in the recommendations."""
    recommendations_dir = work_dir / "recommendations"
    store_dir = work_dir / "store"
    if not recommendations_dir.is_dir() or not (store_dir / "interactions").is_dir():
        return []
    table = pq.read_table(recommendations_dir, columns=["user_id", "item_id", "rank", "score", "segment"])
    chosen: dict[str, str] = {}
    for user_id, segment in sorted(set(zip(table.column("user_id").to_pylist(),
                                           table.column("segment").to_pylist())), key=lambda p: p[0]):
        label = segment or "(base model)"
        if label not in chosen.values() and len(chosen) < count:
            chosen[user_id] = label
    events = read_interactions(store_dir)
    titles = _item_titles(store_dir)
    samples = []
    for user_id, segment in chosen.items():
        mine = events.filter(pc.equal(events.column("user_id"), user_id))
        rows = [{"item_id": item, "title": titles.get(item, ""), "time": str(time)}
                for item, time in zip(mine.column("item_id").to_pylist(), mine.column("timestamp").to_pylist())]
        # Leave-one-out by time: the last event is the test target the list was scored before.
        held_out = rows[-1] if rows else None
        recs = table.filter(pc.equal(table.column("user_id"), user_id)).sort_by("rank")
        top = [{"rank": rank, "item_id": item, "title": titles.get(item, ""), "score": score,
                "is_held_out": held_out is not None and item == held_out["item_id"]}
               for rank, item, score in zip(recs.column("rank").to_pylist(), recs.column("item_id").to_pylist(),
                                            recs.column("score").to_pylist())]
        samples.append(SampleUser(user_id, segment, rows[-1 - HISTORY_SHOWN:-1][::-1], held_out, top))
    return samples


def _adapter_records(work_dir: Path) -> list[dict]:
    folder = work_dir / "models" / "adapters"
    records = [atomic.read_json(path) for path in sorted(folder.glob("*/adapter.json"))] if folder.is_dir() else []
    return sorted(records, key=lambda r: r.get("segment_index", 0))


def collect(work_dir: str | Path, sample_users: int = 3) -> ReportInputs:
    """Read the report's inputs from ``work_dir``; only ``metrics.json`` must exist."""
    work_dir = Path(work_dir)
    metrics_path = work_dir / "metrics.json"
    if not metrics_path.is_file():
        raise FileNotFoundError(f"no metrics in {work_dir}: {metrics_path} is missing; run the evaluate stage first")
    inputs = ReportInputs(work_dir, atomic.read_json(metrics_path))
    if (work_dir / "config.json").is_file():
        inputs.config = atomic.read_json(work_dir / "config.json")
    if (work_dir / "models" / "base" / "model.json").is_file():
        inputs.base = atomic.read_json(work_dir / "models" / "base" / "model.json")
    inputs.adapters = _adapter_records(work_dir)
    if (work_dir / "store" / "manifest.json").is_file():
        inputs.store = _store_stats(work_dir / "store")
    try:
        inputs.samples = _sample_users(work_dir, sample_users)
    except (pa.ArrowInvalid, FileNotFoundError, KeyError):
        # NOTE: a partly written work folder still gets a report, without the sample users.
        inputs.samples = []
    return inputs
