"""Leave-one-out split: targets by time, ingest order on ties, no held-out event in training."""

import numpy as np

from recsys_peft.dataset.log import InteractionLog, load_log
from recsys_peft.dataset.split import leave_one_out
from recsys_peft.ingest.ingest import ingest_source
from recsys_peft.ingest.spec import InteractionSource, SourceSpec
from recsys_peft.ingest.vocab import Vocabulary


def test_split_targets_small_log(small_log):
    split = leave_one_out(small_log)

    # Only user 0 has three or more events: positions 0-3, items 5, 7, 9, 4.
    assert split.test.users.tolist() == [0]
    assert split.test.items.tolist() == [4]
    assert split.test.positions.tolist() == [3]
    assert split.valid.users.tolist() == [0]
    assert split.valid.items.tolist() == [9]
    assert split.valid.positions.tolist() == [2]
    assert split.train_positions.tolist() == [0, 1, 4, 5, 6]


def test_split_counts_users_without_target(small_log):
    # Users 1 (two events) and 2 (one event) have no target; user 3 has no events and is not counted.
    split = leave_one_out(small_log)

    assert split.users_without_target == 2


def test_split_three_events_minimum():
    log = InteractionLog.from_arrays(
        np.array([0, 0, 0]), np.array([1, 2, 3]), np.array([10, 20, 30]), num_users=1, num_items=4
    )

    split = leave_one_out(log)

    assert split.train_positions.tolist() == [0]
    assert split.valid.items.tolist() == [2]
    assert split.test.items.tolist() == [3]
    assert split.users_without_target == 0


def test_split_tie_keeps_input_order():
    # Items 11 and 12 share timestamp 5. The one given later is the later event.
    later_12 = InteractionLog.from_arrays(
        np.array([0, 0, 0]), np.array([10, 11, 12]), np.array([1, 5, 5]), num_users=1, num_items=13
    )
    later_11 = InteractionLog.from_arrays(
        np.array([0, 0, 0]), np.array([10, 12, 11]), np.array([1, 5, 5]), num_users=1, num_items=13
    )

    assert leave_one_out(later_12).test.items.tolist() == [12]
    assert leave_one_out(later_12).valid.items.tolist() == [11]
    assert leave_one_out(later_11).test.items.tolist() == [11]
    assert leave_one_out(later_11).valid.items.tolist() == [12]


def test_split_tie_from_store(tmp_path):
    # Lines 4 and 5 share timestamp 300: line 5 (item c) was ingested later, so it is the test target.
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "events.csv").write_text(
        "user,item,ts\nu1,a,100\nu1,b,200\nu1,d,300\nu1,c,300\n", encoding="utf-8"
    )
    spec = SourceSpec(
        "test-source", "csv",
        InteractionSource("events.csv", {"user_id": "user", "item_id": "item", "timestamp": "ts"}),
    )
    ingest_source(spec, raw, tmp_path / "store")
    items = Vocabulary.load(tmp_path / "store" / "vocab", "items")

    split = leave_one_out(load_log(tmp_path / "store"))

    assert [items.ids[i] for i in split.test.items] == ["c"]
    assert [items.ids[i] for i in split.valid.items] == ["d"]


def test_split_no_leakage():
    rng = np.random.default_rng(7)
    counts = rng.integers(0, 9, size=60)
    users = np.repeat(np.arange(60), counts)
    timestamps = rng.integers(0, 20, size=len(users))  # a small range, so many ties
    order = np.argsort(timestamps, kind="stable")
    items = rng.integers(0, 30, size=len(users))
    log = InteractionLog.from_arrays(users[order], items[order], timestamps[order], num_users=60, num_items=30)

    split = leave_one_out(log)

    train = set(split.train_positions.tolist())
    valid = set(split.valid.positions.tolist())
    test = set(split.test.positions.tolist())
    assert not train & test
    assert not train & valid
    assert not valid & test
    assert len(train) + len(valid) + len(test) == len(log.items)
    assert split.users_without_target == int(np.sum((counts == 1) | (counts == 2)))
    assert split.test.users.tolist() == np.flatnonzero(counts >= 3).tolist()

    for user, valid_pos, test_pos in zip(split.test.users, split.valid.positions, split.test.positions):
        assert test_pos == log.offsets[user + 1] - 1
        assert valid_pos == test_pos - 1
        assert log.timestamps[valid_pos] <= log.timestamps[test_pos]
        own_train = [p for p in train if log.offsets[user] <= p < log.offsets[user + 1]]
        assert all(p < valid_pos for p in own_train)
        assert all(log.timestamps[p] <= log.timestamps[valid_pos] for p in own_train)
