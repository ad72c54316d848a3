"""Pretrain the base two-tower model on every segment's data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from recsys_peft.dataset.features import user_batch
from recsys_peft.dataset.snapshot import DataSnapshot
from recsys_peft.evaluation.metrics import ranking_metrics
from recsys_peft.evaluation.ranking import rank_targets
from recsys_peft.models.two_tower import TwoTowerConfig, TwoTowerModel
from recsys_peft.training.losses import item_log_q
from recsys_peft.training.loop import Examples, FitResult, TrainConfig, fit


def training_examples(snapshot: DataSnapshot, history_length: int, positions: np.ndarray | None = None,
                      segments: np.ndarray | None = None) -> Examples:
    """One example per training event: the user's inputs as of that event, and its item."""
    log = snapshot.log
    positions = snapshot.split.train_positions if positions is None else positions
    users = log.users[positions]
    inputs = user_batch(log, snapshot.features, users, positions, history_length, segments)
    return Examples(inputs, torch.from_numpy(log.items[positions]))


def validation_ndcg(model: TwoTowerModel, snapshot: DataSnapshot, users_mask: np.ndarray | None = None,
                    segments: np.ndarray | None = None) -> float:
    """Mean NDCG@10 over validation targets (optionally only users in ``users_mask``)."""
    targets = snapshot.split.valid
    if users_mask is not None:
        keep = users_mask[targets.users]
        targets = type(targets)(targets.users[keep], targets.items[keep], targets.positions[keep])
    items = model.all_item_embeddings(snapshot.features.item_tags)
    ranks = rank_targets(model, snapshot.log, snapshot.features, targets, items, segments)
    return float(ranking_metrics(ranks, 10)["ndcg@10"].mean())


@dataclass
class Pretrained:
    model: TwoTowerModel
    result: FitResult


def pretrain_two_tower(
    snapshot: DataSnapshot,
    config: TwoTowerConfig,
    train: TrainConfig,
    on_epoch: Callable[[dict], None] | None = None,
) -> Pretrained:
    """Train a base model from scratch with in-batch sampled softmax and early stopping."""
    torch.manual_seed(train.seed)
    np.random.seed(train.seed)
    model = TwoTowerModel(config)
    examples = training_examples(snapshot, config.history_length)
    log_q = item_log_q(examples.targets, config.num_items)
    parameters = [p for p in model.parameters() if p.requires_grad and p.numel() > 0]
    result = fit(model, parameters, examples, snapshot.features.item_tags, log_q,
                 lambda: validation_ndcg(model, snapshot), train, on_epoch)
    return Pretrained(model, result)


def two_tower_config(snapshot: DataSnapshot, **overrides: object) -> TwoTowerConfig:
    """A model config sized for ``snapshot``'s vocabulary and features."""
    return TwoTowerConfig(
        num_users=snapshot.log.num_users,
        num_items=snapshot.log.num_items,
        num_tags=len(snapshot.features.tag_values),
        attribute_cardinalities=snapshot.features.attribute_cardinalities,
        **overrides,  # type: ignore[arg-type]
    )
