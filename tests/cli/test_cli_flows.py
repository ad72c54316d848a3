"""The stage commands run their Prefect flows: one whole run, then a stage that fails."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from recsys_peft.cli import app

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_config(synthetic_log, tmp_path_factory) -> Path:
    """A pipeline config for the session's synthetic log, small enough to train in seconds."""
    work_dir = tmp_path_factory.mktemp("cli-run")
    config = {
        "source_spec": str(synthetic_log.spec_path), "segment_spec": str(ROOT / "features/segments/gender_x_age.yaml"),
        "raw_dir": str(synthetic_log.folder), "work_dir": str(work_dir / "work"), "fetch_movielens": False,
        "top_k": 5, "model_overrides": {"embedding_dim": 16, "hidden_dim": 32, "history_length": 10,
                                        "recent_length": 3},
        "pretrain": {"epochs": 2, "batch_size": 64, "learning_rate": 0.005},
        "finetune": {"lora": {"r": 4, "alpha": 8.0}, "train": {"epochs": 2, "batch_size": 32, "learning_rate": 0.01}},
    }
    path = work_dir / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run_result(prefect_harness, tiny_config):
    with pytest.MonkeyPatch.context() as monkeypatch:
        # One torch thread, because the flow's default of one per CPU is slow on a shared 2-core host.
        monkeypatch.setattr(torch, "set_num_threads", lambda threads: None)
        result = CliRunner().invoke(app, ["run", "--config", str(tiny_config), "--set", "seed=1"])
    return result, Path(yaml.safe_load(tiny_config.read_text())["work_dir"])


def test_run_writes_every_output(run_result):
    result, work_dir = run_result

    assert result.exit_code == 0, result.output
    for name in ("metrics.json", "config.json", "report.html", "recommendations", "export", "registry"):
        assert (work_dir / name).exists(), name
    assert f"report:          {work_dir / 'report.html'}" in result.stdout


def test_run_saves_resolved_config_with_artifacts(run_result):
    _, work_dir = run_result

    saved = json.loads((work_dir / "config.json").read_text())
    metrics = json.loads((work_dir / "metrics.json").read_text())
    export = json.loads((work_dir / "export" / "manifest.json").read_text())

    assert saved["seed"] == 1
    assert saved["pretrain"]["seed"] == 1
    assert metrics["config"] == saved
    assert export["config"] == saved


def test_failed_stage_exits_1_with_one_line(run_result, tiny_config, monkeypatch):
    _, work_dir = run_result
    shutil.rmtree(work_dir / "models" / "base")
    monkeypatch.setattr(torch, "set_num_threads", lambda threads: None)

    result = CliRunner().invoke(app, ["finetune", "--config", str(tiny_config)])

    assert result.exit_code == 1
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: no base model in {work_dir / 'models' / 'base'}: run `recsys-peft train` with this "
                      f"config first"]


def test_ingest_flow_skips_known_files(run_result, tiny_config):
    result = CliRunner().invoke(app, ["ingest", "--config", str(tiny_config)])

    assert result.exit_code == 0, result.output
    assert "files_ingested=0 rows_written=0" in result.stdout
