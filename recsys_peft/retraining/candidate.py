"""Train a candidate release into the registry and score it against the promoted release.

Every function here finds its own finished output by a deterministic key before it trains,
so a retried task publishes nothing twice: a base model carries ``candidate_key`` in its
metadata, and an adapter's registry version is ``c<key>``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys_peft.adapters.lora import adapter_layers
from recsys_peft.config import PipelineConfig
from recsys_peft.dataset.snapshot import DataSnapshot
from recsys_peft.registry.store import LoadedRelease, Registry
from recsys_peft.retraining.decide import PromotedState
from recsys_peft.retraining.holdout import HoldoutScores, holdout_targets, score_holdout
from recsys_peft.retraining.view import restrict_snapshot
from recsys_peft.training.finetune import finetune_segment, route, stack_adapters
from recsys_peft.training.pretrain import model_config, pretrain

DATA_HASH = "data_hash"
CANDIDATE_KEY = "candidate_key"


def promoted_state(registry: Registry) -> tuple[PromotedState | None, LoadedRelease | None]:
    """Read the promoted release and what the retraining decision needs to know about it."""
    release = registry.current()
    if release is None:
        return None, None
    loaded = registry.load_release(release.release_id)
    config = loaded.base_meta["config"]
    hashes = {segment: str(registry.adapter_meta(release.base_id, segment, version).get(DATA_HASH, ""))
              for segment, version in release.adapters.items()}
    state = PromotedState(
        release_id=release.release_id, base_id=release.base_id,
        vocabulary_version=loaded.base_meta.get("vocabulary_version", ""),
        num_users=int(config["num_users"]), num_items=int(config["num_items"]),
        attribute_cardinalities=dict(config.get("attribute_cardinalities", {})),
        num_tags=int(config.get("num_tags", 0)), segment_hashes=hashes)
    return state, loaded


def base_view(snapshot: DataSnapshot, meta: dict) -> DataSnapshot:
    """Restrict ``snapshot`` to the vocabulary and feature values of a base model (its metadata)."""
    config = meta["config"]
    return restrict_snapshot(snapshot, int(config["num_users"]), int(config["num_items"]),
                             dict(config.get("attribute_cardinalities", {})), int(config.get("num_tags", 0)))


def find_candidate_base(registry: Registry, key: str) -> str | None:
    """Return the id of the base model a run with ``key`` published, or None."""
    for base_id in registry.list_bases():
        if registry.base_meta(base_id).get(CANDIDATE_KEY) == key:
            return base_id
    return None


def train_base(registry: Registry, snapshot: DataSnapshot, config: PipelineConfig, key: str) -> str:
    """Pretrain a base model on ``snapshot`` and publish it, unless a run with ``key`` already did."""
    found = find_candidate_base(registry, key)
    if found is not None:
        return found
    architecture = model_config(config.model, snapshot, **config.resolved_model_overrides())
    trained = pretrain(snapshot, architecture, config.pretrain)
    return registry.publish_base(trained.model, snapshot.segments.names, {
        "vocabulary_version": snapshot.log.vocabulary_version,
        "training_data_snapshot": snapshot.snapshot_id,
        "train_config": config.to_dict(),
        "metrics": {"valid_ndcg@10": trained.result.best_score},
        CANDIDATE_KEY: key,
    })


@dataclass(frozen=True)
class AdapterOutcome:
    """One segment's candidate adapter: its registry version and whether it beat the base."""

    segment: str
    version: str
    kept: bool
    reason: str
    valid_ndcg: float
    base_valid_ndcg: float


def train_adapter(registry: Registry, snapshot: DataSnapshot, config: PipelineConfig, base_id: str,
                  segment_index: int, data_hash: str, key: str) -> AdapterOutcome:
    """Fine-tune one segment's adapter on ``base_id`` and publish it as version ``c<key>``.

    ``snapshot`` must fit the base model's vocabulary (see ``base_view``). When the version
    exists already, it is read back instead of trained again.
    """
    segment = snapshot.segments.names[segment_index]
    version = f"c{key}"
    if version not in registry.list_adapters(base_id, segment):
        base, _ = registry.load_base(base_id)
        adapter = finetune_segment(base, snapshot, segment_index, config.finetune)
        layers = sorted(adapter_layers(stack_adapters(base, [], 1, config.finetune.lora)))
        registry.publish_adapter(adapter, base_id, config.finetune.lora, layers, version=version,
                                 extra={DATA_HASH: data_hash, CANDIDATE_KEY: key})
    meta = registry.adapter_meta(base_id, segment, version)
    metrics = meta["metrics"]
    return AdapterOutcome(segment, version, bool(meta["kept"]), str(meta["reason"]),
                          float(metrics["valid_ndcg@10"]), float(metrics["base_valid_ndcg@10"]))


def score_loaded(loaded: LoadedRelease, view: DataSnapshot, days: int, min_users: int) -> tuple[HoldoutScores, str]:
    """Score a release's stacked model on the held-out window of ``view``; return scores and the window."""
    holdout = holdout_targets(view, days, min_users)
    slots = route(view, loaded.adapters).slots
    return score_holdout(loaded.adapted, slots, view, holdout.targets), holdout.description


def comparison_view(snapshot: DataSnapshot, promoted: LoadedRelease | None) -> DataSnapshot:
    """Return the view both models are scored on: the data as the promoted base can read it."""
    return snapshot if promoted is None else base_view(snapshot, promoted.base_meta)


def segment_indices(snapshot: DataSnapshot, segments: list[str]) -> list[int]:
    names = list(snapshot.segments.names)
    return [names.index(segment) for segment in segments]


def scoped_mean(scores: HoldoutScores, indices: list[int] | None) -> tuple[float, int]:
    """Return the mean NDCG@10 and the user count over the segments of ``indices`` (None: all)."""
    users = len(scores.users) if indices is None else int(np.isin(scores.segments, indices).sum())
    return scores.mean_ndcg(indices), users
