"""Training speed of both model families: seconds per epoch, samples per second, time to quality.

For each data set and model family, pretrains with the demo's defaults and records, per epoch,
the training seconds (validation excluded), samples per second (training examples: events for
the two-tower model, windows of up to 50 items for SASRec), and the wall time from the start of
data preparation to the first epoch whose validation NDCG@10 reaches the target.

    .venv/bin/python benchmarks/train.py                       # MovieLens-100K and 1M generated
    .venv/bin/python benchmarks/train.py --datasets movielens  # one data set

Writes benchmarks/results/train.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from recsys_peft.config import PipelineConfig
from recsys_peft.dataset.snapshot import load_snapshot
from recsys_peft.dataset.synthetic import generate_log
from recsys_peft.ingest.fetch import fetch_movielens_100k
from recsys_peft.ingest.ingest import ingest_source
from recsys_peft.ingest.spec import load_source_spec
from recsys_peft.segments import load_segment_spec
from recsys_peft.training.loop import TrainConfig
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["movielens", "generated_1m"], choices=sorted(TARGETS))
    parser.add_argument("--models", nargs="+", default=["two_tower", "sasrec"], choices=["two_tower", "sasrec"])
    parser.add_argument("--max-epochs-generated", type=int, default=10,
                        help="cap on epochs for the 1M-event data set (default: 10)")
    parser.add_argument("--work-dir", default="data/cache/bench-train")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)

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

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "train",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "runs": runs,
    }, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
