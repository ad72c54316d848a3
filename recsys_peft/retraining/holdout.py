"""The held-out window of the newest data, and scores of a model on it per user and segment."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recsys_peft.dataset.snapshot import DataSnapshot
from recsys_peft.dataset.split import Targets
from recsys_peft.evaluation.metrics import ranking_metrics
from recsys_peft.evaluation.ranking import rank_targets
from recsys_peft.models.two_tower import TwoTowerModel

MICROSECONDS_PER_DAY = 86_400 * 1_000_000
K = 10


@dataclass(frozen=True)
class Holdout:
    """The test targets both models are scored on, and how they were chosen."""

    targets: Targets
    window_start_us: int    # events at or after this UTC timestamp (microseconds) are in the window
    description: str


def holdout_targets(snapshot: DataSnapshot, days: int, min_users: int) -> Holdout:
    """Select the test targets that fall in the last ``days`` days of the snapshot.

    A test target is each user's last event, which no model of the leave-one-out split trains
    on. With fewer than ``min_users`` targets in the window, every test target is used.
    """
    test = snapshot.split.test
    if len(test.users) == 0:
        raise ValueError(f"snapshot {snapshot.snapshot_id} has no test targets: no user has enough events")
    newest = int(snapshot.log.timestamps.max())
    start = newest - days * MICROSECONDS_PER_DAY
    in_window = snapshot.log.timestamps[test.positions] >= start
    if int(in_window.sum()) >= min_users:
        targets = Targets(test.users[in_window], test.items[in_window], test.positions[in_window])
        return Holdout(targets, start, f"test targets in the last {days} days: {int(in_window.sum())} users")
    return Holdout(test, int(snapshot.log.timestamps.min()),
                   f"every test target: {len(test.users)} users, because only {int(in_window.sum())} "
                   f"fall in the last {days} days (min_holdout_users={min_users})")


@torch.no_grad()
def item_vectors(model: torch.nn.Module, snapshot: DataSnapshot) -> torch.Tensor:
    """Return the vectors of the snapshot's items, which may be fewer than the model's."""
    num_items = snapshot.log.num_items
    if model.config.num_items == num_items:
        return model.all_item_embeddings(snapshot.features.item_tags)
    if isinstance(model, TwoTowerModel):
        model.eval()
        return model.item_embeddings(torch.arange(num_items), snapshot.features.item_tags)
    return model.all_item_embeddings(snapshot.features.item_tags)[:num_items]


@dataclass(frozen=True)
class HoldoutScores:
    """NDCG@10 and HR@10 of each held-out user, in the order of the holdout targets."""

    users: np.ndarray
    segments: np.ndarray     # segment index of each user, -1 for none
    ndcg: np.ndarray
    hit_rate: np.ndarray

    def mean_ndcg(self, segment_indices: list[int] | None = None) -> float:
        """Mean NDCG@10 over the users of ``segment_indices`` (None: every user); 0.0 without users."""
        values = self.ndcg if segment_indices is None else self.ndcg[np.isin(self.segments, segment_indices)]
        return float(values.mean()) if len(values) else 0.0

    def summary(self, segment_names: tuple[str, ...]) -> dict:
        """Return users, NDCG@10 and HR@10 overall and per segment, as saved with a run."""
        out = {"users": int(len(self.users)), "ndcg@10": self.mean_ndcg(),
               "hr@10": float(self.hit_rate.mean()) if len(self.users) else 0.0, "segments": {}}
        for index, name in enumerate(segment_names):
            mask = self.segments == index
            if mask.any():
                out["segments"][name] = {"users": int(mask.sum()), "ndcg@10": float(self.ndcg[mask].mean()),
                                         "hr@10": float(self.hit_rate[mask].mean())}
        return out


def score_holdout(model: torch.nn.Module, slots: np.ndarray | None, snapshot: DataSnapshot,
                  targets: Targets) -> HoldoutScores:
    """Rank each held-out target among the snapshot's items the user had not seen before it.

    ``slots`` (U,) routes each user to its adapter slot, -1 or None for the base model.
    """
    model.eval()
    ranks = rank_targets(model, snapshot.log, snapshot.features, targets, item_vectors(model, snapshot), slots)
    metrics = ranking_metrics(ranks, K)
    return HoldoutScores(targets.users, snapshot.segments.user_segments[targets.users],
                         metrics[f"ndcg@{K}"], metrics[f"hr@{K}"])
