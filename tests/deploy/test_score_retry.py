"""A retried scoring task finds its finished part, or replaces a half-finished one: no row twice."""

from collections import Counter

import pyarrow.compute as pc
import pytest

import flows.score
from recsys_peft import atomic
from recsys_peft.scoring.output import read_latest_run
from recsys_peft.scoring.settings import ScoringSettings

pytestmark = [pytest.mark.integration]


@pytest.mark.parametrize("fail_at", ["after_part", "after_summary"])
def test_retried_partition_no_duplicates(prefect_harness, export_dir, store, synthetic_log, tmp_path, monkeypatch,
                                         fail_at):
    settings = ScoringSettings(export_dir=str(export_dir), output_dir=str(tmp_path / "out"),
                               store_dir=str(store.store_dir), k=5, run_date="2026-11-02", partition_users=25)
    calls: Counter = Counter()
    score_partition, write_json = flows.score.score_partition, atomic.write_json

    def write_json_failing(path, payload):
        # Fails once, after partition 1's part file is written and before its summary is.
        if fail_at == "after_part" and path.name == "part-00001.json" and not calls["summary_failed"]:
            calls["summary_failed"] += 1
            raise ConnectionError("worker lost before writing its summary")
        write_json(path, payload)

    def score_failing(job, index):
        calls[index] += 1
        result = score_partition(job, index)
        if fail_at == "after_summary" and index == 1 and calls[index] == 1:
            raise ConnectionError("worker lost after finishing its partition")
        return result

    monkeypatch.setattr(atomic, "write_json", write_json_failing)
    monkeypatch.setattr(flows.score, "score_partition", score_failing)
    monkeypatch.setattr(flows.score, "score_one", flows.score.score_one.with_options(retries=1,
                                                                                     retry_delay_seconds=0))

    summary = flows.score.score_flow(settings)

    table = read_latest_run(tmp_path / "out")
    pairs = pc.binary_join_element_wise(table["user_id"], pc.cast(table["rank"], "string"), "/")
    assert calls[1] == 2
    assert summary["partitions"] == 5
    assert table.num_rows == synthetic_log.num_users * 5
    assert pc.count_distinct(pairs).as_py() == table.num_rows
    assert summary["partitions_reused"] == (1 if fail_at == "after_summary" else 0)
