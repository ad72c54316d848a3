import json
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from flows.pipeline import pipeline
from recsys_peft.adapters.lora import LoRAConfig
from recsys_peft.config import PipelineConfig
from recsys_peft.dataset.synthetic import generate
from recsys_peft.training.finetune import FinetuneConfig
from recsys_peft.training.loop import TrainConfig

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TOP_K = 5


def flow_config(raw_dir: Path, spec_path: Path, work_dir: Path) -> PipelineConfig:
    return PipelineConfig(
        source_spec=str(spec_path),
        segment_spec=str(ROOT / "features" / "segments" / "gender_x_age.yaml"),
        raw_dir=str(raw_dir),
        work_dir=str(work_dir),
        fetch_movielens=False,
        top_k=TOP_K,
        model_overrides={"embedding_dim": 16, "hidden_dim": 32, "history_length": 10, "recent_length": 3},
        pretrain=TrainConfig(epochs=2, batch_size=64, learning_rate=5e-3),
        finetune=FinetuneConfig(lora=LoRAConfig(r=4, alpha=8.0),
                                train=TrainConfig(epochs=2, batch_size=32, learning_rate=1e-2), min_users=5),
    )


def keep_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    # The flow sets one torch thread per CPU. On a 2-core host shared with another job, that made
    # one run of this flow take 58-77 s instead of 2.5 s.
    monkeypatch.setattr(torch, "set_num_threads", lambda threads: None)


@pytest.fixture(scope="module")
def first_run(prefect_harness, synthetic_log, tmp_path_factory):
    """Run the flow once on the session log and return its config, output paths and recommendations."""
    config = flow_config(synthetic_log.folder, synthetic_log.spec_path, tmp_path_factory.mktemp("flow"))
    with pytest.MonkeyPatch.context() as monkeypatch:
        keep_one_thread(monkeypatch)
        paths = pipeline(config)
    return config, paths, pq.read_table(paths["recommendations"])


def test_flow_writes_metrics(first_run):
    config, paths, _ = first_run

    report = json.loads(Path(paths["metrics"]).read_text())

    assert Path(paths["metrics"]) == Path(config.work_dir) / "metrics.json"
    for model in ("base", "adapted"):
        assert 0.0 <= report["overall"][model]["ndcg@10"] <= 1.0, model
        assert report["overall"][model]["users"] == 120, model
    assert "paired_ndcg@10" in report["overall"]
    assert len(report["adapters"]) == 14


def test_flow_top_k_per_user(first_run, synthetic_log):
    _, _, table = first_run
    counts = pc.value_counts(table.column("user_id")).to_pylist()

    assert sorted(c["values"] for c in counts) == sorted(f"u{u}" for u in range(synthetic_log.num_users))
    assert {c["counts"] for c in counts} == {TOP_K}
    assert set(table.column("item_id").to_pylist()) <= {f"i{i}" for i in range(synthetic_log.num_items)}
    assert set(table.column("rank").to_pylist()) == set(range(1, TOP_K + 1))


def test_flow_export_parity_passed(first_run):
    _, paths, _ = first_run

    manifest = json.loads((Path(paths["export"]) / "manifest.json").read_text())

    assert manifest["parity"]["passed"] is True


def test_second_run_replaces(first_run, monkeypatch):
    config, paths, first_table = first_run
    keep_one_thread(monkeypatch)

    second = pipeline(config)

    out_dir = Path(second["recommendations"])
    table = pq.read_table(out_dir)
    assert out_dir == Path(paths["recommendations"])
    assert sorted(p.name for p in out_dir.iterdir()) == ["_SUCCESS.json", "part-0.parquet"]
    assert table.num_rows == first_table.num_rows == 120 * TOP_K
    # Same seed and data, so the same recommendations.
    for column in ("user_id", "item_id", "rank"):
        assert table.column(column).equals(first_table.column(column)), column


def test_missing_input_fails(prefect_harness, tmp_path, monkeypatch):
    log = generate(tmp_path / "raw", num_users=20, num_items=60, seed=1)
    (log.folder / "users.csv").unlink()
    config = flow_config(log.folder, log.spec_path, tmp_path / "work")
    keep_one_thread(monkeypatch)

    with pytest.raises(FileNotFoundError, match=r"input file not found: .*users\.csv"):
        pipeline(config)

    assert not (tmp_path / "work" / "store").exists()
    assert not (tmp_path / "work" / "recommendations").exists()
