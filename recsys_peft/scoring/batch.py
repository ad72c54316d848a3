"""Score users of an in-memory log with an exported model; the demo's single-folder output.

This is the small-data path: the whole log is in memory and each user is scored as of a given
log position. The batch job (``job.py``) reads its users partition by partition instead; both
share ``recommend``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recsys_peft import atomic
from recsys_peft.dataset.log import InteractionLog
from recsys_peft.dataset.views import seen_csr
from recsys_peft.export.model import ExportedModel
from recsys_peft.scoring.catalogue import index_in, vocabulary_ids
from recsys_peft.scoring.inputs import PartitionInput
from recsys_peft.scoring.output import RECOMMENDATION_SCHEMA, decoded, recommendations_table
from recsys_peft.scoring.recommend import DEFAULT_USER_CHUNK, ScoringContext, recommend
from recsys_peft.scoring.topk import DEFAULT_ITEM_CHUNK
from recsys_peft.scoring.users import user_features

__all__ = ["RECOMMENDATION_SCHEMA", "ScoringSummary", "score_users", "write_recommendations"]


@dataclass
class ScoringSummary:
    users: int
    rows: int
    fallback_users: int          # scored by popularity: unknown to the model or no history
    users_short_of_k: int        # fewer than k recommendable items left
    seconds: float
    unknown_users: int = 0       # ids that are not in the export
    no_history_users: int = 0
    new_item_events: int = 0     # history events on items not in the export, left out


def score_users(
    exported: ExportedModel,
    log: InteractionLog,
    users_table: pa.Table,
    users: np.ndarray,
    positions: np.ndarray,
    k: int = 10,
    user_chunk: int = DEFAULT_USER_CHUNK,
    item_chunk: int = DEFAULT_ITEM_CHUNK,
    unavailable: np.ndarray | None = None,
) -> tuple[pa.Table, ScoringSummary]:
    """Return the top-``k`` recommendations of log ``users`` as of log ``positions`` (exclusive).

    ``users_table`` has one row per log user index with ``user_id`` and the user attributes.
    Users are matched to the export by id. Log item indices must be export rows. That is true
    for a store whose vocabulary grew after the export, because indices are never reassigned.
    Items past the export's last row are new, so they are left out of histories and counted.
    Items each user interacted with before its position, and ``unavailable`` items, are never
    recommended. Users the model cannot score get the popularity fallback of their segment.
    """
    started = time.perf_counter()
    users = np.asarray(users, dtype=np.int64)
    positions = np.asarray(positions, dtype=np.int64)
    user_ids = users_table.column("user_id").combine_chunks().take(pa.array(users))
    export_rows = index_in(user_ids, vocabulary_ids(exported.folder, "users"))
    model_spec = atomic.read_json(exported.folder / "model.json")
    attributes = users_table.drop_columns([c for c in ("user_id", "user_idx") if c in users_table.column_names])
    attributes = attributes.take(pa.array(users))
    features = user_features(model_spec, exported.folder, attributes, export_rows)

    offsets, seen = seen_csr(log, users, positions)
    known_item = seen < exported.item_vectors.shape[0]
    row_of_event = np.repeat(np.arange(len(users)), np.diff(offsets))
    kept = np.bincount(row_of_event[known_item], minlength=len(users))
    data = PartitionInput(
        user_ids=user_ids, export_users=export_rows, segments=features.segments, slots=features.slots,
        attributes=features.attributes,
        history_offsets=np.concatenate([[0], np.cumsum(kept)]).astype(np.int64),
        history_items=seen[known_item], new_item_events=int((~known_item).sum()),
    )
    context = ScoringContext.build(exported, unavailable)
    scores, items, counts = recommend(context, data, k, user_chunk, item_chunk)
    table = decoded(recommendations_table(data, scores, items, context.item_ids, exported.segment_names,
                                          exported.model_version))
    summary = ScoringSummary(counts.users, counts.rows, counts.fallback_users, counts.users_short_of_k,
                             time.perf_counter() - started, counts.unknown_users, counts.no_history_users,
                             counts.new_item_events)
    return table, summary


def write_recommendations(table: pa.Table, out_dir: str | Path, summary: ScoringSummary) -> None:
    """Replace ``out_dir`` with one parquet file of ``table`` and a completion marker."""
    with atomic.replace_dir(Path(out_dir)) as staging:
        pq.write_table(table, staging / "part-0.parquet")
        atomic.write_json(staging / "_SUCCESS.json", {
            "users": summary.users, "rows": summary.rows, "fallback_users": summary.fallback_users,
            "users_short_of_k": summary.users_short_of_k, "unknown_users": summary.unknown_users,
            "no_history_users": summary.no_history_users, "new_item_events": summary.new_item_events,
        })
