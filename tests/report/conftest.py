"""A small work folder for the report: handmade metrics and records, the session store, and two users' lists."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

SEGMENTS = ("F:25-34", "M:18-24", "M:35-44")


def _entry(ndcg: float, users: int) -> dict:
    return {"users": users, "ndcg@10": ndcg, "ndcg@10_ci95": [ndcg * 0.5, ndcg * 1.5], "hr@10": ndcg * 2,
            "hr@10_ci95": [ndcg, ndcg * 3]}


def make_metrics() -> dict:
    segments = {}
    for index, name in enumerate(SEGMENTS):
        base, adapted = 0.0713 + index * 0.0211, 0.0802 + index * 0.0193
        segments[name] = {"base": _entry(base, 40 + index), "adapted": _entry(adapted, 40 + index),
                          "paired_ndcg@10": {"mean_diff": adapted - base, "low": -0.01, "high": 0.03}}
    return {
        "protocol": "leave-one-out by time; full catalogue; seen items excluded; ties count against the model",
        "k": 10, "catalogue_items": 150, "model": "two_tower", "seed": 0, "base_parameters": 12345,
        "overall": {"base": _entry(0.0912, 120), "adapted": _entry(0.0977, 120),
                    "paired_ndcg@10": {"mean_diff": 0.0065, "low": -0.002, "high": 0.015}},
        "segments": segments,
        "adapters": {name: {"kept": i != 1, "reason": "r", "users": 40 + i, "trainable_parameters": 1472 + i}
                     for i, name in enumerate(SEGMENTS)},
    }


@pytest.fixture
def work_dir(tmp_path: Path, store) -> Path:
    work = tmp_path / "work"
    (work / "models" / "base").mkdir(parents=True)
    (work / "metrics.json").write_text(json.dumps(make_metrics()))
    (work / "config.json").write_text(json.dumps({"model": "two_tower", "seed": 0}))
    history = [{"epoch": 0, "loss": None, "valid_ndcg@10": 0.01, "seconds": 0.0}] + [
        {"epoch": e, "loss": 5.0 - e * 0.3, "valid_ndcg@10": 0.05 + e * 0.01, "seconds": 1.5} for e in range(1, 6)]
    (work / "models" / "base" / "model.json").write_text(json.dumps({"history": history, "weights_bytes": 4096}))
    for index, name in enumerate(SEGMENTS):
        folder = work / "models" / "adapters" / f"{index:02d}-{name.replace(':', '_')}"
        folder.mkdir(parents=True)
        (folder / "adapter.json").write_text(json.dumps({
            "segment": name, "segment_index": index, "users": 40 + index, "rank": 4, "kept": index != 1,
            "reason": "beats base on validation" if index != 1 else "not better than base", "train_seconds": 0.25,
            "weights_bytes": 6368 if index != 1 else 0, "trainable_parameters": 1472 + index}))
    (work / "store").symlink_to(store.store_dir, target_is_directory=True)
    recommendations = pa.table({
        "user_id": ["u3"] * 3 + ["u7"] * 3, "item_id": ["i1", "i2", "i3", "i4", "i5", "i6"],
        "rank": pa.array([1, 2, 3, 1, 2, 3], pa.int32()), "score": pa.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], pa.float32()),
        "segment": ["F:25-34"] * 3 + ["M:18-24"] * 3})
    (work / "recommendations").mkdir()
    pq.write_table(recommendations, work / "recommendations" / "part-0.parquet")
    return work
