"""Retraining decisions: what is retrained and whether a candidate is promoted."""

import dataclasses

import pytest

from recsys_peft.retraining.config import RetrainConfig
from recsys_peft.retraining.decide import PromotedState, plan_retraining, promotion_decision
from recsys_peft.retraining.keys import segment_data_hashes


def promoted_for(snapshot, hashes, **changes) -> PromotedState:
    features = snapshot.features
    state = PromotedState("r1", "two_tower-abc", snapshot.log.vocabulary_version, snapshot.log.num_users,
                          snapshot.log.num_items, dict(features.attribute_cardinalities), len(features.tag_values),
                          dict(hashes))
    return dataclasses.replace(state, **changes)


def test_no_release_retrains_everything(snapshot):
    hashes = segment_data_hashes(snapshot)

    plan = plan_retraining(None, snapshot, hashes, RetrainConfig(), base_due=False)

    assert plan.retrain_base
    assert plan.base_reason == "no promoted release"
    assert plan.segments_to_train == list(snapshot.segments.names)


def test_unchanged_data_trains_nothing(snapshot):
    hashes = segment_data_hashes(snapshot)

    plan = plan_retraining(promoted_for(snapshot, hashes), snapshot, hashes, RetrainConfig(), base_due=False)

    assert not plan.retrain_base
    assert plan.nothing_to_train
    assert plan.vocabulary_growth == 0.0


def test_scheduled_base_retrains_every_adapter(snapshot):
    hashes = segment_data_hashes(snapshot)

    plan = plan_retraining(promoted_for(snapshot, hashes), snapshot, hashes, RetrainConfig(), base_due=True)

    assert plan.retrain_base
    assert plan.base_reason == "scheduled base model retraining"
    assert all(d.reason == "the base model is retrained" for d in plan.segments)


@pytest.mark.parametrize("new_users, threshold, retrain", [(5, 0.05, False), (30, 0.05, True), (1, 0.0, True)])
def test_vocabulary_growth_threshold(snapshot, new_users, threshold, retrain):
    hashes = segment_data_hashes(snapshot)
    promoted = promoted_for(snapshot, hashes, num_users=snapshot.log.num_users - new_users)

    plan = plan_retraining(promoted, snapshot, hashes, RetrainConfig(vocabulary_growth_threshold=threshold),
                           base_due=False)

    assert plan.vocabulary_growth == pytest.approx(new_users / (snapshot.log.num_users - new_users
                                                                + snapshot.log.num_items))
    assert plan.retrain_base is retrain
    if retrain:
        assert "more than the threshold" in plan.base_reason


def test_new_attribute_value_retrains_base(snapshot):
    hashes = segment_data_hashes(snapshot)
    known = dict(snapshot.features.attribute_cardinalities)
    known["occupation"] -= 1

    plan = plan_retraining(promoted_for(snapshot, hashes, attribute_cardinalities=known), snapshot, hashes,
                           RetrainConfig(), base_due=False)

    assert plan.retrain_base
    assert plan.base_reason.startswith("user attribute 'occupation' has")


def test_changed_segment_retrains_only_it(snapshot):
    hashes = segment_data_hashes(snapshot)
    segment = snapshot.segments.names[3]
    stale = {**hashes, segment: "0" * 16}

    plan = plan_retraining(promoted_for(snapshot, stale), snapshot, hashes, RetrainConfig(), base_due=False)

    assert not plan.retrain_base
    assert plan.segments_to_train == [segment]
    assert plan.segments[3].reason == f"data changed: {'0' * 16} -> {hashes[segment]}"


@pytest.mark.parametrize("candidate, promoted, margin, promote", [
    (0.20, 0.10, 0.0, True),
    (0.20, 0.10, 0.05, True),
    (0.12, 0.10, 0.05, False),
    (0.10, 0.10, 0.0, False),     # a tie is not better
    (0.05, 0.10, 0.0, False),
    (0.01, None, 0.5, True),      # nothing promoted yet
])
def test_promotion_margin(candidate, promoted, margin, promote):
    decision = promotion_decision(candidate, promoted, margin, users=40)

    assert decision.promote is promote
    if not promote:
        assert decision.reason.startswith("kept the promoted release")


def test_no_holdout_users_keeps():
    decision = promotion_decision(0.5, 0.1, 0.0, users=0)

    assert not decision.promote
    assert "no held-out users" in decision.reason


@pytest.mark.parametrize("changes, message", [
    ({"promotion_margin": -0.1}, "promotion_margin must be at least 0"),
    ({"holdout_days": 0}, "holdout_days must be at least 1"),
    ({"schedules": {"retrain": "61 * * * *"}}, r"schedules\['retrain'\] is not a valid cron string"),
    ({"schedules": {"nightly": "0 1 * * *"}}, r"unknown deployments \['nightly'\]"),
])
def test_config_rejects_invalid(changes, message):
    with pytest.raises(ValueError, match=message):
        RetrainConfig(**changes)
