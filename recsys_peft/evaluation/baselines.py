"""Baselines ranked with the same protocol as the models.

A baseline is a score function: given a chunk of users and the log position of each user's
target, it returns a (users, items) score matrix computed from training data and from the
user's events before that position. ``rank_with`` and ``top_items_with`` then rank the full
catalogue with the user's earlier items excluded and ties counted against the baseline, exactly
as ``rank_targets`` does for a model. The popularity baselines live here, and EASE and item-kNN
in their own modules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from recsys_peft.dataset.log import InteractionLog
from recsys_peft.dataset.split import LeaveOneOutSplit, Targets, TemporalSplit
from recsys_peft.dataset.views import seen_csr
from recsys_peft.evaluation.metrics import ranking_metrics, target_ranks, topk_items
from recsys_peft.evaluation.ranking import exclusion_mask

# (users, target positions) -> (users, items) float32 scores, from events before each position.
ScoreFunction = Callable[[np.ndarray, np.ndarray], torch.Tensor]

DEFAULT_CHUNK = 1024


def rank_with(score: ScoreFunction, log: InteractionLog, targets: Targets, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """Compute the 0-based rank of each target among the items its user had not seen before it.

    Ties count against the baseline, as in ``target_ranks``.
    """
    offsets, seen = seen_csr(log, targets.users, targets.positions)
    ranks = np.empty(len(targets.users), dtype=np.int64)
    for start in range(0, len(targets.users), chunk):
        stop = min(start + chunk, len(targets.users))
        scores = score(targets.users[start:stop], targets.positions[start:stop])       # (C, I)
        mask = exclusion_mask(offsets, seen, slice(start, stop), log.num_items)
        target = torch.from_numpy(targets.items[start:stop])
        ranks[start:stop] = target_ranks(scores, target, mask).numpy()
    return ranks


def top_items_with(score: ScoreFunction, log: InteractionLog, targets: Targets, k: int,
                   chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """Select each user's top ``k`` items as of the target, never an item seen before it.

    Returns (U, k) int64 item indices, best first, padded with -1 as ``topk_items`` does.
    """
    offsets, seen = seen_csr(log, targets.users, targets.positions)
    lists = np.empty((len(targets.users), k), dtype=np.int64)
    for start in range(0, len(targets.users), chunk):
        stop = min(start + chunk, len(targets.users))
        scores = score(targets.users[start:stop], targets.positions[start:stop])
        mask = exclusion_mask(offsets, seen, slice(start, stop), log.num_items)
        lists[start:stop] = topk_items(scores, k, mask).numpy()
    return lists


def history_matrix(log: InteractionLog, users: np.ndarray, positions: np.ndarray) -> torch.Tensor:
    """Build the (users, items) float32 0/1 matrix of the items each user had before ``positions``."""
    offsets, seen = seen_csr(log, users, positions)
    return exclusion_mask(offsets, seen, slice(0, len(users)), log.num_items).to(torch.float32)


def training_counts(log: InteractionLog, train_positions: np.ndarray) -> np.ndarray:
    """Count the training events of each item, as (num_items,) float64."""
    return np.bincount(log.items[train_positions], minlength=log.num_items).astype(np.float64)


def popularity_scorer(log: InteractionLog, train_positions: np.ndarray) -> ScoreFunction:
    """Score every item by its number of training events, the same for every user."""
    row = torch.from_numpy(training_counts(log, train_positions).astype(np.float32))
    return lambda users, positions: row.expand(len(users), -1)


def segment_popularity_scorer(log: InteractionLog, train_positions: np.ndarray, user_segments: np.ndarray,
                              num_segments: int) -> ScoreFunction:
    """Score items by their training events among users of the same segment.

    Items with the same count in the segment are ordered by their count over all users, because
    the score adds ``global count / (max global count + 1)``, which is below 1. A segment with
    few users leaves most items at count 0, and without this the baseline would lose to every
    tie. Users without a segment (index -1) get the scores of the most-popular baseline.

    Raises:
        ValueError: when user_segments does not have one entry per user, or contains an index
            outside [-1, num_segments).
    """
    user_segments = np.asarray(user_segments, dtype=np.int64)
    if user_segments.shape != (log.num_users,):
        raise ValueError(f"user_segments must have one entry per user ({log.num_users}), "
                         f"got shape {user_segments.shape}")
    if user_segments.size and (user_segments.min() < -1 or user_segments.max() >= num_segments):
        raise ValueError(f"user_segments must be segment indices in [-1, {num_segments}), got values from "
                         f"{int(user_segments.min())} to {int(user_segments.max())}")

    global_counts = training_counts(log, train_positions)
    train_items = log.items[train_positions]
    train_segments = user_segments[log.users[train_positions]]
    in_segment = train_segments >= 0
    counts = np.zeros((num_segments + 1, log.num_items))                       # (S + 1, I)
    np.add.at(counts, (train_segments[in_segment], train_items[in_segment]), 1.0)
    counts[:num_segments] += global_counts / (global_counts.max() + 1.0)
    counts[num_segments] = global_counts  # the row for users without a segment
    table = torch.from_numpy(counts.astype(np.float32))
    # Segment -1 selects the last row, which contains the global counts.
    return lambda users, positions: table[torch.from_numpy(user_segments[users])]


def most_popular_ranks(log: InteractionLog, split: LeaveOneOutSplit | TemporalSplit, targets: Targets,
                       chunk: int = 2048) -> np.ndarray:
    """Rank targets by item popularity among training events (ties count against the baseline)."""
    return rank_with(popularity_scorer(log, split.train_positions), log, targets, chunk)


@dataclass(frozen=True)
class Tuning:
    """Validation NDCG@K of each candidate value of one setting, and the best value."""

    best: float
    ndcg: dict[float, float]
    k: int


def tune_on_validation(build: Callable[[float], ScoreFunction], values: Sequence[float], log: InteractionLog,
                       valid: Targets, k: int = 10) -> Tuning:
    """Pick the value of one setting whose baseline has the highest validation NDCG@K.

    ``build`` turns a value into a score function fitted on training data only. On equal NDCG
    the value listed first wins.

    Raises:
        ValueError: when values or the validation targets are empty.
    """
    if not values:
        raise ValueError("values must list at least one candidate setting, got none")
    if len(valid.users) == 0:
        raise ValueError("there are no validation targets to tune on, so every setting would tie")
    ndcg = {}
    for value in values:
        ranks = rank_with(build(value), log, valid)
        ndcg[value] = float(ranking_metrics(ranks, k)[f"ndcg@{k}"].mean())
    best = max(values, key=lambda value: ndcg[value])
    return Tuning(best=best, ndcg=ndcg, k=k)
