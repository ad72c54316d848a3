"""Assign users to the segments of a spec, one segment per level of its chain.

Example (the MovieLens default, 2 genders x 7 age bands = 14 segments)::

    name: gender_x_age
    keys:
      - attribute: gender
      - attribute: age
        bins: [18, 25, 35, 45, 50, 56]
        labels: ["<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+"]

A user whose attribute is missing or not among the known values gets no segment at that level
(index -1). A one-level spec names segments by their value (``F:35-44``). A chain prefixes each
name with its level (``tenant=acme``, ``country=DE``), so names stay unique across levels.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from recsys_peft.dataset.attributes import AttributeEncoder
from recsys_peft.segments.sources import log_column_labels, table_labels
from recsys_peft.segments.spec import SegmentLevel, SegmentSpec

NO_SEGMENT = -1


@dataclass(frozen=True)
class SegmentAssignment:
    """The segment names and each user's segment index (-1 when the user has none).

    ``user_segments`` is each user's first known segment along the chain. ``candidates`` (U, L)
    holds the user's segment at every level, and ``segment_levels`` the level of each segment.
    A one-level assignment may leave both out.
    """

    names: tuple[str, ...]
    user_segments: np.ndarray
    candidates: np.ndarray | None = None
    levels: tuple[str, ...] = ("segment",)
    segment_levels: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.candidates is None:
            object.__setattr__(self, "candidates", np.asarray(self.user_segments, dtype=np.int64)[:, None])
        if not self.segment_levels:
            object.__setattr__(self, "segment_levels", (0,) * len(self.names))

    @property
    def unassigned_users(self) -> int:
        return int(np.sum(self.user_segments == NO_SEGMENT))

    def members(self, segment: int) -> np.ndarray:
        """Return a (U,) mask of the users that belong to ``segment`` at its level."""
        return self.candidates[:, self.segment_levels[segment]] == segment

    def sizes(self) -> dict[str, int]:
        """Return the number of members of every segment."""
        return {name: int(self.members(index).sum()) for index, name in enumerate(self.names)}

    def table(self, user_ids: list[str]) -> pa.Table:
        names = [self.names[s] if s >= 0 else None for s in self.user_segments]
        return pa.table({
            "user_id": pa.array(user_ids, pa.string()),
            "user_idx": pa.array(np.arange(len(user_ids)), pa.int64()),
            "segment": pa.array(names, pa.string()),
            "segment_idx": pa.array(self.user_segments, pa.int64()),
        })


def _attribute_labels(spec: SegmentSpec, level: SegmentLevel, users: pa.Table) -> tuple[list[str], list[str | None]]:
    """Return every combination of the level's attribute values, and each user's combination."""
    missing = [k.attribute for k in level.keys if k.attribute not in users.column_names]
    if missing:
        raise ValueError(
            f"segment spec {spec.path or spec.name}: attributes {missing} are not in the users table; "
            f"found {users.column_names}"
        )
    encoders = [AttributeEncoder.fit(k.attribute, users.column(k.attribute).to_pylist(), k.bins, k.labels)
                for k in level.keys]
    names = [spec.separator.join(combo) for combo in itertools.product(*(e.values for e in encoders))]
    per_key = [e.labels_of(users.column(e.name).to_pylist()) for e in encoders]
    known = [set(e.values) for e in encoders]
    labels: list[str | None] = []
    for values in zip(*per_key):
        if all(v is not None and v in allowed for v, allowed in zip(values, known)):
            labels.append(spec.separator.join(values))
        else:
            labels.append(None)
    return names, labels


def _level_labels(spec: SegmentSpec, level: SegmentLevel, users: pa.Table,
                  interactions: pa.Table | None) -> tuple[list[str], list[str | None]]:
    if level.source == "attributes":
        return _attribute_labels(spec, level, users)
    if level.source == "log_column":
        if interactions is None:
            raise ValueError(
                f"segment spec {spec.path or spec.name}: level {level.name!r} reads the log column "
                f"{level.column!r}, so assign_segments needs the interactions table; pass interactions=")
        labels = log_column_labels(interactions, users, level.column, level.rule, spec.path or spec.name)
    else:
        labels = table_labels(level.path, users, level.user_column, level.segment_column, spec.path or spec.name)
    return sorted({label for label in labels if label is not None}), labels


def assign_segments(spec: SegmentSpec, users: pa.Table, interactions: pa.Table | None = None,
                    names: tuple[str, ...] | None = None) -> SegmentAssignment:
    """Assign every row of ``users`` (in index order) to at most one segment per level of ``spec``.

    ``interactions`` is needed by ``log_column`` levels. ``names`` fixes the segment list to a
    trained model's, so that new users map onto the same indices. A value outside it counts as
    unknown.
    """
    chain = spec.is_chain
    all_names: list[str] = []
    segment_levels: list[int] = []
    per_level: list[list[str | None]] = []
    for position, level in enumerate(spec.levels):
        level_names, labels = _level_labels(spec, level, users, interactions)
        if chain:
            level_names = [f"{level.name}={n}" for n in level_names]
            labels = [None if label is None else f"{level.name}={label}" for label in labels]
        all_names.extend(level_names)
        segment_levels.extend([position] * len(level_names))
        per_level.append(labels)

    if names is not None:
        # Levels of the fixed names come from the prefixes they were built with.
        level_of = {level.name: i for i, level in enumerate(spec.levels)}
        segment_levels = [level_of[n.split("=", 1)[0]] if chain else 0 for n in names]
        all_names = list(names)
    index_of = {name: i for i, name in enumerate(all_names)}
    candidates = np.array([[index_of.get(label, NO_SEGMENT) if label is not None else NO_SEGMENT
                            for label in labels] for labels in per_level], dtype=np.int64).T
    candidates = candidates.reshape(users.num_rows, len(spec.levels))
    known = candidates >= 0
    first = np.where(known.any(axis=1), candidates[np.arange(len(candidates)), known.argmax(axis=1)], NO_SEGMENT)
    return SegmentAssignment(tuple(all_names), first.astype(np.int64), candidates,
                             tuple(level.name for level in spec.levels), tuple(segment_levels))
