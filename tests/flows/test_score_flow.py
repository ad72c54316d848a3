"""The scoring flow on each task runner: threads, a process pool and a local Dask cluster."""

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from flows.score import run_score_flow, task_runner
from recsys_peft.scoring.output import LATEST_FILE, read_latest
from recsys_peft.scoring.settings import ScoringSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def settings_for(export_dir, store, output_dir: Path) -> ScoringSettings:
    return ScoringSettings(export_dir=str(export_dir), output_dir=str(output_dir), store_dir=str(store.store_dir),
                           k=4, run_date="2026-11-01", partition_users=30, user_chunk=16, item_chunk=64,
                           torch_threads=1)


def read_run(path: str):
    return pq.read_table(path).sort_by([("user_id", "ascending"), ("rank", "ascending")])


def assert_same_recommendations(path: str, expected_path: str) -> None:
    """Check two runs row by row; scores may differ in the last float32 bit between processes."""
    actual, expected = read_run(path), read_run(expected_path)
    for column in ("user_id", "item_id", "rank", "segment", "model_version", "run_date"):
        assert actual.column(column).equals(expected.column(column)), column
    np.testing.assert_allclose(actual.column("score").to_numpy(), expected.column("score").to_numpy(), atol=1e-6)


@pytest.fixture(scope="module")
def threads_run(prefect_harness, export_dir, store, tmp_path_factory) -> dict:
    output = tmp_path_factory.mktemp("threads")
    return run_score_flow(settings_for(export_dir, store, output), runner="threads", workers=2)


def test_threads_flow_writes_run(threads_run):
    output = Path(threads_run["path"]).parents[1]

    table = read_run(threads_run["path"])

    assert threads_run["users"] == 120
    assert threads_run["partitions"] == 4
    assert table.num_rows == 120 * 4
    assert (Path(threads_run["path"]) / "_SUCCESS.json").is_file()
    assert (output / LATEST_FILE).is_file()
    assert read_latest(output)["model_version"] == threads_run["model_version"]


def test_processes_flow_same_output(threads_run, prefect_harness, export_dir, store, tmp_path):
    summary = run_score_flow(settings_for(export_dir, store, tmp_path), runner="processes", workers=2)

    assert_same_recommendations(summary["path"], threads_run["path"])
    assert len(summary["peak_rss_bytes_by_process"]) >= 2


def test_dask_flow_same_output(threads_run, prefect_harness, export_dir, store, tmp_path):
    summary = run_score_flow(settings_for(export_dir, store, tmp_path), runner="dask", workers=2)

    assert_same_recommendations(summary["path"], threads_run["path"])
    assert summary["counts"] == threads_run["counts"]


def test_unknown_runner_rejected():
    with pytest.raises(ValueError, match=r"runner must be one of \['threads', 'processes', 'dask'\], got 'ray'"):
        task_runner("ray", 2)
