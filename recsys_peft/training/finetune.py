"""Per-segment fine-tuning: one low-rank adapter per segment, every other weight frozen.

Each segment's adapter trains only on that segment's users, in a model copy with a single
adapter slot, so segments can train one after another or in parallel workers. The trainer
checksums every frozen parameter (the embedding tables included) before and after and raises
if any bit changed. A segment keeps its adapter only when it beats the base model on the
segment's validation targets; otherwise the segment falls back to the base model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from recsys_peft.adapters.freeze import assert_unchanged, checksums, freeze_all_but_adapters
from recsys_peft.adapters.lora import LoRAConfig, adapter_state, load_adapter_state
from recsys_peft.dataset.snapshot import DataSnapshot
from recsys_peft.models.sasrec import SASRecModel
from recsys_peft.models.two_tower import TwoTowerModel

BaseModel = TwoTowerModel | SASRecModel
from recsys_peft.training.loop import TrainConfig, fit_loss
from recsys_peft.training.objectives import objective
from recsys_peft.training.pretrain import validation_ndcg

ADAPTER_SLOT = 0


@dataclass(frozen=True)
class FinetuneConfig:
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=20, batch_size=256, learning_rate=1e-3, patience=3))
    min_users: int = 5  # segments with fewer users get no adapter of their own


@dataclass
class SegmentAdapter:
    """The outcome of fine-tuning one segment; ``state`` is None when it falls back to the base."""

    segment: str
    segment_index: int
    users: int
    train_examples: int
    base_valid_ndcg: float
    valid_ndcg: float
    state: dict[str, torch.Tensor] | None
    reason: str
    best_epoch: int = 0
    seconds: float = 0.0
    steps: int = 0
    trainable_parameters: int = 0
    history: list[dict] = field(default_factory=list)

    @property
    def used(self) -> bool:
        return self.state is not None


def with_adapters(base: BaseModel, num_segments: int, lora: LoRAConfig) -> BaseModel:
    """A copy of ``base`` with ``num_segments`` fresh adapter slots (B = 0: same scores)."""
    model = type(base)(base.config, num_segments=num_segments, lora=lora)
    state = {k: v for k, v in base.state_dict().items() if ".lora_" not in k}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(".lora_" in k for k in missing), (missing, unexpected)
    return model


def finetune_segment(
    base: BaseModel,
    snapshot: DataSnapshot,
    segment_index: int,
    config: FinetuneConfig,
    on_epoch: Callable[[dict], None] | None = None,
) -> SegmentAdapter:
    """Train the adapter of one segment on that segment's users only."""
    name = snapshot.segments.names[segment_index]
    in_segment = snapshot.segments.user_segments == segment_index
    users = int(in_segment.sum())
    log = snapshot.log
    positions = snapshot.split.train_positions[in_segment[log.users[snapshot.split.train_positions]]]
    slots = np.where(in_segment, ADAPTER_SLOT, -1).astype(np.int64)

    model = with_adapters(base, 1, config.lora)
    model.eval()
    base_score = validation_ndcg(model, snapshot, in_segment, slots)
    if users < config.min_users or len(positions) < 2:
        return SegmentAdapter(name, segment_index, users, len(positions), base_score, base_score, None,
                              f"below min_users={config.min_users}")

    torch.manual_seed(config.train.seed + segment_index)
    trainable = freeze_all_but_adapters(model)
    frozen_before = checksums(model)
    frozen_before = {k: v for k, v in frozen_before.items() if ".lora_" not in k}

    num_examples, batch_loss = objective(model, snapshot, in_segment, slots, seed=config.train.seed)
    result = fit_loss(model, trainable, num_examples, batch_loss,
                      lambda: validation_ndcg(model, snapshot, in_segment, slots), config.train, on_epoch)

    after = {k: v for k, v in checksums(model).items() if ".lora_" not in k}
    assert_unchanged(frozen_before, after)

    improved = result.best_score > base_score
    return SegmentAdapter(
        segment=name, segment_index=segment_index, users=users, train_examples=len(positions),
        base_valid_ndcg=base_score, valid_ndcg=result.best_score,
        state=adapter_state(model, ADAPTER_SLOT) if improved else None,
        reason="beats base on validation" if improved else "no gain on validation: base model serves",
        best_epoch=result.best_epoch, seconds=result.seconds, steps=result.steps,
        trainable_parameters=sum(p.numel() for p in trainable), history=result.history,
    )


def stack_adapters(base: BaseModel, adapters: Sequence[SegmentAdapter], num_segments: int,
                   lora: LoRAConfig) -> BaseModel:
    """One model holding every kept adapter in the slot of its segment; other slots stay zero."""
    model = with_adapters(base, num_segments, lora)
    for adapter in adapters:
        if adapter.state is not None:
            load_adapter_state(model, adapter.segment_index, adapter.state)
    model.eval()
    return model


def adapter_slots(snapshot: DataSnapshot, adapters: Sequence[SegmentAdapter]) -> np.ndarray:
    """Each user's adapter slot: its segment when that segment kept an adapter, else -1."""
    kept = np.zeros(len(snapshot.segments.names), dtype=bool)
    for adapter in adapters:
        kept[adapter.segment_index] = adapter.used
    segments = snapshot.segments.user_segments
    return np.where((segments >= 0) & kept[np.maximum(segments, 0)], segments, -1).astype(np.int64)
