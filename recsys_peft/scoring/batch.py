"""Score users with an exported model and write their top-K recommendations."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from recsys_peft import atomic
from recsys_peft.dataset.features import build_feature_tables, user_batch
from recsys_peft.dataset.log import InteractionLog
from recsys_peft.dataset.views import seen_csr
from recsys_peft.export.model import ExportedModel
from recsys_peft.scoring.topk import NO_ITEM, chunked_topk

RECOMMENDATION_SCHEMA = pa.schema([
    pa.field("user_id", pa.string(), nullable=False),
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("rank", pa.int32(), nullable=False),
    pa.field("score", pa.float32(), nullable=False),
    pa.field("segment", pa.string()),
    pa.field("model_version", pa.string(), nullable=False),
])


@dataclass
class ScoringSummary:
    users: int
    rows: int
    fallback_users: int          # scored by popularity: unknown to the model or no history
    users_short_of_k: int        # fewer than k recommendable items left
    seconds: float


def _popularity_topk(popularity: torch.Tensor, k: int, offsets: np.ndarray, seen: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    rows = len(offsets) - 1
    vectors = torch.ones(rows, 1)
    return chunked_topk(vectors, popularity.unsqueeze(1), k, offsets, seen)


def score_users(
    exported: ExportedModel,
    log: InteractionLog,
    users_table: pa.Table,
    users: np.ndarray,
    positions: np.ndarray,
    k: int = 10,
    user_chunk: int = 4096,
    item_chunk: int = 65536,
) -> tuple[pa.Table, ScoringSummary]:
    """Top-``k`` recommendations for ``users`` as of log ``positions`` (exclusive).

    Items each user interacted with before its position are never recommended. Users the model
    has no row for, or with no history, get the most popular unseen items (documented fallback).
    """
    start_time = time.perf_counter()
    model = exported.model
    config = model.config
    users = np.asarray(users, dtype=np.int64)
    positions = np.asarray(positions, dtype=np.int64)
    tables = build_feature_tables(users_table, pa.table({"item_id": pa.array([], pa.string())}), {},
                                  tag_column=None, encoders=exported.encoders, tag_values=exported.tag_values)
    item_ids = np.array(exported_item_ids(exported), dtype=object)
    user_ids = users_table.column("user_id").to_pylist()
    slots = np.full(log.num_users, -1, dtype=np.int64)
    known_slots = exported.user_slots[: min(len(exported.user_slots), log.num_users)]
    slots[: len(known_slots)] = known_slots

    out_users, out_items, out_ranks, out_scores, out_segments = [], [], [], [], []
    fallback, short = 0, 0
    for begin in range(0, len(users), user_chunk):
        chunk_users = users[begin:begin + user_chunk]
        chunk_pos = positions[begin:begin + user_chunk]
        offsets, seen = seen_csr(log, chunk_users, chunk_pos)
        # Items the model was not trained on have no vector: they are left out of scoring.
        keep_seen = seen < config.num_items
        seen_row = np.repeat(np.arange(len(chunk_users)), np.diff(offsets))
        kept_per_row = np.bincount(seen_row[keep_seen], minlength=len(chunk_users))
        seen_offsets = np.concatenate([[0], np.cumsum(kept_per_row)]).astype(np.int64)
        seen = seen[keep_seen]
        has_history = np.diff(offsets) > 0
        # The two-tower model has a row per user id; SASRec reads only the history.
        known = chunk_users < config.num_users if model.family == "two_tower" else np.ones(len(chunk_users), bool)
        use_model = known & has_history

        scores = torch.full((len(chunk_users), k), float("-inf"))
        items = torch.full((len(chunk_users), k), NO_ITEM, dtype=torch.long)
        if use_model.any():
            rows = np.flatnonzero(use_model)
            sub_offsets, sub_seen = _subset_csr(seen_offsets, seen, rows)
            batch = user_batch(log, tables, chunk_users[rows], chunk_pos[rows], config.history_length, slots)
            vectors = exported.user_vectors(batch)
            s, i = chunked_topk(vectors, exported.item_vectors, k, sub_offsets, sub_seen, item_chunk)
            scores[torch.from_numpy(rows)], items[torch.from_numpy(rows)] = s, i
        if (~use_model).any():
            rows = np.flatnonzero(~use_model)
            sub_offsets, sub_seen = _subset_csr(seen_offsets, seen, rows)
            s, i = _popularity_topk(exported.item_popularity, k, sub_offsets, sub_seen)
            scores[torch.from_numpy(rows)], items[torch.from_numpy(rows)] = s, i
            fallback += len(rows)

        valid = items != NO_ITEM                                   # (C, k)
        short += int((~valid).any(dim=1).sum())
        row_index, rank_index = torch.nonzero(valid, as_tuple=True)
        user_index = chunk_users[row_index.numpy()]
        out_users.extend(user_ids[u] for u in user_index)
        out_items.extend(item_ids[items[row_index, rank_index].numpy()])
        out_ranks.append(rank_index.numpy() + 1)
        out_scores.append(scores[row_index, rank_index].numpy())
        out_segments.extend(exported.segment_of_user[u] if u < len(exported.segment_of_user) else None
                            for u in user_index)

    table = pa.table({
        "user_id": pa.array(out_users, pa.string()),
        "item_id": pa.array(list(out_items), pa.string()),
        "rank": pa.array(np.concatenate(out_ranks) if out_ranks else [], pa.int32()),
        "score": pa.array(np.concatenate(out_scores) if out_scores else [], pa.float32()),
        "segment": pa.array(out_segments, pa.string()),
        "model_version": pa.array([exported.model_version] * len(out_users), pa.string()),
    }, schema=RECOMMENDATION_SCHEMA)
    summary = ScoringSummary(len(users), table.num_rows, fallback, short, time.perf_counter() - start_time)
    return table, summary


def _subset_csr(offsets: np.ndarray, values: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lengths = offsets[rows + 1] - offsets[rows]
    new_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    index = np.repeat(offsets[rows] - new_offsets[:-1], lengths) + np.arange(new_offsets[-1])
    return new_offsets, values[index]


def exported_item_ids(exported: ExportedModel) -> list[str]:
    return pq.read_table(exported.folder / "vocab" / "items.parquet").sort_by("index").column("id").to_pylist()


def write_recommendations(table: pa.Table, out_dir: str | Path, summary: ScoringSummary) -> None:
    """Replace ``out_dir`` with one parquet file of ``table`` and a completion marker."""
    with atomic.replace_dir(Path(out_dir)) as staging:
        pq.write_table(table, staging / "part-0.parquet")
        atomic.write_json(staging / "_SUCCESS.json", {
            "users": summary.users, "rows": summary.rows, "fallback_users": summary.fallback_users,
            "users_short_of_k": summary.users_short_of_k,
        })
