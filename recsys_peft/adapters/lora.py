"""Segment-routed low-rank adapters (LoRA) for linear layers.

Each segment ``s`` owns a pair ``A[s]`` (r, in) and ``B[s]`` (out, r). A row of a batch with
segment index ``s`` computes ``W x + b + (alpha / r) * B[s] A[s] x``; a row with segment -1 gets
the base layer alone. The adapter weights are stacked per segment and gathered by each row's
index, so a batch that mixes segments costs one pass instead of a loop over segments.
``B`` starts at zero, so a fresh adapter leaves the base layer's output unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

NO_SEGMENT = -1


@dataclass(frozen=True)
class LoRAConfig:
    """Rank ``r``, scaling ``alpha`` (the update is scaled by alpha / r) and input dropout."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"LoRA rank r must be at least 1, got {self.r}")
        if self.alpha <= 0:
            raise ValueError(f"LoRA alpha must be positive, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout}")

    @property
    def scaling(self) -> float:
        return self.alpha / self.r


class SegmentLoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus one low-rank update per segment."""

    def __init__(self, base: nn.Linear, num_segments: int, config: LoRAConfig) -> None:
        super().__init__()
        self.base = base
        self.config = config
        self.num_segments = num_segments
        self.lora_A = nn.Parameter(torch.empty(num_segments, config.r, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(num_segments, base.out_features, config.r))
        self.dropout = nn.Dropout(config.dropout)
        self.reset_adapters()

    def reset_adapters(self) -> None:
        """Draw ``A`` like a linear layer's weight and zero ``B``, so the update starts at zero."""
        with torch.no_grad():
            bound = 1.0 / math.sqrt(self.base.in_features)
            self.lora_A.uniform_(-bound, bound)
            self.lora_B.zero_()

    def forward(self, x: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        # x: (B, ..., in), one segment per leading row; segments: (B,) int64 in [-1, num_segments)
        out = self.base(x)
        if self.num_segments == 0:
            return out
        rows = x.shape[0]
        active = (segments >= 0).to(x.dtype).view(rows, 1, 1)
        index = segments.clamp(min=0)
        a = self.lora_A[index]                                      # (B, r, in)
        b = self.lora_B[index]                                      # (B, out, r)
        flat = self.dropout(x).reshape(rows, -1, x.shape[-1])      # (B, T, in)
        hidden = torch.bmm(flat, a.transpose(1, 2))                 # (B, T, r)
        delta = torch.bmm(hidden, b.transpose(1, 2))                # (B, T, out)
        delta = delta * (self.config.scaling * active)
        return out + delta.reshape(out.shape)

    def merged_weight(self, segment: int) -> torch.Tensor:
        """The dense weight ``W + (alpha / r) B[s] A[s]`` of one segment (or ``W`` for -1)."""
        weight = self.base.weight
        if segment == NO_SEGMENT:
            return weight.detach().clone()
        update = self.lora_B[segment] @ self.lora_A[segment]    # (out, in)
        return (weight + self.config.scaling * update).detach()


def lora_layers(module: nn.Module) -> dict[str, SegmentLoRALinear]:
    return {name: m for name, m in module.named_modules() if isinstance(m, SegmentLoRALinear)}


def adapter_state(module: nn.Module, segment: int) -> dict[str, torch.Tensor]:
    """The adapter weights of one segment, keyed ``<layer>.lora_A`` / ``<layer>.lora_B``."""
    state: dict[str, torch.Tensor] = {}
    for name, layer in lora_layers(module).items():
        state[f"{name}.lora_A"] = layer.lora_A[segment].detach().clone().contiguous()
        state[f"{name}.lora_B"] = layer.lora_B[segment].detach().clone().contiguous()
    return state


def load_adapter_state(module: nn.Module, segment: int, state: dict[str, torch.Tensor]) -> None:
    """Copy one segment's adapter weights into slot ``segment``; names must match exactly."""
    layers = lora_layers(module)
    expected = {f"{n}.lora_{p}" for n in layers for p in "AB"}
    if set(state) != expected:
        raise ValueError(
            f"adapter weights do not match the model: missing {sorted(expected - set(state))}, "
            f"unexpected {sorted(set(state) - expected)}"
        )
    with torch.no_grad():
        for name, layer in layers.items():
            layer.lora_A[segment].copy_(state[f"{name}.lora_A"])
            layer.lora_B[segment].copy_(state[f"{name}.lora_B"])
