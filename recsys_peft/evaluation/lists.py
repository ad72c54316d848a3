"""Recommendation lists made outside this evaluator, scored with its protocol.

A list table has one row per recommended item, with the columns ``user_id``, ``item_id`` (the
ids of the source data, as strings) and ``rank`` (1 for the best item). The pipeline's
recommendations and the RecBole comparison both use it. Lists are read for the test users
only, seen items are removed, and the target's position in what is left is its rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys_peft.dataset.log import InteractionLog
from recsys_peft.dataset.split import Targets
from recsys_peft.dataset.views import seen_csr
from recsys_peft.evaluation.metrics import PAD_ITEM, list_ranks

LIST_COLUMNS = ("user_id", "item_id", "rank")


@dataclass(frozen=True)
class TargetLists:
    """Top-K lists aligned with the targets, and what was dropped on the way.

    ``items`` is (U, K) int64 in the order of ``targets.users``, best first, padded with -1.
    ``users_without_list`` counts test users with no row in the table, and
    ``unknown_items`` counts rows whose item id is not in the catalogue. ``seen_items`` counts
    recommended items that the user had before the target, which are removed.
    """

    items: np.ndarray
    users_without_list: int
    unknown_items: int
    seen_items: int


def lists_for_targets(frame: pd.DataFrame, user_ids: Sequence[str], item_ids: Sequence[str],
                      log: InteractionLog, targets: Targets, k: int) -> TargetLists:
    """Build each test user's top-``k`` list from a list table, with seen items removed.

    Rows of users without a target are ignored, and so are ranks above ``k``. A list shortened
    by removing seen items is not refilled, because the table contains nothing past its last rank.

    Raises:
        ValueError: when a column is missing, a rank is below 1, or a user has two rows with one
            rank.
    """
    missing = [column for column in LIST_COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(f"the recommendation table must have the columns {list(LIST_COLUMNS)}, "
                         f"but {missing} are missing (found {list(frame.columns)})")
    ranks = frame["rank"].to_numpy()
    if len(ranks) and int(ranks.min()) < 1:
        raise ValueError(f"ranks must start at 1 for the best item, got a rank of {int(ranks.min())}")

    user_index = pd.Series(np.arange(len(user_ids)), index=pd.Index(user_ids, dtype=object))
    item_index = pd.Series(np.arange(len(item_ids)), index=pd.Index(item_ids, dtype=object))
    row_of_user = np.full(len(user_ids), -1, dtype=np.int64)
    row_of_user[targets.users] = np.arange(len(targets.users))

    users = user_index.reindex(frame["user_id"].astype(str).to_numpy()).to_numpy()
    items = item_index.reindex(frame["item_id"].astype(str).to_numpy()).to_numpy()
    known_user = ~np.isnan(users)
    rows = np.full(len(frame), -1, dtype=np.int64)
    rows[known_user] = row_of_user[users[known_user].astype(np.int64)]
    wanted = (rows >= 0) & (ranks <= k)
    unknown_items = int(np.sum(wanted & np.isnan(items)))
    wanted &= ~np.isnan(items)

    lists = np.full((len(targets.users), k), PAD_ITEM, dtype=np.int64)
    cells = rows[wanted] * k + (ranks[wanted] - 1)
    if len(np.unique(cells)) != len(cells):
        raise ValueError("a user has more than one item at the same rank in the recommendation table")
    lists.reshape(-1)[cells] = items[wanted].astype(np.int64)

    has_list = np.zeros(len(targets.users), dtype=bool)
    has_list[rows[wanted]] = True
    kept, seen_count = _remove_seen(lists, log, targets)
    return TargetLists(kept, int(np.sum(~has_list)), unknown_items, seen_count)


def _remove_seen(lists: np.ndarray, log: InteractionLog, targets: Targets) -> tuple[np.ndarray, int]:
    """Drop items seen before each target and close the gaps, keeping the order of the rest."""
    offsets, seen = seen_csr(log, targets.users, targets.positions)
    seen_rows = np.repeat(np.arange(len(targets.users)), np.diff(offsets))
    # One int64 key per (list row, item) pair, so membership needs no dense (users, items) mask.
    seen_keys = seen_rows * log.num_items + seen
    list_keys = np.arange(len(lists))[:, None] * log.num_items + lists            # (U, K)

    filled = lists != PAD_ITEM
    is_seen = filled & np.isin(list_keys, seen_keys)
    keep = filled & ~is_seen
    # A stable sort on "not kept" moves kept items to the front in their original order.
    order = np.argsort(~keep, axis=1, kind="stable")
    compacted = np.take_along_axis(np.where(keep, lists, PAD_ITEM), order, axis=1)
    return compacted, int(is_seen.sum())


def target_list_ranks(lists: TargetLists, targets: Targets) -> np.ndarray:
    """Return each target's 0-based rank in its list, or K when the list does not hold it."""
    return list_ranks(lists.items, targets.items)
