"""Pretrain a base model (two-tower or SASRec) on every segment's data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from recsys_peft.dataset.features import user_batch
from recsys_peft.dataset.snapshot import DataSnapshot
from recsys_peft.evaluation.metrics import ranking_metrics
from recsys_peft.evaluation.ranking import rank_targets
from recsys_peft.models.sasrec import SASRecConfig, SASRecModel
from recsys_peft.models.two_tower import TwoTowerConfig, TwoTowerModel
from recsys_peft.training.loop import Examples, FitResult, TrainConfig, fit_loss
from recsys_peft.training.objectives import objective

MODEL_FAMILIES: dict[str, type] = {"two_tower": TwoTowerModel, "sasrec": SASRecModel}
CONFIG_CLASSES: dict[str, type] = {"two_tower": TwoTowerConfig, "sasrec": SASRecConfig}


def training_examples(snapshot: DataSnapshot, history_length: int, positions: np.ndarray | None = None,
                      segments: np.ndarray | None = None) -> Examples:
    """One two-tower example per training event: the user's inputs as of that event, and its item."""
    log = snapshot.log
    positions = snapshot.split.train_positions if positions is None else positions
    users = log.users[positions]
    inputs = user_batch(log, snapshot.features, users, positions, history_length, segments)
    return Examples(inputs, torch.from_numpy(log.items[positions]))


def validation_ndcg(model: torch.nn.Module, snapshot: DataSnapshot, users_mask: np.ndarray | None = None,
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
    model: torch.nn.Module
    result: FitResult


class EmptyTrainingData(ValueError):
    """The data split leaves nothing to train or validate a model on."""


def pretrain(
    snapshot: DataSnapshot,
    config: TwoTowerConfig | SASRecConfig,
    train: TrainConfig,
    on_epoch: Callable[[dict], None] | None = None,
) -> Pretrained:
    """Train a base model of ``config``'s family from scratch, with early stopping.

    Raises ``EmptyTrainingData`` when the split has no training events or no validation users,
    so that nothing downstream registers or promotes a model that never trained.
    """
    split = snapshot.split
    if len(split.train_positions) == 0 or len(split.valid.users) == 0:
        raise EmptyTrainingData(
            f"cannot pretrain: the split has {len(split.train_positions)} training events and "
            f"{len(split.valid.users)} validation users ({snapshot.log.num_users} users in the store); a user needs "
            f"at least 3 events to train, validate and test on. Check the raw files and the source spec, and "
            f"the ingest summary's rows_written and rows_quarantined")
    torch.manual_seed(train.seed)
    np.random.seed(train.seed)
    model = TwoTowerModel(config) if isinstance(config, TwoTowerConfig) else SASRecModel(config)
    num_examples, batch_loss = objective(model, snapshot, seed=train.seed)
    parameters = [p for p in model.parameters() if p.requires_grad and p.numel() > 0]
    result = fit_loss(model, parameters, num_examples, batch_loss,
                      lambda: validation_ndcg(model, snapshot), train, on_epoch)
    return Pretrained(model, result)


def pretrain_two_tower(snapshot: DataSnapshot, config: TwoTowerConfig, train: TrainConfig,
                       on_epoch: Callable[[dict], None] | None = None) -> Pretrained:
    return pretrain(snapshot, config, train, on_epoch)


def two_tower_config(snapshot: DataSnapshot, **overrides: object) -> TwoTowerConfig:
    """A two-tower config sized for ``snapshot``'s vocabulary and features."""
    return TwoTowerConfig(
        num_users=snapshot.log.num_users,
        num_items=snapshot.log.num_items,
        num_tags=len(snapshot.features.tag_values),
        attribute_cardinalities=snapshot.features.attribute_cardinalities,
        **overrides,  # type: ignore[arg-type]
    )


def sasrec_config(snapshot: DataSnapshot, **overrides: object) -> SASRecConfig:
    """A SASRec config sized for ``snapshot``'s catalogue."""
    return SASRecConfig(num_items=snapshot.log.num_items, num_users=snapshot.log.num_users,
                        **overrides)  # type: ignore[arg-type]


def model_config(family: str, snapshot: DataSnapshot, **overrides: object) -> TwoTowerConfig | SASRecConfig:
    if family == "two_tower":
        return two_tower_config(snapshot, **overrides)
    if family == "sasrec":
        return sasrec_config(snapshot, **overrides)
    raise ValueError(f"model family must be one of {sorted(MODEL_FAMILIES)}, got {family!r}")
