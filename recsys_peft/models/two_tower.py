"""Two-tower retrieval model on a TorchRec EmbeddingBagCollection.

User tower input, per row: the user's id, the mean of its last ``history_length`` items, the
mean of its last ``recent_length`` items, and one embedding per categorical user attribute.
Item tower input: the item's id and the mean of its genre (or other tag) embeddings. The item
table is shared by the item id and the two history features, so what a history row learns
about an item is what the item tower sees.

Both towers end in an L2-normalised vector; the score of a (user, item) pair is their cosine
similarity, and training divides it by ``temperature``. The user tower's dense layers are
``SegmentLoRALinear`` layers, so per-segment adapters attach without changing the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig
from torchrec.modules.embedding_configs import PoolingType

from recsys_peft.adapters.lora import LoRAConfig, SegmentEmbeddingAdapter, SegmentLoRALinear, restrict_to_targets
from recsys_peft.models.jagged import build_kjt, jagged_from_csr, jagged_from_padded


@dataclass(frozen=True)
class TwoTowerConfig:
    """Architecture of the two-tower model; saved beside every checkpoint and export."""

    num_users: int
    num_items: int
    num_tags: int
    attribute_cardinalities: dict[str, int] = field(default_factory=dict)
    embedding_dim: int = 64
    attribute_dim: int = 16
    hidden_dim: int = 256
    history_length: int = 50
    recent_length: int = 5
    dropout: float = 0.2
    temperature: float = 0.07

    def __post_init__(self) -> None:
        for name in ("num_users", "num_items", "embedding_dim", "hidden_dim", "history_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"TwoTowerConfig.{name} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.recent_length <= self.history_length:
            raise ValueError(
                f"TwoTowerConfig.recent_length must be in [1, history_length={self.history_length}], "
                f"got {self.recent_length}"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TwoTowerConfig":
        return cls(**data)


@dataclass
class UserBatch:
    """User-side inputs for B rows; ``history`` is most recent first, padded with -1."""

    users: torch.Tensor        # (B,) int64
    history: torch.Tensor      # (B, history_length) int64
    attributes: torch.Tensor   # (B, A) int64 codes, 0 = unknown
    segments: torch.Tensor     # (B,) int64, -1 = base model (no adapter)

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def select(self, index: torch.Tensor) -> "UserBatch":
        return UserBatch(self.users[index], self.history[index], self.attributes[index], self.segments[index])


@dataclass
class ItemTags:
    """Each item's tags (for MovieLens, genres) as CSR: item i has ``values[offsets[i]:offsets[i+1]]``."""

    offsets: torch.Tensor
    values: torch.Tensor


class TwoTowerModel(nn.Module):
    family = "two_tower"
    USER_KEYS = ["user_id", "history", "recent"]
    ITEM_KEYS = ["item_id", "tags"]
    # Adapter points: "lookup_adapter" (on the concatenated user-side lookups), "user_hidden" and
    # "user_out". All three are on by default.
    DEFAULT_ADAPTER_TARGETS: tuple[str, ...] | None = ("lookup_adapter", "user_hidden", "user_out")

    def __init__(self, config: TwoTowerConfig, num_segments: int = 0, lora: LoRAConfig | None = None) -> None:
        super().__init__()
        self.config = config
        self.lora_config = lora or LoRAConfig()
        self._num_segments = num_segments
        self.attribute_names = sorted(config.attribute_cardinalities)
        dim, attr_dim = config.embedding_dim, config.attribute_dim

        tables = [
            EmbeddingBagConfig(name="t_user", embedding_dim=dim, num_embeddings=config.num_users,
                               feature_names=["user_id"], pooling=PoolingType.SUM),
            EmbeddingBagConfig(name="t_item", embedding_dim=dim, num_embeddings=config.num_items,
                               feature_names=["item_id", "history", "recent"], pooling=PoolingType.MEAN),
            EmbeddingBagConfig(name="t_tag", embedding_dim=dim, num_embeddings=max(config.num_tags, 1),
                               feature_names=["tags"], pooling=PoolingType.MEAN),
        ]
        for name in self.attribute_names:
            tables.append(EmbeddingBagConfig(
                name=f"t_attr_{name}", embedding_dim=attr_dim,
                num_embeddings=config.attribute_cardinalities[name],
                feature_names=[f"attr_{name}"], pooling=PoolingType.SUM,
            ))
        self.keys = self.USER_KEYS + [f"attr_{n}" for n in self.attribute_names] + self.ITEM_KEYS
        self.ebc = EmbeddingBagCollection(tables=tables, device=torch.device("cpu"))

        user_in = 3 * dim + attr_dim * len(self.attribute_names)
        self.user_dropout = nn.Dropout(config.dropout)
        self.user_hidden = SegmentLoRALinear(nn.Linear(user_in, config.hidden_dim), num_segments, self.lora_config)
        self.user_out = SegmentLoRALinear(nn.Linear(config.hidden_dim, dim), num_segments, self.lora_config)
        self.item_mlp = nn.Sequential(
            nn.Linear(2 * dim, config.hidden_dim), nn.ReLU(), nn.Dropout(config.dropout),
            nn.Linear(config.hidden_dim, dim),
        )
        nn.init.normal_(self.ebc.embedding_bags["t_user"].weight, std=0.05)
        nn.init.normal_(self.ebc.embedding_bags["t_item"].weight, std=0.05)
        # Built last so that the base weights draw the same random numbers as without it.
        self.lookup_adapter = SegmentEmbeddingAdapter(user_in, num_segments, self.lora_config)
        restrict_to_targets(self, self.lora_config, self.DEFAULT_ADAPTER_TARGETS)

    @property
    def num_segments(self) -> int:
        return self._num_segments

    def user_embeddings(self, batch: UserBatch) -> torch.Tensor:
        """L2-normalised user vectors (B, D), with each row's segment adapter applied."""
        return self.user_head(self.user_lookups(batch), batch.segments)

    def user_lookups(self, batch: UserBatch) -> torch.Tensor:
        """Concatenated user-side table lookups (B, 3D + A * attr_dim), before any adapter.

        They read only the tables, so with frozen tables they can be computed once and reused.
        """
        size = len(batch)
        recent = batch.history[:, : self.config.recent_length]
        features = {
            "user_id": (batch.users, torch.ones(size, dtype=torch.long)),
            "history": jagged_from_padded(batch.history),
            "recent": jagged_from_padded(recent),
        }
        for column, name in enumerate(self.attribute_names):
            features[f"attr_{name}"] = (batch.attributes[:, column], torch.ones(size, dtype=torch.long))
        pooled = self.ebc(build_kjt(features, self.keys, size))
        parts = [pooled[key] for key in self.USER_KEYS] + [pooled[f"attr_{n}"] for n in self.attribute_names]
        return torch.cat(parts, dim=1)

    def user_head(self, lookups: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        """L2-normalised user vectors (B, D) from ``user_lookups``, with each row's adapters applied."""
        x = self.lookup_adapter(lookups, segments)
        x = self.user_dropout(x)                                    # (B, 3D + A * attr_dim)
        x = F.relu(self.user_hidden(x, segments))                   # (B, H)
        x = self.user_out(self.user_dropout(x), segments)           # (B, D)
        return F.normalize(x, dim=-1)

    def item_embeddings(self, items: torch.Tensor, tags: ItemTags) -> torch.Tensor:
        """L2-normalised item vectors (len(items), D)."""
        size = items.shape[0]
        features = {
            "item_id": (items, torch.ones(size, dtype=torch.long)),
            "tags": jagged_from_csr(tags.offsets, tags.values, items),
        }
        pooled = self.ebc(build_kjt(features, self.keys, size))
        x = torch.cat([pooled["item_id"], pooled["tags"]], dim=1)  # (N, 2D)
        return F.normalize(self.item_mlp(x), dim=-1)

    @torch.no_grad()
    def all_item_embeddings(self, tags: ItemTags, chunk: int = 65536) -> torch.Tensor:
        """Item vectors of the whole catalogue (I, D), computed in chunks in eval mode."""
        was_training = self.training
        self.eval()
        items = torch.arange(self.config.num_items)
        out = torch.cat([self.item_embeddings(items[i:i + chunk], tags) for i in range(0, len(items), chunk)])
        self.train(was_training)
        return out


def parameter_count(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
