"""The generate, ingest and delete-user commands, end to end on a small generated log."""

from typer.testing import CliRunner

from recsys_peft.cli import app
from recsys_peft.ingest.store import read_interactions


def test_cli_generate_ingest_delete(tmp_path):
    runner = CliRunner()
    raw, store = tmp_path / "raw", tmp_path / "store"

    generated = runner.invoke(app, ["generate", str(raw), "--rows", "2000", "--users", "40", "--items", "30"])
    first = runner.invoke(app, ["ingest", str(raw), "--spec", str(raw / "spec.yaml"), "--store", str(store)])
    second = runner.invoke(app, ["ingest", str(raw), "--spec", str(raw / "spec.yaml"), "--store", str(store)])
    deleted = runner.invoke(app, ["delete-user", "u0", "--store", str(store)])

    assert generated.exit_code == 0, generated.output
    assert "generate rows=2000 users=40 items=30" in generated.output
    assert first.exit_code == 0, first.output
    assert "files_ingested=3 files_skipped=0 rows_read=2000" in first.output
    assert second.exit_code == 0, second.output
    assert "files_ingested=0 files_skipped=3 rows_read=0" in second.output
    assert deleted.exit_code == 0, deleted.output
    assert "u0" not in read_interactions(store).column("user_id").to_pylist()


def test_cli_ingest_error_exit_code(tmp_path):
    result = CliRunner().invoke(app, ["ingest", str(tmp_path), "--store", str(tmp_path / "store")])

    assert result.exit_code == 2
    assert "no recognized data set" in result.output


def test_cli_ingest_bad_data_exits_1(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "events.csv").write_text("user,item,ts\nu1,a,100\nu2,b,200,extra\n", encoding="utf-8")
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: t\nformat: csv\ninteractions:\n  file: events.csv\n"
                    "  columns: {user_id: user, item_id: item, timestamp: ts}\n", encoding="utf-8")

    result = CliRunner().invoke(app, ["ingest", str(raw), "--store", str(tmp_path / "store"), "--spec", str(spec)])

    assert result.exit_code == 1
    assert "events.csv: cannot be read as csv (line 3): CSV parse error" in result.stderr


def test_cli_delete_empty_id_exits_2(tmp_path):
    result = CliRunner().invoke(app, ["delete-user", "", "--store", str(tmp_path / "store")])

    assert result.exit_code == 2
    assert result.stderr.strip() == "error: user ids must not be empty"
