"""Scheduled scoring: export the promoted release, score every user with it, prune old runs.

    export promoted release (once per release) -> score (``flows.score.score_flow``) -> retention

Scoring always reads the release that ``CURRENT.json`` of the registry names at the start of
the run. A release is exported once, to ``WORK_DIR/exports/<release id>``, and later runs reuse
that export. The export carries the segment spec, so users who arrived after it get the
popularity fallback of their own segment. The scoring job itself reuses finished partitions of an interrupted run, so a
retried run writes no row twice.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from flows.score import score_flow  # noqa: E402
from recsys_peft.config import PipelineConfig  # noqa: E402
from recsys_peft.dataset.snapshot import load_snapshot  # noqa: E402
from recsys_peft.export.exporter import export_model  # noqa: E402
from recsys_peft.registry.store import Registry  # noqa: E402
from recsys_peft.retraining.candidate import base_view  # noqa: E402
from recsys_peft.retraining.paths import exports_dir, recommendations_dir, registry_url, store_dir  # noqa: E402
from recsys_peft.retraining.retention import prune_recommendations  # noqa: E402
from recsys_peft.retraining.view import write_restricted_vocabulary  # noqa: E402
from recsys_peft.scoring.settings import ScoringSettings, today_utc  # noqa: E402
from recsys_peft.segments import load_segment_spec  # noqa: E402
from recsys_peft.training.finetune import route  # noqa: E402


@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def export_promoted(config: PipelineConfig) -> dict:
    """Export the promoted release unless its export exists; return its folder and release id."""
    registry = Registry(registry_url(config))
    loaded = registry.load_release()
    release_id = loaded.release.release_id
    folder = exports_dir(config) / release_id
    if (folder / "manifest.json").is_file():
        get_run_logger().info("export release=%s reused=True path=%s", release_id, folder)
        return {"export_dir": str(folder), "release_id": release_id}

    segment_spec = load_segment_spec(config.segment_spec)
    snapshot = load_snapshot(store_dir(config), segment_spec, config.user_attributes)
    view = base_view(snapshot, loaded.base_meta)
    slots = route(view, loaded.adapters).slots
    vocabulary_source = store_dir(config)
    if view is not snapshot:
        # The export carries the vocabulary its model was trained with, not the store's newer one.
        vocabulary_source = write_restricted_vocabulary(
            store_dir(config), exports_dir(config) / f".vocabulary-{release_id}", view.log.num_users,
            view.log.num_items, loaded.base_meta.get("vocabulary_version", ""))
    manifest = export_model(loaded.adapted, view, slots, folder, vocabulary_source, {
        "base_model_hash": loaded.base_meta["weights_hash"], "release_id": release_id, "registry": registry.url,
    }, seed=config.seed, segment_spec=segment_spec)
    get_run_logger().info("export release=%s reused=False model_version=%s parity_max_abs_diff=%.2e path=%s",
                          release_id, manifest["model_version"], manifest["parity"]["max_abs_diff"], folder)
    return {"export_dir": str(folder), "release_id": release_id}


@task(cache_policy=NO_CACHE)
def prune_old_recommendations(config: PipelineConfig) -> list[str]:
    removed = prune_recommendations(recommendations_dir(config), config.retraining.keep_recommendation_days,
                                    datetime.now(timezone.utc).date())
    get_run_logger().info("retention recommendation_runs_removed=%d", len(removed))
    return removed


@flow(name="recsys-peft-score-promoted", log_prints=False)
def score_promoted_flow(config: PipelineConfig | None = None, run_date: str = "", workers: int = 1) -> dict:
    """Score every user with the promoted release; return the scoring summary and the release id."""
    config = config or PipelineConfig()
    exported = export_promoted(config)
    settings = ScoringSettings(export_dir=exported["export_dir"], output_dir=str(recommendations_dir(config)),
                               store_dir=str(store_dir(config)), k=config.top_k,
                               run_date=run_date or today_utc())
    summary = score_flow(settings, workers=workers)
    removed = prune_old_recommendations(config)
    return {**summary, "release_id": exported["release_id"], "recommendation_runs_removed": removed}
