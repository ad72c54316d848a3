"""Quarantine: bad rows are kept aside with file, line, column, value and reason."""

import dataclasses
import re
from datetime import datetime, timezone

import pytest

from recsys_peft.ingest.ingest import TooManyBadRowsError, ingest_source
from recsys_peft.ingest.store import read_interactions, read_quarantine
from recsys_peft.ingest.validate import QUARANTINE_SCHEMA

# Line numbers count the header as line 1. 99999999999 s is in the year 5138, after NOW.
MIXED = (
    "user,item,ts,rating\n"
    "u1,a,100,5\n"            # 2: good
    ",b,100,3\n"              # 3: missing user_id
    "u2,,100,3\n"             # 4: missing item_id
    "u2,c,abc,1\n"            # 5: unparsable timestamp
    "u2,d,99999999999,2\n"    # 6: future timestamp
    "u2,e,,2\n"               # 7: missing timestamp
    "u2,f,200,high\n"         # 8: unparsable weight
    "u3,a,86400,\n"           # 9: good, no weight
    ",,x,y\n"                 # 10: several problems, the first check (user_id) is reported
)


def test_quarantine_rows_and_reasons(raw_dir, tmp_path, make_spec, now):
    (raw_dir / "events.csv").write_text(MIXED, encoding="utf-8")
    store = tmp_path / "store"

    summary = ingest_source(make_spec(), raw_dir, store, max_bad_fraction=0.9, now=now)

    quarantine = read_quarantine(store)
    assert quarantine.schema.equals(QUARANTINE_SCHEMA)
    assert quarantine.to_pylist() == [
        {"source_file": "events.csv", "source_line": 3, "column": "user_id", "value": None,
         "reason": "missing user_id"},
        {"source_file": "events.csv", "source_line": 4, "column": "item_id", "value": None,
         "reason": "missing item_id"},
        {"source_file": "events.csv", "source_line": 5, "column": "timestamp", "value": "abc",
         "reason": "unparsable timestamp (unit s)"},
        {"source_file": "events.csv", "source_line": 6, "column": "timestamp", "value": "99999999999",
         "reason": "timestamp in the future"},
        {"source_file": "events.csv", "source_line": 7, "column": "timestamp", "value": None,
         "reason": "missing timestamp"},
        {"source_file": "events.csv", "source_line": 8, "column": "weight", "value": "high",
         "reason": "unparsable weight"},
        {"source_file": "events.csv", "source_line": 10, "column": "user_id", "value": None,
         "reason": "missing user_id"},
    ]
    assert summary.rows_read == 9
    assert summary.rows_quarantined == 7
    assert summary.rows_written == 2


def test_quarantine_good_rows_go_on(raw_dir, tmp_path, make_spec, now):
    (raw_dir / "events.csv").write_text(MIXED, encoding="utf-8")
    store = tmp_path / "store"

    ingest_source(make_spec(), raw_dir, store, max_bad_fraction=0.9, now=now)

    events = read_interactions(store)
    assert events.column("source_line").to_pylist() == [2, 9]
    assert events.column("user_id").to_pylist() == ["u1", "u3"]
    assert events.column("weight").to_pylist() == [5.0, None]
    assert events.column("timestamp").to_pylist() == [
        datetime(1970, 1, 1, 0, 1, 40, tzinfo=timezone.utc),
        datetime(1970, 1, 2, tzinfo=timezone.utc),
    ]


def test_quarantine_empty_when_clean(raw_dir, tmp_path, make_spec, now):
    (raw_dir / "events.csv").write_text("user,item,ts,rating\nu1,a,100,5\n", encoding="utf-8")
    store = tmp_path / "store"

    summary = ingest_source(make_spec(), raw_dir, store, now=now)

    quarantine = read_quarantine(store)
    assert quarantine.num_rows == 0
    assert quarantine.schema.equals(QUARANTINE_SCHEMA)
    assert summary.rows_quarantined == 0


def test_quarantine_too_many_bad_rows(raw_dir, tmp_path, make_spec, now):
    (raw_dir / "events.csv").write_text(
        "user,item,ts,rating\nu1,a,100,5\n,b,100,3\nu2,c,abc,1\nu3,d,300,2\n", encoding="utf-8"
    )
    store = tmp_path / "store"
    expected = (
        re.escape(f"{raw_dir / 'events.csv'}: 2 of 4 rows are invalid (more than max_bad_fraction=0.25)")
        + r".*first: line 3 column 'user_id' value None: missing user_id\. Nothing was written\."
    )

    with pytest.raises(TooManyBadRowsError, match=expected):
        ingest_source(make_spec(), raw_dir, store, max_bad_fraction=0.25, now=now)

    assert not store.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".store.lock") == ["raw"]


def test_quarantine_fraction_at_limit_passes(raw_dir, tmp_path, make_spec, now):
    # 1 of 4 rows is exactly 0.25: only a larger fraction is rejected.
    (raw_dir / "events.csv").write_text(
        "user,item,ts,rating\nu1,a,100,5\n,b,100,3\nu2,c,200,1\nu3,d,300,2\n", encoding="utf-8"
    )
    store = tmp_path / "store"

    summary = ingest_source(make_spec(), raw_dir, store, max_bad_fraction=0.25, now=now)

    assert summary.rows_quarantined == 1
    assert summary.rows_written == 3


def test_quarantine_iso_time_zones(raw_dir, tmp_path, make_spec, now):
    # Naive values are Europe/Berlin wall-clock time (UTC+1 in winter, UTC+2 in summer); values
    # with an offset keep it. 02:30 on 2020-10-25 happens twice in Berlin, so it is ambiguous.
    (raw_dir / "events.csv").write_text(
        "user,item,ts\n"
        "u1,a,2020-01-01T00:30:00\n"
        "u1,b,2020-07-01T12:00:00\n"
        "u1,c,2020-01-01T00:30:00+05:00\n"
        "u1,d,2020-01-01T00:30:00Z\n"
        "u1,e,2020-10-25T02:30:00\n"
        "u1,f,01/02/2020\n",
        encoding="utf-8",
    )
    spec = make_spec(weight=False, timestamp_unit="iso", timezone_name="Europe/Berlin")
    store = tmp_path / "store"

    ingest_source(spec, raw_dir, store, max_bad_fraction=0.5, now=now)

    events = read_interactions(store)
    stamps = dict(zip(events.column("item_id").to_pylist(), events.column("timestamp").to_pylist()))
    assert stamps == {
        "a": datetime(2019, 12, 31, 23, 30, tzinfo=timezone.utc),
        "b": datetime(2020, 7, 1, 10, 0, tzinfo=timezone.utc),
        "c": datetime(2019, 12, 31, 19, 30, tzinfo=timezone.utc),
        "d": datetime(2020, 1, 1, 0, 30, tzinfo=timezone.utc),
    }
    quarantine = read_quarantine(store)
    assert quarantine.column("value").to_pylist() == ["2020-10-25T02:30:00", "01/02/2020"]
    assert quarantine.column("reason").to_pylist() == [
        "local time does not exist or is ambiguous in Europe/Berlin (daylight-saving change); give it an offset or a Z",
        "unparsable timestamp (unit iso)"]


@pytest.mark.parametrize(
    ("unit", "raw", "micros"),
    [
        ("s", "1.5", 1_500_000),
        ("ms", "1500", 1_500_000),
        ("us", "1500000", 1_500_000),
        ("ns", "1500000000", 1_500_000),
        ("s", "2e3", 2_000_000_000),
    ],
)
def test_quarantine_numeric_units(raw_dir, tmp_path, make_spec, now, unit, raw, micros):
    (raw_dir / "events.csv").write_text(f"user,item,ts\nu1,a,{raw}\n", encoding="utf-8")
    store = tmp_path / "store"

    ingest_source(make_spec(weight=False, timestamp_unit=unit), raw_dir, store, now=now)

    events = read_interactions(store)
    assert events.column("timestamp").cast("int64").to_pylist() == [micros]


def test_quarantine_lines_after_blank_lines(raw_dir, tmp_path, make_spec, now):
    (raw_dir / "events.csv").write_text("user,item,ts,rating\nu1,a,100,1\n\nu2,b,200,2\n\nu3,c,abc,3\n", encoding="utf-8")
    store = tmp_path / "store"

    summary = ingest_source(make_spec(), raw_dir, store, max_bad_fraction=0.9, now=now)

    rows = [(r["source_line"], r["reason"]) for r in read_quarantine(store).to_pylist()]
    assert rows == [(3, "missing user_id"), (5, "missing user_id"), (6, "unparsable timestamp (unit s)")]
    assert summary.rows_written == 2


def test_quarantine_dst_gap_reason(raw_dir, tmp_path, make_spec):
    (raw_dir / "events.csv").write_text(
        "user,item,ts,rating\nu1,a,2025-03-30T01:30:00,1\nu1,b,2025-03-30T02:42:00,1\n"
        "u2,c,2025-10-26T02:30:00,1\nu2,d,2025-10-26T04:00:00,1\n", encoding="utf-8")
    spec = make_spec(timestamp_unit="iso", timezone_name="Europe/Berlin")

    later = datetime(2026, 1, 1, tzinfo=timezone.utc)

    summary = ingest_source(spec, raw_dir, tmp_path / "store", max_bad_fraction=0.9, now=later)

    rows = read_quarantine(tmp_path / "store").to_pylist()
    assert [(r["source_line"], r["value"]) for r in rows] == [(3, "2025-03-30T02:42:00"), (4, "2025-10-26T02:30:00")]
    assert {r["reason"] for r in rows} == {
        "local time does not exist or is ambiguous in Europe/Berlin (daylight-saving change); give it an offset or a Z"}
    assert summary.rows_written == 2


# Line 4 is blank, so the lines after it show that the quarantine keeps true line numbers.
JSON_NON_SCALAR_IDS = (
    '{"user": "1", "item": "3", "ts": 100}\n'         # 1: good
    '{"user": true, "item": "3", "ts": 100}\n'        # 2: boolean user_id
    '{"user": ["x"], "item": "3", "ts": 100}\n'       # 3: array user_id
    '\n'
    '{"user": {"a": 1}, "item": "3", "ts": 100}\n'    # 5: object user_id
    '{"user": null, "item": "3", "ts": 100}\n'        # 6: missing user_id
    '{"user": "2", "item": false, "ts": 100}\n'       # 7: boolean item_id
    '{"user": 12, "item": 12.0, "ts": 100}\n'         # 8: good
)


@pytest.mark.parametrize("id_type", ["string", "int"])
def test_quarantine_json_non_scalar_ids(raw_dir, tmp_path, make_spec, now, id_type):
    (raw_dir / "events.jsonl").write_text(JSON_NON_SCALAR_IDS, encoding="utf-8")
    spec = dataclasses.replace(make_spec(fmt="jsonl", file="events.jsonl", weight=False), id_type=id_type)
    store = tmp_path / "store"

    summary = ingest_source(spec, raw_dir, store, max_bad_fraction=0.9, now=now)

    rows = [(r["source_line"], r["column"], r["value"], r["reason"]) for r in read_quarantine(store).to_pylist()]
    assert rows == [
        (2, "user_id", "true", "user_id is a JSON boolean; expected a string or a number"),
        (3, "user_id", '["x"]', "user_id is a JSON array; expected a string or a number"),
        (5, "user_id", '{"a": 1}', "user_id is a JSON object; expected a string or a number"),
        (6, "user_id", None, "missing user_id"),
        (7, "item_id", "false", "item_id is a JSON boolean; expected a string or a number"),
    ]
    assert summary.rows_written == 2


def test_quarantine_json_string_ids_kept(raw_dir, tmp_path, make_spec, now):
    # A string that reads like a JSON literal is an ordinary id, and 12 and "12" are one user.
    (raw_dir / "events.jsonl").write_text(
        '{"user": "true", "item": "[x]", "ts": 100}\n{"user": 12, "item": 12.0, "ts": 200}\n'
        '{"user": "12", "item": "12", "ts": 300}\n', encoding="utf-8")
    spec = make_spec(fmt="jsonl", file="events.jsonl", weight=False)

    summary = ingest_source(spec, raw_dir, tmp_path / "store", now=now)

    events = read_interactions(tmp_path / "store")
    assert events.column("user_id").to_pylist() == ["true", "12", "12"]
    assert events.column("item_id").to_pylist() == ["[x]", "12.0", "12"]
    assert summary.rows_quarantined == 0


def test_quarantine_json_event_type_array(raw_dir, tmp_path, make_spec, now):
    (raw_dir / "events.jsonl").write_text(
        '{"user": "u1", "item": "a", "ts": 100, "action": "view"}\n'
        '{"user": "u1", "item": "b", "ts": 100, "action": ["view"]}\n', encoding="utf-8")
    base = make_spec(fmt="jsonl", file="events.jsonl", weight=False)
    columns = {**base.interactions.columns, "event_type": "action"}
    spec = dataclasses.replace(base, interactions=dataclasses.replace(base.interactions, columns=columns))

    ingest_source(spec, raw_dir, tmp_path / "store", max_bad_fraction=0.9, now=now)

    rows = [(r["source_line"], r["column"], r["value"], r["reason"]) for r in read_quarantine(tmp_path / "store").to_pylist()]
    assert rows == [(2, "event_type", '["view"]', "event_type is a JSON array; expected a string or a number")]
