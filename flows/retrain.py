"""Scheduled retraining: ingest what is new, retrain what changed, promote only a better candidate.

    ingest -> decide -> train base (when due) -> fine-tune segments (fan out) -> evaluate -> promote or keep

``retrain_flow`` is one run. With ``base_due`` (the weekly deployment) it retrains the base
model and every adapter. Without it (the nightly deployment) it retrains the base only when
the vocabulary outgrew the promoted base, and otherwise only the adapters of segments whose
data hash changed. The candidate and the promoted release are scored on the same held-out
window of the newest data, and the candidate is promoted only when it is better by
``retraining.promotion_margin``. Every decision goes to the run record
(``WORK_DIR/retraining/runs/*.json``), to the log as ``key=value`` lines, and to a Prefect
event that automations can act on. The flow run ends in a state named ``Promoted``, ``Kept``
or ``Unchanged``.

Training tasks are cached by content (snapshot, data hash, config and code version) and
find their own published output by the same key, so a retry trains and publishes nothing
twice. Promotion names the release it compared against and the schedule slot, so of two runs
for one slot at most one promotes. ``ingest_flow`` runs ingest alone.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.events import emit_event  # noqa: E402
from prefect.runtime import deployment, flow_run  # noqa: E402
from prefect.states import Completed, State  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from recsys_peft.config import PipelineConfig  # noqa: E402
from recsys_peft.dataset.snapshot import DataSnapshot, load_snapshot  # noqa: E402
from recsys_peft.ingest.fetch import fetch_movielens_100k  # noqa: E402
from recsys_peft.ingest.ingest import ingest_source  # noqa: E402
from recsys_peft.ingest.spec import load_source_spec  # noqa: E402
from recsys_peft.registry.store import PromotionConflict, Registry  # noqa: E402
from recsys_peft.retraining import candidate as candidates  # noqa: E402
from recsys_peft.retraining.decide import RetrainPlan, plan_retraining, promotion_decision  # noqa: E402
from recsys_peft.retraining.history import load_run_records, previous_score, save_run_record  # noqa: E402
from recsys_peft.retraining.keys import code_version, digest, segment_data_hashes  # noqa: E402
from recsys_peft.retraining.paths import registry_url, store_dir  # noqa: E402
from recsys_peft.retraining.retention import prune_quarantine, prune_run_records  # noqa: E402
from recsys_peft.segments import load_segment_spec  # noqa: E402

EVENT_PREFIX = "recsys-peft.retrain"


def content_key(context: object, parameters: dict) -> str:
    """Use the ``key`` parameter, a digest of the task's content, as its cache key."""
    return parameters["key"]


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10)
def ingest_new(config: PipelineConfig) -> dict:
    """Add new raw files to the store; a file whose content the store already contains is skipped."""
    started = time.perf_counter()
    raw_dir = Path(config.raw_dir)
    if config.fetch_movielens:
        fetch_movielens_100k(raw_dir)
    summary = ingest_source(load_source_spec(config.source_spec), raw_dir, store_dir(config))
    get_run_logger().info("%s %.1fs", summary.log_line(), time.perf_counter() - started)
    return {"run_id": summary.run_id, "files_ingested": list(summary.files_ingested),
            "rows_written": summary.rows_written, "rows_quarantined": summary.rows_quarantined,
            "vocabulary_version": summary.vocabulary_version}


@task(cache_policy=NO_CACHE)
def load_data(config: PipelineConfig) -> DataSnapshot:
    return load_snapshot(store_dir(config), load_segment_spec(config.segment_spec), config.user_attributes)


@task(cache_policy=NO_CACHE)
def decide(config: PipelineConfig, snapshot: DataSnapshot, base_due: bool) -> tuple[RetrainPlan, str | None]:
    """Decide what to retrain; return the plan and the promoted release id (None: none)."""
    registry = Registry(registry_url(config))
    promoted, _ = candidates.promoted_state(registry)
    plan = plan_retraining(promoted, snapshot, segment_data_hashes(snapshot), config.retraining, base_due)
    logger = get_run_logger()
    growth = "none" if plan.vocabulary_growth is None else f"{plan.vocabulary_growth:.4f}"
    logger.info("decide base=%s reason=%r vocabulary_growth=%s segments_to_train=%d/%d promoted=%s",
                plan.retrain_base, plan.base_reason, growth, len(plan.segments_to_train), len(plan.segments),
                promoted.release_id if promoted else None)
    for decision in plan.segments:
        logger.info("decide segment=%s retrain=%s reason=%r", decision.segment, decision.retrain, decision.reason)
    return plan, promoted.release_id if promoted else None


@task(cache_key_fn=content_key, persist_result=True, result_serializer="json", retries=1, retry_delay_seconds=5)
def train_base(config: PipelineConfig, snapshot: DataSnapshot, key: str) -> str:
    started = time.perf_counter()
    base_id = candidates.train_base(Registry(registry_url(config)), snapshot, config, key)
    get_run_logger().info("train base=%s key=%s %.1fs", base_id, key, time.perf_counter() - started)
    return base_id


@task(cache_key_fn=content_key, persist_result=True, result_serializer="json", retries=1, retry_delay_seconds=5,
      task_run_name="finetune-{segment_index}")
def finetune(config: PipelineConfig, snapshot: DataSnapshot, base_id: str, segment_index: int, data_hash: str,
             key: str) -> dict:
    started = time.perf_counter()
    outcome = candidates.train_adapter(Registry(registry_url(config)), snapshot, config, base_id, segment_index,
                                       data_hash, key)
    get_run_logger().info("finetune segment=%s version=%s kept=%s valid_ndcg@10=%.4f base_valid_ndcg@10=%.4f "
                          "reason=%r %.1fs", outcome.segment, outcome.version, outcome.kept, outcome.valid_ndcg,
                          outcome.base_valid_ndcg, outcome.reason, time.perf_counter() - started)
    # The process id shows where the task ran: this process, or one of the Dask workers.
    return {"segment": outcome.segment, "version": outcome.version, "kept": outcome.kept, "reason": outcome.reason,
            "pid": os.getpid()}


@task(cache_policy=NO_CACHE)
def evaluate(config: PipelineConfig, snapshot: DataSnapshot, base_id: str, adapters: dict[str, str],
             promoted_release: str | None, scope: list[str] | None) -> dict:
    """Score the candidate and the promoted release on one held-out window; decide on promotion.

    ``scope`` lists the segments whose users the decision compares (None: every user).
    """
    registry = Registry(registry_url(config))
    settings = config.retraining
    promoted = registry.load_release(promoted_release) if promoted_release else None
    view = candidates.comparison_view(snapshot, promoted)
    indices = None if scope is None else candidates.segment_indices(view, scope)

    candidate_scores, window = candidates.score_loaded(registry.load_candidate(base_id, adapters), view,
                                                       settings.holdout_days, settings.min_holdout_users)
    candidate_ndcg, users = candidates.scoped_mean(candidate_scores, indices)
    metrics = {"candidate": candidate_scores.summary(view.segments.names), "promoted": None}
    promoted_ndcg = None
    if promoted is not None:
        promoted_scores, _ = candidates.score_loaded(promoted, view, settings.holdout_days, settings.min_holdout_users)
        promoted_ndcg, _ = candidates.scoped_mean(promoted_scores, indices)
        metrics["promoted"] = promoted_scores.summary(view.segments.names)

    decision = promotion_decision(candidate_ndcg, promoted_ndcg, settings.promotion_margin, users)
    get_run_logger().info("evaluate window=%r scope=%s users=%d candidate_ndcg@10=%.4f promoted_ndcg@10=%s "
                          "margin=%.4f promote=%s", window, "all" if scope is None else ",".join(scope), users,
                          candidate_ndcg, "none" if promoted_ndcg is None else f"{promoted_ndcg:.4f}",
                          settings.promotion_margin, decision.promote)
    return {"window": window, "scope": scope, "metrics": metrics, "decision": decision.to_dict()}


@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def promote(config: PipelineConfig, base_id: str, adapters: dict[str, str], promoted_release: str | None,
            slot: str, note: str) -> dict:
    """Promote the candidate unless another promotion got there first; return the outcome.

    A retry after a promotion that went through finds its own release by slot, base and
    adapters, and reports it instead of failing on the slot it already took.
    """
    registry = Registry(registry_url(config))
    try:
        release = registry.promote(base_id, adapters, note, expected_current=promoted_release, slot=slot)
    except PromotionConflict as conflict:
        current = registry.current()
        if (current is not None and slot and current.slot == slot and current.base_id == base_id
                and current.adapters == dict(sorted(adapters.items()))):
            release = current
        else:
            get_run_logger().warning("promote conflict=%r", str(conflict))
            return {"promoted": False, "release_id": None, "reason": f"kept: {conflict}"}
    get_run_logger().info("promote release=%s base=%s slot=%r", release.release_id, base_id, slot)
    return {"promoted": True, "release_id": release.release_id, "reason": note}


@task(cache_policy=NO_CACHE)
def apply_retention(config: PipelineConfig) -> dict:
    """Prune old model versions, quarantine files and run records, per ``config.retraining``."""
    settings = config.retraining
    removed = {
        **Registry(registry_url(config)).prune(settings.keep_releases),
        "quarantine": prune_quarantine(store_dir(config), settings.keep_quarantine_days, datetime.now(timezone.utc)),
        "run_records": prune_run_records(config.work_dir, settings.keep_run_records),
    }
    get_run_logger().info("retention " + " ".join(f"{name}_removed={len(items)}" for name, items in removed.items()))
    return removed


def check_degradation(config: PipelineConfig, release_id: str, metrics: dict) -> dict | None:
    """Compare the promoted release's held-out score with the last one recorded; emit an event on a drop.

    Returns None when the score did not fall by more than ``retraining.degradation_alert``.
    """
    before = previous_score(load_run_records(config.work_dir), release_id)
    now = float(metrics["ndcg@10"])
    if before is None or before - now <= config.retraining.degradation_alert:
        return None
    degraded = {"release_id": release_id, "previous_ndcg@10": before, "ndcg@10": now,
                "alert": config.retraining.degradation_alert}
    get_run_logger().warning("degraded release=%s previous_ndcg@10=%.4f ndcg@10=%.4f alert=%.4f", release_id,
                             before, now, config.retraining.degradation_alert)
    emit_event(event=f"{EVENT_PREFIX}.degraded",
               resource={"prefect.resource.id": f"recsys-peft.registry.{registry_url(config)}",
                         "prefect.resource.name": "recsys-peft registry"}, payload=degraded)
    return degraded


def schedule_slot(explicit: str) -> str:
    """Return ``explicit``, or for a scheduled run its deployment and scheduled start, or ''."""
    if explicit:
        return explicit
    if deployment.name and flow_run.scheduled_start_time:
        return f"{deployment.name}/{flow_run.scheduled_start_time.isoformat()}"
    return ""


def _train(config: PipelineConfig, snapshot: DataSnapshot, plan: RetrainPlan,
           promoted_release: str | None) -> tuple[str, dict[str, str], list[dict]]:
    """Train the candidate that the plan requests; return its base id, adapters by segment and outcomes."""
    registry = Registry(registry_url(config))
    config_hash = digest(config.to_dict())
    if plan.retrain_base:
        key = digest("base", snapshot.snapshot_id, config_hash, code_version())
        base_id = train_base(config, snapshot, key)
        if base_id not in registry.list_bases():  # a cached id whose base retention removed since
            base_id = train_base.with_options(refresh_cache=True)(config, snapshot, key)
        view, adapters = snapshot, {}
    else:
        promoted = registry.release(promoted_release)
        base_id, adapters = promoted.base_id, dict(promoted.adapters)
        view = candidates.base_view(snapshot, registry.base_meta(base_id))

    hashes = {d.segment: d.data_hash for d in plan.segments}
    arguments = []
    for segment in plan.segments_to_train:
        index = list(view.segments.names).index(segment)
        key = digest("adapter", base_id, snapshot.snapshot_id, segment, hashes[segment], config_hash, code_version())
        arguments.append((config, view, base_id, index, hashes[segment], key))
    futures = [finetune.submit(*args) for args in arguments]
    outcomes = []
    for args, future in zip(arguments, futures):
        outcome = future.result()
        if outcome["version"] not in registry.list_adapters(base_id, outcome["segment"]):
            outcome = finetune.with_options(refresh_cache=True)(*args)  # a cached version removed since
        adapters[outcome["segment"]] = outcome["version"]
        outcomes.append(outcome)
    return base_id, adapters, outcomes


def _finish(config: PipelineConfig, record: dict, outcome: str, reason: str) -> State:
    """Save the run record, log and emit the outcome, and return the flow's final state."""
    record.update(outcome=outcome, reason=reason)
    path = save_run_record(config.work_dir, record)
    get_run_logger().info("retrain outcome=%s reason=%r record=%s", outcome, reason, path)
    emit_event(event=f"{EVENT_PREFIX}.{outcome}",
               resource={"prefect.resource.id": f"recsys-peft.registry.{registry_url(config)}",
                         "prefect.resource.name": "recsys-peft registry"},
               payload={"run_key": record["run_key"], "reason": reason, "record": str(path),
                        "release_id": record.get("release_id")})
    return Completed(name=outcome.capitalize(), message=reason, data={**record, "record_path": str(path)})


# One task at a time by default: training seeds torch's global random generator, which threads
# of one process share. A Dask runner with one thread per worker fans segments out safely.
@flow(name="recsys-peft-retrain", log_prints=False, task_runner=ThreadPoolTaskRunner(max_workers=1))
def retrain_flow(config: PipelineConfig | None = None, base_due: bool = False, slot: str = "",
                 retention: bool = True) -> State:
    """Run one scheduled retraining; the result is the run record, also saved as JSON."""
    config = config or PipelineConfig()
    slot = schedule_slot(slot)
    started_at = datetime.now(timezone.utc).isoformat()

    # Ingest, load, decide.
    ingested = ingest_new(config)
    snapshot = load_data(config)
    plan, promoted_release = decide(config, snapshot, base_due)
    run_key = digest(slot or str(flow_run.id), snapshot.snapshot_id, started_at if not slot else "")
    record = {"run_key": run_key, "slot": slot, "flow_run_id": str(flow_run.id or ""), "started_at": started_at,
              "base_due": base_due, "ingest": ingested, "snapshot_id": snapshot.snapshot_id,
              "vocabulary_version": snapshot.log.vocabulary_version, "code_version": code_version(),
              "promoted_before": promoted_release, "plan": plan.to_dict(), "holdout_metrics": {}}
    if plan.nothing_to_train:
        if retention:
            record["retention"] = apply_retention(config)
        return _finish(config, record, "unchanged", "nothing to retrain: " + plan.base_reason)

    # Train, evaluate, promote or keep.
    base_id, adapters, outcomes = _train(config, snapshot, plan, promoted_release)
    record.update(candidate={"base_id": base_id, "adapters": adapters}, adapters_trained=outcomes)
    scope = None if plan.retrain_base else plan.segments_to_train
    evaluation = evaluate(config, snapshot, base_id, adapters, promoted_release, scope)
    record.update(holdout_window=evaluation["window"], holdout_metrics=evaluation["metrics"],
                  promotion=evaluation["decision"])
    if promoted_release:
        record["degraded"] = check_degradation(config, promoted_release, evaluation["metrics"]["promoted"])
    decision = evaluation["decision"]
    if decision["promote"]:
        result = promote(config, base_id, adapters, promoted_release, slot, decision["reason"])
        record["release_id"] = result["release_id"]
        outcome, reason = ("promoted", decision["reason"]) if result["promoted"] else ("kept", result["reason"])
    else:
        outcome, reason = "kept", decision["reason"]
    if retention:
        record["retention"] = apply_retention(config)
    return _finish(config, record, outcome, reason)


@flow(name="recsys-peft-ingest", log_prints=False)
def ingest_flow(config: PipelineConfig | None = None) -> dict:
    """Ingest new raw files into the store and return the run summary."""
    return ingest_new(config or PipelineConfig())
