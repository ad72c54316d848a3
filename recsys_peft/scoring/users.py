"""Segment, adapter slot and model attributes of the users being scored.

Users in the export keep the segment and adapter slot they were exported with. When the export
contains its segment spec, a user it has never seen gets a segment from its current attributes,
and that segment's adapter slot. Without a spec, such a user has no segment and uses the base model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recsys_peft.dataset.attributes import AttributeEncoder
from recsys_peft.segments import assign_segments, load_segment_spec


@dataclass(frozen=True)
class UserFeatures:
    segments: np.ndarray     # (B,) int64, -1 for none
    slots: np.ndarray        # (B,) int64 adapter slot, -1 for the base model
    attributes: np.ndarray   # (B, A) int64 codes in the order of the export's encoders
    new_users_without_segment: int = 0


def encoder_names(model_spec: dict) -> list[str]:
    """Return the user attributes the model of an export reads."""
    return [e["name"] for e in model_spec["encoders"]]


def user_features(model_spec: dict, export_dir: Path, attributes: pa.Table, export_rows: np.ndarray) -> UserFeatures:
    """Describe B users: ``attributes`` has one row per user, ``export_rows`` is -1 for new users.

    ``attributes`` needs the model's attribute columns, and for new users every column the
    segment spec reads. A new user that the spec cannot place gets no segment and is counted.
    """
    rows = len(export_rows)
    table = pq.read_table(Path(export_dir) / "segments.parquet",
                          columns=["user_idx", "segment_idx", "adapter_slot"]).sort_by("user_idx")
    segments = np.full(rows, -1, dtype=np.int64)
    slots = np.full(rows, -1, dtype=np.int64)
    known = export_rows >= 0
    segments[known] = table.column("segment_idx").to_numpy()[export_rows[known]]
    slots[known] = table.column("adapter_slot").to_numpy()[export_rows[known]]

    encoders = [AttributeEncoder.from_dict(e) for e in model_spec["encoders"]]
    codes = np.zeros((rows, len(encoders)), dtype=np.int64)
    for column, encoder in enumerate(encoders):
        if encoder.name in attributes.column_names:
            codes[:, column] = encoder.encode(attributes.column(encoder.name).to_pylist())

    new = np.flatnonzero(~known)
    if model_spec.get("segment_spec") and len(new):
        segments[new] = _segments_of_new_users(model_spec, Path(export_dir), attributes.take(pa.array(new)))
        names = model_spec.get("segment_names", [])
        segment_slots = np.asarray(model_spec.get("segment_slots", range(len(names))), dtype=np.int64)
        placed = new[segments[new] >= 0]
        slots[placed] = segment_slots[segments[placed]]
    return UserFeatures(segments, slots, codes, int((segments[new] < 0).sum()))


def _segments_of_new_users(model_spec: dict, export_dir: Path, attributes: pa.Table) -> np.ndarray:
    """Return the export's segment index of each row, -1 where the spec places it nowhere.

    A spec whose levels need more than user attributes (interactions, or a user table that
    was not exported) raises here, and then every new user is left without a segment.
    """
    spec = load_segment_spec(export_dir / model_spec["segment_spec"])
    try:
        assigned = assign_segments(spec, attributes)
    except (ValueError, KeyError, FileNotFoundError):
        return np.full(attributes.num_rows, -1, dtype=np.int64)
    names = list(model_spec.get("segment_names", []))
    # The last entry serves assign_segments' -1 (no segment).
    lookup = np.array([names.index(n) if n in names else -1 for n in assigned.names] + [-1], dtype=np.int64)
    return lookup[assigned.user_segments]
