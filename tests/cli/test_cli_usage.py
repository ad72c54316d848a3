"""Argument parsing, config resolution and exit codes of the commands, without running a flow."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from recsys_peft.cli import app

ROOT = Path(__file__).resolve().parents[2]
PIPELINE_COMMANDS = ("run", "demo", "train", "finetune", "evaluate")


@pytest.fixture(autouse=True)
def in_repository(monkeypatch):
    monkeypatch.chdir(ROOT)


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


HELP_COMMANDS = PIPELINE_COMMANDS + ("report", "export", "score", "ingest", "delete-user", "generate",
                                     "registry list", "registry promote", "registry rollback")


@pytest.mark.parametrize("command", HELP_COMMANDS)
def test_help_shows_example(command):
    result = invoke(*command.split(), "--help")

    assert result.exit_code == 0, result.output
    assert f"Example: recsys-peft {command}" in " ".join(result.output.split())


@pytest.mark.parametrize("command", PIPELINE_COMMANDS)
def test_dry_run_prints_resolved_config(command):
    result = invoke(command, "--dry-run", "--set", "pretrain.epochs=3", "--work-dir", "/tmp/elsewhere")

    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("resolved config:\n")
    assert "  work_dir: /tmp/elsewhere\n" in result.stderr
    assert "epochs: 3," in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("args, message", [
    (("--set", "pretrain.epoch=3"), "error: command line: unknown key pretrain.epoch; did you mean pretrain.epochs?"),
    (("--set", "model_overrides.hiden_dim=3"), "error: model_overrides.hiden_dim is not a setting of model two_tower; "
                                               "did you mean model_overrides.hidden_dim?"),
    (("--set", "segment_spec=features/segments/absent.yaml"),
     "error: segment_spec: file not found: features/segments/absent.yaml"),
    (("--model", "gpt"), "model must be one of ['sasrec', 'two_tower'], got 'gpt'"),
])
def test_bad_config_exits_2_with_one_line(args, message):
    result = invoke("train", "--dry-run", *args)

    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_yaml_error_names_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model: two_tower\npretrain: {epochs: 3\n", encoding="utf-8")

    result = invoke("run", "--config", str(path))

    assert result.exit_code == 2
    assert f"error: config file {path}: invalid YAML at line 3" in result.stderr


def test_debug_shows_traceback():
    result = invoke("train", "--dry-run", "--debug", "--set", "top_k=0")

    assert result.exit_code == 2
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == \
        "error: command line: invalid value: top_k must be at least 1, got 0"


def test_unknown_option_is_usage_error():
    result = invoke("train", "--epochs", "3")

    assert result.exit_code == 2


def test_report_without_metrics_exits_2(tmp_path):
    result = invoke("report", "--work-dir", str(tmp_path))

    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: no metrics in {tmp_path}: {tmp_path / 'metrics.json'} is missing; "
                                     f"run `recsys-peft evaluate` or `recsys-peft run` first")


def test_ingest_without_source_or_config_exits_2():
    result = invoke("ingest")

    assert result.exit_code == 2
    assert result.stderr.strip() == "error: pass SOURCE with --store, or --config for the config's raw_dir and store"
