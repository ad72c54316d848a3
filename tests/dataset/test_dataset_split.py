"""Leave-one-out and temporal splits: targets by time, ingest order on ties, no leakage."""

import dataclasses

import numpy as np
import pytest

from recsys_peft.dataset.log import InteractionLog, load_log
from recsys_peft.dataset.split import cutoff_for_fraction, leave_one_out, temporal_split
from recsys_peft.dataset.views import PAD, history_before
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


def _random_log(seed: int, num_users: int = 60, max_events: int = 9, time_range: int = 20) -> InteractionLog:
    """Random log in which each event has its own item, so an item identifies one event.

    Timestamps come from a small range, so many events share one, and some users have none.
    """
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, max_events, size=num_users)
    users = np.repeat(np.arange(num_users), counts)
    timestamps = rng.integers(0, time_range, size=len(users))
    order = np.argsort(timestamps, kind="stable")
    grouped = InteractionLog.from_arrays(users[order], np.zeros(len(users)), timestamps[order],
                                         num_users=num_users, num_items=len(users))
    # Number the items after grouping by user, so that item k is the event at log position k.
    return dataclasses.replace(grouped, items=np.arange(len(users)))


def _training_inputs(log: InteractionLog, train_positions: np.ndarray) -> tuple[set[int], set[int]]:
    """Return the log positions of every training target and of every event in its history.

    The history comes from ``history_before``, the view the models read, with a length long
    enough for every user's whole history.
    """
    length = int(log.user_counts().max())
    history = history_before(log, log.users[train_positions], train_positions, length)
    # Items are event indices in time order per user, so an item is a log position here.
    in_history = set(history[history != PAD].tolist())
    return set(train_positions.tolist()), in_history


def test_leave_one_out_no_target_in_training_inputs():
    log = _random_log(seed=3)

    split = leave_one_out(log)

    assert np.array_equal(log.items, np.arange(len(log.items)))
    targets, history = _training_inputs(log, split.train_positions)
    held_out = set(split.test.positions.tolist()) | set(split.valid.positions.tolist())
    assert not targets & held_out
    assert not history & held_out
    for user, position in zip(split.test.users, split.test.positions):
        own = np.arange(log.offsets[user], log.offsets[user + 1])
        training = np.intersect1d(own, split.train_positions)
        assert np.all(log.timestamps[training] <= log.timestamps[position])
        assert np.all(training < position)


def test_temporal_split_hand_values(small_log):
    # Cut-off 3: user 0 has events at 1 (item 5) before and 3, 3, 6 (items 7, 9, 4) after.
    # User 1 has 2 (item 1) before and 4 (item 2) after. User 2 has only 5 (item 3), after.
    split = temporal_split(small_log, cutoff=3)

    assert split.cutoff == 3
    assert split.test.users.tolist() == [0, 1]
    assert split.test.items.tolist() == [7, 2]
    assert split.test.positions.tolist() == [1, 5]
    # Nobody has two events before the cut-off, so there is no validation target.
    assert split.valid.users.tolist() == []
    assert split.train_positions.tolist() == [0, 4]
    assert split.users_without_history == 1
    assert split.users_without_later_event == 0
    assert split.users_without_target == 1


def test_temporal_split_validation_is_last_before_cutoff(small_log):
    # Cut-off 4: user 0 has items 5, 7, 9 before (times 1, 3, 3), so 9 (ingested after 7) is
    # the validation target and 4 (time 6) the test target. User 1 has item 1 before and 2
    # (time 4, equal to the cut-off) after. User 2 has only item 3 at time 5.
    split = temporal_split(small_log, cutoff=4)

    assert split.valid.users.tolist() == [0]
    assert split.valid.items.tolist() == [9]
    assert split.valid.positions.tolist() == [2]
    assert split.test.users.tolist() == [0, 1]
    assert split.test.items.tolist() == [4, 2]
    assert split.train_positions.tolist() == [0, 1, 4]


def test_temporal_split_counts_users_without_target(small_log):
    # Cut-off 6: only user 0 has an event at or after it. User 1 (events at 2 and 4) and
    # user 2 (event at 5) end before the cut-off. User 3 has no events and is not counted.
    split = temporal_split(small_log, cutoff=6)

    assert split.test.users.tolist() == [0]
    assert split.test.items.tolist() == [4]
    assert split.users_without_later_event == 2
    assert split.users_without_history == 0
    assert split.users_without_target == 2
    # User 1 has two events before the cut-off, so the later one (item 2) is for validation.
    assert split.valid.users.tolist() == [0, 1]
    assert split.valid.items.tolist() == [9, 2]


def test_temporal_split_tie_at_cutoff_is_after():
    # Items 11 and 12 share timestamp 5, equal to the cut-off: both are after it, and 11,
    # ingested first, is the test target.
    log = InteractionLog.from_arrays(
        np.array([0, 0, 0, 0]), np.array([9, 10, 11, 12]), np.array([1, 2, 5, 5]), num_users=1, num_items=13
    )

    split = temporal_split(log, cutoff=5)

    assert split.test.items.tolist() == [11]
    assert split.valid.items.tolist() == [10]
    assert split.train_positions.tolist() == [0]


def test_temporal_split_no_leakage():
    for seed in range(5):
        log = _random_log(seed=seed)
        cutoff = int(np.median(log.timestamps))

        split = temporal_split(log, cutoff)

        # No training event at or after the cut-off.
        assert np.all(log.timestamps[split.train_positions] < cutoff)
        targets, history = _training_inputs(log, split.train_positions)
        test = set(split.test.positions.tolist())
        valid = set(split.valid.positions.tolist())
        assert not targets & test
        assert not history & test
        assert not targets & valid
        assert not history & valid
        assert np.all(log.timestamps[list(history)] < cutoff) if history else True

        # Each test target is the user's first event at or after the cut-off, and its history
        # holds only events before the cut-off.
        assert np.all(log.timestamps[split.test.positions] >= cutoff)
        assert np.all(log.timestamps[split.test.positions - 1] < cutoff)
        assert np.all(log.users[split.test.positions - 1] == split.test.users)
        test_history = history_before(log, split.test.users, split.test.positions, 10)
        assert np.all(log.timestamps[test_history[test_history != PAD]] < cutoff)
        assert np.all(log.timestamps[split.valid.positions] < cutoff)


def test_temporal_split_accounts_for_every_user():
    log = _random_log(seed=11)
    cutoff = int(np.quantile(log.timestamps, 0.7))

    split = temporal_split(log, cutoff)

    active = int(np.sum(log.user_counts() > 0))
    assert len(split.test.users) + split.users_without_target == active
    before = log.timestamps < cutoff
    assert len(split.train_positions) + len(split.valid.users) == int(before.sum())


def test_temporal_split_rejects_unordered_log():
    log = InteractionLog(
        users=np.array([0, 0]), items=np.array([1, 2]), timestamps=np.array([5, 3]),
        offsets=np.array([0, 2]), num_users=1, num_items=3,
    )

    with pytest.raises(ValueError, match="user 0 has timestamp 3 at log position 1 after 5"):
        temporal_split(log, cutoff=4)
    with pytest.raises(ValueError, match="cutoff must be an integer timestamp"):
        temporal_split(log, cutoff=4.5)


def test_cutoff_for_fraction_hand_values(small_log):
    # Sorted timestamps 1, 2, 3, 3, 4, 5, 6. A quarter of 7 events after the cut-off puts it at
    # index floor(7 * 0.75) = 5, timestamp 5, and leaves 2 events at or after it.
    assert cutoff_for_fraction(small_log, 0.25) == 5
    # Index floor(7 * 0.5) = 3 is timestamp 3, which the event at index 2 shares: 5 events after.
    assert cutoff_for_fraction(small_log, 0.5) == 3

    with pytest.raises(ValueError, match="strictly between 0 and 1, got 1.0"):
        cutoff_for_fraction(small_log, 1.0)
