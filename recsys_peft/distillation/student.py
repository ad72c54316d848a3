"""Train a student model on a teacher's top-K scores (softened listwise KL) plus the true next items.

Per batch of training examples the loss is

    kd_weight * tau^2 * KL(softmax(teacher / tau) || softmax(student / tau))   over the teacher's top-K
    + (1 - kd_weight) * cross-entropy of the true next item

where ``teacher`` and ``student`` are each model's training logits: cosine / temperature for
the two-tower model, dot products for SASRec. The true-item term is the student family's own
pretraining loss: in-batch softmax with logQ correction (two-tower) or the full softmax (SASRec).
The student has no adapter slots: one compact model serves every segment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from recsys_peft.dataset.features import user_batch
from recsys_peft.dataset.snapshot import DataSnapshot
from recsys_peft.distillation.teacher import TeacherTargets, teacher_targets
from recsys_peft.models.sasrec import SASRecModel
from recsys_peft.models.two_tower import TwoTowerModel, UserBatch
from recsys_peft.training.loop import FitResult, TrainConfig, fit_loss
from recsys_peft.training.losses import in_batch_softmax_loss, item_log_q
from recsys_peft.training.pretrain import validation_ndcg

Model = TwoTowerModel | SASRecModel


@dataclass(frozen=True)
class DistillConfig:
    """Distillation settings: the teacher's share of the loss, its softening, and the optimisation."""

    top_k: int = 50               # teacher items per example that the listwise KL covers
    temperature: float = 2.0      # softens both score lists; higher spreads the teacher's mass
    kd_weight: float = 0.7        # weight of the KL term; the true-item term gets 1 - kd_weight
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20, batch_size=256, learning_rate=2e-3))

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"DistillConfig.top_k must be at least 1, got {self.top_k}")
        if self.temperature <= 0:
            raise ValueError(f"DistillConfig.temperature must be positive, got {self.temperature}")
        if not 0.0 <= self.kd_weight <= 1.0:
            raise ValueError(f"DistillConfig.kd_weight must be in [0, 1], got {self.kd_weight}")


@dataclass
class Distilled:
    """A trained student, its fit record, and the teacher targets it learned from."""

    model: Model
    result: FitResult
    targets: TeacherTargets
    trainable_parameters: int


def logit_scale(model: Model) -> float:
    """Return the factor that turns the model's ranking scores into its training logits."""
    return 1.0 / model.config.temperature if isinstance(model, TwoTowerModel) else 1.0


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Return tau^2 * KL(softmax(teacher / tau) || softmax(student / tau)), averaged over rows of (B, K)."""
    teacher_log_p = F.log_softmax(teacher_logits / temperature, dim=-1)
    student_log_p = F.log_softmax(student_logits / temperature, dim=-1)
    kl = F.kl_div(student_log_p, teacher_log_p, log_target=True, reduction="batchmean")
    return kl * temperature**2


def _item_vectors(student: Model, items: torch.Tensor, snapshot: DataSnapshot) -> torch.Tensor:
    """Return the student's vectors of ``items`` (any shape), computing each distinct item once."""
    unique, inverse = torch.unique(items, return_inverse=True)
    vectors = student.item_embeddings(unique, snapshot.features.item_tags)       # (U, D)
    return vectors[inverse]                                                        # (*items.shape, D)


def _student_objective(student: Model, teacher_scale: float, targets: TeacherTargets, inputs: UserBatch,
                       snapshot: DataSnapshot, config: DistillConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    log = snapshot.log
    log_q = item_log_q(torch.from_numpy(log.items[snapshot.split.train_positions]), log.num_items)
    student_scale = logit_scale(student)

    def batch_loss(index: torch.Tensor) -> torch.Tensor:
        users = student.user_embeddings(inputs.select(index))                      # (B, D)
        top_items = targets.items[index]                                           # (B, K)
        true_items = targets.targets[index]                                        # (B,)

        # Listwise KL over the teacher's top-K.
        top_vectors = _item_vectors(student, top_items, snapshot)                  # (B, K, D)
        student_logits = torch.einsum("bd,bkd->bk", users, top_vectors) * student_scale
        teacher_logits = targets.scores[index] * teacher_scale
        loss = config.kd_weight * distillation_loss(student_logits, teacher_logits, config.temperature)

        # The true next item, with the student family's own loss.
        if config.kd_weight < 1.0:
            if isinstance(student, TwoTowerModel):
                true_vectors = _item_vectors(student, true_items, snapshot)
                true_loss = in_batch_softmax_loss(users, true_vectors, true_items, log_q, student.config.temperature)
            else:
                true_loss = F.cross_entropy(users @ student.item_table.T, true_items)
            loss = loss + (1.0 - config.kd_weight) * true_loss
        return loss

    return batch_loss


def distill(teacher: Model, student: Model, snapshot: DataSnapshot, config: DistillConfig,
            teacher_slots: np.ndarray | None = None, on_epoch: Callable[[dict], None] | None = None) -> Distilled:
    """Train ``student`` in place on ``teacher``'s top-K scores and the true next items; return it.

    ``teacher_slots`` (U,) gives each user's adapter slot in the teacher (-1: none). Early
    stopping uses the student's own validation NDCG@10, and the best epoch's weights are kept.
    """
    if student.num_segments:
        raise ValueError(f"the student must have no adapter slots, got {student.num_segments}; "
                         f"build it with num_segments=0")
    torch.manual_seed(config.train.seed)
    targets = teacher_targets(teacher, snapshot, config.top_k, teacher_slots)
    log = snapshot.log
    inputs = user_batch(log, snapshot.features, targets.users, targets.positions, student.config.history_length)

    parameters = [p for p in student.parameters() if p.numel() > 0]
    for parameter in parameters:
        parameter.requires_grad_(True)
    batch_loss = _student_objective(student, logit_scale(teacher), targets, inputs, snapshot, config)
    result = fit_loss(student, parameters, len(targets), batch_loss,
                      lambda: validation_ndcg(student, snapshot), config.train, on_epoch)
    return Distilled(student, result, targets, sum(p.numel() for p in parameters))
