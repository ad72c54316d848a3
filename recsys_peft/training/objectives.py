"""Training objectives per model family: how many examples there are and the loss of a batch.

The same epoch loop (``loop.fit_loss``) trains both families, for pretraining (every user) and
for fine-tuning (one segment's users, each row routed to its adapter slot).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from recsys_peft.dataset.features import user_batch
from recsys_peft.dataset.snapshot import DataSnapshot
from recsys_peft.models.sasrec import SASRecModel
from recsys_peft.models.two_tower import TwoTowerModel
from recsys_peft.training.losses import item_log_q
from recsys_peft.training.loop import Examples, two_tower_batch_loss
from recsys_peft.training.sequences import full_softmax_loss, sampled_softmax_loss, training_sequences

BatchLoss = Callable[[torch.Tensor], torch.Tensor]


def _train_positions(snapshot: DataSnapshot, users_mask: np.ndarray | None) -> np.ndarray:
    positions = snapshot.split.train_positions
    if users_mask is None:
        return positions
    return positions[users_mask[snapshot.log.users[positions]]]


def objective(model: torch.nn.Module, snapshot: DataSnapshot, users_mask: np.ndarray | None = None,
              slots: np.ndarray | None = None, seed: int = 0) -> tuple[int, BatchLoss]:
    """Return (number of examples, loss of a batch of example indices) for ``model``'s family.

    ``users_mask`` (U,) keeps only those users' training events; ``slots`` (U,) gives each
    user's adapter slot (-1 for none). The logQ correction always uses every user's training
    targets: a segment's own counts are far noisier for small segments.
    """
    log = snapshot.log
    all_targets = torch.from_numpy(log.items[snapshot.split.train_positions])
    log_q = item_log_q(all_targets, log.num_items)
    slot_of_user = torch.from_numpy(slots if slots is not None else np.full(log.num_users, -1, dtype=np.int64))

    if isinstance(model, TwoTowerModel):
        positions = _train_positions(snapshot, users_mask)
        inputs = user_batch(log, snapshot.features, log.users[positions], positions,
                            model.config.history_length, slots)
        examples = Examples(inputs, torch.from_numpy(log.items[positions]))
        return len(examples), two_tower_batch_loss(model, examples, snapshot.features.item_tags, log_q)

    if isinstance(model, SASRecModel):
        users = np.flatnonzero(users_mask) if users_mask is not None else None
        sequences = training_sequences(log, snapshot.split.train_positions, model.config.max_length, users,
                                       model.config.window_stride)
        generator = torch.Generator().manual_seed(seed)

        def sasrec_loss(index: torch.Tensor) -> torch.Tensor:
            states = model.sequence_states(sequences.inputs[index], slot_of_user[sequences.users[index]])
            targets = sequences.targets[index]
            if model.config.loss == "sampled_softmax":
                return sampled_softmax_loss(states, targets, model.item_table, log_q,
                                            model.config.num_negatives, generator)
            return full_softmax_loss(states, targets, model.item_table)

        return len(sequences), sasrec_loss

    raise TypeError(f"no training objective for model type {type(model).__name__}")
