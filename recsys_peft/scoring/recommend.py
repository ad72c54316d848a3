"""Top-K recommendations for one partition of users, from an exported model or precomputed vectors.

A user is scored by the model when it has a history. The two-tower model also needs the user to
be in the export, because it reads a per-user embedding row; SASRec reads only the history, and
precomputed vectors are used as given. Every other user gets the popularity fallback of its
segment (``fallback.py``). Seen items and unavailable items are never recommended.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from recsys_peft.export.model import ExportedModel
from recsys_peft.scoring.fallback import PopularityRanking
from recsys_peft.scoring.inputs import PartitionInput, csr_rows, recent_history
from recsys_peft.scoring.topk import DEFAULT_ITEM_CHUNK, NO_ITEM, chunked_topk, score_buffer

DEFAULT_USER_CHUNK = 256


@dataclass
class PartitionCounts:
    """Counts of how the users of one partition were scored; the job summary adds them up."""

    users: int = 0
    rows: int = 0
    model_users: int = 0          # scored by the model or by their precomputed vector
    fallback_users: int = 0       # scored by segment popularity
    unknown_users: int = 0        # ids the model never saw (scored by SASRec when they have a history)
    no_history_users: int = 0     # no interaction with an item in the export
    users_short_of_k: int = 0     # fewer than k recommendable items left
    new_item_events: int = 0      # history events on items added after the export, left out

    def add(self, other: "PartitionCounts") -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


@dataclass
class ScoringContext:
    """State shared by every partition of a job: the export, the item side and the fallback ranking."""

    exported: ExportedModel
    unavailable: torch.Tensor | None   # (I,) bool
    popularity: PopularityRanking
    item_ids: pa.Array                 # (I,) original item ids, in export order

    @classmethod
    def build(cls, exported: ExportedModel, unavailable: np.ndarray | None = None) -> "ScoringContext":
        num_items = exported.item_vectors.shape[0]
        if unavailable is not None and len(unavailable) != num_items:
            raise ValueError(f"unavailable mask has {len(unavailable)} items, the export at "
                             f"{exported.folder} has {num_items}")
        mask = torch.from_numpy(np.asarray(unavailable, dtype=bool)) if unavailable is not None else None
        ranking = PopularityRanking(exported.item_popularity, exported.segment_popularity, unavailable)
        vocabulary = pq.read_table(exported.folder / "vocab" / "items.parquet", columns=["id", "index"])
        item_ids = vocabulary.sort_by("index").column("id").combine_chunks()
        return cls(exported, mask, ranking, item_ids)


def model_rows(context: ScoringContext, data: PartitionInput) -> np.ndarray:
    """Return a (B,) bool mask of the users the model (or their precomputed vector) scores."""
    has_history = data.history_lengths > 0
    if data.vectors is None and context.exported.family == "two_tower":
        return has_history & (data.export_users >= 0)
    return has_history


def recommend(
    context: ScoringContext,
    data: PartitionInput,
    k: int,
    user_chunk: int = DEFAULT_USER_CHUNK,
    item_chunk: int = DEFAULT_ITEM_CHUNK,
) -> tuple[np.ndarray, np.ndarray, PartitionCounts]:
    """Return scores (B, k) float32, items (B, k) int64 (-1 = padding) and the partition's counts."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if user_chunk < 1:
        raise ValueError(f"user_chunk must be at least 1, got {user_chunk}")
    rows = len(data)
    scores = np.full((rows, k), -np.inf, dtype=np.float32)
    items = np.full((rows, k), NO_ITEM, dtype=np.int64)
    by_model = model_rows(context, data)

    scored = np.flatnonzero(by_model)
    batch_users = (context.exported.load_user_rows(np.maximum(data.export_users[scored], 0))
                   if data.vectors is None else None)
    item_vectors = context.exported.item_vectors
    buffer = score_buffer(min(user_chunk, len(scored)), item_chunk, item_vectors.shape[0]) if len(scored) else None
    for begin in range(0, len(scored), user_chunk):
        block = scored[begin:begin + user_chunk]
        if data.vectors is not None:
            vectors = torch.from_numpy(np.ascontiguousarray(data.vectors[block], dtype=np.float32))
        else:
            vectors = _model_vectors(context, data, block, batch_users[begin:begin + user_chunk])
        offsets, seen = csr_rows(data.history_offsets, data.history_items, block)
        block_scores, block_items = chunked_topk(vectors, item_vectors, k, offsets, seen, item_chunk,
                                                 context.unavailable, buffer)
        scores[block], items[block] = block_scores.numpy(), block_items.numpy()

    fallback = np.flatnonzero(~by_model)
    if len(fallback):
        offsets, seen = csr_rows(data.history_offsets, data.history_items, fallback)
        scores[fallback], items[fallback] = context.popularity.topk(data.segments[fallback], offsets, seen, k)

    found = items != NO_ITEM
    counts = PartitionCounts(
        users=rows,
        rows=int(found.sum()),
        model_users=int(by_model.sum()),
        fallback_users=len(fallback),
        unknown_users=int((data.export_users < 0).sum()),
        no_history_users=int((data.history_lengths == 0).sum()),
        users_short_of_k=int((~found).any(axis=1).sum()),
        new_item_events=data.new_item_events,
    )
    return scores, items, counts


@torch.no_grad()
def _model_vectors(context: ScoringContext, data: PartitionInput, block: np.ndarray,
                   batch_users: np.ndarray) -> torch.Tensor:
    from recsys_peft.models.two_tower import UserBatch  # imports TorchRec, which precomputed vectors never need

    history_length = context.exported.model.config.history_length
    batch = UserBatch(
        users=torch.from_numpy(np.ascontiguousarray(batch_users, dtype=np.int64)),
        history=torch.from_numpy(recent_history(data.history_offsets, data.history_items, block, history_length)),
        attributes=torch.from_numpy(np.ascontiguousarray(data.attributes[block], dtype=np.int64)),
        segments=torch.from_numpy(np.ascontiguousarray(data.slots[block], dtype=np.int64)),
    )
    return context.exported.user_vectors(batch)
