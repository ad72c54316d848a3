"""Per-segment fine-tuning: one low-rank adapter per segment, every other weight frozen.

Each segment's adapter trains only on that segment's users, in a model copy with a single
adapter slot, so segments can train one after another or in parallel workers. The trainer
checksums every frozen parameter (the embedding tables included) before and after and raises
if any bit changed. A segment keeps its adapter only when it beats the base model on the
segment's validation targets. Otherwise its users fall back along the segment chain.

``finetune_shared`` (one adapter for every user) and ``finetune_full`` (every weight trained on
one segment) are the comparisons that ``benchmarks/adapters.py`` runs next to the adapters.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from recsys_peft.adapters.freeze import assert_unchanged, checksums, freeze_all_but_adapters, is_adapter_parameter
from recsys_peft.adapters.lora import LoRAConfig, adapter_state, load_adapter_state
from recsys_peft.dataset.features import user_batch
from recsys_peft.dataset.snapshot import DataSnapshot
from recsys_peft.evaluation.bootstrap import paired_bootstrap
from recsys_peft.evaluation.metrics import ranking_metrics
from recsys_peft.evaluation.ranking import rank_targets
from recsys_peft.models.sasrec import SASRecModel
from recsys_peft.models.two_tower import TwoTowerModel
from recsys_peft.segments import Routing, route_users
from recsys_peft.training.freezing import (
    FinetuneMethod, freeze_except, frozen_checksums_except, trainable_names, tuned_state,
)
from recsys_peft.training.losses import in_batch_softmax_loss, item_log_q
from recsys_peft.training.loop import FitResult, TrainConfig, fit_loss
from recsys_peft.training.objectives import BatchLoss, objective
from recsys_peft.training.pretrain import validation_ndcg

BaseModel = TwoTowerModel | SASRecModel
ADAPTER_SLOT = 0
SHARED_SEGMENT = "<all users>"


@dataclass(frozen=True)
class FinetuneConfig:
    """Adapter settings, optimisation, and the smallest segment that gets an adapter of its own."""

    lora: LoRAConfig = field(default_factory=LoRAConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=20, batch_size=256, learning_rate=1e-3, patience=3))
    min_users: int = 5  # segments with fewer users get no adapter of their own
    # An adapter is kept only when a paired bootstrap over the segment's validation users finds
    # it better than the base model in at least this fraction of resamples. 0.5 keeps any mean gain.
    keep_confidence: float = 0.8
    # "lora", "top_layers:N" or "bias_norm"; see ``training.freezing``. Only LoRA uses ``lora``.
    method: str = "lora"

    def __post_init__(self) -> None:
        FinetuneMethod.parse(self.method)
        if self.min_users < 1:
            raise ValueError(f"FinetuneConfig.min_users must be at least 1, got {self.min_users}")
        if not 0.0 <= self.keep_confidence < 1.0:
            raise ValueError(f"FinetuneConfig.keep_confidence must be in [0, 1), got {self.keep_confidence}")


@dataclass
class SegmentAdapter:
    """The outcome of fine-tuning one segment. ``state`` is None when the segment falls back."""

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
    rank: int | None = None      # None: the rank of the config it is stacked with
    alpha: float | None = None   # None: the alpha of the config it is stacked with
    # "lora": ``state`` contains adapter weights. Otherwise it contains the tuned base tensors.
    method: str = "lora"

    @property
    def used(self) -> bool:
        return self.state is not None

    def scaling(self, lora: LoRAConfig) -> float:
        """Return the alpha / r this adapter was trained with, defaulting to ``lora``'s values."""
        return (self.alpha if self.alpha is not None else lora.alpha) / (self.rank or lora.r)


@dataclass
class TrainedAdapter:
    """A model with one trained adapter slot, what the fit recorded, and the base score it beat or not."""

    model: BaseModel
    result: FitResult
    base_valid_ndcg: float
    trainable_parameters: int
    base_values: np.ndarray = field(default_factory=lambda: np.zeros(0))    # per validation user
    tuned_values: np.ndarray = field(default_factory=lambda: np.zeros(0))   # per validation user


def with_adapters(base: BaseModel, num_segments: int, lora: LoRAConfig) -> BaseModel:
    """Return a copy of ``base`` with ``num_segments`` fresh adapter slots (B = 0: same scores)."""
    model = type(base)(base.config, num_segments=num_segments, lora=lora)
    state = {k: v for k, v in base.state_dict().items() if ".lora_" not in k}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or not all(".lora_" in k for k in missing):
        raise ValueError(f"base model weights do not fit a {type(base).__name__} with adapters: "
                         f"missing {[k for k in missing if '.lora_' not in k]}, unexpected {unexpected}")
    return model


def frozen_checksums(model: torch.nn.Module) -> dict[str, str]:
    """Return the checksum of every parameter that is not an adapter weight."""
    return {k: v for k, v in checksums(model).items() if not is_adapter_parameter(k)}


def _in_segment_positions(snapshot: DataSnapshot, users_mask: np.ndarray) -> np.ndarray:
    positions = snapshot.split.train_positions
    return positions[users_mask[snapshot.log.users[positions]]]


def validation_values(model: BaseModel, snapshot: DataSnapshot, users_mask: np.ndarray, slots: np.ndarray | None,
                      item_vectors: torch.Tensor | None = None) -> np.ndarray:
    """Return the validation NDCG@10 of each user in ``users_mask``, in the order of the validation targets.

    With ``item_vectors`` None they are computed from the model. Pass them when the item side is frozen.
    """
    targets = snapshot.split.valid
    keep = users_mask[targets.users]
    targets = type(targets)(targets.users[keep], targets.items[keep], targets.positions[keep])
    if len(targets.users) == 0:
        return np.zeros(0)
    if item_vectors is None:
        item_vectors = model.all_item_embeddings(snapshot.features.item_tags)
    ranks = rank_targets(model, snapshot.log, snapshot.features, targets, item_vectors, slots)
    return ranking_metrics(ranks, 10)["ndcg@10"]


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else 0.0


def beats_base(base_values: np.ndarray, tuned_values: np.ndarray, confidence: float, seed: int = 0) -> bool:
    """Return whether a fine-tuned model beats the base on the same validation users.

    It must have a higher mean, and the paired bootstrap must find it better in at least
    ``confidence`` of the resamples.
    """
    if len(base_values) == 0 or tuned_values.mean() <= base_values.mean():
        return False
    return 1.0 - paired_bootstrap(base_values, tuned_values, seed=seed)["p_b_not_better"] >= confidence


@torch.no_grad()
def _lookups(model: TwoTowerModel, snapshot: DataSnapshot, positions: np.ndarray, slots: np.ndarray,
             chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the user-side lookups (N, F) and adapter slots (N,) of training ``positions``."""
    log = snapshot.log
    parts, segments = [], []
    for start in range(0, len(positions), chunk):
        rows = positions[start:start + chunk]
        batch = user_batch(log, snapshot.features, log.users[rows], rows, model.config.history_length, slots)
        parts.append(model.user_lookups(batch))
        segments.append(batch.segments)
    if not parts:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
    return torch.cat(parts), torch.cat(segments)


def _two_tower_adapter_objective(model: TwoTowerModel, snapshot: DataSnapshot, users_mask: np.ndarray,
                                 slots: np.ndarray, item_vectors: torch.Tensor) -> tuple[int, BatchLoss]:
    """Return the in-batch softmax objective over frozen lookups and item vectors computed once.

    The tables and the item tower are frozen, so the lookups of every training example and the
    vectors of every item are fixed. Only the adapted user head runs in each step. The item
    vectors come from eval mode, so item-side dropout does not apply while adapters train.
    """
    log = snapshot.log
    positions = _in_segment_positions(snapshot, users_mask)
    lookups, segments = _lookups(model, snapshot, positions, slots)
    targets = torch.from_numpy(log.items[positions])
    log_q = item_log_q(torch.from_numpy(log.items[snapshot.split.train_positions]), log.num_items)

    def batch_loss(index: torch.Tensor) -> torch.Tensor:
        batch_targets = targets[index]
        users = model.user_head(lookups[index], segments[index])
        return in_batch_softmax_loss(users, item_vectors[batch_targets], batch_targets, log_q,
                                     model.config.temperature)

    return len(positions), batch_loss


def train_adapter(base: BaseModel, snapshot: DataSnapshot, users_mask: np.ndarray, lora: LoRAConfig,
                  train: TrainConfig, seed: int, on_epoch: Callable[[dict], None] | None = None,
                  method: FinetuneMethod | None = None) -> TrainedAdapter:
    """Train one adapter slot on the users of ``users_mask``, with every other weight frozen.

    With a freezing ``method`` (top_layers or bias_norm) the model has no adapter slot, and the
    base parameters that the method selects train instead. Item vectors are computed once,
    because the item side is frozen, and early stopping uses the validation targets of the same
    users. Raises FrozenWeightsChanged when any frozen parameter differs, bit for bit, after training.
    """
    torch.manual_seed(seed)
    tunes_base = method is not None and not method.is_lora
    slots = np.where(users_mask, -1 if tunes_base else ADAPTER_SLOT, -1).astype(np.int64)
    model = with_adapters(base, 0 if tunes_base else 1, lora)
    model.eval()
    item_vectors = model.all_item_embeddings(snapshot.features.item_tags)
    base_values = validation_values(model, snapshot, users_mask, slots, item_vectors)

    names = trainable_names(model, method) if tunes_base else []
    trainable = freeze_except(model, names) if tunes_base else freeze_all_but_adapters(model)

    def frozen_checksums_now() -> dict[str, str]:
        return frozen_checksums_except(model, names) if tunes_base else frozen_checksums(model)

    frozen_before = frozen_checksums_now()
    if isinstance(model, TwoTowerModel):
        num_examples, batch_loss = _two_tower_adapter_objective(model, snapshot, users_mask, slots, item_vectors)
    else:
        num_examples, batch_loss = objective(model, snapshot, users_mask, slots, seed=train.seed)
    result = fit_loss(model, trainable, num_examples, batch_loss,
                      lambda: _mean(validation_values(model, snapshot, users_mask, slots, item_vectors)),
                      train, on_epoch)
    assert_unchanged(frozen_before, frozen_checksums_now())
    tuned_values = validation_values(model, snapshot, users_mask, slots, item_vectors)
    return TrainedAdapter(model, result, _mean(base_values), sum(p.numel() for p in trainable),
                          base_values, tuned_values)


def finetune_segment(
    base: BaseModel,
    snapshot: DataSnapshot,
    segment_index: int,
    config: FinetuneConfig,
    on_epoch: Callable[[dict], None] | None = None,
    train_users: np.ndarray | None = None,
) -> SegmentAdapter:
    """Train the adapter of one segment on that segment's users only.

    The rank follows the segment's size (``LoRAConfig.rank_for``). ``train_users`` (U,) bool
    restricts training and early stopping to some of the members, for learning curves. The
    size rules still count every member.
    """
    name = snapshot.segments.names[segment_index]
    in_segment = snapshot.segments.members(segment_index)
    users = int(in_segment.sum())
    training = in_segment if train_users is None else in_segment & train_users
    positions = _in_segment_positions(snapshot, training)
    method = FinetuneMethod.parse(config.method)
    rank = config.lora.rank_for(users) if method.is_lora else None
    lora = config.lora.with_rank(rank) if method.is_lora else config.lora

    if users < config.min_users or int(training.sum()) < 1 or len(positions) < 2:
        slots = np.where(in_segment, ADAPTER_SLOT, -1).astype(np.int64)
        model = with_adapters(base, 1, lora)
        model.eval()
        base_score = validation_ndcg(model, snapshot, in_segment, slots)
        reason = (f"below min_users={config.min_users}" if users < config.min_users
                  else f"too little training data: {len(positions)} events")
        return SegmentAdapter(name, segment_index, users, len(positions), base_score, base_score, None, reason,
                              rank=rank, alpha=config.lora.alpha, method=config.method)

    trained = train_adapter(base, snapshot, training, lora, config.train,
                            seed=config.train.seed + segment_index, on_epoch=on_epoch, method=method)
    result = trained.result
    improved = beats_base(trained.base_values, trained.tuned_values, config.keep_confidence, config.train.seed)
    if not improved:
        state = None
    elif method.is_lora:
        state = adapter_state(trained.model, ADAPTER_SLOT)
    else:
        state = tuned_state(trained.model, trainable_names(trained.model, method))
    return SegmentAdapter(
        segment=name, segment_index=segment_index, users=users, train_examples=len(positions),
        base_valid_ndcg=trained.base_valid_ndcg, valid_ndcg=result.best_score,
        state=state,
        reason=("beats base on validation" if improved else
                f"not better than base on validation at confidence {config.keep_confidence}: falls back"),
        best_epoch=result.best_epoch, seconds=result.seconds, steps=result.steps,
        trainable_parameters=trained.trainable_parameters, history=result.history,
        rank=rank, alpha=config.lora.alpha, method=config.method,
    )


def finetune_shared(base: BaseModel, snapshot: DataSnapshot, config: FinetuneConfig,
                    on_epoch: Callable[[dict], None] | None = None) -> SegmentAdapter:
    """Train one adapter on every user, for comparison with per-segment adapters.

    The result has segment index 0, and like a segment's adapter it keeps its weights only
    when it beats the base model on validation. Stack it with ``num_segments=1`` and route
    every user to slot 0.
    """
    everyone = np.ones(snapshot.log.num_users, dtype=bool)
    trained = train_adapter(base, snapshot, everyone, config.lora, config.train, config.train.seed, on_epoch)
    result = trained.result
    improved = beats_base(trained.base_values, trained.tuned_values, config.keep_confidence, config.train.seed)
    return SegmentAdapter(
        segment=SHARED_SEGMENT, segment_index=0, users=snapshot.log.num_users,
        train_examples=len(snapshot.split.train_positions), base_valid_ndcg=trained.base_valid_ndcg,
        valid_ndcg=result.best_score, state=adapter_state(trained.model, ADAPTER_SLOT) if improved else None,
        reason="beats base on validation" if improved else "not better than base on validation: falls back",
        best_epoch=result.best_epoch, seconds=result.seconds,
        steps=result.steps, trainable_parameters=trained.trainable_parameters, history=result.history,
        rank=config.lora.r, alpha=config.lora.alpha,
    )


def finetune_full(base: BaseModel, snapshot: DataSnapshot, users_mask: np.ndarray, train: TrainConfig,
                  seed: int, on_epoch: Callable[[dict], None] | None = None) -> TrainedAdapter:
    """Train every weight of a copy of ``base`` (tables included) on the users of ``users_mask``.

    The result has the same fields as an adapter's, so the same keep rule applies to it.
    """
    torch.manual_seed(seed)
    model = copy.deepcopy(base)
    model.eval()
    base_values = validation_values(model, snapshot, users_mask, None)
    parameters = [p for p in model.parameters() if p.numel() > 0]
    for parameter in parameters:
        parameter.requires_grad_(True)
    num_examples, batch_loss = objective(model, snapshot, users_mask, seed=train.seed)
    result = fit_loss(model, parameters, num_examples, batch_loss,
                      lambda: validation_ndcg(model, snapshot, users_mask), train, on_epoch)
    tuned_values = validation_values(model, snapshot, users_mask, None)
    return TrainedAdapter(model, result, _mean(base_values), sum(p.numel() for p in parameters),
                          base_values, tuned_values)


def stack_adapters(base: BaseModel, adapters: Sequence[SegmentAdapter], num_segments: int,
                   lora: LoRAConfig) -> BaseModel:
    """Return one model with every kept adapter in the slot of its segment and zeros in the other slots.

    The model has rank ``lora.r``. An adapter of lower rank is padded with zeros, and its ``B``
    is rescaled so that each segment keeps the alpha / r it was trained with.
    """
    tuned = sorted(a.segment for a in adapters if a.state is not None and a.method != "lora")
    if tuned:
        raise ValueError(f"segments {tuned} were tuned by layer freezing, not LoRA, so they cannot be stacked; "
                         f"score each with training.freezing.apply_tuned(base, adapter.state)")
    model = with_adapters(base, num_segments, lora)
    for adapter in adapters:
        if adapter.state is not None:
            load_adapter_state(model, adapter.segment_index, adapter.state, scaling=adapter.scaling(lora))
    model.eval()
    return model


def has_adapter(snapshot: DataSnapshot, adapters: Sequence[SegmentAdapter]) -> np.ndarray:
    """Return a (S,) mask of the segments that kept an adapter."""
    kept = np.zeros(len(snapshot.segments.names), dtype=bool)
    for adapter in adapters:
        kept[adapter.segment_index] = adapter.used
    return kept


def route(snapshot: DataSnapshot, adapters: Sequence[SegmentAdapter]) -> Routing:
    """Route every user along the segment chain to the first segment with a kept adapter."""
    return route_users(snapshot.segments, has_adapter(snapshot, adapters))


def adapter_slots(snapshot: DataSnapshot, adapters: Sequence[SegmentAdapter]) -> np.ndarray:
    """Return each user's adapter slot: its first segment along the chain with a kept adapter, else -1."""
    return route(snapshot, adapters).slots
