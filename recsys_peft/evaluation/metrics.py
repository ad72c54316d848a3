"""Full-catalogue ranking metrics for next-item prediction with one held-out target per user.

Every user is scored against every item in the catalogue, with no sampled negatives. Items the
user has already seen can be excluded from the ranking through a boolean mask. The functions
return per-user values, and the caller averages them over users.
"""

from __future__ import annotations

import numpy as np
import torch

# Item index that pads a top-K list shorter than K.
PAD_ITEM = -1


def _validate_scores(scores: torch.Tensor) -> None:
    if scores.dim() != 2:
        raise ValueError(
            f"scores must be a 2-D (users, items) tensor, got shape {tuple(scores.shape)}"
        )
    if not scores.is_floating_point():
        raise ValueError(f"scores must have a floating-point dtype, got {scores.dtype}")
    nan_count = int(torch.isnan(scores).sum())
    if nan_count:
        raise ValueError(
            f"scores must not contain NaN, got {nan_count} NaN values. "
            "Check the model output for overflow or invalid inputs"
        )


def _validate_exclude(exclude: torch.Tensor, scores: torch.Tensor) -> None:
    if exclude.dtype != torch.bool:
        raise ValueError(f"exclude must be a bool mask, got dtype {exclude.dtype}")
    if exclude.shape != scores.shape:
        raise ValueError(
            f"exclude must have the same shape as scores {tuple(scores.shape)}, "
            f"got {tuple(exclude.shape)}"
        )


def target_ranks(
    scores: torch.Tensor,
    targets: torch.Tensor,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """Compute the 0-based rank of each user's target item among the items that are not excluded.

    Args:
        scores: (U, I) float scores, one row per user and one column per catalogue item.
            NaN values raise ValueError because they cannot be ranked.
        targets: (U,) int64 index of each user's held-out item.
        exclude: optional (U, I) bool mask of items to drop from the ranking, usually the items
            the user has already seen. The target is never excluded from its own ranking, even
            where the mask marks it, so an item the user consumes again stays rankable.

    Returns:
        (U,) int64 tensor on the device of ``scores``. The rank is the number of non-excluded
        items other than the target whose score is greater than or equal to the target's
        score, so ties count against the model and a constant score gives the worst rank.
    """
    _validate_scores(scores)
    num_users, num_items = scores.shape

    if targets.dim() != 1 or targets.shape[0] != num_users:
        raise ValueError(
            f"targets must be a 1-D tensor with one entry per user ({num_users}), "
            f"got shape {tuple(targets.shape)}"
        )
    if targets.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"targets must be integer item indices, got dtype {targets.dtype}")
    if num_users and (int(targets.min()) < 0 or int(targets.max()) >= num_items):
        raise ValueError(
            f"targets must be item indices in [0, {num_items}), got values from "
            f"{int(targets.min())} to {int(targets.max())}"
        )
    if exclude is not None:
        _validate_exclude(exclude, scores)

    targets = targets.to(device=scores.device, dtype=torch.int64)
    user_index = torch.arange(num_users, device=scores.device)
    target_scores = scores[user_index, targets].unsqueeze(1)  # (U, 1)

    at_least_target = scores >= target_scores  # (U, I)
    if exclude is not None:
        at_least_target &= ~exclude.to(scores.device)
    # The target compares equal to itself, so it is removed here. This also makes the result
    # independent of whether the mask marks the target.
    at_least_target[user_index, targets] = False

    return at_least_target.sum(dim=1)


def ranking_metrics(ranks: torch.Tensor | np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Compute per-user top-K metrics from 0-based target ranks, with one relevant item per user.

    Args:
        ranks: (U,) 0-based rank of each user's target, as returned by ``target_ranks``.
        k: cutoff K. A K larger than the catalogue is valid, and then every user is a hit.

    Returns:
        float64 arrays of shape (U,) under the keys ``hr@K``, ``ndcg@K``, ``mrr@K`` and
        ``recall@K``. A user whose rank is K or more gets 0 for every metric. Otherwise the
        user gets hit rate 1, NDCG 1/log2(rank + 2) and reciprocal rank 1/(rank + 1). Recall
        equals hit rate because each user has a single target, and it is kept as its own key
        so that reports can use either name.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")

    if isinstance(ranks, torch.Tensor):
        ranks = ranks.detach().cpu().numpy()
    ranks = np.asarray(ranks)
    if ranks.ndim != 1:
        raise ValueError(f"ranks must be a 1-D array with one rank per user, got shape {ranks.shape}")
    if not np.issubdtype(ranks.dtype, np.integer):
        raise ValueError(f"ranks must be integers, got dtype {ranks.dtype}")
    if ranks.size and int(ranks.min()) < 0:
        raise ValueError(f"ranks must be non-negative, got minimum {int(ranks.min())}")

    ranks = ranks.astype(np.float64)
    hit = ranks < k
    hit_rate = hit.astype(np.float64)
    ndcg = np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)
    reciprocal_rank = np.where(hit, 1.0 / (ranks + 1.0), 0.0)

    return {
        f"hr@{k}": hit_rate,
        f"ndcg@{k}": ndcg,
        f"mrr@{k}": reciprocal_rank,
        f"recall@{k}": hit_rate.copy(),
    }


def summarize(per_user: dict[str, np.ndarray]) -> dict[str, float]:
    """Average each per-user metric over users and add the number of users under ``users``.

    All arrays must have the same, non-zero length, because every metric is averaged over the
    same users.
    """
    if not per_user:
        raise ValueError("per_user must contain at least one metric, got an empty dict")

    lengths = {name: len(values) for name, values in per_user.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"every metric must have one value per user, got lengths {lengths}")
    num_users = next(iter(lengths.values()))
    if num_users == 0:
        raise ValueError("per_user arrays are empty, so there are no users to average over")
    if "users" in per_user:
        raise ValueError("per_user must not contain the key 'users', which summarize adds")

    summary: dict[str, float] = {
        name: float(np.mean(np.asarray(values, dtype=np.float64)))
        for name, values in per_user.items()
    }
    summary["users"] = num_users
    return summary


def catalogue_coverage(topk_items: np.ndarray, num_items: int) -> float:
    """Compute the fraction of the catalogue that appears in at least one user's top-K list.

    Args:
        topk_items: (U, K) item indices, as returned by ``topk_items``. The padding value -1
            is ignored.
        num_items: catalogue size, the denominator.
    """
    if isinstance(num_items, bool) or not isinstance(num_items, (int, np.integer)) or num_items < 1:
        raise ValueError(f"num_items must be a positive integer, got {num_items!r}")
    if isinstance(topk_items, torch.Tensor):
        topk_items = topk_items.detach().cpu().numpy()
    items = np.asarray(topk_items)
    if items.size and not np.issubdtype(items.dtype, np.integer):
        raise ValueError(f"topk_items must be integer item indices, got dtype {items.dtype}")

    items = items[items != -1]
    if items.size and (int(items.min()) < 0 or int(items.max()) >= num_items):
        raise ValueError(
            f"topk_items must be item indices in [0, {num_items}) or the padding value -1, "
            f"got values from {int(items.min())} to {int(items.max())}"
        )
    return len(np.unique(items)) / num_items


def topk_items(
    scores: torch.Tensor,
    k: int,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """Select each user's K highest-scoring items, skipping excluded items.

    Args:
        scores: (U, I) float scores. NaN values raise ValueError.
        k: number of items per user.
        exclude: optional (U, I) bool mask of items that must not be recommended.

    Returns:
        (U, K) int64 item indices in descending score order. A row with fewer than K available
        items, or a K larger than the catalogue, is padded at the end with -1. Items with equal
        scores come back in an unspecified order.
    """
    _validate_scores(scores)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if exclude is not None:
        _validate_exclude(exclude, scores)
    num_users, num_items = scores.shape

    # Available items with a score of -inf are raised to the lowest finite value, so that
    # they still sort ahead of the excluded items, which get -inf.
    sort_keys = scores.clamp(min=torch.finfo(scores.dtype).min)
    if exclude is None:
        available_counts = torch.full((num_users,), num_items, device=scores.device)
    else:
        exclude = exclude.to(scores.device)
        sort_keys = sort_keys.masked_fill(exclude, float("-inf"))
        available_counts = num_items - exclude.sum(dim=1)  # (U,)

    selected_count = min(int(k), num_items)
    _, indices = torch.topk(sort_keys, selected_count, dim=1)  # (U, selected_count)

    padded = torch.full((num_users, int(k)), -1, dtype=torch.int64, device=scores.device)
    padded[:, :selected_count] = indices
    positions = torch.arange(int(k), device=scores.device).unsqueeze(0)  # (1, K)
    padded[positions >= available_counts.unsqueeze(1)] = -1
    return padded


def list_ranks(top_items: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Find each target's 0-based position in its user's ranked list, for lists made elsewhere.

    Use this to score recommendations that come as lists rather than scores, such as those of
    another library or of an exported model. The caller removes seen items from the lists
    first, so that the result matches ``target_ranks`` with seen items excluded.

    Args:
        top_items: (U, K) item indices, best first, padded with -1 at the end.
        targets: (U,) item index of each user's target.

    Returns:
        (U,) int64 ranks. A target missing from its list gets rank K, which ``ranking_metrics``
        scores as a miss at every cutoff up to K. At a cutoff above K it would count as a hit,
        so evaluate lists only at cutoffs up to their length.
    """
    if isinstance(top_items, torch.Tensor):
        top_items = top_items.detach().cpu().numpy()
    lists = np.asarray(top_items)
    targets = np.asarray(targets)
    if lists.ndim != 2:
        raise ValueError(f"top_items must be a 2-D (users, K) array, got shape {lists.shape}")
    if targets.shape != (lists.shape[0],):
        raise ValueError(
            f"targets must have one entry per list ({lists.shape[0]}), got shape {targets.shape}"
        )
    if lists.size and not np.issubdtype(lists.dtype, np.integer):
        raise ValueError(f"top_items must be integer item indices, got dtype {lists.dtype}")

    found = lists == targets[:, None]                                  # (U, K)
    first = np.argmax(found, axis=1)
    return np.where(found.any(axis=1), first, lists.shape[1]).astype(np.int64)
