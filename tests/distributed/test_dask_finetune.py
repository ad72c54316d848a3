"""Per-segment fine-tuning fanned out over a local Dask cluster of two worker processes."""

import os
import shutil
from pathlib import Path

import pytest
import torch

from flows.retrain import retrain_flow
from flows.score import task_runner
from recsys_peft.registry.store import Registry
from tests.retraining.configs import tiny_retrain_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_dask_fans_out_segments(prefect_harness, synthetic_log, tmp_path, monkeypatch):
    raw_dir = tmp_path / "raw"
    shutil.copytree(synthetic_log.folder, raw_dir)
    config = tiny_retrain_config(raw_dir, tmp_path / "work")
    monkeypatch.setattr(torch, "set_num_threads", lambda threads: None)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    on_dask = retrain_flow.with_options(task_runner=task_runner("dask", workers=2))

    record = on_dask(config, slot="test/dask")

    pids = {outcome["pid"] for outcome in record["adapters_trained"]}
    assert record["outcome"] == "promoted"
    assert len(record["adapters_trained"]) == 14
    assert len(pids) == 2
    assert os.getpid() not in pids
    loaded = Registry(Path(config.work_dir) / "registry").load_release()
    assert sorted(loaded.release.adapters) == sorted(a["segment"] for a in record["adapters_trained"])
