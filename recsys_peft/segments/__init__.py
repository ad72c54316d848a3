"""User segments declared in ``features/segments/*.yaml``: specs, assignment and fallback routing."""

from recsys_peft.segments.assign import NO_SEGMENT, SegmentAssignment, assign_segments
from recsys_peft.segments.fallback import Routing, route_users
from recsys_peft.segments.spec import SegmentKey, SegmentLevel, SegmentSpec, load_segment_spec

__all__ = [
    "NO_SEGMENT", "Routing", "SegmentAssignment", "SegmentKey", "SegmentLevel", "SegmentSpec",
    "assign_segments", "load_segment_spec", "route_users",
]
