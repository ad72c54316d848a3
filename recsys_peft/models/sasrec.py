"""SASRec: causal self-attention over each user's recent items, on a TorchRec EmbeddingCollection.

The item table lives in an ``EmbeddingCollection`` (unpooled lookups) and is shared by the input
sequence and the output layer: the score of item ``j`` for a user is the dot product of the
last position's hidden state with row ``j`` of the table. Sequences are left-padded so that the
most recent item always sits at the last position; padded positions are masked out of attention
(as keys) and out of the loss. Every projection of the attention and feed-forward layers is a
``SegmentLoRALinear``, so per-segment adapters attach to the blocks while the table stays frozen.

The user-side input is the same ``UserBatch`` as the two-tower model's: ``history`` (most recent
first, -1 padding) is flipped into a left-padded chronological sequence; user ids and attributes
are not used.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchrec import EmbeddingCollection, EmbeddingConfig, KeyedJaggedTensor

from recsys_peft.adapters.lora import LoRAConfig, SegmentEmbeddingAdapter, SegmentLoRALinear, restrict_to_targets
from recsys_peft.models.attention import sparse_causal_attention
from recsys_peft.models.two_tower import ItemTags, UserBatch

PAD = -1


@dataclass(frozen=True)
class SASRecConfig:
    """Architecture of the SASRec model; saved beside every checkpoint and export."""

    num_items: int
    num_users: int = 0
    embedding_dim: int = 64
    num_layers: int = 2
    num_heads: int = 2
    ffn_dim: int = 256
    max_length: int = 50
    dropout: float = 0.5
    attention_dropout: float = 0.5
    loss: str = "full_softmax"       # or "sampled_softmax" for large catalogues
    num_negatives: int = 256         # sampled softmax only
    # "dense" attends to every earlier position. "sparse" attends to the last attention_window
    # positions and to every attention_stride-th position counting back from the most recent
    # (0: none), so attention memory grows with L * (window + L / stride) instead of L * L.
    attention: str = "dense"
    attention_window: int = 32
    attention_stride: int = 64
    # Training windows start every window_stride events (None: max_length, no overlap); see
    # recsys_peft.training.sequences.
    window_stride: int | None = None

    def __post_init__(self) -> None:
        if self.num_items < 1 or self.max_length < 1 or self.num_layers < 1:
            raise ValueError(
                f"SASRecConfig needs num_items, max_length and num_layers >= 1, got "
                f"num_items={self.num_items}, max_length={self.max_length}, num_layers={self.num_layers}"
            )
        if self.embedding_dim % self.num_heads:
            raise ValueError(
                f"SASRecConfig.embedding_dim={self.embedding_dim} must be divisible by num_heads={self.num_heads}"
            )
        if self.loss not in ("full_softmax", "sampled_softmax"):
            raise ValueError(f"SASRecConfig.loss must be 'full_softmax' or 'sampled_softmax', got {self.loss!r}")
        if self.attention not in ("dense", "sparse"):
            raise ValueError(f"SASRecConfig.attention must be 'dense' or 'sparse', got {self.attention!r}")
        if self.window_stride is not None and not 1 <= self.window_stride <= self.max_length:
            raise ValueError(
                f"SASRecConfig.window_stride must be between 1 and max_length={self.max_length}, "
                f"got {self.window_stride}"
            )
        if self.attention_window < 1 or self.attention_stride < 0:
            raise ValueError(
                f"SASRecConfig needs attention_window >= 1 and attention_stride >= 0, got "
                f"attention_window={self.attention_window}, attention_stride={self.attention_stride}"
            )

    @property
    def history_length(self) -> int:
        return self.max_length

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SASRecConfig":
        return cls(**data)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: SASRecConfig, num_segments: int, lora: LoRAConfig) -> None:
        super().__init__()
        dim = config.embedding_dim
        self.num_heads = config.num_heads
        self.query = SegmentLoRALinear(nn.Linear(dim, dim), num_segments, lora)
        self.key = SegmentLoRALinear(nn.Linear(dim, dim), num_segments, lora)
        self.value = SegmentLoRALinear(nn.Linear(dim, dim), num_segments, lora)
        self.output = SegmentLoRALinear(nn.Linear(dim, dim), num_segments, lora)
        self.attention_dropout = config.attention_dropout
        self.sparse = config.attention == "sparse"
        self.window = config.attention_window
        self.stride = config.attention_stride

    def forward(self, x: torch.Tensor, mask: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        """``mask`` is the (B, 1, L, L) dense attention mask, or the (B, L) key validity when sparse."""
        batch, length, dim = x.shape
        heads = self.num_heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, heads, dim // heads).transpose(1, 2)  # (B, h, L, D/h)

        q, k, v = (split(layer(x, segments)) for layer in (self.query, self.key, self.value))
        dropout = self.attention_dropout if self.training else 0.0
        if self.sparse:
            attended = sparse_causal_attention(q, k, v, mask, self.window, self.stride, dropout)
        else:
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        attended = attended.transpose(1, 2).reshape(batch, length, dim)        # (B, L, D)
        return self.output(attended, segments)


class FeedForward(nn.Module):
    def __init__(self, config: SASRecConfig, num_segments: int, lora: LoRAConfig) -> None:
        super().__init__()
        self.inner = SegmentLoRALinear(nn.Linear(config.embedding_dim, config.ffn_dim), num_segments, lora)
        self.outer = SegmentLoRALinear(nn.Linear(config.ffn_dim, config.embedding_dim), num_segments, lora)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        return self.outer(self.dropout(F.gelu(self.inner(x, segments))), segments)


class Block(nn.Module):
    """Pre-norm transformer block: x + attention(norm(x)), then x + feed-forward(norm(x))."""

    def __init__(self, config: SASRecConfig, num_segments: int, lora: LoRAConfig) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(config.embedding_dim)
        self.attention = CausalSelfAttention(config, num_segments, lora)
        self.ffn_norm = nn.LayerNorm(config.embedding_dim)
        self.ffn = FeedForward(config, num_segments, lora)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.attention_norm(x), mask, segments))
        return x + self.dropout(self.ffn(self.ffn_norm(x), segments))


class SASRecModel(nn.Module):
    family = "sasrec"
    # Adapter points: "lookup_adapter" (on the item lookups of the input sequence) and the
    # attention and feed-forward projections of every block. None targets them all.
    DEFAULT_ADAPTER_TARGETS: tuple[str, ...] | None = None

    def __init__(self, config: SASRecConfig, num_segments: int = 0, lora: LoRAConfig | None = None) -> None:
        super().__init__()
        self.config = config
        self.lora_config = lora or LoRAConfig()
        self._num_segments = num_segments
        dim = config.embedding_dim
        self.ec = EmbeddingCollection(tables=[EmbeddingConfig(
            name="t_item", embedding_dim=dim, num_embeddings=config.num_items, feature_names=["sequence"],
        )], device=torch.device("cpu"))
        nn.init.normal_(self.item_table, std=1.0 / math.sqrt(dim))
        self.positions = nn.Embedding(config.max_length, dim)
        self.input_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, num_segments, self.lora_config) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(dim)
        # Built last so that the base weights draw the same random numbers as without it. It
        # adapts the input sequence only: the output layer reads the shared, unadapted table.
        self.lookup_adapter = SegmentEmbeddingAdapter(dim, num_segments, self.lora_config)
        restrict_to_targets(self, self.lora_config, self.DEFAULT_ADAPTER_TARGETS)

    @property
    def item_table(self) -> torch.Tensor:
        return self.ec.embeddings["t_item"].weight

    @property
    def num_segments(self) -> int:
        return self._num_segments

    def sequence_states(self, sequence: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, L, D) of a left-padded chronological (B, L) item sequence."""
        batch, length = sequence.shape
        valid = sequence != PAD                                                   # (B, L)
        ids = sequence[valid]
        lengths = torch.full((batch,), 0, dtype=torch.long) + valid.sum(dim=1)
        kjt = KeyedJaggedTensor.from_lengths_sync(keys=["sequence"], values=ids, lengths=lengths)
        looked_up = self.ec(kjt)["sequence"].values()                            # (N, D)
        x = torch.zeros(batch, length, self.config.embedding_dim, dtype=looked_up.dtype)
        x[valid] = looked_up                                                      # (B, L, D)
        x = self.lookup_adapter(x, segments)                                      # padding stays 0

        offset = self.config.max_length - length
        x = x * math.sqrt(self.config.embedding_dim) + self.positions.weight[offset:].unsqueeze(0)
        x = self.input_dropout(x) * valid.unsqueeze(-1)

        if self.config.attention == "sparse":
            for block in self.blocks:
                x = block(x, valid, segments) * valid.unsqueeze(-1)
            return self.final_norm(x)

        # Causal attention over real keys; every query may see itself so no row is all masked.
        causal = torch.tril(torch.ones(length, length, dtype=torch.bool))
        eye = torch.eye(length, dtype=torch.bool)
        mask = (causal & valid.unsqueeze(1)) | eye                               # (B, L, L)
        mask = mask.unsqueeze(1)                                                  # (B, 1, L, L)
        for block in self.blocks:
            x = block(x, mask, segments) * valid.unsqueeze(-1)
        return self.final_norm(x)

    def user_embeddings(self, batch: UserBatch) -> torch.Tensor:
        """The last position's state (B, D) for each user's history, adapters applied per row."""
        history = batch.history[:, : self.config.max_length]
        sequence = torch.flip(history, dims=[1])                                  # left-padded, oldest first
        return self.sequence_states(sequence, batch.segments)[:, -1]

    def item_embeddings(self, items: torch.Tensor, tags: ItemTags | None = None) -> torch.Tensor:
        return self.item_table[items]

    @torch.no_grad()
    def all_item_embeddings(self, tags: ItemTags | None = None) -> torch.Tensor:
        return self.item_table.detach().clone()
