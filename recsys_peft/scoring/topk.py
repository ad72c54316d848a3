"""Top-K over the whole catalogue in chunks, so memory depends on chunk sizes, not on U x I.

Every result is ordered by score (descending) and then by item index (ascending), and the items
chosen do not depend on the chunk size: among equal scores the lower item index wins.
"""

from __future__ import annotations

import numpy as np
import torch

NO_ITEM = -1
# One (users x items) block of float32 scores is the largest buffer: 256 x 131,072 is 128 MiB.
DEFAULT_ITEM_CHUNK = 131_072


def chunked_topk(
    user_vectors: torch.Tensor,
    item_vectors: torch.Tensor,
    k: int,
    seen_offsets: np.ndarray,
    seen_items: np.ndarray,
    item_chunk: int = DEFAULT_ITEM_CHUNK,
    unavailable: torch.Tensor | None = None,
    buffer: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the top ``k`` items per user by dot product, never an excluded item.

    ``seen_offsets``/``seen_items`` are CSR rows of items to exclude, one row per user, and
    ``unavailable`` is an optional (I,) bool mask of items that no user may get. Returns scores
    (U, k) float32 and items (U, k) int64, best first. When fewer than ``k`` items remain, the
    tail is padded with item -1 and score -inf. Peak memory is one (U, item_chunk) block.
    Pass the same ``buffer`` (``score_buffer``) to every call: a fresh block of this size
    costs about as much in page faults as the matrix product that fills it.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if item_chunk < 1:
        raise ValueError(f"item_chunk must be at least 1, got {item_chunk}")
    num_users, num_items = user_vectors.shape[0], item_vectors.shape[0]
    lengths = np.diff(seen_offsets)
    seen_rows = torch.from_numpy(np.repeat(np.arange(num_users), lengths))
    seen_cols = torch.from_numpy(np.asarray(seen_items, dtype=np.int64))
    unavailable_index = torch.nonzero(unavailable).flatten() if unavailable is not None else None

    width = min(item_chunk, num_items)
    if buffer is None or buffer.numel() < num_users * width:
        buffer = score_buffer(num_users, item_chunk, num_items)
    best: tuple[torch.Tensor, torch.Tensor] | None = None
    for start in range(0, num_items, item_chunk):
        stop = min(start + item_chunk, num_items)
        scores = buffer[: num_users * (stop - start)].view(num_users, stop - start)
        torch.mm(user_vectors, item_vectors[start:stop].T, out=scores)          # (U, C)
        in_chunk = (seen_cols >= start) & (seen_cols < stop)
        scores[seen_rows[in_chunk], seen_cols[in_chunk] - start] = float("-inf")
        if unavailable_index is not None:
            in_range = unavailable_index[(unavailable_index >= start) & (unavailable_index < stop)]
            scores.index_fill_(1, in_range - start, float("-inf"))

        chunk_scores, chunk_items = _topk_lowest_index_on_ties(scores, k)
        chunk_items += start
        if best is None:
            best = _order(chunk_scores, chunk_items)
        else:
            merged = _order(torch.cat([best[0], chunk_scores], dim=1), torch.cat([best[1], chunk_items], dim=1))
            best = merged[0][:, :k], merged[1][:, :k]

    if best is None:
        return torch.full((num_users, k), float("-inf")), torch.full((num_users, k), NO_ITEM, dtype=torch.long)
    best_scores, best_items = best
    best_items[torch.isneginf(best_scores)] = NO_ITEM
    return _pad(best_scores, best_items, k)


def score_buffer(user_chunk: int, item_chunk: int, num_items: int) -> torch.Tensor:
    """Allocate the score block that ``chunked_topk`` fills, for blocks of up to ``user_chunk`` users."""
    return torch.empty(user_chunk * min(item_chunk, num_items), dtype=torch.float32)


def _topk_lowest_index_on_ties(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the top ``k`` columns of each row, taking the lowest column among tied scores.

    ``torch.topk`` keeps an arbitrary subset of scores tied at the k-th place, so it is asked
    for one extra column. When the k-th and (k+1)-th scores differ, the top-k set is unique.
    Rows where they are equal are recomputed with a stable sort, which is slow but rare for
    model scores.
    """
    take = min(k + 1, scores.shape[1])
    values, index = torch.topk(scores, take, dim=1)
    if take <= k:
        return values, index
    tied = (values[:, k - 1] == values[:, k]) & ~torch.isneginf(values[:, k - 1])
    values, index = values[:, :k].clone(), index[:, :k].clone()
    if bool(tied.any()):
        rows = torch.nonzero(tied).flatten()
        exact = torch.sort(scores[rows], dim=1, descending=True, stable=True).indices[:, :k]
        index[rows] = exact
        values[rows] = torch.gather(scores[rows], 1, exact)
    return values, index


def _order(scores: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each row by score descending, then item index ascending."""
    by_item = torch.argsort(items, dim=1, stable=True)
    scores, items = torch.gather(scores, 1, by_item), torch.gather(items, 1, by_item)
    by_score = torch.argsort(scores, dim=1, descending=True, stable=True)
    return torch.gather(scores, 1, by_score), torch.gather(items, 1, by_score)


def _pad(scores: torch.Tensor, items: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Widen (U, n) results to (U, k) with padding when the catalogue has fewer than k items."""
    missing = k - scores.shape[1]
    if missing <= 0:
        return scores, items
    rows = scores.shape[0]
    return (torch.cat([scores, torch.full((rows, missing), float("-inf"))], dim=1),
            torch.cat([items, torch.full((rows, missing), NO_ITEM, dtype=torch.long)], dim=1))
