"""``recsys-peft score``: options, exit codes and the flow run behind it."""

from pathlib import Path

import pyarrow as pa
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


@pytest.mark.integration
def test_score_command_unknown_segment_exits_2(prefect_harness, export_dir, store, tmp_path):
    result = invoke(*base_arguments(export_dir, store, tmp_path / "out"), "--runner", "threads", "--workers", "1",
                    "--segment", "XX")

    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: segment 'XX' is not in the export")
    assert "Traceback" not in result.stderr


@pytest.mark.integration
def test_score_command_csv_user_list_exits_2(prefect_harness, export_dir, store, tmp_path):
    ids = tmp_path / "ids.csv"
    ids.write_text("user_id\nu1\n", encoding="utf-8")

    result = invoke(*base_arguments(export_dir, store, tmp_path / "out"), "--runner", "threads", "--workers", "1",
                    "--users", str(ids))

    assert result.exit_code == 2
    assert f"error: user list {ids} is not a parquet file" in result.stderr


@pytest.mark.integration
def test_score_command_null_user_ids_exit_2(prefect_harness, export_dir, store, tmp_path):
    ids = tmp_path / "ids.parquet"
    pq.write_table(pa.table({"user_id": ["u1", None, ""]}), ids)

    result = invoke(*base_arguments(export_dir, store, tmp_path / "out"), "--runner", "threads", "--workers", "1",
                    "--users", str(ids))

    assert result.exit_code == 2
    assert "2 empty or null user_id value(s), the first at row 1" in result.stderr


@pytest.mark.integration
def test_score_command_terminal_bar(prefect_harness, export_dir, store, tmp_path, monkeypatch):
    import flows.score

    advanced = []
    monkeypatch.setattr(flows.score, "attached_to_terminal", lambda: True)
    monkeypatch.setattr(flows.score, "progress", lambda step, total, unit: _Recorder(step, total, advanced))

    result = invoke(*base_arguments(export_dir, store, tmp_path / "out"), "--runner", "threads", "--workers", "1",
                    "--partition-users", "50")

    assert result.exit_code == 0, result.output
    assert advanced == [50, 50, 20]


class _Recorder:
    """Stands in for the Rich bar: records each advance, so the test needs no terminal."""

    def __init__(self, step, total, advanced):
        assert (step, total) == ("score", 120)
        self.advanced = advanced

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def advance(self, steps):
        self.advanced.append(steps)
