"""Segment-routed low-rank adapter layers.

Each segment ``s`` owns a pair ``A[s]`` (r, in) and ``B[s]`` (out, r). A row of a batch with
segment index ``s`` adds ``(alpha / r) * B[s] A[s] x`` to its output, and a row with segment -1
gets none. The adapter weights are stacked per segment and gathered by each row's index, so a
batch that mixes segments costs one pass instead of a loop over segments. ``B`` starts at zero,
so a fresh adapter leaves the output unchanged.

With ``LoRAConfig.segment_bias`` a dense layer's segment also owns a bias ``b[s]`` (out,),
zero at the start, added to the update of its rows.

``SegmentLoRALinear`` adds the update to a frozen ``nn.Linear``. ``SegmentEmbeddingAdapter``
adds it to its own input, ``x + (alpha / r) B[s] A[s] x``, and sits on the output of frozen
embedding lookups, so a segment can shift how its users are represented without touching the
tables.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from recsys_peft.adapters.config import LoRAConfig

NO_SEGMENT = -1


class SegmentLowRank(nn.Module):
    """The stacked per-segment ``A`` and ``B`` of one adapter point, and the update they compute."""

    def __init__(self, in_features: int, out_features: int, num_segments: int, config: LoRAConfig,
                 with_bias: bool = False) -> None:
        super().__init__()
        self.config = config
        self.num_segments = num_segments
        self.in_features = in_features
        self.out_features = out_features
        # False once ``disable`` ran: the layer is not among the config's targets and has no slots.
        self.targeted = True
        self.lora_A = nn.Parameter(torch.empty(num_segments, config.r, in_features))
        self.lora_B = nn.Parameter(torch.zeros(num_segments, out_features, config.r))
        # (S, out) per-segment bias, or (S, 0) when the layer has none.
        self.lora_bias = nn.Parameter(torch.zeros(num_segments, out_features if with_bias else 0))
        self.dropout = nn.Dropout(config.dropout)
        self.reset_adapters()

    def reset_adapters(self) -> None:
        """Draw ``A`` like a linear layer's weight and zero ``B``, so the update starts at zero."""
        with torch.no_grad():
            bound = 1.0 / math.sqrt(self.in_features)
            self.lora_A.uniform_(-bound, bound)
            self.lora_B.zero_()
            self.lora_bias.zero_()

    @property
    def has_bias(self) -> bool:
        return self.lora_bias.shape[1] > 0

    def disable(self) -> None:
        """Drop every slot, so the layer computes its base output for all rows."""
        self.targeted = False
        self.num_segments = 0
        self.lora_A = nn.Parameter(self.lora_A.new_empty(0, self.config.r, self.in_features))
        self.lora_B = nn.Parameter(self.lora_B.new_empty(0, self.out_features, self.config.r))
        self.lora_bias = nn.Parameter(self.lora_bias.new_empty(0, self.lora_bias.shape[1]))

    def update(self, x: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        """Return ``(alpha / r) B[s] A[s] x`` (plus ``b[s]``) per row, zero for rows with segment -1.

        ``x`` is (B, ..., in) with one segment per leading row, and ``segments`` is (B,) int64
        in [-1, num_segments).
        """
        rows = x.shape[0]
        active = (segments >= 0).to(x.dtype).view(rows, 1, 1)
        flat = self.dropout(x).reshape(rows, -1, x.shape[-1])       # (B, T, in)
        index = segments.clamp(min=0)
        if self.num_segments == 1:
            # One slot, as when an adapter trains: plain matrix products give the same update
            # without gathering a copy of the weights per row. The choice depends on the model,
            # not on the batch, so a row's output never depends on which rows share its batch.
            hidden = flat @ self.lora_A[0].T                        # (B, T, r)
            delta = hidden @ self.lora_B[0].T                       # (B, T, out)
            bias = self.lora_bias[0].expand(rows, -1) if self.has_bias else None
        else:
            a = self.lora_A[index]                                  # (B, r, in)
            b = self.lora_B[index]                                  # (B, out, r)
            hidden = torch.bmm(flat, a.transpose(1, 2))             # (B, T, r)
            delta = torch.bmm(hidden, b.transpose(1, 2))            # (B, T, out)
            bias = self.lora_bias[index] if self.has_bias else None  # (B, out)
        delta = delta * (self.config.scaling * active)
        if bias is not None:
            delta = delta + bias.unsqueeze(1) * active
        return delta.reshape(*x.shape[:-1], self.out_features)

    def update_matrix(self, segment: int) -> torch.Tensor:
        """Return the dense update ``(alpha / r) B[s] A[s]`` (out, in) of one segment."""
        return (self.config.scaling * (self.lora_B[segment] @ self.lora_A[segment])).detach()

    def adapter_parameters_per_segment(self) -> int:
        return self.config.r * (self.in_features + self.out_features) + self.lora_bias.shape[1]


class SegmentLoRALinear(SegmentLowRank):
    """A frozen ``nn.Linear`` plus one low-rank update per segment."""

    def __init__(self, base: nn.Linear, num_segments: int, config: LoRAConfig) -> None:
        super().__init__(base.in_features, base.out_features, num_segments, config, with_bias=config.segment_bias)
        self.base = base

    def forward(self, x: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.num_segments == 0:
            return out
        return out + self.update(x, segments)

    def merged_weight(self, segment: int) -> torch.Tensor:
        """Return the dense weight ``W + (alpha / r) B[s] A[s]`` of one segment, or a copy of ``W`` for -1."""
        weight = self.base.weight.detach()
        if segment == NO_SEGMENT:
            return weight.clone()
        return weight + self.update_matrix(segment)

    def merged_bias(self, segment: int) -> torch.Tensor | None:
        """Return the bias ``b + b[s]`` of one segment (``b`` alone for -1), None when the layer has none."""
        base = None if self.base.bias is None else self.base.bias.detach().clone()
        if segment == NO_SEGMENT or not self.has_bias:
            return base
        shift = self.lora_bias[segment].detach()
        return shift.clone() if base is None else base + shift


class SegmentEmbeddingAdapter(SegmentLowRank):
    """A residual low-rank map ``x + (alpha / r) B[s] A[s] x`` on the output of embedding lookups.

    The map is linear, so it commutes with sum and mean pooling: adapting a pooled lookup
    equals pooling lookups from the merged table ``merge_into_table`` returns.
    """

    def __init__(self, dim: int, num_segments: int, config: LoRAConfig) -> None:
        super().__init__(dim, dim, num_segments, config)

    def forward(self, x: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        if self.num_segments == 0:
            return x
        return x + self.update(x, segments)

    def merged_weight(self, segment: int) -> torch.Tensor:
        """Return the matrix ``M = I + (alpha / r) B[s] A[s]``, so that ``adapter(x) = x M^T``, or ``I`` for -1."""
        identity = torch.eye(self.in_features, dtype=self.lora_A.dtype)
        if segment == NO_SEGMENT:
            return identity
        return identity + self.update_matrix(segment)

    def merge_into_table(self, table: torch.Tensor, segment: int) -> torch.Tensor:
        """Return a copy of an embedding table (N, dim) with segment ``segment``'s map applied to every row."""
        return table.detach() @ self.merged_weight(segment).T
