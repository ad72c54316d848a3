"""Do per-segment adapters pay off? Base, shared fine-tune, full fine-tuning and adapters per segment.

Data sets: MovieLens-100K (segments: gender x age band, and occupation) and a generated log with
planted segment tastes (``recsys_peft.dataset.synthetic.generate_log``; gender x age band).
Every method starts from the same pretrained two-tower base model (the demo defaults):

- base: the base model for every user;
- shared: one adapter trained on every user;
- full: a copy of the whole model (tables included) trained on each segment's users;
- adapters: one low-rank adapter per segment, tables and item side frozen;
- top_layers:N and bias_norm (``recsys_peft.training.freezing``): per segment, only the top N
  layers of the user tower, or only its biases (and LayerNorms), train in a copy of the base.

A shared, full or per-segment model serves its users only when it beats the base model on
their validation targets, and the base model serves them otherwise. Protocol: leave-one-out by
time, full-catalogue ranking with seen items excluded, ties against the model, NDCG@10 and
HR@10 with 95% bootstrap intervals per segment and overall. The learning curve trains adapters
and full fine-tuning on 10%, 25% and 50% of each segment's users (100% is the main run) and
tests on all of them. On generated data an oracle ranks by the generator's true preferences.

    .venv/bin/python benchmarks/adapters.py                  # everything (40 min on 2 shared vCPUs)
    .venv/bin/python benchmarks/adapters.py --quick          # a smoke run on small data

Writes benchmarks/results/adapters.json and prints one table per data set and segment spec.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
import torch
from safetensors.torch import save as safetensors_bytes

from recsys_peft.adapters.lora import LoRAConfig, adapter_state
from recsys_peft.config import MOVIELENS_USER_ATTRIBUTES, PRETRAIN_DEFAULTS
from recsys_peft.dataset.snapshot import DataSnapshot, load_snapshot
from recsys_peft.dataset.split import Targets
from recsys_peft.dataset.synthetic import generate_log, load_truth
from recsys_peft.dataset.views import seen_csr
from recsys_peft.evaluation.bootstrap import bootstrap_ci, paired_bootstrap
from recsys_peft.evaluation.metrics import ranking_metrics, target_ranks
from recsys_peft.evaluation.ranking import exclusion_mask, rank_targets
from recsys_peft.ingest.fetch import fetch_movielens_100k
from recsys_peft.ingest.ingest import ingest_source
from recsys_peft.ingest.spec import load_source_spec
from recsys_peft.models.two_tower import parameter_count
from recsys_peft.segments import load_segment_spec
from recsys_peft.training.finetune import (
    BaseModel, FinetuneConfig, beats_base, finetune_full, finetune_segment, finetune_shared, route, stack_adapters,
    with_adapters,
)
from recsys_peft.training.freezing import apply_tuned
from recsys_peft.training.loop import TrainConfig
from recsys_peft.training.pretrain import model_config, pretrain

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "adapters.json"
K = 10
FRACTIONS = (0.1, 0.25, 0.5)
SMALL_SEGMENT = 100  # users: the "adapters match or beat full fine-tuning" target applies below it
ADAPTER_TARGETS = ("lookup_adapter", "user_hidden", "user_out")
# Adapters: rank 8 (4 below 100 users) and Adam at 1e-2, which beat 1e-3 and 3e-3 on the
# validation NDCG@10 of MovieLens segment M:25-34 (F:45-49 and M:50-55 gained at no rate).
# Full fine-tuning: Adam at 1e-3, the pipeline's fine-tuning rate, not tuned further.
ADAPTER_CONFIG = FinetuneConfig(
    lora=LoRAConfig(r=8, alpha=16.0, target_modules=ADAPTER_TARGETS, segment_ranks=((0, 4), (SMALL_SEGMENT, 8))),
    train=TrainConfig(epochs=30, batch_size=256, learning_rate=1e-2, patience=3),
    min_users=5,
)
FULL_TRAIN = TrainConfig(epochs=30, batch_size=256, learning_rate=1e-3, patience=3)
# Layer freezing moves base weights, so it uses the full fine-tuning rate (not tuned further).
FREEZING_METHODS = ("top_layers:1", "top_layers:2", "bias_norm")
FREEZING_TRAIN = FULL_TRAIN


@dataclass
class DataSet:
    name: str
    store_dir: Path
    specs: list[str]
    truth_dir: Path | None = None
    description: dict = field(default_factory=dict)
    attributes: dict = field(default_factory=lambda: dict(MOVIELENS_USER_ATTRIBUTES))


class PeakMemory:
    """Sample the resident set size in a thread and report the peak above the level at start."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.process = psutil.Process()
        self.start_rss = 0
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> "PeakMemory":
        self.start_rss = self.peak_rss = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_above_start_mb(self) -> float:
        return (self.peak_rss - self.start_rss) / 2**20


def log(message: str) -> None:
    print(message, flush=True)


# Data.

def prepare_movielens(work_dir: Path) -> DataSet:
    raw = fetch_movielens_100k(ROOT / "data" / "raw" / "ml-100k")
    store = work_dir / "movielens" / "store"
    if not (store / "manifest.json").is_file():
        ingest_source(load_source_spec(ROOT / "features" / "movielens_100k.yaml"), raw, store)
    return DataSet("movielens-100k", store, ["gender_x_age", "occupation"],
                   description={"source": "MovieLens-100K, recbole==1.2.1 atomic files"})


def prepare_generated(work_dir: Path, users: int, items: int, events: int, seed: int,
                      with_attributes: bool = True, segment_share: float = 0.0) -> DataSet:
    suffix = f"-f{segment_share:g}" if segment_share else ""
    folder = work_dir / f"generated-u{users}-i{items}-e{events}-s{seed}{suffix}"
    raw = folder / "raw"
    if not (raw / "spec.yaml").is_file():
        generate_log(raw, events, num_users=users, num_items=items, seed=seed, segment_item_share=segment_share)
    if not (folder / "store" / "manifest.json").is_file():
        ingest_source(load_source_spec(raw / "spec.yaml"), raw, folder / "store")
    description = {"generator": "recsys_peft.dataset.synthetic.generate_log", "users": users, "items": items,
                   "events": events, "seed": seed, "segment_item_share": segment_share,
                   "base_user_attributes": sorted(MOVIELENS_USER_ATTRIBUTES) if with_attributes else []}
    if with_attributes:
        return DataSet("generated", folder / "store", ["gender_x_age"], truth_dir=raw, description=description)
    # The base model is built without gender, age and occupation features, so the planted
    # segment tastes reach it only through histories, and reach the adapters through membership.
    return DataSet("generated-without-attributes", folder / "store", ["gender_x_age"], truth_dir=raw,
                   description=description, attributes={})


def load(data: DataSet, spec: str) -> DataSnapshot:
    return load_snapshot(data.store_dir, load_segment_spec(ROOT / "features" / "segments" / f"{spec}.yaml"),
                         data.attributes)


# Ranking.

def test_ranks(model: BaseModel, snapshot: DataSnapshot, slots: np.ndarray | None, rows: np.ndarray | None = None,
               item_vectors: torch.Tensor | None = None) -> np.ndarray:
    """Return the test rank of every test user, or of ``rows`` (indices into the test targets)."""
    targets = snapshot.split.test
    if rows is not None:
        targets = Targets(targets.users[rows], targets.items[rows], targets.positions[rows])
    if item_vectors is None:
        item_vectors = model.all_item_embeddings(snapshot.features.item_tags)
    return rank_targets(model, snapshot.log, snapshot.features, targets, item_vectors, slots)


def oracle_ranks(snapshot: DataSnapshot, truth_dir: Path, chunk: int = 256) -> np.ndarray:
    """Rank every test target by the generator's true preference scores, seen items excluded."""
    truth = load_truth(truth_dir)
    generator_user = np.array([int(u[1:]) for u in snapshot.user_ids])
    generator_item = np.array([int(i[1:]) for i in snapshot.item_ids])
    targets = snapshot.split.test
    offsets, seen = seen_csr(snapshot.log, targets.users, targets.positions)
    ranks = np.empty(len(targets.users), dtype=np.int64)
    for start in range(0, len(targets.users), chunk):
        stop = min(start + chunk, len(targets.users))
        scores = truth.scores(generator_user[targets.users[start:stop]])[:, generator_item]   # (C, I)
        scores = torch.from_numpy(scores.astype(np.float32))
        mask = exclusion_mask(offsets, seen, slice(start, stop), snapshot.log.num_items)
        ranks[start:stop] = target_ranks(scores, torch.from_numpy(targets.items[start:stop]), mask).numpy()
    return ranks


def summarise(ranks: np.ndarray, seed: int) -> dict:
    per_user = ranking_metrics(ranks, K)
    summary: dict = {"users": int(len(ranks))}
    for metric in (f"ndcg@{K}", f"hr@{K}"):
        mean, low, high = bootstrap_ci(per_user[metric], seed=seed)
        summary[metric] = mean
        summary[f"{metric}_ci95"] = [low, high]
    return summary


def compare(snapshot: DataSnapshot, ranks: dict[str, np.ndarray], seed: int) -> dict:
    """Summaries per method, overall and per segment, and paired differences against the base."""
    ndcg = {name: ranking_metrics(r, K)[f"ndcg@{K}"] for name, r in ranks.items()}
    segments = snapshot.segments.user_segments[snapshot.split.test.users]
    out: dict = {"overall": {}, "segments": {}}
    for name, values in ranks.items():
        out["overall"][name] = summarise(values, seed)
        if name != "base":
            out["overall"][name]["paired_ndcg@10_vs_base"] = paired_bootstrap(ndcg["base"], ndcg[name], seed=seed)
    for index, segment in enumerate(snapshot.segments.names):
        rows = segments == index
        if not rows.any():
            continue
        entry: dict = {"test_users": int(rows.sum())}
        for name, values in ranks.items():
            entry[name] = summarise(values[rows], seed)
            if name != "base":
                entry[name]["paired_ndcg@10_vs_base"] = paired_bootstrap(ndcg["base"][rows], ndcg[name][rows], seed=seed)
        if "adapters" in ranks and "full" in ranks:
            entry["paired_ndcg@10_adapters_vs_full"] = paired_bootstrap(ndcg["full"][rows], ndcg["adapters"][rows],
                                                                       seed=seed)
        out["segments"][segment] = entry
    return out


# Training runs.

def train_seconds(history: list[dict]) -> float | None:
    """Return the seconds spent in training steps, when the loop records them per epoch."""
    values = [record.get("train_seconds") for record in history[1:]]
    return float(sum(values)) if values and all(v is not None for v in values) else None


def run_record(name: str, users: int, seconds: float, steps: int, best_epoch: int, epochs: int, kept: bool,
               trainable: int, history: list[dict], base_valid: float, valid: float, bytes_on_disk: int) -> dict:
    in_steps = train_seconds(history)
    return {"segment": name, "users": users, "seconds_to_early_stop": seconds, "steps": steps,
            "best_epoch": best_epoch, "epochs_run": epochs, "kept": kept, "trainable_parameters": trainable,
            "train_step_seconds": in_steps, "seconds_per_step": (in_steps if in_steps is not None else seconds)
            / max(steps, 1), "base_valid_ndcg@10": base_valid, "valid_ndcg@10": valid,
            "bytes_on_disk": bytes_on_disk}


def run_adapters(base: BaseModel, snapshot: DataSnapshot, train_users: np.ndarray | None = None) -> tuple[np.ndarray, list[dict], float]:
    """Train one adapter per segment, and return test ranks, one record per segment and peak memory."""
    with PeakMemory() as memory:
        adapters = [finetune_segment(base, snapshot, s, ADAPTER_CONFIG, train_users=train_users)
                    for s in range(len(snapshot.segments.names))]
    stacked = stack_adapters(base, adapters, len(snapshot.segments.names), ADAPTER_CONFIG.lora)
    routing = route(snapshot, adapters)
    base_items = base.all_item_embeddings(snapshot.features.item_tags)
    ranks = test_ranks(stacked, snapshot, routing.slots, item_vectors=base_items)
    records = []
    for a in adapters:
        record = run_record(a.segment, a.users, a.seconds, a.steps, a.best_epoch, max(len(a.history) - 1, 0), a.used,
                            a.trainable_parameters, a.history, a.base_valid_ndcg, a.valid_ndcg,
                            len(safetensors_bytes(a.state)) if a.state is not None else 0)
        # The file size an adapter of this rank takes, whether or not this one was kept.
        probe = with_adapters(base, 1, ADAPTER_CONFIG.lora.with_rank(a.rank or ADAPTER_CONFIG.lora.r))
        records.append(record | {"rank": a.rank, "reason": a.reason,
                                 "adapter_file_bytes": len(safetensors_bytes(adapter_state(probe, 0)))})
    return ranks, records, memory.peak_above_start_mb


def run_full(base: BaseModel, snapshot: DataSnapshot, base_ranks: np.ndarray,
             train_users: np.ndarray | None = None) -> tuple[np.ndarray, list[dict], float]:
    """Fine-tune a full copy per segment. Its users keep the base ranks unless it beats the base on validation."""
    ranks = base_ranks.copy()
    test_segments = snapshot.segments.user_segments[snapshot.split.test.users]
    records = []
    peak = 0.0
    for index, name in enumerate(snapshot.segments.names):
        members = snapshot.segments.members(index)
        training = members if train_users is None else members & train_users
        users = int(members.sum())
        if users < ADAPTER_CONFIG.min_users or not training.any():
            records.append(run_record(name, users, 0.0, 0, 0, 0, False, 0, [], 0.0, 0.0, 0))
            continue
        with PeakMemory() as memory:
            full = finetune_full(base, snapshot, training, FULL_TRAIN, seed=FULL_TRAIN.seed + index)
        peak = max(peak, memory.peak_above_start_mb)
        kept = beats_base(full.base_values, full.tuned_values, ADAPTER_CONFIG.keep_confidence, FULL_TRAIN.seed)
        rows = np.flatnonzero(test_segments == index)
        if kept and len(rows):
            ranks[rows] = test_ranks(full.model, snapshot, None, rows)
        size = len(safetensors_bytes({k: v.contiguous() for k, v in full.model.state_dict().items()
                                      if ".lora_" not in k}))
        records.append(run_record(name, users, full.result.seconds, full.result.steps, full.result.best_epoch,
                                  full.result.epochs_run, kept, full.trainable_parameters, full.result.history,
                                  full.base_valid_ndcg, full.result.best_score, size))
    return ranks, records, peak


def run_freezing(base: BaseModel, snapshot: DataSnapshot, base_ranks: np.ndarray,
                 method: str) -> tuple[np.ndarray, list[dict], float]:
    """Tune each segment with a layer-freezing method. Its users keep the base ranks unless it is kept."""
    config = FinetuneConfig(train=FREEZING_TRAIN, min_users=ADAPTER_CONFIG.min_users,
                            keep_confidence=ADAPTER_CONFIG.keep_confidence, method=method)
    ranks = base_ranks.copy()
    test_segments = snapshot.segments.user_segments[snapshot.split.test.users]
    base_items = base.all_item_embeddings(snapshot.features.item_tags)
    records = []
    with PeakMemory() as memory:
        tuned = [finetune_segment(base, snapshot, s, config) for s in range(len(snapshot.segments.names))]
    for index, segment in enumerate(tuned):
        rows = np.flatnonzero(test_segments == index)
        if segment.state is not None and len(rows):
            ranks[rows] = test_ranks(apply_tuned(base, segment.state), snapshot, None, rows, item_vectors=base_items)
        size = len(safetensors_bytes(segment.state)) if segment.state is not None else 0
        records.append(run_record(segment.segment, segment.users, segment.seconds, segment.steps,
                                  segment.best_epoch, max(len(segment.history) - 1, 0), segment.used,
                                  segment.trainable_parameters, segment.history, segment.base_valid_ndcg,
                                  segment.valid_ndcg, size) | {"reason": segment.reason})
    return ranks, records, memory.peak_above_start_mb


def run_shared(base: BaseModel, snapshot: DataSnapshot, base_ranks: np.ndarray) -> tuple[np.ndarray, dict, float]:
    with PeakMemory() as memory:
        shared = finetune_shared(base, snapshot, ADAPTER_CONFIG)
    record = run_record(shared.segment, shared.users, shared.seconds, shared.steps, shared.best_epoch,
                        max(len(shared.history) - 1, 0), shared.used, shared.trainable_parameters,
                        shared.history, shared.base_valid_ndcg, shared.valid_ndcg,
                        len(safetensors_bytes(shared.state)) if shared.used else 0)
    if not record["kept"]:
        return base_ranks.copy(), record, memory.peak_above_start_mb
    model = stack_adapters(base, [shared], 1, ADAPTER_CONFIG.lora)
    slots = np.zeros(snapshot.log.num_users, dtype=np.int64)
    base_items = base.all_item_embeddings(snapshot.features.item_tags)
    return test_ranks(model, snapshot, slots, item_vectors=base_items), record, memory.peak_above_start_mb


def method_summary(records: list[dict], peak_mb: float, base_parameters: int, base_bytes: int) -> dict:
    trained = [r for r in records if r["steps"] > 0]
    steps = sum(r["steps"] for r in trained)
    step_seconds = [r["train_step_seconds"] for r in trained]
    in_steps = sum(step_seconds) if step_seconds and all(s is not None for s in step_seconds) else None
    total = sum(r["seconds_to_early_stop"] for r in trained)
    trainable = [r["trainable_parameters"] for r in trained]
    return {
        "segments_trained": len(trained),
        "segments_kept": sum(r["kept"] for r in records),
        "seconds_to_early_stop_total": total,
        "seconds_per_step": (in_steps if in_steps is not None else total) / max(steps, 1),
        "seconds_per_step_includes_validation": in_steps is None,
        "trainable_parameters_per_segment_max": max(trainable, default=0),
        "trainable_parameters_per_segment_mean": float(np.mean(trainable)) if trainable else 0.0,
        "trainable_fraction_of_base_max": max(trainable, default=0) / base_parameters,
        "peak_rss_above_start_mb": peak_mb,
        "bytes_on_disk_per_segment_max": max((r["bytes_on_disk"] for r in records), default=0),
        "adapter_file_bytes_max": max((r.get("adapter_file_bytes", 0) for r in records), default=0),
        "bytes_on_disk_total": sum(r["bytes_on_disk"] for r in records),
        "base_bytes_on_disk": base_bytes,
        "per_segment": records,
    }


def learning_curve(base: BaseModel, snapshot: DataSnapshot, base_ranks: np.ndarray, main: dict[str, np.ndarray],
                   fractions: tuple[float, ...], seed: int) -> dict:
    """Train adapters and full fine-tuning on a fraction of each segment's users, and test on all of them."""
    rng = np.random.default_rng(seed)
    test_segments = snapshot.segments.user_segments[snapshot.split.test.users]
    sizes = np.array([snapshot.segments.members(s).sum() for s in range(len(snapshot.segments.names))])
    small = np.isin(test_segments, np.flatnonzero(sizes < SMALL_SEGMENT))
    curve: dict = {}
    for fraction in (*fractions, 1.0):
        if fraction == 1.0:
            ranks = main
        else:
            chosen = np.zeros(snapshot.log.num_users, dtype=bool)
            for s in range(len(snapshot.segments.names)):
                members = np.flatnonzero(snapshot.segments.members(s))
                if len(members):
                    take = max(1, math.ceil(fraction * len(members)))
                    chosen[rng.choice(members, size=take, replace=False)] = True
            ranks = {"adapters": run_adapters(base, snapshot, chosen)[0],
                     "full": run_full(base, snapshot, base_ranks, chosen)[0]}
        entry: dict = {}
        for name in ("adapters", "full"):
            entry[name] = summarise(ranks[name], seed)
            if small.any():
                entry[name]["segments_below_100_users"] = summarise(ranks[name][small], seed)
        entry["paired_ndcg@10_adapters_vs_full"] = paired_bootstrap(
            ranking_metrics(ranks["full"], K)[f"ndcg@{K}"], ranking_metrics(ranks["adapters"], K)[f"ndcg@{K}"], seed=seed)
        curve[str(fraction)] = entry
        log(f"  curve fraction={fraction:.2f} adapters_ndcg@10={entry['adapters']['ndcg@10']:.4f} "
            f"full_ndcg@10={entry['full']['ndcg@10']:.4f}")
    return curve


# One data set and segment spec.

def pretrain_base(data: DataSet, snapshot: DataSnapshot, epochs: int | None) -> tuple[BaseModel, dict]:
    train = PRETRAIN_DEFAULTS["two_tower"]
    if epochs is not None:
        train = TrainConfig(**{**train.__dict__, "epochs": epochs})
    started = time.perf_counter()
    pretrained = pretrain(snapshot, model_config("two_tower", snapshot), train, on_epoch=lambda r: log(
        f"  pretrain epoch={r['epoch']} valid_ndcg@10={r['valid_ndcg@10']:.4f} {r['seconds']:.1f}s"))
    model = pretrained.model
    state = {k: v.contiguous() for k, v in model.state_dict().items() if ".lora_" not in k}
    return model, {"seconds": time.perf_counter() - started, "best_epoch": pretrained.result.best_epoch,
                   "valid_ndcg@10": pretrained.result.best_score, "parameters": parameter_count(model),
                   "bytes_on_disk": len(safetensors_bytes(state)), "train": train.__dict__}


def run_spec(data: DataSet, spec: str, base: BaseModel, base_info: dict, args: argparse.Namespace,
             curve: bool) -> dict:
    snapshot = load(data, spec)
    log(f"== {data.name} / {spec}: {len(snapshot.segments.names)} segments, {len(snapshot.split.test.users)} test users")
    base_items = base.all_item_embeddings(snapshot.features.item_tags)
    base_ranks = test_ranks(base, snapshot, None, item_vectors=base_items)
    parameters, base_bytes = base_info["parameters"], base_info["bytes_on_disk"]

    shared_ranks, shared_record, shared_peak = run_shared(base, snapshot, base_ranks)
    log(f"  shared kept={shared_record['kept']} {shared_record['seconds_to_early_stop']:.1f}s")
    adapter_ranks, adapter_records, adapter_peak = run_adapters(base, snapshot)
    log(f"  adapters kept={sum(r['kept'] for r in adapter_records)}/{len(adapter_records)} "
        f"{sum(r['seconds_to_early_stop'] for r in adapter_records):.1f}s")
    full_ranks, full_records, full_peak = run_full(base, snapshot, base_ranks)
    log(f"  full kept={sum(r['kept'] for r in full_records)}/{len(full_records)} "
        f"{sum(r['seconds_to_early_stop'] for r in full_records):.1f}s")

    ranks = {"base": base_ranks, "shared": shared_ranks, "full": full_ranks, "adapters": adapter_ranks}
    freezing_summaries = {}
    for method in args.freezing_methods:
        ranks[method], records, peak = run_freezing(base, snapshot, base_ranks, method)
        freezing_summaries[method] = method_summary(records, peak, parameters, base_bytes)
        log(f"  {method} kept={sum(r['kept'] for r in records)}/{len(records)} "
            f"{sum(r['seconds_to_early_stop'] for r in records):.1f}s")
    if data.truth_dir is not None:
        ranks["oracle"] = oracle_ranks(snapshot, data.truth_dir)
    result = compare(snapshot, ranks, args.seed)
    result["methods"] = {
        "shared": method_summary([shared_record], shared_peak, parameters, base_bytes),
        "adapters": method_summary(adapter_records, adapter_peak, parameters, base_bytes),
        "full": method_summary(full_records, full_peak, parameters, base_bytes),
        **freezing_summaries,
    }
    result["segment_sizes"] = snapshot.segments.sizes()
    if curve:
        result["learning_curve"] = learning_curve(base, snapshot, base_ranks,
                                                  {"adapters": adapter_ranks, "full": full_ranks},
                                                  tuple(args.fractions), args.seed)
    result["targets"] = check_targets(data, result, base_info)
    print_table(data.name, spec, result)
    return result


def check_targets(data: DataSet, result: dict, base_info: dict) -> dict:
    """Evaluate the targets of this benchmark on one data set and segment spec."""
    generated = data.truth_dir is not None
    methods, overall = result["methods"], result["overall"]
    param_limit = 0.01 if generated else 0.05
    time_limit = 0.2 if generated else 0.5
    adapter_time = methods["adapters"]["seconds_to_early_stop_total"]
    full_time = methods["full"]["seconds_to_early_stop_total"]
    worse = [name for name, entry in result["segments"].items()
             if entry["adapters"]["paired_ndcg@10_vs_base"]["high"] < 0]
    small = {name: entry for name, entry in result["segments"].items()
             if result["segment_sizes"][name] < SMALL_SEGMENT}
    small_losses = [name for name, entry in small.items() if entry["paired_ndcg@10_adapters_vs_full"]["high"] < 0]
    targets = {
        "trainable_fraction_max": methods["adapters"]["trainable_fraction_of_base_max"],
        "trainable_fraction_limit": param_limit,
        "trainable_met": methods["adapters"]["trainable_fraction_of_base_max"] <= param_limit,
        "time_ratio_adapters_over_full": adapter_time / full_time if full_time else None,
        "time_ratio_limit": time_limit,
        "time_met": bool(full_time) and adapter_time / full_time <= time_limit,
        "overall_adapters_minus_base": overall["adapters"]["paired_ndcg@10_vs_base"],
        "overall_beats_base": overall["adapters"]["paired_ndcg@10_vs_base"]["mean_diff"] > 0,
        "segments_ci_wholly_below_base": worse,
        "no_segment_worse_met": not worse,
        "small_segments": sorted(small),
        "small_segments_where_full_beats_adapters_ci": small_losses,
        "small_segments_mean_adapters_minus_full": {
            name: entry["paired_ndcg@10_adapters_vs_full"]["mean_diff"] for name, entry in small.items()},
        "small_segments_met": not small_losses,
    }
    if generated:
        gap = overall["oracle"]["ndcg@10"] - overall["base"]["ndcg@10"]
        recovered = (overall["adapters"]["ndcg@10"] - overall["base"]["ndcg@10"]) / gap if gap > 0 else None
        targets["oracle_gap_recovered"] = recovered
        targets["oracle_gap_met"] = recovered is not None and recovered >= 0.5
    return targets


def print_table(name: str, spec: str, result: dict) -> None:
    methods = [m for m in ("base", "shared", "full", "adapters", *FREEZING_METHODS, "oracle") if m in result["overall"]]
    log(f"\n{name} / {spec}")
    log(f"{'segment':<16}{'users':>6}" + "".join(f"{m:>13}" for m in methods) + f"{'adapt-base [95% CI]':>28}")
    rows = [(segment, entry) for segment, entry in result["segments"].items()] + [("overall", result["overall"])]
    for label, entry in rows:
        users = entry[methods[0]]["users"]
        cells = "".join(f"{entry[m]['ndcg@10']:>13.4f}" for m in methods)
        paired = entry["adapters"]["paired_ndcg@10_vs_base"]
        log(f"{label:<16}{users:>6}{cells}   {paired['mean_diff']:+.4f} [{paired['low']:+.4f}, {paired['high']:+.4f}]")
    for method in ("shared", "adapters", "full", *FREEZING_METHODS):
        if method not in result["methods"]:
            continue
        summary = result["methods"][method]
        ci = result["overall"][method]["ndcg@10_ci95"]
        log(f"{method:<13} ndcg@10={result['overall'][method]['ndcg@10']:.4f} [{ci[0]:.4f}, {ci[1]:.4f}] "
            f"trainable/segment={summary['trainable_parameters_per_segment_max']:>9,} "
            f"({summary['trainable_fraction_of_base_max']:.2%} of base) time_to_stop={summary['seconds_to_early_stop_total']:.1f}s "
            f"per_step={summary['seconds_per_step'] * 1000:.1f}ms peak_rss+={summary['peak_rss_above_start_mb']:.0f}MiB "
            f"bytes/segment={summary['bytes_on_disk_per_segment_max']:,}")
    log(json.dumps(result["targets"], indent=None, default=str))


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average": list(os.getloadavg())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    choices = ["movielens", "generated", "generated-without-attributes"]
    parser.add_argument("--datasets", nargs="+", default=choices, choices=choices)
    parser.add_argument("--generated-users", type=int, default=2000)
    parser.add_argument("--generated-items", type=int, default=100_000)
    parser.add_argument("--generated-events", type=int, default=100_000)
    parser.add_argument("--fractions", type=float, nargs="*", default=list(FRACTIONS),
                        help="fractions of each segment's users for the learning curve (1.0 is always added)")
    parser.add_argument("--curve-specs", nargs="*", default=["gender_x_age"],
                        help="segment specs that get a learning curve (default: gender_x_age)")
    parser.add_argument("--curve-datasets", nargs="*", default=["movielens", "generated-without-attributes"],
                        help="data sets that get a learning curve")
    parser.add_argument("--pretrain-epochs", type=int, default=None, help="cap on pretraining epochs (default: the demo's)")
    parser.add_argument("--generated-pretrain-epochs", type=int, default=10,
                        help="cap on pretraining epochs on generated data (default: 10)")
    parser.add_argument("--freezing-methods", nargs="*", default=list(FREEZING_METHODS),
                        help="layer-freezing methods to run beside the adapters (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="small generated data and a short pretraining, for a smoke run")
    parser.add_argument("--generated-segment-share", type=float, default=0.0,
                        help="share of each generated user's events drawn from their segment's own favourite "
                             "items (default 0: segments differ only in genre tastes)")
    parser.add_argument("--segment-bias", action="store_true",
                        help="give every adapted dense layer a per-segment bias too (LoRAConfig.segment_bias)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, so that timings do not depend on how many cores are free)")
    parser.add_argument("--work-dir", default=str(ROOT / "data" / "cache" / "bench-adapters"))
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    if args.quick:
        args.generated_users, args.generated_items, args.generated_events = 300, 2000, 15_000
        args.pretrain_epochs = args.pretrain_epochs or 3
        args.fractions = [0.5]
    if args.segment_bias:
        # Every run of this process reads the module-level config, so replace it once here.
        global ADAPTER_CONFIG
        ADAPTER_CONFIG = dataclasses.replace(ADAPTER_CONFIG,
                                             lora=dataclasses.replace(ADAPTER_CONFIG.lora, segment_bias=True))
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    work_dir = Path(args.work_dir)

    started = time.perf_counter()
    report: dict = {"benchmark": "adapters", "machine_at_start": machine(), "arguments": vars(args),
                    "adapter_config": ADAPTER_CONFIG.lora.to_dict(), "adapter_train": ADAPTER_CONFIG.train.__dict__,
                    "full_train": FULL_TRAIN.__dict__, "freezing_train": FREEZING_TRAIN.__dict__,
                    "min_users": ADAPTER_CONFIG.min_users, "datasets": {}}
    preparers: dict[str, Callable[[], DataSet]] = {
        "movielens": lambda: prepare_movielens(work_dir),
        "generated": lambda: prepare_generated(work_dir, args.generated_users, args.generated_items,
                                               args.generated_events, args.seed,
                                               segment_share=args.generated_segment_share),
        "generated-without-attributes": lambda: prepare_generated(
            work_dir, args.generated_users, args.generated_items, args.generated_events, args.seed,
            with_attributes=False, segment_share=args.generated_segment_share),
    }
    for key in args.datasets:
        data = preparers[key]()
        first = load(data, data.specs[0])
        log(f"== {data.name}: {first.log.num_users} users, {first.log.num_items} items, "
            f"{len(first.log.items)} events; pretraining")
        epochs = args.pretrain_epochs if key == "movielens" else (args.pretrain_epochs or args.generated_pretrain_epochs)
        base, base_info = pretrain_base(data, first, epochs)
        entry: dict = {"description": data.description, "users": first.log.num_users, "items": first.log.num_items,
                       "events": int(len(first.log.items)), "base": base_info, "specs": {}}
        for spec in data.specs:
            curve = spec in args.curve_specs and key in args.curve_datasets
            entry["specs"][spec] = run_spec(data, spec, base, base_info, args, curve)
            report["datasets"][data.name] = entry
            write(report, Path(args.out))
    report["machine_at_end"] = machine()
    report["seconds"] = time.perf_counter() - started
    write(report, Path(args.out))
    log(f"wrote {args.out} in {report['seconds']:.0f}s")


def write(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
