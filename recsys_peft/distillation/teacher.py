"""The teacher's top-K items and scores for every training example, computed once before the student trains."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recsys_peft.dataset.features import user_batch
from recsys_peft.dataset.snapshot import DataSnapshot


@dataclass
class TeacherTargets:
    """For each training example (a user as of one of its training events): the teacher's view of it."""

    users: np.ndarray          # (N,) int64 user index of each example
    positions: np.ndarray      # (N,) int64 log position of the example's target event
    targets: torch.Tensor      # (N,) int64 the true next item
    items: torch.Tensor        # (N, K) int64 the teacher's top-K items, best first
    scores: torch.Tensor       # (N, K) float32 the teacher's scores of those items

    def __len__(self) -> int:
        return int(self.targets.shape[0])


@torch.no_grad()
def teacher_targets(teacher: torch.nn.Module, snapshot: DataSnapshot, top_k: int, slots: np.ndarray | None = None,
                    chunk: int = 2048) -> TeacherTargets:
    """Score the whole catalogue with ``teacher`` for every training example and keep the top ``top_k``.

    ``slots`` (U,) routes each user to the teacher's adapter slot (-1: none), so a teacher with
    per-segment adapters scores each user with its segment's adapter. Items the user saw
    before the example are not excluded: the student learns the teacher's whole ranking.
    """
    if not 1 <= top_k <= snapshot.log.num_items:
        raise ValueError(f"top_k must be in [1, {snapshot.log.num_items}] (the catalogue size), got {top_k}")
    teacher.eval()
    log = snapshot.log
    positions = snapshot.split.train_positions
    users = log.users[positions]
    item_vectors = teacher.all_item_embeddings(snapshot.features.item_tags)       # (I, D)

    items, scores = [], []
    for start in range(0, len(positions), chunk):
        rows = slice(start, start + chunk)
        batch = user_batch(log, snapshot.features, users[rows], positions[rows], teacher.config.history_length, slots)
        logits = teacher.user_embeddings(batch) @ item_vectors.T                  # (C, I)
        top = torch.topk(logits, top_k, dim=1)
        items.append(top.indices)
        scores.append(top.values)
    if not items:
        raise ValueError("the snapshot has no training events to distil from")
    return TeacherTargets(users.astype(np.int64), positions.astype(np.int64),
                          torch.from_numpy(log.items[positions]), torch.cat(items), torch.cat(scores))
