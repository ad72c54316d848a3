"""Inputs that real logs have: empty and compressed files, mixed id types, time zones, event types."""

import gzip
import re
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys_peft.ingest.ingest import TooManyBadRowsError, ingest_source
from recsys_peft.ingest.spec import InteractionSource, SourceSpec
from recsys_peft.ingest.store import read_interactions, read_quarantine

GOOD = "user,item,ts,rating\nu1,a,86400,5\n"


def test_inputs_empty_file(raw_dir, tmp_path, make_spec, now):
    (raw_dir / "events.csv").write_bytes(b"")

    summary = ingest_source(make_spec(), raw_dir, tmp_path / "store", now=now)

    assert summary.rows_read == 0
    assert summary.files_ingested == ("events.csv",)
    assert read_interactions(tmp_path / "store").num_rows == 0


def test_inputs_header_only(raw_dir, tmp_path, make_spec, now):
    (raw_dir / "events.csv").write_text("user,item,ts,rating\n", encoding="utf-8")

    summary = ingest_source(make_spec(), raw_dir, tmp_path / "store", now=now)

    assert summary.rows_read == 0
    assert summary.rows_written == 0


def test_inputs_header_only_wrong_columns(raw_dir, tmp_path, make_spec, now):
    # Even without rows, a header that lacks the spec's columns is an error.
    (raw_dir / "events.csv").write_text("user,item,time\n", encoding="utf-8")

    with pytest.raises(ValueError, match=r"missing column\(s\) \['ts', 'rating'\]"):
        ingest_source(make_spec(), raw_dir, tmp_path / "store", now=now)


def test_inputs_zero_byte_gzip(raw_dir, tmp_path, make_spec, now):
    folder = raw_dir / "events"
    folder.mkdir()
    (folder / "a.csv").write_text(GOOD, encoding="utf-8")
    (folder / "b.csv.gz").write_bytes(b"")

    summary = ingest_source(make_spec(file="events"), raw_dir, tmp_path / "store", now=now)

    assert summary.files_ingested == ("events/a.csv", "events/b.csv.gz")
    assert summary.rows_read == 1


def test_inputs_corrupt_gzip_keeps_store(raw_dir, tmp_path, make_spec, now):
    folder = raw_dir / "events"
    folder.mkdir()
    (folder / "a.csv").write_text(GOOD, encoding="utf-8")
    store = tmp_path / "store"
    ingest_source(make_spec(file="events"), raw_dir, store, now=now)
    before = (store / "interactions" / "date=1970-01-02" / "part-0.parquet").read_bytes()
    (folder / "b.csv.gz").write_bytes(gzip.compress(b"user,item,ts,rating\nu2,b,100,1\n")[:-12])

    with pytest.raises(ValueError, match=re.escape(f"{folder / 'b.csv.gz'}: cannot be read as csv")):
        ingest_source(make_spec(file="events"), raw_dir, store, now=now)

    assert (store / "interactions" / "date=1970-01-02" / "part-0.parquet").read_bytes() == before


def test_inputs_gzip_folder_and_glob(raw_dir, tmp_path, make_spec, now):
    folder = raw_dir / "events"
    folder.mkdir()
    with gzip.open(folder / "a.csv.gz", "wt", encoding="utf-8") as handle:
        handle.write(GOOD)
    (folder / "b.csv").write_text("user,item,ts,rating\nu2,b,172800,1\n", encoding="utf-8")
    (folder / "notes.txt").write_text("not events", encoding="utf-8")

    summary = ingest_source(make_spec(file="events/*.csv*"), raw_dir, tmp_path / "store", now=now)

    assert summary.files_ingested == ("events/a.csv.gz", "events/b.csv")
    events = read_interactions(tmp_path / "store")
    assert events.column("source_file").to_pylist() == ["events/a.csv.gz", "events/b.csv"]


def test_inputs_no_file_matches(raw_dir, tmp_path, make_spec, now):
    expected = re.escape(f"no input file matches: {raw_dir / 'events/*.csv'} (named by source spec test-source)")

    with pytest.raises(FileNotFoundError, match=expected):
        ingest_source(make_spec(file="events/*.csv"), raw_dir, tmp_path / "store", now=now)


def test_inputs_string_and_number_ids(raw_dir, tmp_path, make_spec, now):
    (raw_dir / "events.jsonl").write_text(
        '{"user": 12, "item": "7", "ts": 100}\n{"user": "12", "item": 7, "ts": 200}\n', encoding="utf-8")
    spec = make_spec(fmt="jsonl", file="events.jsonl", weight=False)

    summary = ingest_source(spec, raw_dir, tmp_path / "store", now=now)

    events = read_interactions(tmp_path / "store")
    assert summary.users == 1
    assert summary.items == 1
    assert events.column("user_idx").to_pylist() == [0, 0]


def test_inputs_int32_then_int64_parquet(raw_dir, tmp_path, make_spec, now):
    # The same ids, typed int32 in the first file and int64 in the second.
    folder = raw_dir / "events"
    folder.mkdir()
    pq.write_table(pa.table({"user": pa.array([1, 2], pa.int32()), "item": pa.array([10, 20], pa.int32()),
                             "ts": pa.array([100, 200], pa.int32())}), folder / "a.parquet")
    store = tmp_path / "store"
    ingest_source(make_spec(fmt="parquet", file="events", weight=False), raw_dir, store, now=now)
    pq.write_table(pa.table({"user": pa.array([2, 3], pa.int64()), "item": pa.array([10, 30], pa.int64()),
                             "ts": pa.array([300, 400], pa.int64())}), folder / "b.parquet")

    summary = ingest_source(make_spec(fmt="parquet", file="events", weight=False), raw_dir, store, now=now)

    events = read_interactions(store)
    assert events.column("user_id").to_pylist() == ["1", "2", "2", "3"]
    assert events.column("user_idx").to_pylist() == [0, 1, 1, 2]
    assert events.column("item_idx").to_pylist() == [0, 1, 0, 2]
    assert summary.users == 3


def test_inputs_int_ids_reconciled(raw_dir, tmp_path, make_spec, now):
    # With id_type int, "007", "7" and "7.0" are one user; "7.5" and "x" cannot be reconciled.
    (raw_dir / "events.csv").write_text(
        "user,item,ts\n007,1,100\n7,1,200\n7.0,2,300\n7.5,3,400\nx,4,500\n", encoding="utf-8")
    base = make_spec(weight=False)
    spec = SourceSpec(base.name, base.format, base.interactions, id_type="int")

    ingest_source(spec, raw_dir, tmp_path / "store", max_bad_fraction=0.5, now=now)

    events = read_interactions(tmp_path / "store")
    assert events.column("user_id").to_pylist() == ["7", "7", "7"]
    quarantine = read_quarantine(tmp_path / "store").to_pylist()
    assert [(q["source_line"], q["column"], q["value"], q["reason"]) for q in quarantine] == [
        (5, "user_id", "7.5", "user_id is not an integer (id_type int)"),
        (6, "user_id", "x", "user_id is not an integer (id_type int)"),
    ]


def test_inputs_naive_utc_offset_one_file(raw_dir, tmp_path, make_spec, now):
    (raw_dir / "events.csv").write_text(
        "user,item,ts\nu1,a,2020-06-01T12:00:00\nu1,b,2020-06-01T12:00:00Z\nu1,c,2020-06-01T12:00:00-04:00\n",
        encoding="utf-8")
    spec = make_spec(weight=False, timestamp_unit="iso", timezone_name="America/New_York")

    ingest_source(spec, raw_dir, tmp_path / "store", now=now)

    events = read_interactions(tmp_path / "store")
    stamps = dict(zip(events.column("item_id").to_pylist(), events.column("timestamp").to_pylist()))
    assert stamps == {
        "a": datetime(2020, 6, 1, 16, 0, tzinfo=timezone.utc),  # naive: New York summer time, UTC-4
        "b": datetime(2020, 6, 1, 12, 0, tzinfo=timezone.utc),
        "c": datetime(2020, 6, 1, 16, 0, tzinfo=timezone.utc),
    }


def event_spec(make_spec, **interactions) -> SourceSpec:
    base = make_spec(weight=False)
    columns = dict(base.interactions.columns, event_type="action")
    return SourceSpec(base.name, "csv", InteractionSource("events.csv", columns, **interactions))


def test_inputs_unknown_event_type(raw_dir, tmp_path, make_spec, now):
    (raw_dir / "events.csv").write_text(
        "user,item,ts,action\nu1,a,100,view\nu1,a,100,buy\nu1,b,200,like\nu1,c,300,\n", encoding="utf-8")
    spec = event_spec(make_spec, event_types=("view", "buy"))

    ingest_source(spec, raw_dir, tmp_path / "store", max_bad_fraction=0.5, now=now)

    # A view and a purchase at the same second are two events, not duplicates.
    events = read_interactions(tmp_path / "store")
    assert events.column("event_type").to_pylist() == ["view", "buy"]
    quarantine = read_quarantine(tmp_path / "store").to_pylist()
    assert [(q["source_line"], q["column"], q["value"], q["reason"]) for q in quarantine] == [
        (4, "event_type", "like", "unknown event_type (expected one of ['view', 'buy'])"),
        (5, "event_type", None, "missing event_type"),
    ]


def test_inputs_default_event_type(raw_dir, tmp_path, make_spec, now):
    (raw_dir / "events.csv").write_text(GOOD, encoding="utf-8")

    ingest_source(make_spec(), raw_dir, tmp_path / "store", now=now)

    assert read_interactions(tmp_path / "store").column("event_type").to_pylist() == ["interaction"]


def test_inputs_before_min_timestamp(raw_dir, tmp_path, make_spec, now):
    store = tmp_path / "store"
    (raw_dir / "events.csv").write_text("user,item,ts\nu1,a,1577836800\nu1,b,1577836799\n", encoding="utf-8")
    spec = SourceSpec("test-source", "csv", InteractionSource(
        "events.csv", {"user_id": "user", "item_id": "item", "timestamp": "ts"},
        min_timestamp=datetime(2020, 1, 1, tzinfo=timezone.utc)))

    ingest_source(spec, raw_dir, store, max_bad_fraction=0.5, now=now)

    assert read_interactions(store).column("item_id").to_pylist() == ["a"]
    quarantine = read_quarantine(store).to_pylist()
    assert [(q["source_line"], q["value"], q["reason"]) for q in quarantine] == [
        (3, "1577836799", "timestamp before min_timestamp 2020-01-01T00:00:00+00:00")]


def test_inputs_timestamp_out_of_range(raw_dir, tmp_path, make_spec, now):
    # 10**17 seconds overflows microseconds in int64; it must be quarantined, not wrapped around.
    (raw_dir / "events.csv").write_text("user,item,ts\nu1,a,100\nu1,b,100000000000000000\n", encoding="utf-8")

    ingest_source(make_spec(weight=False), raw_dir, tmp_path / "store", max_bad_fraction=0.5, now=now)

    quarantine = read_quarantine(tmp_path / "store").to_pylist()
    assert [(q["source_line"], q["reason"]) for q in quarantine] == [(3, "timestamp out of range (unit s)")]


def test_inputs_bad_fraction_from_spec(raw_dir, tmp_path, make_spec, now):
    (raw_dir / "events.csv").write_text("user,item,ts\nu1,a,100\n,b,200\n", encoding="utf-8")
    base = make_spec(weight=False)
    spec = SourceSpec(base.name, base.format, base.interactions, max_bad_fraction=0.4)

    with pytest.raises(TooManyBadRowsError, match=r"1 of 2 rows are invalid \(more than max_bad_fraction=0.4\)"):
        ingest_source(spec, raw_dir, tmp_path / "store", now=now)

    assert not (tmp_path / "store").exists()


def test_inputs_multi_character_delimiter(raw_dir, tmp_path, make_spec, now):
    (raw_dir / "ratings.dat").write_text("1::10::5::100\n2::20::3::200\n", encoding="utf-8")
    from recsys_peft.ingest.spec import FileLayout

    spec = SourceSpec("dat", "csv", InteractionSource(
        "ratings.dat", {"user_id": "u", "item_id": "i", "timestamp": "t", "weight": "r"},
        layout=FileLayout("::", ("u", "i", "r", "t"))))

    ingest_source(spec, raw_dir, tmp_path / "store", now=now)

    events = read_interactions(tmp_path / "store")
    assert events.column("item_id").to_pylist() == ["10", "20"]
    assert events.column("source_line").to_pylist() == [1, 2]
