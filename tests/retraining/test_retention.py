"""Retention of recommendation runs, quarantine files and run records; the lock; earlier scores."""

from datetime import date, datetime, timezone

import pytest

from recsys_peft import atomic
from recsys_peft.registry.lock import LockTimeout, file_lock
from recsys_peft.retraining.history import previous_score, runs_folder, save_run_record
from recsys_peft.retraining.retention import prune_quarantine, prune_recommendations, prune_run_records


def make_run(output_dir, run_date: str) -> None:
    folder = output_dir / f"run_date={run_date}" / "model_version=two_tower-abc"
    folder.mkdir(parents=True)
    (folder / "part-0.parquet").write_bytes(b"")


def test_old_recommendation_runs_removed(tmp_path):
    for run_date in ("2026-10-01", "2026-10-20", "2026-11-01"):
        make_run(tmp_path, run_date)
    atomic.write_json(tmp_path / "_LATEST.json", {"path": "x", "run_date": "2026-11-01"})

    removed = prune_recommendations(tmp_path, keep_days=14, today=date(2026, 11, 2))

    assert removed == ["run_date=2026-10-01"]
    assert sorted(p.name for p in tmp_path.glob("run_date=*")) == ["run_date=2026-10-20", "run_date=2026-11-01"]


def test_latest_recommendation_run_kept(tmp_path):
    make_run(tmp_path, "2026-01-01")
    atomic.write_json(tmp_path / "_LATEST.json", {"path": "x", "run_date": "2026-01-01"})

    removed = prune_recommendations(tmp_path, keep_days=1, today=date(2026, 11, 2))

    assert removed == []
    assert (tmp_path / "run_date=2026-01-01").is_dir()


def test_old_quarantine_removed(tmp_path):
    (tmp_path / "quarantine").mkdir()
    for run, started in (("run-000001", "2026-09-01T00:00:00+00:00"), ("run-000002", "2026-11-01T00:00:00+00:00")):
        (tmp_path / "quarantine" / f"{run}.parquet").write_bytes(b"")
        atomic.write_json(tmp_path / "runs" / f"{run}.json", {"started_at": started})
    (tmp_path / "quarantine" / "run-000003.parquet").write_bytes(b"")  # no run manifest: kept

    removed = prune_quarantine(tmp_path, keep_days=30, now=datetime(2026, 11, 2, tzinfo=timezone.utc))

    assert removed == ["run-000001.parquet"]
    assert sorted(p.name for p in (tmp_path / "quarantine").iterdir()) == ["run-000002.parquet",
                                                                          "run-000003.parquet"]


def test_run_records_keep_newest(tmp_path):
    for day in range(1, 6):
        save_run_record(tmp_path, {"run_key": f"k{day}", "finished_at": f"2026-11-0{day}T00:00:00+00:00"})

    removed = prune_run_records(tmp_path, keep=2)

    assert len(removed) == 3
    assert sorted(p.name for p in runs_folder(tmp_path).iterdir()) == [
        "20261104T000000-k4.json", "20261105T000000-k5.json"]


def test_held_lock_times_out(tmp_path):
    with file_lock(tmp_path):
        with pytest.raises(LockTimeout, match="was held by another process for more than 0 s"):
            with file_lock(tmp_path, timeout_seconds=0.2):
                pass

    with file_lock(tmp_path, timeout_seconds=0.2):
        assert (tmp_path / ".promotion.lock").is_file()


def test_previous_score_newest_first():
    records = [
        {"release_id": "r1", "outcome": "promoted", "holdout_metrics": {"candidate": {"ndcg@10": 0.30}}},
        {"promoted_before": "r1", "outcome": "kept",
         "holdout_metrics": {"candidate": {"ndcg@10": 0.10}, "promoted": {"ndcg@10": 0.25}}},
        {"promoted_before": "r1", "outcome": "unchanged", "holdout_metrics": {}},
    ]

    assert previous_score(records, "r1") == 0.25
    assert previous_score(records[:1], "r1") == 0.30
    assert previous_score(records, "r2") is None
