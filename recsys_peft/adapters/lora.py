"""Segment-routed low-rank adapters (LoRA): the config, the layers and their per-segment state.

The pieces live in ``config``, ``layers`` and ``injection``, and this module re-exports them
under the names that callers import.
"""

from recsys_peft.adapters.config import LoRAConfig
from recsys_peft.adapters.injection import (
    adapter_layers,
    adapter_parameter_count,
    adapter_points,
    adapter_rank,
    adapter_state,
    load_adapter_state,
    lora_layers,
    restrict_to_targets,
)
from recsys_peft.adapters.layers import NO_SEGMENT, SegmentEmbeddingAdapter, SegmentLoRALinear, SegmentLowRank

__all__ = [
    "NO_SEGMENT", "LoRAConfig", "SegmentEmbeddingAdapter", "SegmentLoRALinear", "SegmentLowRank",
    "adapter_layers", "adapter_parameter_count", "adapter_points", "adapter_rank", "adapter_state",
    "load_adapter_state", "lora_layers", "restrict_to_targets",
]
