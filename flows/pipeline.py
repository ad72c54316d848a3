"""The end-to-end job: MovieLens-100K logs to per-segment top-K recommendations.

    fetch -> ingest -> split -> pretrain -> fine-tune per segment -> evaluate -> export -> score

Each stage is a Prefect task that calls the package and logs one ``key=value`` summary line.
Run it with ``make demo`` or ``python -m flows.pipeline``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from recsys_peft import atomic  # noqa: E402
from recsys_peft.config import PipelineConfig  # noqa: E402
from recsys_peft.dataset.snapshot import DataSnapshot, load_snapshot  # noqa: E402
from recsys_peft.evaluation.report import format_table, metrics_report, test_ranks  # noqa: E402
from recsys_peft.export.exporter import export_model  # noqa: E402
from recsys_peft.export.model import ExportedModel  # noqa: E402
from recsys_peft.ingest.fetch import fetch_movielens_100k  # noqa: E402
from recsys_peft.ingest.ingest import IngestSummary, ingest_source  # noqa: E402
from recsys_peft.ingest.spec import load_source_spec  # noqa: E402
from recsys_peft.models.two_tower import parameter_count  # noqa: E402
from recsys_peft.adapters.lora import adapter_layers  # noqa: E402
from recsys_peft.registry.artifacts import save_adapter, save_base_model, segment_slug  # noqa: E402
from recsys_peft.registry.store import Registry  # noqa: E402
from recsys_peft.scoring.batch import score_users, write_recommendations  # noqa: E402
from recsys_peft.segments import load_segment_spec  # noqa: E402
from recsys_peft.training.finetune import (  # noqa: E402
    BaseModel, SegmentAdapter, finetune_segment, route, stack_adapters,
)
from recsys_peft.training.pretrain import model_config  # noqa: E402
from recsys_peft.training.pretrain import pretrain as train_base_model  # noqa: E402


@task(cache_policy=NO_CACHE)
def fetch(config: PipelineConfig) -> Path:
    raw_dir = Path(config.raw_dir)
    if config.fetch_movielens:
        fetch_movielens_100k(raw_dir)
    get_run_logger().info("fetch raw_dir=%s files=%d", raw_dir, len(list(raw_dir.glob("*"))))
    return raw_dir


@task(cache_policy=NO_CACHE)
def ingest(config: PipelineConfig, raw_dir: Path) -> IngestSummary:
    started = time.perf_counter()
    spec = load_source_spec(config.source_spec)
    summary = ingest_source(spec, raw_dir, Path(config.work_dir) / "store")
    get_run_logger().info("%s source=%s %.1fs", summary.log_line(), spec.name, time.perf_counter() - started)
    return summary


@task(cache_policy=NO_CACHE)
def split(config: PipelineConfig, store: IngestSummary) -> DataSnapshot:
    snapshot = load_snapshot(store.store_dir, load_segment_spec(config.segment_spec), config.user_attributes)
    s = snapshot.split
    get_run_logger().info(
        "split protocol=leave-one-out-by-time train_events=%d valid_users=%d test_users=%d "
        "users_without_target=%d segments=%d users_without_segment=%d", len(s.train_positions),
        len(s.valid.users), len(s.test.users), s.users_without_target, len(snapshot.segments.names),
        snapshot.segments.unassigned_users)
    return snapshot


@task(cache_policy=NO_CACHE)
def pretrain(config: PipelineConfig, snapshot: DataSnapshot) -> tuple[BaseModel, str]:
    logger = get_run_logger()
    architecture = model_config(config.model, snapshot, **config.resolved_model_overrides())
    result = train_base_model(snapshot, architecture, config.pretrain, on_epoch=lambda r: logger.info(
        "pretrain epoch=%d loss=%.4f valid_ndcg@10=%.4f %.1fs", r["epoch"], r["loss"], r["valid_ndcg@10"],
        r["seconds"]))
    base_hash = save_base_model(result.model, Path(config.work_dir) / "models" / "base", {
        "vocabulary_version": snapshot.log.vocabulary_version,
        "training_data_snapshot": snapshot.snapshot_id,
        "train_config": config.to_dict(),
        "metrics": {"valid_ndcg@10": result.result.best_score},
        "history": result.result.history,
    })
    logger.info("pretrain model=%s parameters=%d best_epoch=%d valid_ndcg@10=%.4f %.1fs",
                config.model, parameter_count(result.model), result.result.best_epoch, result.result.best_score,
                result.result.seconds)
    return result.model, base_hash


@task(cache_policy=NO_CACHE, task_run_name="finetune-{segment_index}")
def finetune(config: PipelineConfig, snapshot: DataSnapshot, base: BaseModel, base_hash: str,
             segment_index: int) -> SegmentAdapter:
    adapter = finetune_segment(base, snapshot, segment_index, config.finetune)
    folder = Path(config.work_dir) / "models" / "adapters" / segment_slug(segment_index, adapter.segment)
    save_adapter(adapter, folder, config.finetune.lora, base_hash, snapshot.log.vocabulary_version,
                 snapshot.snapshot_id, stack_adapters(base, [], 1, config.finetune.lora))
    get_run_logger().info(
        "segment=%s users=%d examples=%d rank=%s base_valid_ndcg@10=%.4f adapter_valid_ndcg@10=%.4f kept=%s "
        "reason=%r trainable=%d %.1fs", adapter.segment, adapter.users, adapter.train_examples, adapter.rank,
        adapter.base_valid_ndcg, adapter.valid_ndcg, adapter.used, adapter.reason, adapter.trainable_parameters,
        adapter.seconds)
    return adapter


@task(cache_policy=NO_CACHE)
def register(config: PipelineConfig, snapshot: DataSnapshot, base: BaseModel,
             adapters: list[SegmentAdapter]) -> str:
    """Publish the base model and every segment's adapter record, and promote them as one release."""
    registry = Registry(Path(config.work_dir) / "registry")
    base_id = registry.publish_base(base, snapshot.segments.names, {
        "vocabulary_version": snapshot.log.vocabulary_version,
        "training_data_snapshot": snapshot.snapshot_id,
    })
    layers = sorted(adapter_layers(stack_adapters(base, [], 1, config.finetune.lora)))
    versions = {a.segment: registry.publish_adapter(a, base_id, config.finetune.lora, layers) for a in adapters}
    release = registry.promote(base_id, versions, note=f"pipeline seed={config.seed}")
    sizes = registry.sizes(base_id, versions)
    kept = [sizes["adapter_bytes"][a.segment] for a in adapters if a.used]
    get_run_logger().info(
        "register release=%s base=%s base_bytes=%d adapters_kept=%d/%d bytes_per_adapter=%d registry=%s",
        release.release_id, base_id, sizes["base_bytes"], len(kept), len(adapters), max(kept, default=0),
        registry.url)
    return release.release_id


@task(cache_policy=NO_CACHE)
def route_users(snapshot: DataSnapshot, adapters: list[SegmentAdapter]) -> np.ndarray:
    """Route each user to its adapter slot along the segment chain, and log who fell back."""
    routing = route(snapshot, adapters)
    get_run_logger().info("route users=%d %s", len(routing.slots), routing.summary())
    return routing.slots


@task(cache_policy=NO_CACHE)
def evaluate(config: PipelineConfig, snapshot: DataSnapshot, base: BaseModel, adapted: BaseModel,
             slots: np.ndarray, adapters: list[SegmentAdapter]) -> dict:
    ranks = test_ranks(snapshot, {"base": (base, None), "adapted": (adapted, slots)})
    report = metrics_report(snapshot, ranks, seed=config.seed)
    report["adapters"] = {a.segment: {"kept": a.used, "reason": a.reason, "users": a.users,
                                      "trainable_parameters": a.trainable_parameters} for a in adapters}
    report["model"] = config.model
    report["base_parameters"] = parameter_count(base)
    report["seed"] = config.seed
    atomic.write_json(Path(config.work_dir) / "metrics.json", report)
    overall = report["overall"]
    paired = overall["paired_ndcg@10"]
    get_run_logger().info(
        "evaluate users=%d base_ndcg@10=%.4f adapted_ndcg@10=%.4f diff=%+.4f ci95=[%+.4f,%+.4f] "
        "base_hr@10=%.4f adapted_hr@10=%.4f", overall["base"]["users"], overall["base"]["ndcg@10"],
        overall["adapted"]["ndcg@10"], paired["mean_diff"], paired["low"], paired["high"],
        overall["base"]["hr@10"], overall["adapted"]["hr@10"])
    print(format_table(report), flush=True)
    return report


@task(cache_policy=NO_CACHE)
def export(config: PipelineConfig, snapshot: DataSnapshot, adapted: BaseModel, slots: np.ndarray,
           base_hash: str, adapters: list[SegmentAdapter], report: dict) -> Path:
    out_dir = Path(config.work_dir) / "export"
    manifest = export_model(adapted, snapshot, slots, out_dir, Path(config.work_dir) / "store", {
        "base_model_hash": base_hash,
        "adapters": {a.segment: {"kept": a.used, "slot": a.segment_index} for a in adapters},
        "metrics": {"test": {m: report["overall"][m]["ndcg@10"] for m in ("base", "adapted")}},
        "config": config.to_dict(),
    }, seed=config.seed)
    parity = manifest["parity"]
    get_run_logger().info("export model_version=%s parity_users=%d max_abs_diff=%.2e tolerance=%.0e path=%s",
                          manifest["model_version"], parity["users"], parity["max_abs_diff"],
                          parity["tolerance"], out_dir)
    return out_dir


@task(cache_policy=NO_CACHE)
def score(config: PipelineConfig, snapshot: DataSnapshot, export_dir: Path) -> Path:
    exported = ExportedModel.load(export_dir)
    # As of the moment before each user's test target: history and exclusions stop there.
    log = snapshot.log
    users = np.arange(log.num_users)
    positions = log.offsets[users + 1].copy()
    positions[snapshot.split.test.users] = snapshot.split.test.positions
    table, summary = score_users(exported, log, snapshot.users, users, positions, k=config.top_k)
    out_dir = Path(config.work_dir) / "recommendations"
    write_recommendations(table, out_dir, summary)
    get_run_logger().info("score users=%d rows=%d fallback_users=%d unknown_users=%d no_history_users=%d "
                          "short_of_k=%d new_item_events=%d model_version=%s %.1fs", summary.users, summary.rows,
                          summary.fallback_users, summary.unknown_users, summary.no_history_users,
                          summary.users_short_of_k, summary.new_item_events, exported.model_version, summary.seconds)
    return out_dir


@flow(name="recsys-peft-pipeline", log_prints=False)
def pipeline(config: PipelineConfig | None = None) -> dict:
    """Run every stage once; return the paths of the metrics and the recommendations."""
    config = config or PipelineConfig()
    torch.set_num_threads(os.cpu_count() or 1)
    Path(config.work_dir).mkdir(parents=True, exist_ok=True)
    atomic.write_json(Path(config.work_dir) / "config.json", config.to_dict())

    raw_dir = fetch(config)
    store = ingest(config, raw_dir)
    snapshot = split(config, store)
    base, base_hash = pretrain(config, snapshot)
    adapters = [finetune(config, snapshot, base, base_hash, s) for s in range(len(snapshot.segments.names))]
    register(config, snapshot, base, adapters)
    adapted = stack_adapters(base, adapters, len(snapshot.segments.names), config.finetune.lora)
    slots = route_users(snapshot, adapters)
    report = evaluate(config, snapshot, base, adapted, slots, adapters)
    export_dir = export(config, snapshot, adapted, slots, base_hash, adapters, report)
    recommendations = score(config, snapshot, export_dir)
    return {"metrics": str(Path(config.work_dir) / "metrics.json"), "recommendations": str(recommendations),
            "export": str(export_dir)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the recsys-peft pipeline end to end on MovieLens-100K.")
    parser.add_argument("--model", default="two_tower", help="model family: two_tower or sasrec (default: two_tower)")
    parser.add_argument("--seed", type=int, default=0, help="seed for training and sampling (default: 0)")
    parser.add_argument("--work-dir", default="data/demo", help="where outputs go (default: data/demo)")
    args = parser.parse_args(argv)
    try:
        config = PipelineConfig(model=args.model, work_dir=args.work_dir).with_seed(args.seed)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    paths = pipeline(config)
    print(f"\nmetrics:         {paths['metrics']}\nrecommendations: {paths['recommendations']}\n"
          f"export:          {paths['export']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
