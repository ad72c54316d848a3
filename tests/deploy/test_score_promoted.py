"""Scheduled scoring of a promoted release whose base model predates the store's newest ids."""

import pyarrow.parquet as pq
import pytest
import torch

from flows.score_promoted import score_promoted_flow
from recsys_peft.registry.store import Registry
from recsys_peft.retraining.paths import exports_dir, recommendations_dir, registry_url
from recsys_peft.retraining.view import restrict_snapshot
from recsys_peft.scoring.output import read_latest_run
from recsys_peft.training.finetune import SegmentAdapter
from recsys_peft.training.loop import TrainConfig
from recsys_peft.training.pretrain import pretrain, two_tower_config
from tests.retraining.configs import tiny_retrain_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NEW_USERS, NEW_ITEMS = 10, 20


@pytest.fixture
def older_release(snapshot, store, synthetic_log, tmp_path):
    """Promote a base model trained before the last 10 users and 20 items arrived; return the config and release."""
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    (work_dir / "store").symlink_to(store.store_dir)  # read only: scoring writes outside the store
    config = tiny_retrain_config(synthetic_log.folder, work_dir)
    features = snapshot.features
    view = restrict_snapshot(snapshot, snapshot.log.num_users - NEW_USERS, snapshot.log.num_items - NEW_ITEMS,
                             features.attribute_cardinalities, len(features.tag_values))
    architecture = two_tower_config(view, **config.model_overrides)
    model = pretrain(view, architecture, TrainConfig(epochs=1, batch_size=64, learning_rate=5e-3)).model
    registry = Registry(registry_url(config))
    base_id = registry.publish_base(model, view.segments.names, {
        "vocabulary_version": "older", "training_data_snapshot": view.snapshot_id})
    # Every segment falls back to the base model, which is enough to test the vocabulary.
    adapters = {segment: registry.publish_adapter(SegmentAdapter(segment, index, 0, 0, 0.0, 0.0, None, "fallback"),
                                                  base_id, config.finetune.lora, ["user_hidden", "user_out"])
                for index, segment in enumerate(view.segments.names)}
    return config, registry.promote(base_id, adapters)


def test_scores_with_older_vocabulary(prefect_harness, older_release, synthetic_log, monkeypatch):
    config, release = older_release
    monkeypatch.setattr(torch, "set_num_threads", lambda threads: None)

    summary = score_promoted_flow(config, run_date="2026-11-03")

    export = exports_dir(config) / release.release_id
    vocabulary = pq.read_table(export / "vocab" / "users.parquet")
    table = read_latest_run(recommendations_dir(config))
    assert summary["release_id"] == release.release_id
    assert vocabulary.num_rows == synthetic_log.num_users - NEW_USERS
    assert set(table.column("item_id").to_pylist()) <= {f"i{i}" for i in range(synthetic_log.num_items)}
    assert table.num_rows == synthetic_log.num_users * config.top_k
    assert summary["counts"]["unknown_users"] == NEW_USERS
    assert summary["counts"]["fallback_users"] == NEW_USERS
    assert summary["plan_counts"]["new_items"] == NEW_ITEMS
