"""Model inputs derived from a store: encoded user attributes, item tags and user batches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from recsys_peft.dataset.attributes import AttributeEncoder
from recsys_peft.dataset.log import InteractionLog
from recsys_peft.dataset.views import history_before
from recsys_peft.models.two_tower import ItemTags, UserBatch


@dataclass(frozen=True)
class FeatureTables:
    """Per-user attribute codes (U, A) and per-item tags, with the encoders that made them."""

    encoders: tuple[AttributeEncoder, ...]
    user_attributes: np.ndarray
    tag_values: tuple[str, ...]
    item_tags: ItemTags

    @property
    def attribute_cardinalities(self) -> dict[str, int]:
        return {e.name: e.cardinality for e in self.encoders}


def build_feature_tables(
    users: pa.Table,
    items: pa.Table,
    attributes: Mapping[str, Sequence[float]],
    tag_column: str | None = "genres",
    encoders: Sequence[AttributeEncoder] | None = None,
    tag_values: Sequence[str] | None = None,
) -> FeatureTables:
    """Encode user attributes (name -> numeric bin edges, empty for categorical) and item tags.

    Pass ``encoders`` and ``tag_values`` from a trained model to encode new data the same way.
    """
    missing = [name for name in attributes if name not in users.column_names]
    if missing:
        raise ValueError(f"user attributes {missing} are not in the users table; found {users.column_names}")
    if encoders is None:
        # Sorted so that the column order matches the model's (it sorts attribute names).
        encoders = [AttributeEncoder.fit(name, users.column(name).to_pylist(), bins)
                    for name, bins in sorted(attributes.items())]
    codes = np.stack([e.encode(users.column(e.name).to_pylist()) for e in encoders], axis=1) \
        if encoders else np.zeros((users.num_rows, 0), dtype=np.int64)

    lists: list[list[str]] = [[] for _ in range(items.num_rows)]
    if tag_column and tag_column in items.column_names:
        lists = [list(v or []) for v in items.column(tag_column).to_pylist()]
    if tag_values is None:
        tag_values = sorted({tag for tags in lists for tag in tags})
    lookup = {tag: i for i, tag in enumerate(tag_values)}
    coded = [[lookup[t] for t in tags if t in lookup] for tags in lists]
    lengths = np.array([len(c) for c in coded], dtype=np.int64)
    offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
    values = torch.tensor([t for c in coded for t in c], dtype=torch.long)
    return FeatureTables(tuple(encoders), codes, tuple(tag_values), ItemTags(offsets, values))


def user_batch(
    log: InteractionLog,
    tables: FeatureTables,
    users: np.ndarray,
    positions: np.ndarray,
    history_length: int,
    segments: np.ndarray | None = None,
) -> UserBatch:
    """User inputs as of log ``positions`` (exclusive): ids, histories, attributes, segments."""
    users = np.asarray(users, dtype=np.int64)
    history = history_before(log, users, positions, history_length)
    seg = segments[users] if segments is not None else np.full(len(users), -1, dtype=np.int64)
    return UserBatch(
        users=torch.from_numpy(users),
        history=torch.from_numpy(history),
        attributes=torch.from_numpy(tables.user_attributes[users]),
        segments=torch.from_numpy(np.asarray(seg, dtype=np.int64)),
    )
