"""recsys-peft: per-segment parameter-efficient fine-tuning of TorchRec recommenders."""

__version__ = "0.1.0"
