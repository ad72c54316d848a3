"""Baselines ranked with the same protocol as the models."""

from __future__ import annotations

import numpy as np
import torch

from recsys_peft.dataset.log import InteractionLog
from recsys_peft.dataset.split import LeaveOneOutSplit, Targets
from recsys_peft.dataset.views import seen_csr
from recsys_peft.evaluation.metrics import target_ranks
from recsys_peft.evaluation.ranking import exclusion_mask


def most_popular_ranks(log: InteractionLog, split: LeaveOneOutSplit, targets: Targets, chunk: int = 2048) -> np.ndarray:
    """Rank targets by item popularity among training events (ties count against the baseline)."""
    counts = np.bincount(log.items[split.train_positions], minlength=log.num_items).astype(np.float32)
    scores_row = torch.from_numpy(counts)
    offsets, seen = seen_csr(log, targets.users, targets.positions)
    ranks = np.empty(len(targets.users), dtype=np.int64)
    for start in range(0, len(targets.users), chunk):
        stop = min(start + chunk, len(targets.users))
        scores = scores_row.expand(stop - start, -1)                     # (C, I)
        mask = exclusion_mask(offsets, seen, slice(start, stop), log.num_items)
        ranks[start:stop] = target_ranks(scores, torch.from_numpy(targets.items[start:stop]), mask).numpy()
    return ranks
