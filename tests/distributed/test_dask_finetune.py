"""Per-segment fine-tuning fanned out over a local Dask cluster of two worker processes."""

import os
import shutil
from pathlib import Path

import pytest
import torch

from flows.retrain import retrain_flow
from flows.score import task_runner
from recsys_peft.adapters.lora import LoRAConfig
from recsys_peft.config import PipelineConfig
from recsys_peft.registry.store import Registry
from recsys_peft.retraining.config import RetrainConfig
from recsys_peft.training.finetune import FinetuneConfig
from recsys_peft.training.loop import TrainConfig

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_dask_fans_out_segments(prefect_harness, synthetic_log, tmp_path, monkeypatch):
    raw_dir = tmp_path / "raw"
    shutil.copytree(synthetic_log.folder, raw_dir)
    config = PipelineConfig(
        source_spec=str(raw_dir / "spec.yaml"), segment_spec=str(ROOT / "features" / "segments" / "gender_x_age.yaml"),
        raw_dir=str(raw_dir), work_dir=str(tmp_path / "work"), fetch_movielens=False,
        model_overrides={"embedding_dim": 16, "hidden_dim": 32, "history_length": 10, "recent_length": 3},
        pretrain=TrainConfig(epochs=2, batch_size=64, learning_rate=5e-3),
        finetune=FinetuneConfig(lora=LoRAConfig(r=4, alpha=8.0),
                                train=TrainConfig(epochs=2, batch_size=32, learning_rate=1e-2), min_users=5),
        retraining=RetrainConfig(min_holdout_users=5),
    )
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
