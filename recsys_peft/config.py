"""The resolved configuration of one pipeline run, saved beside every artifact it makes."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field

from recsys_peft.adapters.lora import LoRAConfig
from recsys_peft.retraining.config import RetrainConfig
from recsys_peft.training.finetune import FinetuneConfig
from recsys_peft.training.loop import TrainConfig

# MovieLens user attributes fed to the base model; age is bucketed into the MovieLens bands.
MOVIELENS_USER_ATTRIBUTES: dict[str, list[float]] = {
    "gender": [], "occupation": [], "age": [18, 25, 35, 45, 50, 56],
}


# Training defaults per model family, chosen on MovieLens-100K validation NDCG@10
# (docs/benchmarks.md has the runs).
PRETRAIN_DEFAULTS: dict[str, TrainConfig] = {
    "two_tower": TrainConfig(),
    "sasrec": TrainConfig(epochs=200, batch_size=128, learning_rate=2e-3, patience=8),
}
FINETUNE_DEFAULTS: dict[str, FinetuneConfig] = {
    "two_tower": FinetuneConfig(),
    "sasrec": FinetuneConfig(train=TrainConfig(epochs=20, batch_size=64, learning_rate=1e-3, patience=3)),
}
SASREC_DEFAULTS: dict[str, object] = {"dropout": 0.2, "attention_dropout": 0.2}


@dataclass(frozen=True)
class PipelineConfig:
    """Paths and settings of the end-to-end job; defaults run the MovieLens-100K demo."""

    source_spec: str = "features/movielens_100k.yaml"
    segment_spec: str = "features/segments/gender_x_age.yaml"
    raw_dir: str = "data/raw/ml-100k"
    work_dir: str = "data/demo"
    fetch_movielens: bool = True
    model: str = "two_tower"
    seed: int = 0
    top_k: int = 10
    user_attributes: dict[str, list[float]] = field(default_factory=lambda: dict(MOVIELENS_USER_ATTRIBUTES))
    model_overrides: dict[str, object] = field(default_factory=dict)
    pretrain: TrainConfig | None = None      # None: the model family's default
    finetune: FinetuneConfig | None = None   # None: the model family's default
    retraining: RetrainConfig = field(default_factory=RetrainConfig)

    def __post_init__(self) -> None:
        if self.model not in PRETRAIN_DEFAULTS:
            raise ValueError(f"model must be one of {sorted(PRETRAIN_DEFAULTS)}, got {self.model!r}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")
        # Frozen dataclass: fill the family defaults in place once.
        if self.pretrain is None:
            object.__setattr__(self, "pretrain", PRETRAIN_DEFAULTS[self.model])
        if self.finetune is None:
            object.__setattr__(self, "finetune", FINETUNE_DEFAULTS[self.model])

    def with_seed(self, seed: int) -> "PipelineConfig":
        """The same config with ``seed`` applied to pretraining and fine-tuning."""
        assert self.pretrain is not None and self.finetune is not None
        finetune = dataclasses.replace(self.finetune, train=_reseed(self.finetune.train, seed))
        return PipelineConfig(**{**self.__dict__, "seed": seed, "pretrain": _reseed(self.pretrain, seed),
                                 "finetune": finetune})

    def to_dict(self) -> dict:
        return asdict(self)

    def resolved_model_overrides(self) -> dict[str, object]:
        """The family's architecture defaults, then ``model_overrides`` on top."""
        defaults = SASREC_DEFAULTS if self.model == "sasrec" else {}
        return {**defaults, **self.model_overrides}


def _reseed(train: TrainConfig, seed: int) -> TrainConfig:
    return TrainConfig(**{**asdict(train), "seed": seed})


__all__ = ["PipelineConfig", "LoRAConfig", "TrainConfig", "FinetuneConfig", "MOVIELENS_USER_ATTRIBUTES"]
