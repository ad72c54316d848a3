"""The fallback for users the model cannot score: the most popular items of their segment.

Items are ranked by training interactions within the user's segment, then by training
interactions overall, then by item index. A user without a segment gets the overall ranking.
The score written for a fallback row is the item's interaction count in that ranking's first
key, so it is not comparable with model scores. Seen and unavailable items are skipped, as for
model-scored users.
"""

from __future__ import annotations

import numpy as np
import torch

from recsys_peft.scoring.inputs import csr_rows
from recsys_peft.scoring.topk import NO_ITEM


class PopularityRanking:
    """Each segment's items in fallback order, unavailable items removed."""

    def __init__(self, popularity: torch.Tensor, segment_popularity: torch.Tensor | None,
                 unavailable: np.ndarray | None = None) -> None:
        overall = popularity.numpy().astype(np.float64)
        num_items = len(overall)
        available = np.ones(num_items, dtype=bool) if unavailable is None else ~np.asarray(unavailable, dtype=bool)
        index = np.arange(num_items)
        per_segment = segment_popularity.numpy() if segment_popularity is not None else np.zeros((0, num_items))
        self.num_items = num_items
        # Row 0 is the overall ranking; row s + 1 is segment s.
        self._orders: list[np.ndarray] = []
        self._scores: list[np.ndarray] = []
        for first_key in [overall, *per_segment]:
            order = np.lexsort((index, -overall, -first_key))
            order = order[available[order]]
            self._orders.append(order)
            self._scores.append(first_key[order].astype(np.float32))

    def topk(self, segments: np.ndarray, seen_offsets: np.ndarray, seen_items: np.ndarray,
             k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return scores (B, k) float32 and items (B, k) int64 for rows of ``segments`` (-1: none).

        ``seen_offsets``/``seen_items`` are CSR rows of each user's items to skip. Rows with
        fewer than ``k`` candidates are padded with item -1 and score -inf.
        """
        rows = len(segments)
        scores = np.full((rows, k), -np.inf, dtype=np.float32)
        items = np.full((rows, k), NO_ITEM, dtype=np.int64)
        seen_counts = np.diff(seen_offsets)
        ranking = np.where((segments >= 0) & (segments + 1 < len(self._orders)), segments + 1, 0)
        for which in np.unique(ranking):
            members = np.flatnonzero(ranking == which)
            order, order_scores = self._orders[which], self._scores[which]
            width = min(len(order), k + int(seen_counts[members].max(initial=0)))
            candidates = np.broadcast_to(order[:width], (len(members), width))     # (M, W)
            # A candidate is skipped when (row, item) is among the row's seen pairs.
            seen_rows = np.repeat(np.arange(len(members)), seen_counts[members])
            _, seen_of_members = csr_rows(seen_offsets, seen_items, members)
            seen_keys = seen_rows * self.num_items + seen_of_members
            candidate_keys = np.arange(len(members))[:, None] * self.num_items + candidates
            keep = ~np.isin(candidate_keys, seen_keys)
            rank = np.cumsum(keep, axis=1) - 1
            row, column = np.nonzero(keep & (rank < k))
            items[members[row], rank[row, column]] = candidates[row, column]
            scores[members[row], rank[row, column]] = order_scores[:width][column]
        return scores, items

