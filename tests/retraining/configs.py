"""The tiny pipeline config that the retraining, Dask and deployment tests run."""

from pathlib import Path

from recsys_peft.adapters.lora import LoRAConfig
from recsys_peft.config import PipelineConfig
from recsys_peft.retraining.config import RetrainConfig
from recsys_peft.training.finetune import FinetuneConfig
from recsys_peft.training.loop import TrainConfig

ROOT = Path(__file__).resolve().parents[2]


def tiny_retrain_config(raw_dir: Path, work_dir: Path, learning_rate: float = 5e-3,
                        **retraining: object) -> PipelineConfig:
    """Return a config for a copy of the synthetic log; a ``learning_rate`` of 1e-6 leaves the base near random."""
    return PipelineConfig(
        source_spec=str(raw_dir / "spec.yaml"), segment_spec=str(ROOT / "features" / "segments" / "gender_x_age.yaml"),
        raw_dir=str(raw_dir), work_dir=str(work_dir), fetch_movielens=False, top_k=5,
        model_overrides={"embedding_dim": 16, "hidden_dim": 32, "history_length": 10, "recent_length": 3},
        pretrain=TrainConfig(epochs=2, batch_size=64, learning_rate=learning_rate),
        finetune=FinetuneConfig(lora=LoRAConfig(r=4, alpha=8.0),
                                train=TrainConfig(epochs=2, batch_size=32, learning_rate=1e-2), min_users=5),
        retraining=RetrainConfig(**{"min_holdout_users": 5, **retraining}),
    )
