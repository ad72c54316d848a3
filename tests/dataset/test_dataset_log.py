"""InteractionLog: grouping by user, and loading from an ingested store."""

import numpy as np

from recsys_peft.dataset.log import InteractionLog, load_attributes, load_log
from recsys_peft.ingest.ingest import ingest_source
from recsys_peft.ingest.spec import AttributeSource, InteractionSource, SourceSpec


def test_log_grouped_by_user(small_log):
    assert small_log.offsets.tolist() == [0, 4, 6, 7, 7]
    assert small_log.users.tolist() == [0, 0, 0, 0, 1, 1, 2]
    assert small_log.items.tolist() == [5, 7, 9, 4, 1, 2, 3]
    assert small_log.timestamps.tolist() == [1, 3, 3, 6, 2, 4, 5]
    assert small_log.user_counts().tolist() == [4, 2, 1, 0]


def test_log_from_arrays_int64():
    log = InteractionLog.from_arrays(
        np.array([1, 0], dtype=np.int32), np.array([3, 4], dtype=np.int32),
        np.array([10, 20], dtype=np.int32), num_users=2, num_items=5,
    )

    assert log.users.dtype == np.int64
    assert log.items.dtype == np.int64
    assert log.timestamps.dtype == np.int64
    assert log.offsets.dtype == np.int64
    assert log.items.tolist() == [4, 3]


def test_log_load_from_store(tmp_path):
    # u3 appears only in the users file: the log is sized by the vocabulary, so it has 3 users.
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "events.csv").write_text("user,item,ts\nu2,b,20\nu1,a,10\nu1,b,30\n", encoding="utf-8")
    (raw / "users.csv").write_text("user,age\nu1,20\nu2,30\nu3,40\n", encoding="utf-8")
    spec = SourceSpec(
        "test-source", "csv",
        InteractionSource("events.csv", {"user_id": "user", "item_id": "item", "timestamp": "ts"}),
        users=AttributeSource("users.csv", "user", {"age": "age"}),
    )
    summary = ingest_source(spec, raw, tmp_path / "store")

    log = load_log(tmp_path / "store")

    # Time order is u1 (10), u2 (20), u1 (30), so u1 is index 0 and item a is index 0.
    assert log.num_users == 3
    assert log.num_items == 2
    assert log.vocabulary_version == summary.vocabulary_version
    assert log.offsets.tolist() == [0, 2, 3, 3]
    assert log.items.tolist() == [0, 1, 1]
    assert log.timestamps.tolist() == [10_000_000, 30_000_000, 20_000_000]
    users = load_attributes(tmp_path / "store", "user")
    assert users.column("user_id").to_pylist() == ["u1", "u2", "u3"]
    assert users.column("age").to_pylist() == ["20", "30", "40"]
