"""What a retraining run retrains, and whether its candidate replaces the promoted release.

The base model is retrained on its schedule, when nothing is promoted yet, when a
user attribute or the tag list has values the promoted base has no rows for, or when the
vocabulary has grown past ``vocabulary_growth_threshold``; every adapter is then retrained
with it. Otherwise a segment's adapter is retrained only when the segment's data hash
differs from the hash its promoted adapter was trained on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from recsys_peft.dataset.snapshot import DataSnapshot
from recsys_peft.retraining.config import RetrainConfig


@dataclass(frozen=True)
class PromotedState:
    """Facts about the promoted release and its base model that the decision reads."""

    release_id: str
    base_id: str
    vocabulary_version: str
    num_users: int
    num_items: int
    attribute_cardinalities: dict[str, int]
    num_tags: int
    segment_hashes: dict[str, str] = field(default_factory=dict)   # "" when unknown


@dataclass(frozen=True)
class SegmentDecision:
    segment: str
    retrain: bool
    reason: str
    data_hash: str
    promoted_hash: str


@dataclass(frozen=True)
class RetrainPlan:
    """The decisions of one run before training: base model, vocabulary and each segment."""

    retrain_base: bool
    base_reason: str
    vocabulary_growth: float | None     # fraction of new ids since the promoted base; None without one
    segments: tuple[SegmentDecision, ...]

    @property
    def segments_to_train(self) -> list[str]:
        return [s.segment for s in self.segments if s.retrain]

    @property
    def nothing_to_train(self) -> bool:
        return not self.retrain_base and not self.segments_to_train

    def to_dict(self) -> dict:
        return asdict(self)


def _feature_growth(promoted: PromotedState, snapshot: DataSnapshot) -> str:
    """Describe the first user attribute or tag list that outgrew the promoted base, or return ''."""
    for name, cardinality in sorted(snapshot.features.attribute_cardinalities.items()):
        known = promoted.attribute_cardinalities.get(name, 0)
        if cardinality > known:
            return f"user attribute {name!r} has {cardinality} codes, the promoted base knows {known}"
    tags = len(snapshot.features.tag_values)
    if tags > promoted.num_tags:
        return f"items have {tags} tags, the promoted base knows {promoted.num_tags}"
    return ""


def vocabulary_growth(promoted: PromotedState, snapshot: DataSnapshot) -> float:
    """Return the fraction of users and items that are new since the promoted base."""
    known = promoted.num_users + promoted.num_items
    return (snapshot.log.num_users + snapshot.log.num_items - known) / max(known, 1)


def plan_retraining(promoted: PromotedState | None, snapshot: DataSnapshot, data_hashes: dict[str, str],
                    config: RetrainConfig, base_due: bool) -> RetrainPlan:
    """Decide what to retrain; ``base_due`` is True when the run is the base model's scheduled one."""
    growth = None if promoted is None else vocabulary_growth(promoted, snapshot)
    threshold = config.vocabulary_growth_threshold
    features = "" if promoted is None else _feature_growth(promoted, snapshot)
    if promoted is None:
        retrain_base, reason = True, "no promoted release"
    elif base_due:
        retrain_base, reason = True, "scheduled base model retraining"
    elif features:
        retrain_base, reason = True, features
    elif growth is not None and growth > threshold:
        retrain_base, reason = True, f"vocabulary grew by {growth:.2%}, more than the threshold {threshold:.2%}"
    else:
        retrain_base, reason = False, (f"vocabulary grew by {growth:.2%}, within the threshold {threshold:.2%}, "
                                       "and the base model is not due")

    decisions = []
    for segment in snapshot.segments.names:
        current = data_hashes[segment]
        previous = "" if promoted is None else promoted.segment_hashes.get(segment, "")
        if retrain_base:
            decisions.append(SegmentDecision(segment, True, "the base model is retrained", current, previous))
        elif current != previous:
            decisions.append(SegmentDecision(segment, True, f"data changed: {previous or 'unknown'} -> {current}",
                                             current, previous))
        else:
            decisions.append(SegmentDecision(segment, False, f"data unchanged since {previous}", current, previous))
    return RetrainPlan(retrain_base, reason, growth, tuple(decisions))


@dataclass(frozen=True)
class PromotionDecision:
    """The verdict on a candidate: promote or keep, with both scores and the reason."""

    promote: bool
    reason: str
    candidate_ndcg: float
    promoted_ndcg: float | None
    margin: float
    users: int

    def to_dict(self) -> dict:
        return asdict(self)


def promotion_decision(candidate_ndcg: float, promoted_ndcg: float | None, margin: float,
                       users: int) -> PromotionDecision:
    """Promote only a candidate whose held-out NDCG@10 beats the promoted one by at least ``margin``.

    A tie is never better, so with ``margin`` 0 the candidate must still score higher.
    """
    if promoted_ndcg is None:
        return PromotionDecision(True, "no promoted release to compare against", candidate_ndcg, None, margin, users)
    if users == 0:
        return PromotionDecision(False, "kept the promoted release: no held-out users to compare on",
                                 candidate_ndcg, promoted_ndcg, margin, users)
    gain = candidate_ndcg - promoted_ndcg
    if gain > 0 and gain >= margin:
        return PromotionDecision(True, f"candidate ndcg@10 {candidate_ndcg:.4f} beats promoted {promoted_ndcg:.4f} "
                                 f"by {gain:+.4f} >= margin {margin:.4f} on {users} held-out users",
                                 candidate_ndcg, promoted_ndcg, margin, users)
    return PromotionDecision(False, f"kept the promoted release: candidate ndcg@10 {candidate_ndcg:.4f} vs promoted "
                             f"{promoted_ndcg:.4f} ({gain:+.4f}) is not better by the margin {margin:.4f} "
                             f"on {users} held-out users", candidate_ndcg, promoted_ndcg, margin, users)
