"""The written store: dedup rules, id vocabulary, schema, date partitions and repeatability."""

import dataclasses
import hashlib
import json
import re

import pyarrow.parquet as pq
import pytest

from recsys_peft.ingest.ingest import ingest_source
from recsys_peft.ingest.spec import AttributeSource
from recsys_peft.ingest.store import INTERACTION_SCHEMA, SCHEMA_VERSION, read_interactions
from recsys_peft.ingest.vocab import Vocabulary, vocabulary_version

# (u1, a, 100) occurs three times with weights 3, 5, 4; (u1, c, 200) twice with a tied weight.
# (u1, a, 150) has the same user and item but another timestamp, so it is no duplicate.
DUPLICATES = (
    "user,item,ts,rating\n"
    "u1,a,100,3\n"   # line 2
    "u1,a,100,5\n"   # line 3
    "u1,a,100,4\n"   # line 4
    "u1,b,100,1\n"   # line 5
    "u1,c,200,2\n"   # line 6
    "u1,c,200,2\n"   # line 7
    "u1,a,150,1\n"   # line 8
)


@pytest.mark.parametrize(
    ("rule", "kept_lines"),
    [
        ("first", [2, 5, 8, 6]),
        ("last", [4, 5, 8, 7]),
        ("max_weight", [3, 5, 8, 6]),
    ],
)
def test_store_dedup_rule(raw_dir, tmp_path, make_spec, now, rule, kept_lines):
    (raw_dir / "events.csv").write_text(DUPLICATES, encoding="utf-8")
    store = tmp_path / "store"

    summary = ingest_source(make_spec(dedup=rule), raw_dir, store, now=now)

    events = read_interactions(store)
    assert events.column("source_line").to_pylist() == kept_lines
    assert summary.rows_deduplicated == 3
    assert summary.rows_written == 4


def test_store_jsonl_number_string_ids(raw_dir, tmp_path, make_spec, now):
    # 12 and "12" are the same user, 7 and "7" the same item.
    (raw_dir / "events.jsonl").write_text(
        '{"user": 12, "item": 7, "ts": 100}\n'
        '{"user": "12", "item": "8", "ts": 200}\n'
        '{"user": 13, "item": "7", "ts": 300}\n',
        encoding="utf-8",
    )
    spec = make_spec(fmt="jsonl", file="events.jsonl", weight=False)
    store = tmp_path / "store"

    summary = ingest_source(spec, raw_dir, store, now=now)

    events = read_interactions(store)
    assert events.column("user_id").to_pylist() == ["12", "12", "13"]
    assert events.column("user_idx").to_pylist() == [0, 0, 1]
    assert events.column("item_idx").to_pylist() == [0, 1, 0]
    assert summary.users == 2
    assert summary.items == 2


def test_store_vocabulary_first_appearance(raw_dir, tmp_path, make_spec, now):
    # File order is u9, u5, u7 but time order is u5 (100), u7 (200), u9 (300). u1 appears only
    # in the users file, so it comes after every id seen in events.
    (raw_dir / "events.csv").write_text(
        "user,item,ts,rating\nu9,x,300,1\nu5,y,100,1\nu7,x,200,1\nu5,z,400,1\n", encoding="utf-8"
    )
    (raw_dir / "users.csv").write_text("user,age\nu1,40\nu7,30\n", encoding="utf-8")
    spec = make_spec(users=AttributeSource("users.csv", "user", {"age": "age"}))
    store = tmp_path / "store"

    summary = ingest_source(spec, raw_dir, store, now=now)

    users = Vocabulary.load(store / "vocab", "users")
    items = Vocabulary.load(store / "vocab", "items")
    assert users.ids == ("u5", "u7", "u9", "u1")
    assert items.ids == ("y", "x", "z")
    events = read_interactions(store)
    assert events.column("user_idx").to_pylist() == [0, 1, 2, 0]
    assert events.column("item_idx").to_pylist() == [0, 1, 1, 2]
    assert summary.vocabulary_version == vocabulary_version(users, items)
    assert summary.vocabulary_version.startswith("u4-i3-")

    attributes = pq.read_table(store / "users.parquet")
    assert attributes.column("user_id").to_pylist() == ["u5", "u7", "u9", "u1"]
    assert attributes.column("user_idx").to_pylist() == [0, 1, 2, 3]
    assert attributes.column("age").to_pylist() == [None, "30", None, "40"]


def test_store_items_multi_valued(raw_dir, tmp_path, make_spec, now):
    (raw_dir / "events.csv").write_text("user,item,ts,rating\nu1,i1,100,1\n", encoding="utf-8")
    (raw_dir / "items.csv").write_text("item,genres\ni1,Action|Drama\ni2,Comedy\n", encoding="utf-8")
    spec = make_spec(items=AttributeSource("items.csv", "item", {"genres": "genres"}, {"genres": "|"}))
    store = tmp_path / "store"

    ingest_source(spec, raw_dir, store, now=now)

    items = pq.read_table(store / "items.parquet")
    assert items.column("item_id").to_pylist() == ["i1", "i2"]
    assert items.column("genres").to_pylist() == [["Action", "Drama"], ["Comedy"]]


def test_store_schema_pinned(raw_dir, tmp_path, make_spec, now):
    (raw_dir / "events.csv").write_text(DUPLICATES, encoding="utf-8")
    store = tmp_path / "store"

    ingest_source(make_spec(), raw_dir, store, now=now)

    parts = sorted((store / "interactions").rglob("*.parquet"))
    assert parts
    for part in parts:
        assert pq.read_schema(part).remove_metadata().equals(INTERACTION_SCHEMA)
    assert read_interactions(store).schema.remove_metadata().equals(INTERACTION_SCHEMA)


def test_store_partitions_by_date(raw_dir, tmp_path, make_spec, now):
    # 86399 s is the last second of 1970-01-01 and 86400 s the first of 1970-01-02.
    (raw_dir / "events.csv").write_text(
        "user,item,ts,rating\nu1,a,86400,1\nu1,b,86399,1\nu2,c,0,1\nu2,d,172800,1\n", encoding="utf-8"
    )
    store = tmp_path / "store"

    ingest_source(make_spec(), raw_dir, store, now=now)

    folder = store / "interactions"
    assert sorted(p.name for p in folder.iterdir()) == ["date=1970-01-01", "date=1970-01-02", "date=1970-01-03"]
    items = {p.name: pq.read_table(p / "part-0.parquet").column("item_id").to_pylist() for p in folder.iterdir()}
    assert items == {"date=1970-01-01": ["c", "b"], "date=1970-01-02": ["a"], "date=1970-01-03": ["d"]}


def test_store_ingest_order(raw_dir, tmp_path, make_spec, now):
    # Sorted by timestamp, then by line: lines 3 and 4 tie at 100.
    (raw_dir / "events.csv").write_text(
        "user,item,ts,rating\nu1,a,300,1\nu2,b,100,1\nu1,c,100,1\n", encoding="utf-8"
    )
    store = tmp_path / "store"

    ingest_source(make_spec(), raw_dir, store, now=now)

    # ingest_order is the position among the rows read: lines 2, 3 and 4 are 0, 1 and 2.
    events = read_interactions(store)
    assert events.column("source_line").to_pylist() == [3, 4, 2]
    assert events.column("ingest_order").to_pylist() == [1, 2, 0]


def test_store_manifest(raw_dir, tmp_path, make_spec, now):
    path = raw_dir / "events.csv"
    path.write_text(DUPLICATES, encoding="utf-8")
    store = tmp_path / "store"

    summary = ingest_source(make_spec(), raw_dir, store, now=now)

    manifest = json.loads((store / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["files"] == {
        "events.csv": {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "bytes": path.stat().st_size}
    }
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert [field["name"] for field in manifest["schema"]] == INTERACTION_SCHEMA.names
    assert manifest["rows"] == 4
    assert manifest["partitions"] == 1
    assert manifest["users"] == 1
    assert manifest["items"] == 3
    assert manifest["next_ingest_order"] == 7
    assert manifest["last_run"] == "run-000001"
    assert manifest["vocabulary_version"] == summary.vocabulary_version
    assert json.loads((store / "vocab" / "version.json").read_text()) == {"version": summary.vocabulary_version}


def test_store_run_manifest(raw_dir, tmp_path, make_spec, now):
    path = raw_dir / "events.csv"
    path.write_text(DUPLICATES, encoding="utf-8")
    store = tmp_path / "store"

    summary = ingest_source(make_spec(), raw_dir, store, now=now)

    run = json.loads((store / "runs" / "run-000001.json").read_text(encoding="utf-8"))
    assert run["run_id"] == summary.run_id == "run-000001"
    assert run["files"] == [{"name": "events.csv", "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                             "size": path.stat().st_size, "status": "ingested", "rows_read": 7,
                             "rows_quarantined": 0}]
    assert run["rows_read"] == 7
    assert run["rows_written"] == 4
    assert run["rows_deduplicated"] == 3
    assert run["rows_quarantined"] == 0
    assert run["partitions_written"] == ["1970-01-01"]
    assert run["schema_version"] == SCHEMA_VERSION
    assert run["quarantine"] is None
    assert run["vocabulary_version"] == summary.vocabulary_version


def test_store_int_ids_in_attribute_file(raw_dir, tmp_path, make_spec, now):
    (raw_dir / "events.csv").write_text("user,item,ts,rating\n7,1,100,1\n12,1,200,1\n", encoding="utf-8")
    (raw_dir / "users.csv").write_text("user,age\n007,40\n12.0,30\n", encoding="utf-8")
    spec = dataclasses.replace(make_spec(users=AttributeSource("users.csv", "user", {"age": "age"})), id_type="int")

    ingest_source(spec, raw_dir, tmp_path / "store", now=now)

    attributes = pq.read_table(tmp_path / "store" / "users.parquet")
    assert attributes.column("user_id").to_pylist() == ["7", "12"]
    assert attributes.column("age").to_pylist() == ["40", "30"]


def test_store_non_int_attribute_id_rejected(raw_dir, tmp_path, make_spec, now):
    (raw_dir / "events.csv").write_text("user,item,ts,rating\n7,1,100,1\n", encoding="utf-8")
    (raw_dir / "users.csv").write_text("user,age\n7,40\nseven,30\n", encoding="utf-8")
    spec = dataclasses.replace(make_spec(users=AttributeSource("users.csv", "user", {"age": "age"})), id_type="int")

    with pytest.raises(ValueError, match=r"users\.csv: line 3, column 'user': id 'seven' is not an integer"):
        ingest_source(spec, raw_dir, tmp_path / "store", now=now)

    assert not (tmp_path / "store" / "users.parquet").exists()


def test_store_json_array_attribute_id_rejected(raw_dir, tmp_path, make_spec, now):
    (raw_dir / "events.jsonl").write_text('{"user": "u1", "item": "a", "ts": 100}\n', encoding="utf-8")
    (raw_dir / "users.jsonl").write_text('{"user": "u1", "age": 40}\n{"user": ["u2"], "age": 30}\n',
                                         encoding="utf-8")
    users = AttributeSource("users.jsonl", "user", {"age": "age"})
    spec = make_spec(fmt="jsonl", file="events.jsonl", weight=False, users=users)

    with pytest.raises(ValueError, match=re.escape("""users.jsonl: line 2, column 'user': id '["u2"]' is a JSON array""")):
        ingest_source(spec, raw_dir, tmp_path / "store", now=now)

    assert not (tmp_path / "store" / "users.parquet").exists()
