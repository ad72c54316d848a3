"""``recsys-peft score``: options, exit codes and the flow run behind it."""

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from recsys_peft.cli import app


def invoke(*arguments: str):
    return CliRunner().invoke(app, ["score", *arguments])


def base_arguments(export_dir, store, out: Path) -> list[str]:
    return ["--export", str(export_dir), "--store", str(store.store_dir), "--out", str(out)]


@pytest.mark.integration
@pytest.mark.slow
def test_score_command_writes_run(prefect_harness, export_dir, store, tmp_path):
    result = invoke(*base_arguments(export_dir, store, tmp_path / "out"), "--runner", "threads", "--workers", "1",
                    "--top-k", "3", "--run-date", "2026-11-01")

    assert result.exit_code == 0, result.output
    path = Path(result.stdout.strip().splitlines()[-1].removeprefix("recommendations: "))
    assert path.parent.name == "run_date=2026-11-01"
    assert pq.read_table(path).num_rows == 120 * 3


def test_score_command_bad_date(export_dir, store, tmp_path):
    result = invoke(*base_arguments(export_dir, store, tmp_path / "out"), "--run-date", "01/11/2026")

    assert result.exit_code == 2
    assert result.stderr.strip() == "error: ScoringSettings.run_date must be a date as YYYY-MM-DD, got '01/11/2026'"


def test_score_command_two_selections(export_dir, store, tmp_path):
    result = invoke(*base_arguments(export_dir, store, tmp_path / "out"), "--segment", "F:25-34",
                    "--users", str(tmp_path / "ids.parquet"))

    assert result.exit_code == 2
    assert "give at most one of --segment and --users, got both" in result.stderr


def test_score_command_missing_export(store, tmp_path):
    result = invoke(*base_arguments(tmp_path / "nowhere", store, tmp_path / "out"))

    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: not an export folder: {tmp_path / 'nowhere' / 'model.json'} is missing"


def test_score_command_unknown_runner(export_dir, store, tmp_path):
    result = invoke(*base_arguments(export_dir, store, tmp_path / "out"), "--runner", "ray")

    assert result.exit_code == 2
    assert "runner must be one of ['threads', 'processes', 'dask'], got 'ray'" in result.stderr
