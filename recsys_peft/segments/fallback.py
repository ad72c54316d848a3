"""Route each user to one adapter along the spec's fallback chain, and count who fell back.

A user is served by the adapter of the first level whose segment is known and has an adapter
(for example tenant, then country), and by the base model when no level has one. A segment has
no adapter when it was too small to train one or its adapter did not beat the base model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys_peft.segments.assign import NO_SEGMENT, SegmentAssignment

BASE = "base"


@dataclass(frozen=True)
class Routing:
    """Each user's adapter slot (-1 for the base model) and how many users each level serves."""

    slots: np.ndarray            # (U,) int64
    served: dict[str, int]       # users per level name, and "base"
    fell_back: int               # users whose first known segment has no adapter
    unknown: int                 # users with no known segment at any level

    def summary(self) -> str:
        """Return one ``key=value`` line for logs."""
        served = " ".join(f"served_by_{name}={count}" for name, count in self.served.items())
        return f"{served} fell_back={self.fell_back} unknown_segment={self.unknown}"


def route_users(assignment: SegmentAssignment, has_adapter: np.ndarray) -> Routing:
    """Route every user of ``assignment``. ``has_adapter`` (S,) marks the segments with an adapter."""
    has_adapter = np.asarray(has_adapter, dtype=bool)
    if has_adapter.shape != (len(assignment.names),):
        raise ValueError(f"has_adapter must have one entry per segment ({len(assignment.names)}), "
                         f"got shape {has_adapter.shape}")
    candidates = assignment.candidates                                          # (U, L)
    known = candidates >= 0
    usable = known & has_adapter[np.maximum(candidates, 0)]
    any_usable = usable.any(axis=1)
    level = usable.argmax(axis=1)
    rows = np.arange(len(candidates))
    slots = np.where(any_usable, candidates[rows, level], NO_SEGMENT).astype(np.int64)

    served = {name: int(np.sum(any_usable & (level == i))) for i, name in enumerate(assignment.levels)}
    served[BASE] = int(np.sum(~any_usable))
    first_known = known.argmax(axis=1)
    any_known = known.any(axis=1)
    fell_back = int(np.sum(any_known & ~(any_usable & (level == first_known))))
    return Routing(slots, served, fell_back, int(np.sum(~any_known)))
