"""The retraining flow end to end: promote a better candidate, keep a worse one, retrain one segment."""

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import torch

from typer.testing import CliRunner

from flows.retrain import retrain_flow
from recsys_peft.cli import app
from recsys_peft.registry.store import Registry
from recsys_peft.retraining.history import OVERALL, load_run_records, metric_history, save_run_record
from tests.retraining.configs import tiny_retrain_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def append_events(raw_dir: Path, user: str, items: list[str], start: int) -> None:
    """Append events of one user to the raw interactions file, one minute apart from ``start``."""
    path = raw_dir / "interactions.csv"
    table = pacsv.read_csv(path)
    extra = pa.table({"user": [user] * len(items), "item": items,
                      "ts": [start + 60 * i for i in range(len(items))], "rating": [5] * len(items)})
    pacsv.write_csv(pa.concat_tables([table, extra.cast(table.schema)]), path)


@pytest.fixture(scope="module")
def runs(prefect_harness, synthetic_log, tmp_path_factory):
    """Run the flow five times on one work folder; return the configs and each run's record."""
    raw_dir = tmp_path_factory.mktemp("retrain") / "raw"
    shutil.copytree(synthetic_log.folder, raw_dir)
    work_dir = raw_dir.parent / "work"
    good = tiny_retrain_config(raw_dir, work_dir, promotion_margin=0.01)
    weak = tiny_retrain_config(raw_dir, work_dir, learning_rate=1e-6, promotion_margin=0.01)
    records = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(torch, "set_num_threads", lambda threads: None)
        records["first"] = retrain_flow(weak, slot="test/first")
        records["better"] = retrain_flow(good, base_due=True, slot="test/better")
        records["worse"] = retrain_flow(weak, base_due=True, slot="test/worse")
        records["unchanged"] = retrain_flow(good, slot="test/unchanged")

        # New events for one user of a segment, on items the user has not seen.
        events = pacsv.read_csv(raw_dir / "interactions.csv")
        user = "u7"
        seen = set(np.asarray(events.filter(pa.compute.equal(events["user"], user))["item"]).tolist())
        new_items = [f"i{i}" for i in range(synthetic_log.num_items) if f"i{i}" not in seen][:4]
        append_events(raw_dir, user, new_items, int(np.asarray(events["ts"]).max()) + 3600)
        records["segment"] = retrain_flow(good, slot="test/segment")
    return good, records


def test_first_run_promotes(runs):
    config, records = runs
    first = records["first"]

    assert first["outcome"] == "promoted"
    assert first["reason"] == "no promoted release to compare against"
    assert first["plan"]["retrain_base"] is True
    assert len(first["adapters_trained"]) == 14


def test_better_candidate_promoted(runs):
    config, records = runs
    better = records["better"]
    metrics = better["holdout_metrics"]

    assert better["outcome"] == "promoted"
    assert better["promoted_before"] == records["first"]["release_id"]
    assert metrics["candidate"]["ndcg@10"] >= metrics["promoted"]["ndcg@10"] + 0.01
    assert better["promotion"]["promote"] is True


def test_worse_candidate_kept(runs):
    config, records = runs
    worse = records["worse"]
    registry = Registry(Path(config.work_dir) / "registry")

    assert worse["outcome"] == "kept"
    assert worse["reason"].startswith("kept the promoted release: candidate ndcg@10")
    assert worse["holdout_metrics"]["candidate"]["ndcg@10"] < worse["holdout_metrics"]["promoted"]["ndcg@10"]
    assert "release_id" not in worse
    assert registry.history()[:2] == [records["better"]["release_id"], records["first"]["release_id"]]


def test_training_cached_by_content(runs):
    config, records = runs

    # Same data, config and code as the first run: the base model and adapters are reused.
    assert records["worse"]["candidate"] == records["first"]["candidate"]


def test_unchanged_data_trains_nothing(runs):
    config, records = runs
    unchanged = records["unchanged"]

    assert unchanged["outcome"] == "unchanged"
    assert unchanged["reason"].startswith("nothing to retrain: vocabulary grew by 0.00%")
    assert "candidate" not in unchanged


def test_changed_segment_retrains_its_adapter(runs, snapshot):
    config, records = runs
    segment = records["segment"]
    user_segment = snapshot.segments.names[snapshot.segments.user_segments[snapshot.user_ids.index("u7")]]

    assert segment["plan"]["retrain_base"] is False
    assert [d["segment"] for d in segment["plan"]["segments"] if d["retrain"]] == [user_segment]
    assert segment["candidate"]["base_id"] == records["better"]["candidate"]["base_id"]
    assert [a["segment"] for a in segment["adapters_trained"]] == [user_segment]
    assert segment["outcome"] in ("promoted", "kept")
    assert segment["promotion"]["users"] >= 1


def test_every_run_recorded(runs):
    config, records = runs

    saved = load_run_records(config.work_dir)
    history = metric_history(config.work_dir)

    assert [r["run_key"] for r in saved] == [records[name]["run_key"] for name in records]
    overall = history[(history["segment"] == OVERALL) & (history["model"] == "candidate")]
    assert len(overall) == 4  # every run that trained a candidate
    assert set(history["model"]) == {"candidate", "promoted"}
    assert all("retention" in r for r in saved)


def test_repeated_slot_not_promoted_twice(runs, prefect_harness, monkeypatch):
    config, records = runs
    monkeypatch.setattr(torch, "set_num_threads", lambda threads: None)
    registry = Registry(Path(config.work_dir) / "registry")
    # Make the weak first release current again, so the cached better candidate beats it.
    while registry.history()[0] != records["first"]["release_id"]:
        registry.rollback()

    again = retrain_flow(config, base_due=True, slot="test/better")

    assert again["promotion"]["promote"] is True
    assert again["outcome"] == "kept"
    assert "slot 'test/better' was already promoted" in again["reason"]
    assert registry.history()[0] == records["first"]["release_id"]


def test_history_command_prints_runs(runs):
    config, records = runs

    result = CliRunner().invoke(app, ["history", "--set", f"work_dir={config.work_dir}"])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "candidate" in lines[0]
    assert "promoted" in lines[0]
    assert sum(line.split()[1] in ("promoted", "kept") for line in lines[2:]) >= 4


def test_drop_since_last_run_flagged(runs, prefect_harness, monkeypatch):
    config, records = runs
    monkeypatch.setattr(torch, "set_num_threads", lambda threads: None)
    current = Registry(Path(config.work_dir) / "registry").current().release_id
    # A record as if the current release had scored 0.99 when it was promoted.
    save_run_record(config.work_dir, {"run_key": "earlier", "release_id": current, "outcome": "promoted",
                                      "holdout_metrics": {"candidate": {"ndcg@10": 0.99}}})

    record = retrain_flow(config, base_due=True, slot="test/degraded")

    assert record["degraded"]["release_id"] == current
    assert record["degraded"]["previous_ndcg@10"] == 0.99
    assert record["degraded"]["ndcg@10"] == record["holdout_metrics"]["promoted"]["ndcg@10"]
