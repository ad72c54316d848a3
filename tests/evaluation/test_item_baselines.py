"""EASE and item-kNN weights and ranks, checked against hand-computed tiny cases."""

import math

import numpy as np
import pytest

from recsys_peft.dataset.log import InteractionLog
from recsys_peft.dataset.split import Targets
from recsys_peft.evaluation.baselines import rank_with
from recsys_peft.evaluation.ease import ease_scorer, fit_ease
from recsys_peft.evaluation.item_knn import fit_item_knn, item_knn_scorer


def _log(user_items: list[list[int]], num_items: int) -> InteractionLog:
    users = np.concatenate([[user] * len(items) for user, items in enumerate(user_items)])
    items = np.concatenate(user_items)
    return InteractionLog.from_arrays(users, items, np.arange(len(items)), len(user_items), num_items)


def test_ease_weights_two_items():
    # X = [[1, 1], [1, 0], [0, 1]] plus an item 2 that no user had, so G = [[2, 1], [1, 2]] on items
    # 0 and 1. With l2 = 1, P = (G + I)^-1 = [[3, -1], [-1, 3]] / 8 on those items, and
    # B[0, 1] = -P[0, 1] / P[1, 1] = (1/8) / (3/8) = 1/3, the same for B[1, 0]. Item 2 has
    # P[2, 2] = 1 and no co-occurrence, so its row and column are 0.
    log = _log([[0, 1], [0], [1]], num_items=3)

    weights = fit_ease(log, np.arange(4), l2=1.0)

    expected = [[0.0, 1 / 3, 0.0], [1 / 3, 0.0, 0.0], [0.0, 0.0, 0.0]]
    assert weights.numpy() == pytest.approx(np.array(expected), abs=1e-6)
    assert weights.dtype.is_floating_point


def test_ease_ranks_from_history():
    # User 1 at position 3 (after item 0) scores item 1 at 1/3 and item 2 at 0.
    # Target 1: rank 0. Target 2: item 1 is higher, so rank 1.
    log = _log([[0, 1], [0], [1]], num_items=3)
    weights = fit_ease(log, np.arange(4), l2=1.0)
    targets = Targets(np.array([1, 1]), np.array([1, 2]), np.array([3, 3]))

    ranks = rank_with(ease_scorer(log, weights), log, targets)

    assert ranks.tolist() == [0, 1]


def test_ease_rejects_bad_settings():
    log = _log([[0, 1]], num_items=3)

    with pytest.raises(ValueError, match="l2 must be a positive regularisation weight, got 0.0"):
        fit_ease(log, np.arange(2), l2=0.0)
    with pytest.raises(ValueError, match="has 3 items, more than max_items=2. Use item-kNN"):
        fit_ease(log, np.arange(2), l2=1.0, max_items=2)


# Users: 0 had items 0 and 1, 1 had 0, 1 and 2, 2 had 2 and 3. Item user counts: 2, 2, 2, 1.
# Cosines: (0, 1) = 2 / 2 = 1, (0, 2) = (1, 2) = 1 / 2, (2, 3) = 1 / sqrt(2), (0, 3) = (1, 3) = 0.
KNN_USERS = [[0, 1], [0, 1, 2], [2, 3]]
SQRT_HALF = 1 / math.sqrt(2)


def test_item_knn_one_neighbour():
    log = _log(KNN_USERS, num_items=4)

    matrix = fit_item_knn(log, np.arange(7), neighbours=1).to_dense()

    expected = [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, SQRT_HALF], [0, 0, SQRT_HALF, 0]]
    assert matrix.numpy() == pytest.approx(np.array(expected), abs=1e-6)


def test_item_knn_tie_keeps_lower_index():
    # Item 2's neighbours: 3 (0.707), then 0 and 1 tie at 0.5 and item 0 is kept. Item 3 has
    # only one neighbour with a positive similarity.
    log = _log(KNN_USERS, num_items=4)

    matrix = fit_item_knn(log, np.arange(7), neighbours=2).to_dense()

    expected = [[0, 1, 0.5, 0], [1, 0, 0.5, 0], [0.5, 0, 0, SQRT_HALF], [0, 0, SQRT_HALF, 0]]
    assert matrix.numpy() == pytest.approx(np.array(expected), abs=1e-6)


def test_item_knn_more_neighbours_than_items():
    log = _log(KNN_USERS, num_items=4)

    matrix = fit_item_knn(log, np.arange(7), neighbours=50).to_dense()

    expected = [[0, 1, 0.5, 0], [1, 0, 0.5, 0], [0.5, 0.5, 0, SQRT_HALF], [0, 0, SQRT_HALF, 0]]
    assert matrix.numpy() == pytest.approx(np.array(expected), abs=1e-6)


def test_item_knn_ranks_from_history():
    # User 2 at position 6 had item 2. With 3 neighbours, item j scores W[j, 2]: item 0 0.5,
    # item 1 0.5, item 3 0.707, and item 2 is excluded as seen.
    # Target 3: rank 0. Target 0: item 3 is higher and item 1 ties, so rank 2.
    log = _log(KNN_USERS, num_items=4)
    matrix = fit_item_knn(log, np.arange(7), neighbours=3)
    targets = Targets(np.array([2, 2]), np.array([3, 0]), np.array([6, 6]))

    ranks = rank_with(item_knn_scorer(log, matrix), log, targets)

    assert ranks.tolist() == [0, 2]


def test_item_knn_blocks_match_one_block(monkeypatch):
    rng = np.random.default_rng(0)
    user_items = [sorted(rng.choice(30, size=rng.integers(1, 8), replace=False).tolist()) for _ in range(40)]
    log = _log(user_items, num_items=30)
    whole = fit_item_knn(log, np.arange(len(log.items)), neighbours=5).to_dense()

    monkeypatch.setattr("recsys_peft.evaluation.item_knn._SIMILARITY_BLOCK_VALUES", 30 * 7)
    blocked = fit_item_knn(log, np.arange(len(log.items)), neighbours=5).to_dense()

    assert blocked.numpy() == pytest.approx(whole.numpy())
    assert int((whole > 0).sum(dim=1).max()) <= 5


def test_item_knn_rejects_bad_neighbours():
    log = _log(KNN_USERS, num_items=4)

    with pytest.raises(ValueError, match="neighbours must be a positive integer, got 0"):
        fit_item_knn(log, np.arange(7), neighbours=0)
