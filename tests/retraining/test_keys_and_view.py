"""Content keys, the held-out window and the view of a snapshot as an older model reads it."""

import dataclasses

import numpy as np
import pytest
import torch

from recsys_peft.dataset.log import InteractionLog
from recsys_peft.dataset.split import leave_one_out
from recsys_peft.models.two_tower import TwoTowerModel
from recsys_peft.retraining.holdout import MICROSECONDS_PER_DAY, holdout_targets, item_vectors, score_holdout
from recsys_peft.retraining.keys import code_version, digest, segment_data_hashes
from recsys_peft.retraining.view import restrict_snapshot


def drop_last_event(snapshot, user: int):
    log = snapshot.log
    keep = np.ones(len(log.items), dtype=bool)
    keep[log.offsets[user + 1] - 1] = False
    smaller = InteractionLog.from_arrays(log.users[keep], log.items[keep], log.timestamps[keep], log.num_users,
                                         log.num_items, log.vocabulary_version)
    return dataclasses.replace(snapshot, log=smaller, split=leave_one_out(smaller))


def test_segment_hash_changes_with_its_data(snapshot):
    before = segment_data_hashes(snapshot)
    user = int(np.flatnonzero(snapshot.segments.user_segments == 2)[0])

    after = segment_data_hashes(drop_last_event(snapshot, user))

    changed = sorted(name for name in before if before[name] != after[name])
    assert changed == [snapshot.segments.names[2]]


def test_segment_hash_is_deterministic(snapshot):
    assert segment_data_hashes(snapshot) == segment_data_hashes(snapshot)


def test_digest_depends_on_content():
    assert digest("base", {"lr": 1e-3}) == digest("base", {"lr": 1e-3})
    assert digest("base", {"lr": 1e-3}) != digest("base", {"lr": 2e-3})
    assert len(code_version()) == 16


def test_holdout_window_keeps_recent_targets(snapshot):
    test = snapshot.split.test
    newest = int(snapshot.log.timestamps.max())

    holdout = holdout_targets(snapshot, days=7, min_users=1)

    times = snapshot.log.timestamps[holdout.targets.positions]
    assert len(holdout.targets.users) >= 1
    assert (times >= newest - 7 * MICROSECONDS_PER_DAY).all()
    assert set(holdout.targets.users) <= set(test.users)


def test_holdout_falls_back_to_every_target(snapshot):
    holdout = holdout_targets(snapshot, days=1, min_users=10_000)

    assert len(holdout.targets.users) == len(snapshot.split.test.users)
    assert holdout.description.startswith("every test target")


def test_restrict_to_older_vocabulary(snapshot):
    num_users, num_items = snapshot.log.num_users - 10, snapshot.log.num_items - 20
    cardinalities = snapshot.features.attribute_cardinalities

    view = restrict_snapshot(snapshot, num_users, num_items, cardinalities, len(snapshot.features.tag_values))

    assert view.log.num_users == num_users
    assert view.log.num_items == num_items
    assert view.log.users.max() < num_users
    assert view.log.items.max() < num_items
    assert view.features.user_attributes.shape[0] == num_users
    assert len(view.features.item_tags.offsets) == num_items + 1
    assert view.segments.user_segments.shape == (num_users,)
    assert view.users.num_rows == num_users


def test_restrict_is_identity_when_it_fits(snapshot):
    features = snapshot.features

    view = restrict_snapshot(snapshot, snapshot.log.num_users, snapshot.log.num_items,
                             features.attribute_cardinalities, len(features.tag_values))

    assert view is snapshot


def test_restrict_rejects_newer_model(snapshot):
    with pytest.raises(ValueError, match="does not fit snapshot"):
        restrict_snapshot(snapshot, snapshot.log.num_users + 1, snapshot.log.num_items, {}, 0)


def test_two_vocabularies_score_one_view(snapshot, pretrained, tiny_config):
    features = snapshot.features
    num_users, num_items = snapshot.log.num_users - 10, snapshot.log.num_items - 20
    view = restrict_snapshot(snapshot, num_users, num_items, features.attribute_cardinalities,
                             len(features.tag_values))
    torch.manual_seed(0)
    older = TwoTowerModel(dataclasses.replace(tiny_config, num_users=num_users, num_items=num_items)).eval()
    targets = holdout_targets(view, days=7, min_users=1).targets

    newer_scores = score_holdout(pretrained.model, None, view, targets)
    older_scores = score_holdout(older, None, view, targets)

    assert np.array_equal(newer_scores.users, older_scores.users)
    assert ((newer_scores.ndcg >= 0) & (newer_scores.ndcg <= 1)).all()
    assert ((older_scores.ndcg >= 0) & (older_scores.ndcg <= 1)).all()
    # The newer model's vectors of the view's items are its own vectors of those items.
    full = pretrained.model.all_item_embeddings(features.item_tags)[:num_items]
    assert torch.allclose(item_vectors(pretrained.model, view), full, atol=1e-6)
