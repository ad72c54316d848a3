"""Popularity baselines and validation tuning, checked against hand-computed ranks."""

import numpy as np
import pytest
import torch

from recsys_peft.dataset.log import InteractionLog
from recsys_peft.dataset.split import Targets, leave_one_out
from recsys_peft.evaluation.baselines import (
    history_matrix,
    most_popular_ranks,
    popularity_scorer,
    rank_with,
    segment_popularity_scorer,
    top_items_with,
    tune_on_validation,
)


@pytest.fixture
def popularity_log() -> InteractionLog:
    """Three users and five items; every event is a training event in these tests.

    User 0: items 0, 1, 2. User 1: items 0, 1, 3. User 2: items 1, 4. Counts: item 0 two,
    item 1 three, items 2, 3 and 4 one each. Log positions: user 0 0-2, user 1 3-5, user 2 6-7.
    """
    users = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    items = np.array([0, 1, 2, 0, 1, 3, 1, 4])
    timestamps = np.arange(8)
    return InteractionLog.from_arrays(users, items, timestamps, num_users=3, num_items=5)


def test_history_matrix_before_position(popularity_log):
    # User 1 before position 5 had items 0 and 1. User 2 before position 6 had nothing.
    history = history_matrix(popularity_log, np.array([1, 2]), np.array([5, 6]))

    assert history.tolist() == [[1.0, 1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]]


def test_popularity_ranks_ties_and_exclusion(popularity_log):
    score = popularity_scorer(popularity_log, np.arange(8))
    # User 2 at position 7 has seen item 1 (the most popular), which is excluded.
    # Target 4 (count 1): item 0 (2) is higher, items 2 and 3 tie at 1, so rank 3.
    # User 0 at position 1 has seen item 0. Target 1 (3): nothing higher, so rank 0.
    # User 1 at position 3 has seen nothing. Target 0 (2): item 1 is higher, so rank 1.
    targets = Targets(np.array([2, 0, 1]), np.array([4, 1, 0]), np.array([7, 1, 3]))

    ranks = rank_with(score, popularity_log, targets)

    assert ranks.tolist() == [3, 0, 1]


def test_popularity_top_items_skip_seen(popularity_log):
    score = popularity_scorer(popularity_log, np.arange(8))
    # User 1 at position 5 has seen items 0 and 1. The rest tie at count 1.
    targets = Targets(np.array([1]), np.array([3]), np.array([5]))

    top = top_items_with(score, popularity_log, targets, k=5)

    assert sorted(top[0, :3].tolist()) == [2, 3, 4]
    assert top[0, 3:].tolist() == [-1, -1]


def test_most_popular_ranks_uses_training_events_only(popularity_log):
    split = leave_one_out(popularity_log)
    # Users 0 and 1 have targets. Training events: user 0 item 0, user 1 item 0, user 2 items
    # 1 and 4, so counts are item 0: 2, item 1: 1, item 4: 1. User 0's test target (item 2,
    # position 2) has seen 0 and 1 and ties at 0 with item 3, behind item 4: rank 2.
    # User 1's test target (item 3, position 5) has seen 0 and 1, ties with 2, behind 4: rank 2.
    ranks = most_popular_ranks(popularity_log, split, split.test)

    assert ranks.tolist() == [2, 2]


def test_segment_popularity_hand_values(popularity_log):
    # Users 0 and 1 are segment 0, user 2 has no segment. Segment 0 counts: item 0 two, item 1
    # two, items 2 and 3 one, item 4 zero. Global counts (max 3) break the tie of items 0 and 1:
    # item 1 scores 2 + 3/4 and item 0 scores 2 + 2/4.
    score = segment_popularity_scorer(popularity_log, np.arange(8), np.array([0, 0, -1]), num_segments=1)

    scores = score(np.array([0, 2]), np.array([0, 0]))

    assert scores[0].tolist() == pytest.approx([2.5, 2.75, 1.25, 1.25, 0.25])
    assert scores[1].tolist() == pytest.approx([2.0, 3.0, 1.0, 1.0, 1.0])


def test_segment_popularity_differs_from_global(popularity_log):
    # Segment 1 is user 2 only, who had items 1 and 4. For a user of segment 1 with nothing
    # seen, item 4 (segment count 1 + 1/4) is behind item 1 (1 + 3/4) and ahead of item 0
    # (0 + 2/4): rank 1. With the global counts it would tie with items 2 and 3 behind 1 and 0.
    score = segment_popularity_scorer(popularity_log, np.arange(8), np.array([0, 0, 1]), num_segments=2)
    targets = Targets(np.array([2]), np.array([4]), np.array([6]))

    ranks = rank_with(score, popularity_log, targets)

    assert ranks.tolist() == [1]


def test_segment_popularity_rejects_bad_segments(popularity_log):
    with pytest.raises(ValueError, match=r"one entry per user \(3\), got shape \(2,\)"):
        segment_popularity_scorer(popularity_log, np.arange(8), np.array([0, 0]), num_segments=1)
    with pytest.raises(ValueError, match=r"indices in \[-1, 1\), got values from 0 to 1"):
        segment_popularity_scorer(popularity_log, np.arange(8), np.array([0, 1, 0]), num_segments=1)


def test_tune_on_validation_picks_best(popularity_log):
    # Each candidate value v scores item v highest. The validation target of user 2 at
    # position 7 is item 4, so v = 4 gives NDCG 1 and the others rank it lower.
    def build(value):
        row = torch.zeros(5)
        row[int(value)] = 1.0
        return lambda users, positions: row.expand(len(users), -1)

    valid = Targets(np.array([2]), np.array([4]), np.array([7]))

    tuning = tune_on_validation(build, [0, 4, 2], popularity_log, valid, k=10)

    assert tuning.best == 4
    assert tuning.ndcg[4] == pytest.approx(1.0)
    # With v = 0 the target ties at 0 with items 2 and 3 behind item 0 (item 1 is seen): rank 3.
    assert tuning.ndcg[0] == pytest.approx(1.0 / np.log2(5))


def test_tune_on_validation_tie_keeps_first(popularity_log):
    valid = Targets(np.array([2]), np.array([4]), np.array([7]))
    constant = lambda users, positions: torch.zeros(len(users), 5)  # noqa: E731

    tuning = tune_on_validation(lambda value: constant, [3.0, 1.0], popularity_log, valid)

    assert tuning.best == 3.0
    with pytest.raises(ValueError, match="at least one candidate"):
        tune_on_validation(lambda value: constant, [], popularity_log, valid)
