"""The whole flow with the sequential model on a small generated log."""

import json
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from flows.pipeline import pipeline
from recsys_peft.adapters.lora import LoRAConfig
from recsys_peft.config import PipelineConfig
from recsys_peft.training.finetune import FinetuneConfig
from recsys_peft.training.loop import TrainConfig

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TOP_K = 5


@pytest.fixture(scope="module")
def sasrec_run(prefect_harness, synthetic_log, tmp_path_factory):
    config = PipelineConfig(
        source_spec=str(synthetic_log.spec_path),
        segment_spec=str(ROOT / "features" / "segments" / "gender_x_age.yaml"),
        raw_dir=str(synthetic_log.folder),
        work_dir=str(tmp_path_factory.mktemp("sasrec-flow")),
        fetch_movielens=False,
        model="sasrec",
        top_k=TOP_K,
        model_overrides={"embedding_dim": 16, "ffn_dim": 32, "max_length": 8, "num_layers": 1},
        pretrain=TrainConfig(epochs=2, batch_size=32, learning_rate=5e-3),
        finetune=FinetuneConfig(lora=LoRAConfig(r=2, alpha=4.0),
                                train=TrainConfig(epochs=2, batch_size=16, learning_rate=1e-2), min_users=5),
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(torch, "set_num_threads", lambda threads: None)
        paths = pipeline(config)
    return config, paths


def test_sasrec_flow_reports_both_models(sasrec_run):
    _, paths = sasrec_run
    report = json.loads(Path(paths["metrics"]).read_text())
    assert report["model"] == "sasrec"
    assert set(report["overall"]) >= {"base", "adapted", "paired_ndcg@10"}


def test_sasrec_export_names_family(sasrec_run):
    _, paths = sasrec_run
    manifest = json.loads((Path(paths["export"]) / "manifest.json").read_text())
    assert manifest["family"] == "sasrec"
    assert manifest["model_version"].startswith("sasrec-")
    assert manifest["parity"]["passed"] is True


def test_sasrec_recommends_top_k_each(sasrec_run, synthetic_log):
    _, paths = sasrec_run
    table = pq.read_table(paths["recommendations"])
    counts = pc.value_counts(table.column("user_id")).field("counts").to_pylist()
    assert len(counts) == synthetic_log.num_users
    assert set(counts) == {TOP_K}
