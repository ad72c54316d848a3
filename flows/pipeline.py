"""The end-to-end job and its stages as Prefect flows: logs to per-segment top-K recommendations.

    fetch -> ingest -> split -> pretrain -> fine-tune per segment -> evaluate -> export -> score -> report

``pipeline`` runs every stage. ``train_flow``, ``finetune_flow`` and ``evaluate_flow`` run one
part against the artifacts an earlier run left in the work folder; ``recsys-peft train``,
``finetune`` and ``evaluate`` call them, and ``recsys-peft run`` and ``make demo`` call
``pipeline``. Each task calls one function of ``recsys_peft.api`` and logs its ``key=value``
summary line.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from recsys_peft import api  # noqa: E402
from recsys_peft.config import PipelineConfig  # noqa: E402
from recsys_peft.dataset.snapshot import DataSnapshot  # noqa: E402
from recsys_peft.evaluation.report import format_table  # noqa: E402
from recsys_peft.ingest.ingest import IngestSummary  # noqa: E402
from recsys_peft.progress import Progress, progress  # noqa: E402
from recsys_peft.training.finetune import BaseModel, SegmentAdapter  # noqa: E402

DEMO_CONFIG = Path(__file__).parent / "configs" / "movielens.yaml"


def _log(message: str) -> None:
    get_run_logger().info(message)


@task(cache_policy=NO_CACHE)
def fetch(config: PipelineConfig) -> Path:
    return api.fetch(config, _log)


@task(cache_policy=NO_CACHE)
def ingest(config: PipelineConfig, raw_dir: Path) -> IngestSummary:
    return api.ingest(config, raw_dir, _log)


@task(cache_policy=NO_CACHE)
def split(config: PipelineConfig) -> DataSnapshot:
    return api.split(config, _log)


@task(cache_policy=NO_CACHE)
def pretrain(config: PipelineConfig, snapshot: DataSnapshot) -> api.TrainedBase:
    assert config.pretrain is not None
    logger = get_run_logger()
    tracker = Progress("pretrain", config.pretrain.epochs, "epoch", logger.info)
    try:
        # Early stopping may end before the last epoch, so the bar's total is an upper bound.
        return api.train(config, snapshot, logger.info, on_epoch=lambda record: tracker.advance())
    finally:
        tracker.close()


@task(cache_policy=NO_CACHE)
def load_base(config: PipelineConfig, snapshot: DataSnapshot) -> api.TrainedBase:
    return api.load_base(config, snapshot)


@task(cache_policy=NO_CACHE, task_run_name="finetune-{segment_index}")
def finetune(config: PipelineConfig, snapshot: DataSnapshot, base: api.TrainedBase,
             segment_index: int) -> SegmentAdapter:
    return api.finetune(config, snapshot, base, segment_index, _log)


@task(cache_policy=NO_CACHE)
def register(config: PipelineConfig, snapshot: DataSnapshot, base: api.TrainedBase,
             adapters: list[SegmentAdapter]) -> str:
    """Publish the base model and every segment's adapter record, and promote them as one release."""
    return api.register(config, snapshot, base, adapters, _log)


@task(cache_policy=NO_CACHE)
def load_release(config: PipelineConfig, snapshot: DataSnapshot) -> tuple[api.TrainedBase, list[SegmentAdapter]]:
    return api.load_release(config, snapshot)


@task(cache_policy=NO_CACHE)
def adapt(config: PipelineConfig, snapshot: DataSnapshot, base: api.TrainedBase,
          adapters: list[SegmentAdapter]) -> tuple[BaseModel, np.ndarray]:
    """Stack the adapters, route each user to its adapter slot along the segment chain, and log who fell back."""
    return api.adapt(config, snapshot, base, adapters, _log)


@task(cache_policy=NO_CACHE)
def evaluate(config: PipelineConfig, snapshot: DataSnapshot, base: api.TrainedBase, adapted: BaseModel,
             slots: np.ndarray, adapters: list[SegmentAdapter]) -> dict:
    metrics = api.evaluate(config, snapshot, base, adapted, slots, adapters, _log)
    print(format_table(metrics), flush=True)
    return metrics


@task(cache_policy=NO_CACHE)
def export(config: PipelineConfig, snapshot: DataSnapshot, adapted: BaseModel, slots: np.ndarray,
           base: api.TrainedBase, adapters: list[SegmentAdapter], metrics: dict) -> Path:
    return api.export(config, snapshot, adapted, slots, base, adapters, metrics, _log)


@task(cache_policy=NO_CACHE)
def score(config: PipelineConfig, snapshot: DataSnapshot, export_dir: Path) -> Path:
    return api.score(config, snapshot, export_dir, _log)


@task(cache_policy=NO_CACHE)
def report(config: PipelineConfig) -> Path:
    return api.report(config, log=_log)


def _start(config: PipelineConfig) -> None:
    """Check the config, then record it in the work folder, before any stage runs."""
    api.check_config(config)
    # OMP_NUM_THREADS, when set, wins: on cores shared with other jobs one thread can be several
    # times faster than one per core, whose threads wait on each other.
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))
    api.save_config(config)


def _finetune_all(config: PipelineConfig, snapshot: DataSnapshot, base: api.TrainedBase) -> list[SegmentAdapter]:
    names = snapshot.segments.names
    adapters = []
    with progress("finetune", len(names), "segment", get_run_logger().info) as tracker:
        for segment_index in range(len(names)):
            adapters.append(finetune(config, snapshot, base, segment_index))
            tracker.advance()
    return adapters


def _adapt_and_evaluate(config: PipelineConfig, snapshot: DataSnapshot, base: api.TrainedBase,
                         adapters: list[SegmentAdapter]) -> tuple[BaseModel, np.ndarray, dict]:
    adapted, slots = adapt(config, snapshot, base, adapters)
    metrics = evaluate(config, snapshot, base, adapted, slots, adapters)
    return adapted, slots, metrics


@flow(name="recsys-peft-train", log_prints=False)
def train_flow(config: PipelineConfig) -> dict:
    """Fetch, ingest and split the data, then pretrain the base model into ``WORK_DIR/models/base``."""
    _start(config)
    store = ingest(config, fetch(config))
    base = pretrain(config, split(config))
    return {"store": str(store.store_dir), "base_model": str(Path(config.work_dir) / "models" / "base"),
            "weights_hash": base.weights_hash}


@flow(name="recsys-peft-finetune", log_prints=False)
def finetune_flow(config: PipelineConfig) -> dict:
    """Fine-tune every segment's adapter on the saved base model and promote them as a release."""
    _start(config)
    snapshot = split(config)
    base = load_base(config, snapshot)
    adapters = _finetune_all(config, snapshot, base)
    release = register(config, snapshot, base, adapters)
    return {"release": release, "registry": str(Path(config.work_dir) / "registry")}


@flow(name="recsys-peft-evaluate", log_prints=False)
def evaluate_flow(config: PipelineConfig) -> dict:
    """Evaluate the promoted release on the test targets; write ``metrics.json`` and the HTML report."""
    _start(config)
    snapshot = split(config)
    base, adapters = load_release(config, snapshot)
    _adapt_and_evaluate(config, snapshot, base, adapters)
    return {"metrics": str(Path(config.work_dir) / "metrics.json"), "report": str(report(config))}


@flow(name="recsys-peft-pipeline", log_prints=False)
def pipeline(config: PipelineConfig | None = None) -> dict:
    """Run every stage once; return the paths of the metrics, recommendations, export and report."""
    config = config or PipelineConfig()
    _start(config)
    raw_dir = fetch(config)
    ingest(config, raw_dir)
    snapshot = split(config)
    base = pretrain(config, snapshot)
    adapters = _finetune_all(config, snapshot, base)
    register(config, snapshot, base, adapters)
    adapted, slots, metrics = _adapt_and_evaluate(config, snapshot, base, adapters)
    export_dir = export(config, snapshot, adapted, slots, base, adapters, metrics)
    recommendations = score(config, snapshot, export_dir)
    report_path = report(config)
    return {"metrics": str(Path(config.work_dir) / "metrics.json"), "recommendations": str(recommendations),
            "export": str(export_dir), "report": str(report_path)}


def main(argv: list[str] | None = None) -> int:
    """Run the demo (``make demo``): the pipeline on ``flows/configs/movielens.yaml``, with overrides."""
    from recsys_peft.cli.common import print_config, resolve_config
    from recsys_peft.cli.console import setup_console
    from recsys_peft.cli.errors import EXIT_FAILED, EXIT_USAGE
    from recsys_peft.config_file import ConfigError

    parser = argparse.ArgumentParser(description="Run the recsys-peft pipeline end to end on MovieLens-100K.")
    parser.add_argument("--config", default=str(DEMO_CONFIG), help=f"pipeline config YAML (default: {DEMO_CONFIG})")
    parser.add_argument("--model", default=None, help="model family: two_tower or sasrec (default: the config's)")
    parser.add_argument("--seed", type=int, default=None, help="seed for training and sampling (default: the config's)")
    parser.add_argument("--work-dir", default=None, help="where outputs go (default: the config's, data/demo)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config key")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of a failure")
    args = parser.parse_args(argv)
    try:
        config = resolve_config(Path(args.config), args.set, args.work_dir, args.model, args.seed)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print_config(config)
    setup_console(args.debug)
    try:
        paths = pipeline(config)
    except Exception as error:  # noqa: BLE001 - one line and exit code 1 unless --debug
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(f"\nmetrics:         {paths['metrics']}\nrecommendations: {paths['recommendations']}\n"
          f"export:          {paths['export']}\nreport:          {paths['report']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
