"""Top-K over the whole catalogue in chunks, so memory depends on chunk sizes, not on U x I."""

from __future__ import annotations

import numpy as np
import torch

NO_ITEM = -1


def chunked_topk(
    user_vectors: torch.Tensor,
    item_vectors: torch.Tensor,
    k: int,
    seen_offsets: np.ndarray,
    seen_items: np.ndarray,
    item_chunk: int = 65536,
    unavailable: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``k`` items per user by dot product, never an excluded item.

    ``seen_offsets``/``seen_items`` are CSR rows of items to exclude, one row per user;
    ``unavailable`` is an optional (I,) bool mask of items nobody may get. Returns scores
    (U, k) float32 and items (U, k) int64, best first; equal scores are ordered by item index;
    when fewer than ``k`` items remain, the tail is padded with item -1 and score -inf.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    num_users, num_items = user_vectors.shape[0], item_vectors.shape[0]
    lengths = np.diff(seen_offsets)
    seen_rows = torch.from_numpy(np.repeat(np.arange(num_users), lengths))
    seen_cols = torch.from_numpy(np.asarray(seen_items, dtype=np.int64))

    best_scores = torch.full((num_users, k), float("-inf"))
    best_items = torch.full((num_users, k), NO_ITEM, dtype=torch.long)
    for start in range(0, num_items, item_chunk):
        stop = min(start + item_chunk, num_items)
        scores = user_vectors @ item_vectors[start:stop].T                # (U, C)
        in_chunk = (seen_cols >= start) & (seen_cols < stop)
        scores[seen_rows[in_chunk], seen_cols[in_chunk] - start] = float("-inf")
        if unavailable is not None:
            scores[:, unavailable[start:stop]] = float("-inf")

        # Merge the chunk into the running top-K. torch.topk keeps an arbitrary subset of tied
        # scores, so a stable sort is used instead: among equal scores the lower item index wins,
        # and the chosen items do not depend on item_chunk.
        take = min(k, stop - start)
        chunk_index = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :take]  # (U, take)
        chunk_scores = torch.gather(scores, 1, chunk_index)
        merged_scores = torch.cat([best_scores, chunk_scores], dim=1)     # (U, k + take)
        merged_items = torch.cat([best_items, chunk_index + start], dim=1)
        top_index = torch.sort(merged_scores, dim=1, descending=True, stable=True).indices[:, :k]
        best_scores, best_items = torch.gather(merged_scores, 1, top_index), torch.gather(merged_items, 1, top_index)

    # Deterministic order: score descending, then item index ascending; padding last.
    best_items[torch.isneginf(best_scores)] = NO_ITEM
    order_key = torch.where(best_items == NO_ITEM, torch.full_like(best_items, num_items), best_items)
    by_item = torch.argsort(order_key, dim=1, stable=True)
    scores_sorted = torch.gather(best_scores, 1, by_item)
    items_sorted = torch.gather(best_items, 1, by_item)
    by_score = torch.argsort(scores_sorted, dim=1, descending=True, stable=True)
    return torch.gather(scores_sorted, 1, by_score), torch.gather(items_sorted, 1, by_score)
