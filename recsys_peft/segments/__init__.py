"""User segments declared in ``features/segments/*.yaml``."""

from recsys_peft.segments.assign import (
    NO_SEGMENT,
    SegmentAssignment,
    SegmentKey,
    SegmentSpec,
    assign_segments,
    load_segment_spec,
)

__all__ = ["NO_SEGMENT", "SegmentAssignment", "SegmentKey", "SegmentSpec", "assign_segments", "load_segment_spec"]
