"""The pipeline's stages as plain Python functions; the Prefect flows and the CLI call these.

Each stage takes the resolved ``PipelineConfig``, writes its artifacts under ``config.work_dir``
and passes one ``key=value`` summary line, starting with its subject, to ``log``. Run the
demo's stages without Prefect:

    from recsys_peft import api

    config = api.load_config("flows/configs/movielens.yaml", ["pretrain.epochs=5"])
    api.check_config(config)
    store = api.ingest(config, api.fetch(config))
    snapshot = api.split(config)
    base = api.train(config, snapshot)
    adapters = [api.finetune(config, snapshot, base, s) for s in range(len(snapshot.segments.names))]
    api.register(config, snapshot, base, adapters)
    adapted, slots = api.adapt(config, snapshot, base, adapters)
    metrics = api.evaluate(config, snapshot, base, adapted, slots, adapters)
    export_dir = api.export(config, snapshot, adapted, slots, base, adapters, metrics)
    api.score(config, snapshot, export_dir)
    api.report(config)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recsys_peft import atomic
from recsys_peft.config import PipelineConfig
from recsys_peft.config_check import check_config
from recsys_peft.config_file import ConfigError, load_config, to_yaml
from recsys_peft.dataset.snapshot import DataSnapshot, load_snapshot
from recsys_peft.ingest.ingest import IngestSummary
from recsys_peft.training.finetune import BaseModel, SegmentAdapter

Log = Callable[[str], None]
_logger = logging.getLogger("recsys_peft")


def _info(message: str) -> None:
    _logger.info(message)


@dataclass
class TrainedBase:
    """A base model with its weights hash (the id its adapters are bound to) and training history."""

    model: BaseModel
    weights_hash: str
    history: list[dict]


def _work(config: PipelineConfig, *parts: str) -> Path:
    return Path(config.work_dir).joinpath(*parts)


def save_config(config: PipelineConfig) -> Path:
    """Write the resolved config to ``WORK_DIR/config.json``; call it only after ``check_config``."""
    path = _work(config, "config.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(path, config.to_dict())
    return path


def fetch(config: PipelineConfig, log: Log = _info) -> Path:
    """Download MovieLens-100K into ``raw_dir`` when ``fetch_movielens`` is set; return ``raw_dir``."""
    from recsys_peft.ingest.fetch import fetch_movielens_100k

    raw_dir = Path(config.raw_dir)
    if config.fetch_movielens:
        fetch_movielens_100k(raw_dir)
    log(f"fetch raw_dir={raw_dir} entries={len(list(raw_dir.glob('*')))}")
    return raw_dir


def ingest(config: PipelineConfig, raw_dir: Path, log: Log = _info) -> IngestSummary:
    """Add the raw files under ``raw_dir`` to the store ``WORK_DIR/store``, as the source spec maps them."""
    from recsys_peft.ingest.ingest import ingest_source
    from recsys_peft.ingest.spec import load_source_spec

    started = time.perf_counter()
    spec = load_source_spec(config.source_spec)
    summary = ingest_source(spec, raw_dir, _work(config, "store"))
    log(f"{summary.log_line()} source={spec.name} {time.perf_counter() - started:.1f}s")
    return summary


def split(config: PipelineConfig, log: Log = _info) -> DataSnapshot:
    """Load the store, split it leave-one-out by time, encode features and assign segments."""
    from recsys_peft.segments import load_segment_spec

    snapshot = load_snapshot(_work(config, "store"), load_segment_spec(config.segment_spec), config.user_attributes)
    s = snapshot.split
    log(f"split protocol=leave-one-out-by-time train_events={len(s.train_positions)} valid_users={len(s.valid.users)} "
        f"test_users={len(s.test.users)} users_without_target={s.users_without_target} "
        f"segments={len(snapshot.segments.names)} users_without_segment={snapshot.segments.unassigned_users}")
    return snapshot


def train(config: PipelineConfig, snapshot: DataSnapshot, log: Log = _info,
          on_epoch: Callable[[dict], None] | None = None) -> TrainedBase:
    """Pretrain the base model and save it to ``WORK_DIR/models/base``; ``on_epoch`` receives each epoch's record."""
    from recsys_peft.models.two_tower import parameter_count
    from recsys_peft.registry.artifacts import save_base_model
    from recsys_peft.training.pretrain import model_config, pretrain

    def epoch_done(record: dict) -> None:
        log(f"pretrain epoch={record['epoch']} loss={record['loss']:.4f} "
            f"valid_ndcg@10={record['valid_ndcg@10']:.4f} {record['seconds']:.1f}s")
        if on_epoch is not None:
            on_epoch(record)

    architecture = model_config(config.model, snapshot, **config.resolved_model_overrides())
    result = pretrain(snapshot, architecture, config.pretrain, on_epoch=epoch_done)
    weights_hash = save_base_model(result.model, _work(config, "models", "base"), {
        "vocabulary_version": snapshot.log.vocabulary_version,
        "training_data_snapshot": snapshot.snapshot_id,
        "train_config": config.to_dict(),
        "metrics": {"valid_ndcg@10": result.result.best_score},
        "history": result.result.history,
    })
    log(f"pretrain model={config.model} parameters={parameter_count(result.model)} "
        f"best_epoch={result.result.best_epoch} valid_ndcg@10={result.result.best_score:.4f} "
        f"{result.result.seconds:.1f}s")
    return TrainedBase(result.model, weights_hash, result.result.history)


def load_base(config: PipelineConfig, snapshot: DataSnapshot) -> TrainedBase:
    """Read the base model that ``train`` saved, and check it was trained on this store's vocabulary."""
    from recsys_peft.registry.artifacts import load_base_model

    folder = _work(config, "models", "base")
    if not (folder / "model.json").is_file():
        raise FileNotFoundError(f"no base model in {folder}: run `recsys-peft train` with this config first")
    model, meta = load_base_model(folder)
    trained_on = meta.get("vocabulary_version")
    if trained_on != snapshot.log.vocabulary_version:
        raise ValueError(f"base model {folder} was trained on vocabulary {trained_on}, but the store has "
                         f"{snapshot.log.vocabulary_version}; train again with `recsys-peft train`")
    _check_architecture(config, snapshot, model, folder)
    return TrainedBase(model, meta["weights_hash"], meta.get("history", []))


def _check_architecture(config: PipelineConfig, snapshot: DataSnapshot, model: BaseModel, folder: Path) -> None:
    """Raise ValueError when the config sets another model family or architecture than the saved base model."""
    from recsys_peft.training.pretrain import model_config

    if model.family != config.model:
        raise ValueError(f"base model {folder} is a {model.family} model, but the config sets model "
                         f"{config.model!r}; train again with `recsys-peft train`")
    wanted = model_config(config.model, snapshot, **config.resolved_model_overrides()).to_dict()
    saved = model.config.to_dict()
    differ = sorted(key for key in wanted if key in saved and wanted[key] != saved[key])
    if differ:
        details = ", ".join(f"{key} {saved[key]!r} (config: {wanted[key]!r})" for key in differ)
        raise ValueError(f"base model {folder} was trained with {details}; train again with `recsys-peft train`, "
                         f"or remove the override")


def finetune(config: PipelineConfig, snapshot: DataSnapshot, base: TrainedBase, segment_index: int,
             log: Log = _info) -> SegmentAdapter:
    """Train one segment's adapter and save it under ``WORK_DIR/models/adapters``."""
    from recsys_peft.registry.artifacts import save_adapter, segment_slug
    from recsys_peft.training.finetune import finetune_segment, stack_adapters

    adapter = finetune_segment(base.model, snapshot, segment_index, config.finetune)
    folder = _work(config, "models", "adapters", segment_slug(segment_index, adapter.segment))
    save_adapter(adapter, folder, config.finetune.lora, base.weights_hash, snapshot.log.vocabulary_version,
                 snapshot.snapshot_id, stack_adapters(base.model, [], 1, config.finetune.lora))
    log(f"segment={adapter.segment} users={adapter.users} examples={adapter.train_examples} rank={adapter.rank} "
        f"base_valid_ndcg@10={adapter.base_valid_ndcg:.4f} adapter_valid_ndcg@10={adapter.valid_ndcg:.4f} "
        f"kept={adapter.used} reason={adapter.reason!r} trainable={adapter.trainable_parameters} "
        f"{adapter.seconds:.1f}s")
    return adapter


def register(config: PipelineConfig, snapshot: DataSnapshot, base: TrainedBase, adapters: list[SegmentAdapter],
             log: Log = _info) -> str:
    """Publish the base model and every segment's adapter to ``WORK_DIR/registry`` and promote them as one release."""
    from recsys_peft.adapters.lora import adapter_layers
    from recsys_peft.registry.store import Registry
    from recsys_peft.training.finetune import stack_adapters

    registry = Registry(_work(config, "registry"))
    base_id = registry.publish_base(base.model, snapshot.segments.names, {
        "vocabulary_version": snapshot.log.vocabulary_version,
        "training_data_snapshot": snapshot.snapshot_id,
        "pipeline_config": config.to_dict(),
    })
    layers = sorted(adapter_layers(stack_adapters(base.model, [], 1, config.finetune.lora)))
    versions = {a.segment: registry.publish_adapter(a, base_id, config.finetune.lora, layers) for a in adapters}
    release = registry.promote(base_id, versions, note=f"pipeline seed={config.seed}")
    sizes = registry.sizes(base_id, versions)
    kept = [sizes["adapter_bytes"][a.segment] for a in adapters if a.used]
    log(f"register release={release.release_id} base={base_id} base_bytes={sizes['base_bytes']} "
        f"adapters_kept={len(kept)}/{len(adapters)} bytes_per_adapter={max(kept, default=0)} "
        f"registry={registry.url}")
    return release.release_id


def load_release(config: PipelineConfig, snapshot: DataSnapshot) -> tuple[TrainedBase, list[SegmentAdapter]]:
    """Read the promoted release of ``WORK_DIR/registry``: the base model and every segment's adapter."""
    from recsys_peft.registry.store import Registry

    loaded = Registry(_work(config, "registry")).load_release()
    trained_on = loaded.base_meta.get("vocabulary_version")
    if trained_on and trained_on != snapshot.log.vocabulary_version:
        raise ValueError(f"release {loaded.release.release_id} was trained on vocabulary {trained_on}, but the "
                         f"store has {snapshot.log.vocabulary_version}; run `recsys-peft finetune` again")
    return TrainedBase(loaded.base, loaded.base_meta["weights_hash"], []), loaded.adapters


def adapt(config: PipelineConfig, snapshot: DataSnapshot, base: TrainedBase, adapters: list[SegmentAdapter],
          log: Log = _info) -> tuple[BaseModel, np.ndarray]:
    """Stack the kept adapters into one model and route every user to its adapter slot (-1: base model)."""
    from recsys_peft.training.finetune import route, stack_adapters

    adapted = stack_adapters(base.model, adapters, len(snapshot.segments.names), config.finetune.lora)
    routing = route(snapshot, adapters)
    log(f"route users={len(routing.slots)} {routing.summary()}")
    return adapted, routing.slots


def evaluate(config: PipelineConfig, snapshot: DataSnapshot, base: TrainedBase, adapted: BaseModel,
             slots: np.ndarray, adapters: list[SegmentAdapter], log: Log = _info) -> dict:
    """Rank the test targets with the base and the adapted model; write ``WORK_DIR/metrics.json``."""
    from recsys_peft.evaluation.report import metrics_report, test_ranks
    from recsys_peft.models.two_tower import parameter_count

    ranks = test_ranks(snapshot, {"base": (base.model, None), "adapted": (adapted, slots)})
    metrics = metrics_report(snapshot, ranks, seed=config.seed)
    metrics["adapters"] = {a.segment: {"kept": a.used, "reason": a.reason, "users": a.users,
                                       "trainable_parameters": a.trainable_parameters} for a in adapters}
    metrics["model"] = config.model
    metrics["base_parameters"] = parameter_count(base.model)
    metrics["seed"] = config.seed
    metrics["config"] = config.to_dict()
    atomic.write_json(_work(config, "metrics.json"), metrics)
    overall = metrics["overall"]
    paired = overall["paired_ndcg@10"]
    log(f"evaluate users={overall['base']['users']} base_ndcg@10={overall['base']['ndcg@10']:.4f} "
        f"adapted_ndcg@10={overall['adapted']['ndcg@10']:.4f} diff={paired['mean_diff']:+.4f} "
        f"ci95=[{paired['low']:+.4f},{paired['high']:+.4f}] base_hr@10={overall['base']['hr@10']:.4f} "
        f"adapted_hr@10={overall['adapted']['hr@10']:.4f}")
    return metrics


def export(config: PipelineConfig, snapshot: DataSnapshot, adapted: BaseModel, slots: np.ndarray,
           base: TrainedBase, adapters: list[SegmentAdapter], metrics: dict, log: Log = _info) -> Path:
    """Write ``WORK_DIR/export`` and check that it scores like ``adapted``; raise ``ParityError`` if not."""
    from recsys_peft.export.exporter import export_model

    out_dir = _work(config, "export")
    manifest = export_model(adapted, snapshot, slots, out_dir, _work(config, "store"), {
        "base_model_hash": base.weights_hash,
        "adapters": {a.segment: {"kept": a.used, "slot": a.segment_index} for a in adapters},
        "metrics": {"test": {m: metrics["overall"][m]["ndcg@10"] for m in ("base", "adapted")}},
        "config": config.to_dict(),
    }, seed=config.seed)
    parity = manifest["parity"]
    log(f"export model_version={manifest['model_version']} parity_users={parity['users']} "
        f"max_abs_diff={parity['max_abs_diff']:.2e} tolerance={parity['tolerance']:.0e} path={out_dir}")
    return out_dir


def score(config: PipelineConfig, snapshot: DataSnapshot, export_dir: Path, log: Log = _info) -> Path:
    """Score every user with the export, as of the moment before each test target; write ``WORK_DIR/recommendations``."""
    from recsys_peft.export.model import ExportedModel
    from recsys_peft.scoring.batch import score_users, write_recommendations

    exported = ExportedModel.load(export_dir)
    # History and exclusions stop at each user's test target, so the lists can be judged against it.
    interactions = snapshot.log
    users = np.arange(interactions.num_users)
    positions = interactions.offsets[users + 1].copy()
    positions[snapshot.split.test.users] = snapshot.split.test.positions
    table, summary = score_users(exported, interactions, snapshot.users, users, positions, k=config.top_k)
    out_dir = _work(config, "recommendations")
    write_recommendations(table, out_dir, summary)
    log(f"score users={summary.users} rows={summary.rows} fallback_users={summary.fallback_users} "
        f"unknown_users={summary.unknown_users} no_history_users={summary.no_history_users} "
        f"short_of_k={summary.users_short_of_k} new_item_events={summary.new_item_events} "
        f"model_version={exported.model_version} {summary.seconds:.1f}s")
    return out_dir


def report(config: PipelineConfig, out: str | Path | None = None, log: Log = _info) -> Path:
    """Write the HTML report of the run in ``WORK_DIR`` (default ``WORK_DIR/report.html``)."""
    from recsys_peft.report import write_report

    started = time.perf_counter()
    path = write_report(config.work_dir, out)
    log(f"report path={path} bytes={path.stat().st_size} {time.perf_counter() - started:.1f}s")
    return path


__all__ = [
    "ConfigError", "PipelineConfig", "TrainedBase", "adapt", "check_config", "evaluate", "export", "fetch",
    "finetune", "ingest", "load_base", "load_config", "load_release", "register", "report", "save_config", "score",
    "split", "to_yaml", "train",
]
