"""Deleting users: events and recommendations go, the vocabulary keeps a tombstone."""

import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys_peft.dataset.log import load_log
from recsys_peft.ingest.delete import delete_users
from recsys_peft.ingest.ingest import ingest_source
from recsys_peft.ingest.spec import AttributeSource
from recsys_peft.ingest.store import read_interactions
from recsys_peft.ingest.vocab import TOMBSTONE, Vocabulary

# u2 has events on 1970-01-02 only, so deleting u2 empties that date; u1 has events on two dates.
EVENTS = "user,item,ts,rating\nu1,a,100,5\nu2,b,86400,4\nu1,c,86500,3\nu3,a,200,1\n"


@pytest.fixture
def store(raw_dir, tmp_path, make_spec, now):
    (raw_dir / "events.csv").write_text(EVENTS, encoding="utf-8")
    (raw_dir / "users.csv").write_text("user,age\nu1,20\nu2,30\nu3,40\n", encoding="utf-8")
    spec = make_spec(users=AttributeSource("users.csv", "user", {"age": "age"}))
    ingest_source(spec, raw_dir, tmp_path / "store", now=now)
    return tmp_path / "store", spec


def test_delete_removes_events(store):
    folder, _ = store

    summary = delete_users(folder, ["u1"])

    events = read_interactions(folder)
    assert events.column("user_id").to_pylist() == ["u3", "u2"]
    assert summary.events_removed == 2
    assert summary.partitions_rewritten == ("1970-01-01", "1970-01-02")
    assert summary.user_indices == (0,)


def test_delete_keeps_tombstone(store):
    folder, _ = store

    summary = delete_users(folder, ["u1"])

    users = Vocabulary.load(folder / "vocab", "users")
    assert users.ids == (TOMBSTONE, "u3", "u2")
    assert pq.read_table(folder / "vocab" / "users.parquet").column("deleted").to_pylist() == [True, False, False]
    attributes = pq.read_table(folder / "users.parquet")
    assert attributes.column("user_id").to_pylist() == [TOMBSTONE, "u3", "u2"]
    assert attributes.column("age").to_pylist() == [None, "40", "30"]
    log = load_log(folder)
    assert log.num_users == 3
    assert log.vocabulary_version == summary.vocabulary_version
    assert log.user_counts().tolist() == [0, 1, 1]


def test_delete_empties_partition(store):
    folder, _ = store

    delete_users(folder, ["u2"])

    assert sorted(p.name for p in (folder / "interactions").iterdir()) == ["date=1970-01-01", "date=1970-01-02"]
    delete_users(folder, ["u1"])
    assert sorted(p.name for p in (folder / "interactions").iterdir()) == ["date=1970-01-01"]


def test_delete_removes_recommendations(store, tmp_path):
    folder, _ = store
    recommendations = tmp_path / "recommendations"
    recommendations.mkdir()
    pq.write_table(pa.table({"user_id": ["u1", "u1", "u3"], "item_id": ["b", "c", "b"]}),
                   recommendations / "part-0.parquet")

    summary = delete_users(folder, ["u1"], (recommendations,))

    assert summary.recommendations_removed == 2
    assert pq.read_table(recommendations / "part-0.parquet").column("user_id").to_pylist() == ["u3"]


def test_delete_reingest_changes_nothing(store, raw_dir, now):
    folder, spec = store
    delete_users(folder, ["u1"])

    summary = ingest_source(spec, raw_dir, folder, now=now)

    assert summary.rows_written == 0
    assert "u1" not in read_interactions(folder).column("user_id").to_pylist()


def test_delete_returning_user_new_index(store, raw_dir, make_spec, now):
    folder, _ = store
    delete_users(folder, ["u1"])
    (raw_dir / "more.csv").write_text("user,item,ts,rating\nu1,a,300,2\n", encoding="utf-8")

    ingest_source(make_spec(file="more.csv"), raw_dir, folder, now=now)

    assert Vocabulary.load(folder / "vocab", "users").ids == (TOMBSTONE, "u3", "u2", "u1")


def test_delete_unknown_user(store):
    folder, _ = store
    manifest_before = (folder / "manifest.json").read_bytes()

    with pytest.raises(KeyError, match=re.escape("user id(s) ['nobody'] not found in the vocabulary")):
        delete_users(folder, ["u1", "nobody"])

    assert (folder / "manifest.json").read_bytes() == manifest_before
    assert read_interactions(folder).num_rows == 4
