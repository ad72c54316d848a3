"""Training speed of both model families: seconds per epoch, samples per second, time to quality.

For each data set and model family, pretrains with the demo's defaults and records, per epoch,
the training seconds (validation excluded), samples per second (training examples: events for
the two-tower model, windows of up to 50 items for SASRec), and the wall time from the start of
data preparation to the first epoch whose validation NDCG@10 reaches the target.

    .venv/bin/python benchmarks/train.py                       # MovieLens-100K and 1M generated
    .venv/bin/python benchmarks/train.py --datasets movielens  # one data set

With ``--attention``, it compares SASRec's dense and sparse attention instead, on generated long
sessions at each of ``--history-lengths`` and on MovieLens-100K at ``--movielens-history``:
peak memory, seconds per training epoch, and test NDCG@10 with a 95% bootstrap interval. Each
run is a fresh subprocess, so its peak resident memory (``ru_maxrss``) belongs to that run
alone; the figure reported is the peak minus the resident memory just before training, with
the data loaded and the model built. Both attention kinds share every other setting; the long
sessions use the sampled softmax, because full-catalogue logits at every one of B * L positions
would outweigh attention itself.

    .venv/bin/python benchmarks/train.py --attention dense sparse --history-lengths 200 500 1000

Writes benchmarks/results/train.json; the attention comparison goes under its ``attention`` key
and leaves the speed runs in the file as they are (and the other way round).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import torch

from recsys_peft.config import PipelineConfig
from recsys_peft.dataset.snapshot import load_snapshot
from recsys_peft.dataset.synthetic import generate_log
from recsys_peft.evaluation.bootstrap import bootstrap_ci
from recsys_peft.evaluation.metrics import ranking_metrics
from recsys_peft.evaluation.ranking import rank_targets
from recsys_peft.ingest.fetch import fetch_movielens_100k
from recsys_peft.ingest.ingest import ingest_source
from recsys_peft.ingest.spec import load_source_spec
from recsys_peft.segments import load_segment_spec
from recsys_peft.models.sasrec import SASRecModel
from recsys_peft.training.loop import TrainConfig, fit_loss
from recsys_peft.training.objectives import objective
from recsys_peft.training.pretrain import model_config, pretrain

RESULTS = Path(__file__).parent / "results" / "train.json"
TARGETS = {"movielens": 0.095, "generated_1m": None}  # None: 90% of the best validation NDCG seen


def prepare(dataset: str, work: Path, config: PipelineConfig) -> tuple[Path, str]:
    if dataset == "movielens":
        raw = fetch_movielens_100k(config.raw_dir)
        spec = load_source_spec(config.source_spec)
    else:
        log = generate_log(work / "raw-1m", 1_000_000, seed=0)
        raw, spec = log.folder, load_source_spec(log.spec_path)
    store = work / f"store-{dataset}"
    ingest_source(spec, raw, store)
    return store, spec.name


def run(dataset: str, family: str, store: Path, max_epochs: int | None) -> dict:
    config = PipelineConfig(model=family)
    started = time.perf_counter()
    snapshot = load_snapshot(store, load_segment_spec(config.segment_spec), config.user_attributes)
    train = config.pretrain
    if max_epochs is not None:
        train = TrainConfig(**{**train.__dict__, "epochs": min(train.epochs, max_epochs)})
    prepared = time.perf_counter() - started

    epochs: list[dict] = []
    result = pretrain(snapshot, model_config(family, snapshot, **config.resolved_model_overrides()), train,
                      on_epoch=lambda record: epochs.append({**record, "since_start": time.perf_counter() - started}))
    best = result.result.best_score
    target = TARGETS[dataset] if TARGETS[dataset] is not None else 0.9 * best
    reached = next((e["since_start"] for e in epochs if e["valid_ndcg@10"] >= target), None)
    train_seconds = [e["train_seconds"] for e in epochs]
    examples = epochs[0]["examples"] if epochs else 0
    per_epoch = sum(train_seconds) / max(len(train_seconds), 1)
    return {
        "dataset": dataset, "model": family, "examples_per_epoch": examples,
        "epochs_run": len(epochs), "best_epoch": result.result.best_epoch, "best_valid_ndcg@10": best,
        "seconds_per_epoch": per_epoch, "samples_per_second": examples / per_epoch if per_epoch else 0.0,
        "data_preparation_seconds": prepared, "target_valid_ndcg@10": target,
        "seconds_to_target": reached, "total_seconds": time.perf_counter() - started,
        "epochs": epochs,
    }


# Dense against sparse attention.

def prepare_long_sessions(work: Path, users: int, events_per_user: int, items: int) -> Path:
    """Generate and ingest a log where every user has about ``events_per_user`` events."""
    folder = work / f"long-u{users}-e{events_per_user}-i{items}"
    if not (folder / "store" / "manifest.json").is_file():
        log = generate_log(folder / "raw", users * events_per_user, num_users=users, num_items=items, seed=0,
                           activity_spread=0.0)
        ingest_source(load_source_spec(log.spec_path), log.folder, folder / "store")
    return folder / "store"


def attention_run(settings: dict) -> dict:
    """Train SASRec once with ``settings`` and measure it; runs inside its own subprocess."""
    torch.set_num_threads(settings["threads"])
    config = PipelineConfig(model="sasrec")
    snapshot = load_snapshot(Path(settings["store"]), load_segment_spec(config.segment_spec), config.user_attributes)
    overrides = {**config.resolved_model_overrides(), "max_length": settings["history"],
                 "attention": settings["attention"], "attention_window": settings["window"],
                 "attention_stride": settings["stride"], "loss": settings["loss"]}
    train = TrainConfig(epochs=settings["epochs"], batch_size=settings["batch_size"],
                        learning_rate=settings["learning_rate"], patience=settings["epochs"], seed=0)
    torch.manual_seed(train.seed)
    model = SASRecModel(model_config("sasrec", snapshot, **overrides))
    # Validation and test score users in chunks of one batch, so evaluation never needs more
    # memory than a training step and the peak belongs to training.
    chunk = settings["batch_size"]

    def ndcg_values(targets) -> np.ndarray:
        items = model.all_item_embeddings(snapshot.features.item_tags)
        ranks = rank_targets(model, snapshot.log, snapshot.features, targets, items, chunk=chunk)
        return ranking_metrics(ranks, 10)["ndcg@10"]

    num_examples, batch_loss = objective(model, snapshot, seed=train.seed)
    parameters = [p for p in model.parameters() if p.requires_grad and p.numel() > 0]
    rss_before = psutil.Process().memory_info().rss
    result = fit_loss(model, parameters, num_examples, batch_loss,
                      lambda: float(ndcg_values(snapshot.split.valid).mean()), train)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024      # Linux reports KiB
    test = ndcg_values(snapshot.split.test)
    mean, low, high = bootstrap_ci(test, seed=0)
    epoch_seconds = [e["train_seconds"] for e in result.history[1:]]
    return {
        **{k: v for k, v in settings.items() if k not in ("store", "threads")},
        "training_windows": num_examples,
        "peak_memory_mb": (peak - rss_before) / 2**20,
        "seconds_per_epoch": float(np.mean(epoch_seconds)),
        "best_epoch": result.best_epoch, "best_valid_ndcg@10": result.best_score,
        "test_ndcg@10": mean, "test_ndcg@10_ci95": [low, high], "test_users": int(len(test)),
    }


def run_attention_subprocess(settings: dict) -> dict:
    command = [sys.executable, __file__, "--attention-worker", json.dumps(settings)]
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        raise RuntimeError(f"attention run {settings['attention']} at history {settings['history']} failed "
                           f"(exit {finished.returncode}):\n{finished.stderr[-4000:]}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def compare_attention(args: argparse.Namespace, work: Path) -> list[dict]:
    """Run every (data set, history length, attention) combination; print one line per run."""
    cases = []
    if "long" in args.attention_datasets:
        store = prepare_long_sessions(work, args.long_users, args.long_events_per_user, args.long_items)
        cases += [("generated_long", store, length, "sampled_softmax") for length in args.history_lengths]
    if "movielens" in args.attention_datasets:
        store, _ = prepare("movielens", work, PipelineConfig())
        cases.append(("movielens", store, args.movielens_history, "full_softmax"))

    runs = []
    for dataset, store, length, loss in cases:
        for attention in args.attention:
            settings = {"dataset": dataset, "store": str(store), "history": length, "attention": attention,
                        "window": args.attention_window, "stride": args.attention_stride, "loss": loss,
                        "epochs": args.attention_epochs, "batch_size": args.attention_batch_size,
                        "learning_rate": args.attention_learning_rate, "threads": args.threads}
            run = run_attention_subprocess(settings)
            runs.append(run)
            low, high = run["test_ndcg@10_ci95"]
            print(f"dataset={dataset} history={length} attention={attention} "
                  f"peak_memory_mb={run['peak_memory_mb']:.0f} seconds_per_epoch={run['seconds_per_epoch']:.1f} "
                  f"test_ndcg@10={run['test_ndcg@10']:.4f} [{low:.4f}, {high:.4f}]", flush=True)
    return runs


def attention_targets(runs: list[dict]) -> list[dict]:
    """Compare each sparse run with the dense run of the same data set and history length."""
    dense = {(r["dataset"], r["history"]): r for r in runs if r["attention"] == "dense"}
    checks = []
    for run in runs:
        reference = dense.get((run["dataset"], run["history"]))
        if run["attention"] != "sparse" or reference is None:
            continue
        low, high = reference["test_ndcg@10_ci95"]
        checks.append({
            "dataset": run["dataset"], "history": run["history"],
            "memory_ratio_dense_over_sparse": reference["peak_memory_mb"] / max(run["peak_memory_mb"], 1e-9),
            "epoch_speedup_dense_over_sparse": reference["seconds_per_epoch"] / run["seconds_per_epoch"],
            "sparse_ndcg@10_inside_dense_ci95": low <= run["test_ndcg@10"] <= high,
            "sparse_minus_dense_ndcg@10": run["test_ndcg@10"] - reference["test_ndcg@10"],
        })
    return checks


def write_results(path: Path, key: str, value: object) -> None:
    """Set ``key`` in the results file, keeping what other modes of this script wrote there."""
    report = json.loads(path.read_text()) if path.is_file() else {"benchmark": "train"}
    report[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def machine() -> dict:
    return {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average": list(os.getloadavg())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["movielens", "generated_1m"], choices=sorted(TARGETS))
    parser.add_argument("--models", nargs="+", default=["two_tower", "sasrec"], choices=["two_tower", "sasrec"])
    parser.add_argument("--max-epochs-generated", type=int, default=10,
                        help="cap on epochs for the 1M-event data set (default: 10)")
    parser.add_argument("--work-dir", default="data/cache/bench-train")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results file (default: {RESULTS})")
    attention = parser.add_argument_group("dense against sparse attention (SASRec)")
    attention.add_argument("--attention", nargs="+", choices=["dense", "sparse"],
                           help="compare these attention kinds instead of running the speed benchmark")
    attention.add_argument("--history-lengths", nargs="+", type=int, default=[200, 500, 1000],
                           help="history lengths (max_length) on generated long sessions (default: 200 500 1000)")
    attention.add_argument("--attention-datasets", nargs="+", choices=["long", "movielens"],
                           default=["long", "movielens"], help="data sets of the comparison (default: both)")
    attention.add_argument("--movielens-history", type=int, default=200,
                           help="history length on MovieLens-100K (default: 200)")
    attention.add_argument("--long-users", type=int, default=64, help="users of the long-session log (default: 64)")
    attention.add_argument("--long-events-per-user", type=int, default=1100,
                           help="events per user of the long-session log (default: 1100)")
    attention.add_argument("--long-items", type=int, default=1000, help="items of the long-session log (default: 1000)")
    attention.add_argument("--attention-window", type=int, default=32, help="sparse local window (default: 32)")
    attention.add_argument("--attention-stride", type=int, default=64, help="sparse stride (default: 64)")
    attention.add_argument("--attention-epochs", type=int, default=2, help="training epochs per run (default: 2)")
    attention.add_argument("--attention-batch-size", type=int, default=32, help="windows per batch (default: 32)")
    attention.add_argument("--attention-learning-rate", type=float, default=2e-3, help="Adam rate (default: 2e-3)")
    attention.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                           help="torch threads (default: all cores); on a machine shared with other jobs, 1 "
                                "avoids threads waiting on each other")
    attention.add_argument("--attention-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.attention_worker:
        print(json.dumps(attention_run(json.loads(args.attention_worker))))
        return
    torch.set_num_threads(args.threads)
    load_at_start = os.getloadavg()[0]
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    if args.attention:
        started = machine()
        runs = compare_attention(args, work)
        write_results(args.out, "attention", {"machine_at_start": started, "machine_at_end": machine(),
                                    "arguments": {k: str(v) if isinstance(v, Path) else v
                                                  for k, v in vars(args).items() if k != "attention_worker"},
                                    "runs": runs, "targets": attention_targets(runs)})
        print(f"wrote {args.out}")
        return

    runs = []
    for dataset in args.datasets:
        store, _ = prepare(dataset, work, PipelineConfig())
        for family in args.models:
            cap = args.max_epochs_generated if dataset == "generated_1m" else None
            result = run(dataset, family, store, cap)
            runs.append(result)
            reached = result["seconds_to_target"]
            print(f"dataset={dataset} model={family} examples={result['examples_per_epoch']} "
                  f"seconds_per_epoch={result['seconds_per_epoch']:.2f} "
                  f"samples_per_second={result['samples_per_second']:.0f} "
                  f"best_valid_ndcg@10={result['best_valid_ndcg@10']:.4f} (epoch {result['best_epoch']}) "
                  f"target={result['target_valid_ndcg@10']:.4f} "
                  f"seconds_to_target={'not reached' if reached is None else f'{reached:.1f}'}", flush=True)

    write_results(args.out, "machine", {"platform": platform.platform(), "cpus": os.cpu_count(),
                              "torch_threads": torch.get_num_threads(),
                              "load_average_1min": {"start": load_at_start, "end": os.getloadavg()[0]}})
    write_results(args.out, "runs", runs)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
