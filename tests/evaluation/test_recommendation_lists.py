"""Lists made elsewhere: target positions, seen items removed, table checks."""

import numpy as np
import pandas as pd
import pytest

from recsys_peft.dataset.log import InteractionLog
from recsys_peft.dataset.split import Targets
from recsys_peft.evaluation.lists import lists_for_targets, target_list_ranks
from recsys_peft.evaluation.metrics import list_ranks, ranking_metrics

USER_IDS = ["u0", "u1", "u2"]
ITEM_IDS = ["a", "b", "c", "d", "e"]


@pytest.fixture
def log() -> InteractionLog:
    """User u0 had a then b (positions 0, 1), u1 had c then d (2, 3), u2 had e (4)."""
    return InteractionLog.from_arrays(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 2, 3, 4]), np.arange(5),
                                      num_users=3, num_items=5)


def test_list_ranks_hand_values():
    lists = np.array([[3, 1, 4], [2, -1, -1], [0, 1, 2]])

    ranks = list_ranks(lists, np.array([4, 2, 3]))

    # Target 4 is third, target 2 first, and target 3 missing, which gives K = 3.
    assert ranks.tolist() == [2, 0, 3]
    assert ranking_metrics(ranks, 3)["hr@3"].tolist() == [1.0, 1.0, 0.0]


def test_list_ranks_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"one entry per list \(2\), got shape \(3,\)"):
        list_ranks(np.zeros((2, 4), dtype=np.int64), np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="2-D"):
        list_ranks(np.zeros(4, dtype=np.int64), np.zeros(4, dtype=np.int64))


def test_lists_for_targets_removes_seen_and_reorders(log):
    # u0's target is b at position 1, so a is seen. u1's target is d at position 3, so c is seen.
    targets = Targets(np.array([0, 1]), np.array([1, 3]), np.array([1, 3]))
    frame = pd.DataFrame({
        "user_id": ["u0", "u0", "u0", "u1", "u1", "u1", "u2"],
        "item_id": ["a", "c", "b", "c", "zz", "d", "a"],
        "rank": [1, 2, 3, 1, 2, 3, 1],
    })

    lists = lists_for_targets(frame, USER_IDS, ITEM_IDS, log, targets, k=3)

    # u0: a is removed, so c and b move up. u1: c is removed and zz is not in the catalogue.
    assert lists.items.tolist() == [[2, 1, -1], [3, -1, -1]]
    assert lists.seen_items == 2
    assert lists.unknown_items == 1
    assert lists.users_without_list == 0
    assert target_list_ranks(lists, targets).tolist() == [1, 0]


def test_lists_cut_at_k_count_missing(log):
    targets = Targets(np.array([0, 2]), np.array([1, 4]), np.array([1, 4]))
    frame = pd.DataFrame({"user_id": ["u0", "u0"], "item_id": ["c", "b"], "rank": [1, 2]})

    lists = lists_for_targets(frame, USER_IDS, ITEM_IDS, log, targets, k=1)

    assert lists.items.tolist() == [[2], [-1]]
    assert lists.users_without_list == 1
    assert target_list_ranks(lists, targets).tolist() == [1, 1]


def test_lists_for_targets_rejects_bad_tables(log):
    targets = Targets(np.array([0]), np.array([1]), np.array([1]))

    with pytest.raises(ValueError, match=r"\['rank'\] are missing"):
        lists_for_targets(pd.DataFrame({"user_id": ["u0"], "item_id": ["a"]}), USER_IDS, ITEM_IDS, log, targets, 3)
    with pytest.raises(ValueError, match="ranks must start at 1 for the best item, got a rank of 0"):
        lists_for_targets(pd.DataFrame({"user_id": ["u0"], "item_id": ["a"], "rank": [0]}),
                          USER_IDS, ITEM_IDS, log, targets, 3)
    duplicate = pd.DataFrame({"user_id": ["u0", "u0"], "item_id": ["c", "d"], "rank": [1, 1]})
    with pytest.raises(ValueError, match="more than one item at the same rank"):
        lists_for_targets(duplicate, USER_IDS, ITEM_IDS, log, targets, 3)
