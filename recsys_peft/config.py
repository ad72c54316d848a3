"""The resolved configuration of one pipeline run, saved beside every artifact it makes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from recsys_peft.adapters.lora import LoRAConfig
from recsys_peft.training.finetune import FinetuneConfig
from recsys_peft.training.loop import TrainConfig

# MovieLens user attributes fed to the base model; age is bucketed into the MovieLens bands.
MOVIELENS_USER_ATTRIBUTES: dict[str, list[float]] = {
    "gender": [], "occupation": [], "age": [18, 25, 35, 45, 50, 56],
}


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
    pretrain: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def __post_init__(self) -> None:
        if self.model != "two_tower":
            raise ValueError(f"model {self.model!r} is not supported yet; supported: ['two_tower']")
        if self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")

    def with_seed(self, seed: int) -> "PipelineConfig":
        """The same config with ``seed`` applied to pretraining and fine-tuning."""
        finetune = FinetuneConfig(lora=self.finetune.lora, train=_reseed(self.finetune.train, seed),
                                  min_users=self.finetune.min_users)
        return PipelineConfig(**{**self.__dict__, "seed": seed, "pretrain": _reseed(self.pretrain, seed),
                                 "finetune": finetune})

    def to_dict(self) -> dict:
        return asdict(self)


def _reseed(train: TrainConfig, seed: int) -> TrainConfig:
    return TrainConfig(**{**asdict(train), "seed": seed})


__all__ = ["PipelineConfig", "LoRAConfig", "TrainConfig", "FinetuneConfig", "MOVIELENS_USER_ATTRIBUTES"]
