"""The epoch loop shared by pretraining and fine-tuning, with early stopping on validation."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from recsys_peft.models.two_tower import ItemTags, TwoTowerModel, UserBatch
from recsys_peft.training.losses import in_batch_softmax_loss


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; ``patience`` is in epochs without a better validation score.

    ``ema_decay`` above 0 keeps an exponential moving average of the trained weights, updated
    after every step. Validation, early stopping and the returned model use the average, which
    smooths out the step-to-step noise of the last epochs.
    """

    epochs: int = 40
    batch_size: int = 512
    learning_rate: float = 2e-3
    weight_decay: float = 0.0
    patience: int = 3
    seed: int = 0
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2 or self.patience < 1:
            raise ValueError(
                f"TrainConfig needs epochs >= 1, batch_size >= 2 and patience >= 1, got "
                f"epochs={self.epochs}, batch_size={self.batch_size}, patience={self.patience}"
            )
        if self.learning_rate <= 0:
            raise ValueError(f"TrainConfig.learning_rate must be positive, got {self.learning_rate}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"TrainConfig.ema_decay must be in [0, 1), got {self.ema_decay}")


@dataclass
class Examples:
    """Training rows: user inputs as of each target event, and the target item."""

    inputs: UserBatch
    targets: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return int(self.targets.shape[0])


@dataclass
class FitResult:
    best_epoch: int
    best_score: float
    epochs_run: int
    steps: int
    seconds: float
    history: list[dict] = field(default_factory=list)


def fit(
    model: TwoTowerModel,
    parameters: list[nn.Parameter],
    examples: Examples,
    tags: ItemTags,
    log_q: torch.Tensor,
    validate: Callable[[], float],
    config: TrainConfig,
    on_epoch: Callable[[dict], None] | None = None,
) -> FitResult:
    """Train a two-tower model's ``parameters`` with in-batch sampled softmax; see ``fit_loss``."""
    batch_loss = two_tower_batch_loss(model, examples, tags, log_q)
    return fit_loss(model, parameters, len(examples), batch_loss, validate, config, on_epoch)


def two_tower_batch_loss(model: TwoTowerModel, examples: Examples, tags: ItemTags,
                         log_q: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Build the in-batch sampled softmax loss of a batch of example indices."""

    def batch_loss(index: torch.Tensor) -> torch.Tensor:
        targets = examples.targets[index]
        users = model.user_embeddings(examples.inputs.select(index))
        items = model.item_embeddings(targets, tags)
        return in_batch_softmax_loss(users, items, targets, log_q, model.config.temperature)

    return batch_loss


def fit_loss(
    model: nn.Module,
    parameters: list[nn.Parameter],
    num_examples: int,
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    validate: Callable[[], float],
    config: TrainConfig,
    on_epoch: Callable[[dict], None] | None = None,
) -> FitResult:
    """Train ``parameters`` of ``model``; keep the weights of the best validation epoch.

    Each epoch shuffles ``range(num_examples)`` and calls ``batch_loss(index)`` on batches of
    ``config.batch_size`` indices. ``validate`` scores the model in eval mode (higher is
    better). Training stops after ``config.patience`` epochs without improvement, and the best
    weights are restored.
    """
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    names = {id(p) for p in parameters}
    tracked = [n for n, p in model.named_parameters() if id(p) in names]
    average = WeightAverage(parameters, config.ema_decay) if config.ema_decay > 0 else None

    model.eval()
    best_score = validate()
    best_state = {n: p.detach().clone() for n, p in model.named_parameters() if n in tracked}
    best_epoch, steps, stale = 0, 0, 0
    history = [{"epoch": 0, "loss": None, "valid_ndcg@10": best_score, "seconds": 0.0}]
    start = time.perf_counter()

    for epoch in range(1, config.epochs + 1):
        # One pass over shuffled examples.
        model.train()
        epoch_start = time.perf_counter()
        order = torch.randperm(num_examples, generator=generator)
        total, batches = 0.0, 0
        for begin in range(0, len(order) - 1, config.batch_size):
            index = order[begin:begin + config.batch_size]
            if len(index) < 2:
                continue
            loss = batch_loss(index)

            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if average is not None:
                average.update()
            total += loss.detach().item()
            batches += 1
        steps += batches
        train_seconds = time.perf_counter() - epoch_start

        # Validate, keep the best weights, stop when patience runs out.
        model.eval()
        if average is not None:
            average.swap()          # validate, and keep, the averaged weights
        score = validate()
        record = {"epoch": epoch, "loss": total / max(batches, 1), "valid_ndcg@10": score,
                  "seconds": time.perf_counter() - epoch_start, "train_seconds": train_seconds,
                  "examples": num_examples, "elapsed_seconds": time.perf_counter() - start}
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        if score > best_score:
            best_score, best_epoch, stale = score, epoch, 0
            best_state = {n: p.detach().clone() for n, p in model.named_parameters() if n in tracked}
        else:
            stale += 1
        if average is not None:
            average.swap()          # back to the raw weights to go on training
        if stale >= config.patience:
            break

    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name in best_state:
                parameter.copy_(best_state[name])
    model.eval()
    return FitResult(best_epoch, best_score, len(history) - 1, steps, time.perf_counter() - start, history)


class WeightAverage:
    """An exponential moving average of ``parameters``, swapped in and out for validation."""

    def __init__(self, parameters: list[nn.Parameter], decay: float) -> None:
        self.parameters = parameters
        self.decay = decay
        self.average = [p.detach().clone() for p in parameters]

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self.average, [p.detach() for p in self.parameters], 1.0 - self.decay)

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange the model's weights and the averages (calling it twice restores both)."""
        for parameter, average in zip(self.parameters, self.average):
            trained = parameter.detach().clone()
            parameter.copy_(average)
            average.copy_(trained)


def copy_model(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)
