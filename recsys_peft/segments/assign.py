"""User segments declared in ``features/segments/*.yaml``.

A segment spec combines user attributes, each optionally binned, into one segment per
combination of values. Example (the MovieLens default, 2 genders x 7 age bands = 14 segments)::

    name: gender_x_age
    keys:
      - attribute: gender
      - attribute: age
        bins: [18, 25, 35, 45, 50, 56]
        labels: ["<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+"]

A user whose attribute is missing or not among the known values gets no segment (index -1) and
is served by the base model; such users are counted wherever segments are assigned.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import yaml

from recsys_peft.dataset.attributes import AttributeEncoder

NO_SEGMENT = -1


@dataclass(frozen=True)
class SegmentKey:
    attribute: str
    bins: tuple[float, ...] = ()
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class SegmentSpec:
    name: str
    keys: tuple[SegmentKey, ...]
    separator: str = ":"
    path: str = ""

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError(f"segment spec {self.path or self.name}: 'keys' must list at least one attribute")


@dataclass(frozen=True)
class SegmentAssignment:
    """The segment names and each user's segment index (-1 when the user has none)."""

    names: tuple[str, ...]
    user_segments: np.ndarray

    @property
    def unassigned_users(self) -> int:
        return int(np.sum(self.user_segments == NO_SEGMENT))

    def sizes(self) -> dict[str, int]:
        counts = np.bincount(self.user_segments[self.user_segments >= 0], minlength=len(self.names))
        return {name: int(c) for name, c in zip(self.names, counts)}

    def table(self, user_ids: list[str]) -> pa.Table:
        names = [self.names[s] if s >= 0 else None for s in self.user_segments]
        return pa.table({
            "user_id": pa.array(user_ids, pa.string()),
            "user_idx": pa.array(np.arange(len(user_ids)), pa.int64()),
            "segment": pa.array(names, pa.string()),
            "segment_idx": pa.array(self.user_segments, pa.int64()),
        })


def load_segment_spec(path: str | Path) -> SegmentSpec:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"segment spec not found: {path}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown = sorted(set(raw) - {"name", "keys", "separator"})
    if unknown:
        raise ValueError(f"segment spec {path}: unknown keys {unknown}; allowed: ['keys', 'name', 'separator']")
    keys = []
    for i, entry in enumerate(raw.get("keys") or []):
        if not isinstance(entry, dict) or "attribute" not in entry:
            raise ValueError(f"segment spec {path}: keys[{i}] needs an 'attribute', got {entry!r}")
        extra = sorted(set(entry) - {"attribute", "bins", "labels"})
        if extra:
            raise ValueError(f"segment spec {path}: keys[{i}] has unknown keys {extra}")
        keys.append(SegmentKey(str(entry["attribute"]), tuple(entry.get("bins") or ()),
                               tuple(str(x) for x in entry.get("labels") or ())))
    return SegmentSpec(str(raw.get("name", path.stem)), tuple(keys), str(raw.get("separator", ":")), str(path))


def assign_segments(spec: SegmentSpec, users: pa.Table) -> SegmentAssignment:
    """Assign every row of ``users`` (in index order) to one segment of ``spec``."""
    missing = [k.attribute for k in spec.keys if k.attribute not in users.column_names]
    if missing:
        raise ValueError(
            f"segment spec {spec.path or spec.name}: attributes {missing} are not in the users table; "
            f"found {users.column_names}"
        )
    encoders = [AttributeEncoder.fit(k.attribute, users.column(k.attribute).to_pylist(), k.bins, k.labels)
                for k in spec.keys]
    codes = np.stack([e.encode(users.column(e.name).to_pylist()) for e in encoders], axis=1)  # (U, K)

    names = tuple(spec.separator.join(combo) for combo in itertools.product(*(e.values for e in encoders)))
    # Mixed-radix index of the combination; any unknown code (0) means no segment.
    radix = [len(e.values) for e in encoders]
    index = np.zeros(len(codes), dtype=np.int64)
    for column, base in enumerate(radix):
        index = index * base + (codes[:, column] - 1)
    index[(codes == 0).any(axis=1)] = NO_SEGMENT
    return SegmentAssignment(names, index)
