"""Rank held-out targets with a model over the full catalogue, seen items excluded."""

from __future__ import annotations

import numpy as np
import torch

from recsys_peft.dataset.features import FeatureTables, user_batch
from recsys_peft.dataset.log import InteractionLog
from recsys_peft.dataset.split import Targets
from recsys_peft.dataset.views import seen_csr
from recsys_peft.evaluation.metrics import target_ranks
from recsys_peft.models.two_tower import TwoTowerModel


def exclusion_mask(offsets: np.ndarray, items: np.ndarray, rows: slice, num_items: int) -> torch.Tensor:
    """Dense (rows, num_items) bool mask from the CSR rows ``rows`` of seen items."""
    start, stop = rows.start, rows.stop
    lengths = np.diff(offsets[start:stop + 1])
    row_index = np.repeat(np.arange(stop - start), lengths)
    cols = items[offsets[start]:offsets[stop]]
    mask = torch.zeros(stop - start, num_items, dtype=torch.bool)
    mask[torch.from_numpy(row_index), torch.from_numpy(cols)] = True
    return mask


@torch.no_grad()
def rank_targets(
    model: TwoTowerModel,
    log: InteractionLog,
    tables: FeatureTables,
    targets: Targets,
    item_vectors: torch.Tensor,
    segments: np.ndarray | None = None,
    chunk: int = 2048,
) -> np.ndarray:
    """0-based rank of each target among all items the user had not seen before it.

    ``segments`` maps each user index to its adapter slot (-1 for the base model); None scores
    every user with the base model. Ties count against the model.
    """
    model.eval()
    offsets, seen = seen_csr(log, targets.users, targets.positions)
    ranks = np.empty(len(targets.users), dtype=np.int64)
    for start in range(0, len(targets.users), chunk):
        stop = min(start + chunk, len(targets.users))
        batch = user_batch(log, tables, targets.users[start:stop], targets.positions[start:stop],
                           model.config.history_length, segments)
        scores = model.user_embeddings(batch) @ item_vectors.T          # (C, I)
        mask = exclusion_mask(offsets, seen, slice(start, stop), log.num_items)
        target = torch.from_numpy(targets.items[start:stop])
        ranks[start:stop] = target_ranks(scores, target, mask).numpy()
    return ranks
