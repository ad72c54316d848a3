"""Incremental runs: new files add only their dates, reruns change nothing, failures keep the store."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from recsys_peft.ingest.ingest import TooManyBadRowsError, ingest_source
from recsys_peft.ingest.store import read_interactions, read_quarantine
from recsys_peft.ingest.vocab import Vocabulary

DAY = 86_400
# Two events on 1970-01-02 and one on 1970-01-03.
FIRST_DAYS = "user,item,ts,rating\nu1,a,86400,5\nu2,b,86500,4\nu1,c,172800,3\n"
# One event on 1970-01-04 and a new user and item.
NEXT_DAY = "user,item,ts,rating\nu3,d,259200,1\nu1,a,259300,2\n"


def data_files(store: Path) -> dict[str, bytes]:
    """Every file of the store except run records, keyed by relative path."""
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*"))
            if p.is_file() and p.relative_to(store).parts[0] != "runs"}


def folder_spec(make_spec):
    """A spec that reads every file in the folder ``events``."""
    return make_spec(file="events")


@pytest.fixture
def events_dir(raw_dir):
    folder = raw_dir / "events"
    folder.mkdir()
    (folder / "day-1.csv").write_text(FIRST_DAYS, encoding="utf-8")
    return folder


def test_incremental_same_file_twice(raw_dir, events_dir, tmp_path, make_spec, now):
    store = tmp_path / "store"
    first = ingest_source(folder_spec(make_spec), raw_dir, store, now=now)
    before = data_files(store)

    second = ingest_source(folder_spec(make_spec), raw_dir, store, now=now)

    assert data_files(store) == before
    assert second.files_skipped == ("events/day-1.csv",)
    assert second.files_ingested == ()
    assert second.rows_read == 0
    assert second.vocabulary_version == first.vocabulary_version
    run = json.loads((store / "runs" / "run-000002.json").read_text())
    assert run["files"][0]["status"] == "skipped"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".store.lock") == ["raw", "store"]


def test_incremental_copy_of_file_skipped(raw_dir, events_dir, tmp_path, make_spec, now):
    # The same content under another name is the same events.
    store = tmp_path / "store"
    ingest_source(folder_spec(make_spec), raw_dir, store, now=now)
    (events_dir / "day-1-copy.csv").write_text(FIRST_DAYS, encoding="utf-8")

    summary = ingest_source(folder_spec(make_spec), raw_dir, store, now=now)

    assert summary.files_skipped == ("events/day-1-copy.csv", "events/day-1.csv")
    assert read_interactions(store).num_rows == 3


def test_incremental_new_day_adds_partition(raw_dir, events_dir, tmp_path, make_spec, now):
    store = tmp_path / "store"
    ingest_source(folder_spec(make_spec), raw_dir, store, now=now)
    old_partitions = {p: p.stat().st_ino for p in (store / "interactions").rglob("*.parquet")}
    (events_dir / "day-2.csv").write_text(NEXT_DAY, encoding="utf-8")

    summary = ingest_source(folder_spec(make_spec), raw_dir, store, now=now)

    assert summary.files_ingested == ("events/day-2.csv",)
    assert summary.partitions_written == ("1970-01-04",)
    assert summary.rows_read == 2
    assert summary.rows_written == 2
    # The old dates are the same files, hard-linked into the new version of the store.
    for path, inode in old_partitions.items():
        assert path.stat().st_ino == inode, path
    assert sorted(p.name for p in (store / "interactions").iterdir()) == [
        "date=1970-01-02", "date=1970-01-03", "date=1970-01-04"]


def test_incremental_vocabulary_append_only(raw_dir, events_dir, tmp_path, make_spec, now):
    store = tmp_path / "store"
    ingest_source(folder_spec(make_spec), raw_dir, store, now=now)
    users_before = Vocabulary.load(store / "vocab", "users")
    (events_dir / "day-2.csv").write_text(NEXT_DAY, encoding="utf-8")

    summary = ingest_source(folder_spec(make_spec), raw_dir, store, now=now)

    users = Vocabulary.load(store / "vocab", "users")
    assert users_before.ids == ("u1", "u2")
    assert users.ids == ("u1", "u2", "u3")
    assert Vocabulary.load(store / "vocab", "items").ids == ("a", "b", "c", "d")
    assert summary.vocabulary_version.startswith("u3-i4-")
    events = read_interactions(store)
    assert events.column("user_idx").to_pylist() == [0, 1, 0, 2, 0]


def test_incremental_late_event_rewrites_date(raw_dir, events_dir, tmp_path, make_spec, now):
    store = tmp_path / "store"
    ingest_source(folder_spec(make_spec), raw_dir, store, now=now)
    untouched = (store / "interactions" / "date=1970-01-03" / "part-0.parquet").read_bytes()
    # A late event for 1970-01-02 at the same second as u1's event there, from another user.
    (events_dir / "late.csv").write_text("user,item,ts,rating\nu9,z,86400,1\n", encoding="utf-8")

    summary = ingest_source(folder_spec(make_spec), raw_dir, store, now=now)

    assert summary.partitions_written == ("1970-01-02",)
    day = pq.read_table(store / "interactions" / "date=1970-01-02" / "part-0.parquet")
    # Ties on the timestamp go to the event ingested first.
    assert day.column("user_id").to_pylist() == ["u1", "u9", "u2"]
    assert day.column("ingest_order").to_pylist() == [0, 3, 1]
    assert (store / "interactions" / "date=1970-01-03" / "part-0.parquet").read_bytes() == untouched


@pytest.mark.parametrize(("rule", "kept_weight"), [("first", 5.0), ("last", 9.0), ("max_weight", 9.0)])
def test_incremental_duplicates_against_store(raw_dir, events_dir, tmp_path, make_spec, now, rule, kept_weight):
    store = tmp_path / "store"
    ingest_source(folder_spec(make_spec), raw_dir, store, now=now)
    (events_dir / "again.csv").write_text("user,item,ts,rating\nu1,a,86400,9\n", encoding="utf-8")

    summary = ingest_source(make_spec(file="events", dedup=rule), raw_dir, store, now=now)

    events = read_interactions(store)
    assert summary.rows_deduplicated == 1
    assert summary.rows_written == (0 if rule == "first" else 1)
    assert events.num_rows == 3
    first_event = events.slice(0, 1).to_pylist()[0]
    assert (first_event["user_id"], first_event["item_id"], first_event["weight"]) == ("u1", "a", kept_weight)


def test_incremental_bad_file_keeps_store(raw_dir, events_dir, tmp_path, make_spec, now):
    store = tmp_path / "store"
    ingest_source(folder_spec(make_spec), raw_dir, store, now=now)
    before = data_files(store)
    (events_dir / "day-2.csv").write_text(NEXT_DAY, encoding="utf-8")
    (events_dir / "day-3.csv").write_text("user,item,ts,rating\nu1,a,soon,1\nu2,b,later,1\n", encoding="utf-8")
    expected = re.escape(f"{events_dir / 'day-3.csv'}: 2 of 2 rows are invalid") + r".*first: line 2 column " \
        r"'timestamp' value 'soon': unparsable timestamp \(unit s\)\. Nothing was written\."

    with pytest.raises(TooManyBadRowsError, match=expected):
        ingest_source(folder_spec(make_spec), raw_dir, store, now=now)

    assert data_files(store) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".store.lock") == ["raw", "store"]


def test_incremental_quarantine_per_run(raw_dir, events_dir, tmp_path, make_spec, now):
    store = tmp_path / "store"
    (events_dir / "day-1.csv").write_text(FIRST_DAYS + ",x,100,1\n", encoding="utf-8")
    ingest_source(folder_spec(make_spec), raw_dir, store, max_bad_fraction=0.5, now=now)
    (events_dir / "day-2.csv").write_text(NEXT_DAY + "u4,,100,1\n", encoding="utf-8")

    ingest_source(folder_spec(make_spec), raw_dir, store, max_bad_fraction=0.5, now=now)

    assert sorted(p.name for p in (store / "quarantine").iterdir()) == ["run-000001.parquet", "run-000002.parquet"]
    quarantine = read_quarantine(store)
    assert quarantine.column("source_file").to_pylist() == ["events/day-1.csv", "events/day-2.csv"]
    assert quarantine.column("source_line").to_pylist() == [5, 4]
    assert quarantine.column("reason").to_pylist() == ["missing user_id", "missing item_id"]


KILL_BEFORE_COMMIT = textwrap.dedent("""
    import os, signal, sys
    from datetime import datetime, timezone
    import recsys_peft.ingest.ingest as ingest
    from recsys_peft.ingest.spec import InteractionSource, SourceSpec

    def killed(store_dir, staging):
        os.kill(os.getpid(), signal.SIGKILL)

    ingest.commit = killed
    spec = SourceSpec("test-source", "csv", InteractionSource(
        "events", {"user_id": "user", "item_id": "item", "timestamp": "ts", "weight": "rating"}))
    ingest.ingest_source(spec, sys.argv[1], sys.argv[2], now=datetime(2024, 1, 1, tzinfo=timezone.utc))
""")


@pytest.mark.slow
def test_incremental_killed_before_commit(raw_dir, events_dir, tmp_path, make_spec, now):
    store = tmp_path / "store"
    ingest_source(folder_spec(make_spec), raw_dir, store, now=now)
    before = data_files(store)
    (events_dir / "day-2.csv").write_text(NEXT_DAY, encoding="utf-8")

    child = subprocess.run([sys.executable, "-c", KILL_BEFORE_COMMIT, str(raw_dir), str(store)],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})

    assert child.returncode == -signal.SIGKILL, child.stderr
    assert data_files(store) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".store.staging-")] == [".store.staging-run-000002"]
    # The next run removes what the killed one left and ingests the new file.
    summary = ingest_source(folder_spec(make_spec), raw_dir, store, now=now)
    assert summary.files_ingested == ("events/day-2.csv",)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".store.lock") == ["raw", "store"]


def test_incremental_killed_between_renames(raw_dir, events_dir, tmp_path, make_spec, now, monkeypatch):
    # A run killed after moving the old store aside but before moving the new one in: the next
    # run finds the complete staging folder and finishes the swap.
    import recsys_peft.ingest.ingest as ingest_module
    import recsys_peft.ingest.store as store_module

    store = tmp_path / "store"
    ingest_source(folder_spec(make_spec), raw_dir, store, now=now)
    (events_dir / "day-2.csv").write_text(NEXT_DAY, encoding="utf-8")
    real_replace = os.replace

    def replace_once(source, target):
        real_replace(source, target)
        if Path(target).name.startswith(".store.previous-"):
            raise KeyboardInterrupt  # acts as a kill after the first rename

    def commit_without_cleanup(store_dir, staging):
        with monkeypatch.context() as patch:
            patch.setattr(store_module.os, "replace", replace_once)
            store_module.commit(store_dir, staging)

    monkeypatch.setattr(ingest_module, "commit", commit_without_cleanup)
    monkeypatch.setattr(ingest_module.shutil, "rmtree", lambda *args, **kwargs: None)  # as if killed
    with pytest.raises(KeyboardInterrupt):
        ingest_source(folder_spec(make_spec), raw_dir, store, now=now)
    monkeypatch.undo()
    assert not store.exists()

    summary = ingest_source(folder_spec(make_spec), raw_dir, store, now=now)

    assert summary.files_skipped == ("events/day-1.csv", "events/day-2.csv")
    assert read_interactions(store).num_rows == 5
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".store.lock") == ["raw", "store"]


def test_incremental_old_schema_rebuilt(raw_dir, events_dir, tmp_path, make_spec, now):
    # A store of schema version 1 was always built whole from its inputs, so it is rebuilt.
    store = tmp_path / "store"
    ingest_source(folder_spec(make_spec), raw_dir, store, now=now)
    manifest = json.loads((store / "manifest.json").read_text())
    manifest["schema_version"] = 1
    (store / "manifest.json").write_text(json.dumps(manifest))

    summary = ingest_source(folder_spec(make_spec), raw_dir, store, now=now)

    assert summary.files_ingested == ("events/day-1.csv",)
    assert json.loads((store / "manifest.json").read_text())["schema_version"] == 2
    assert read_interactions(store).num_rows == 3


def test_incremental_attributes_only_change(raw_dir, events_dir, tmp_path, make_spec, now):
    from recsys_peft.dataset.log import load_attributes
    from recsys_peft.ingest.spec import AttributeSource

    spec = make_spec(file="events", users=AttributeSource("users.csv", "user", {"age": "age"}))
    (raw_dir / "users.csv").write_text("user,age\nu1,20\n", encoding="utf-8")
    store = tmp_path / "store"
    ingest_source(spec, raw_dir, store, now=now)
    partitions_before = {str(p): p.read_bytes() for p in (store / "interactions").rglob("*.parquet")}
    (raw_dir / "users.csv").write_text("user,age\nu2,30\nu5,50\n", encoding="utf-8")

    summary = ingest_source(spec, raw_dir, store, now=now)

    assert summary.files_ingested == ("users.csv",)
    assert summary.partitions_written == ()
    assert {str(p): p.read_bytes() for p in (store / "interactions").rglob("*.parquet")} == partitions_before
    users = load_attributes(store, "user")
    # u1 keeps its age from the first file, u2 gets one, and u5 is new from the attribute file.
    assert users.column("user_id").to_pylist() == ["u1", "u2", "u5"]
    assert users.column("age").to_pylist() == ["20", "30", "50"]


def test_incremental_empty_file_reported(raw_dir, tmp_path, make_spec, now, caplog):
    (raw_dir / "events.csv").write_text("user,item,ts,rating\n", encoding="utf-8")

    with caplog.at_level("WARNING"):
        summary = ingest_source(make_spec(), raw_dir, tmp_path / "store", now=now)

    assert summary.files_empty == ("events.csv",)
    assert summary.log_line().endswith(" empty_files=events.csv")
    assert "ingest file=events.csv rows_read=0" in caplog.text


def test_incremental_summary_names_dates(raw_dir, tmp_path, make_spec, now):
    (raw_dir / "events.csv").write_text("user,item,ts,rating\nu1,a,86400,1\nu2,b,259200,1\n", encoding="utf-8")

    summary = ingest_source(make_spec(), raw_dir, tmp_path / "store", now=now)

    assert " dates=1970-01-02..1970-01-04 " in summary.log_line()
