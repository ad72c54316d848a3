"""Every in-project baseline on MovieLens-100K, leave-one-out by time or split at one cut-off time.

Most popular, most popular per segment (gender x age band), EASE and item-kNN, each ranked
over the full catalogue with the items the user had before the target excluded and ties counted
against the baseline. EASE's l2 and item-kNN's neighbour count are chosen on validation
NDCG@10, and the test targets are ranked once, with the chosen setting. Prints one line per
baseline and writes benchmarks/results/baselines.json, or baselines_temporal.json with
--protocol temporal (one cut-off time for all users, see docs/evaluation.md).

    .venv/bin/python benchmarks/baselines.py [--protocol temporal --test-fraction 0.1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from recsys_peft.config import PipelineConfig
from recsys_peft.dataset.log import InteractionLog
from recsys_peft.dataset.snapshot import load_snapshot
from recsys_peft.dataset.split import Targets, cutoff_for_fraction, temporal_split
from recsys_peft.evaluation.baselines import (
    ScoreFunction,
    popularity_scorer,
    rank_with,
    segment_popularity_scorer,
    top_items_with,
    tune_on_validation,
)
from recsys_peft.evaluation.bootstrap import bootstrap_ci
from recsys_peft.evaluation.ease import ease_scorer, fit_ease
from recsys_peft.evaluation.item_knn import fit_item_knn, item_knn_scorer
from recsys_peft.evaluation.metrics import catalogue_coverage, ranking_metrics
from recsys_peft.ingest.fetch import fetch_movielens_100k
from recsys_peft.ingest.ingest import ingest_source
from recsys_peft.ingest.spec import load_source_spec
from recsys_peft.segments import load_segment_spec

RESULTS = Path(__file__).parent / "results" / "baselines.json"
K = 10
EASE_L2_GRID = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)
KNN_NEIGHBOURS_GRID = (5, 10, 20, 50, 100, 200, 400, 1000)


def summarise_test(log: InteractionLog, targets: Targets, score: ScoreFunction, bootstrap_seed: int) -> dict:
    """Rank the test targets once and summarise them: means, 95% bootstrap intervals, coverage."""
    per_user = ranking_metrics(rank_with(score, log, targets), K)
    summary: dict = {"users": len(targets.users)}
    for name, values in per_user.items():
        mean, low, high = bootstrap_ci(values, seed=bootstrap_seed)
        summary[name] = mean
        summary[f"{name}_ci95"] = [low, high]
    lists = top_items_with(score, log, targets, K)
    summary[f"coverage@{K}"] = catalogue_coverage(lists, log.num_items)
    return summary


def tuned(name: str, build, grid, log: InteractionLog, valid: Targets) -> tuple[ScoreFunction, dict]:
    """Choose the setting on validation NDCG@10 and return the refitted score function."""
    started = time.perf_counter()
    tuning = tune_on_validation(build, grid, log, valid, K)
    score = build(tuning.best)
    settings = {"setting": name, "value": tuning.best,
                "validation_ndcg@10": {str(value): ndcg for value, ndcg in tuning.ndcg.items()},
                "tuning_seconds": time.perf_counter() - started}
    return score, settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", default="data/cache/bench", help="folder for the ingested store")
    parser.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap resampling")
    parser.add_argument("--protocol", choices=("leave_one_out", "temporal"), default="leave_one_out",
                        help="leave-one-out by time, or one global cut-off time for all users")
    parser.add_argument("--test-fraction", type=float, default=0.1,
                        help="with --protocol temporal: about this fraction of all events is at or after the "
                             "cut-off (default: 0.1)")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    config = PipelineConfig()
    raw = fetch_movielens_100k(config.raw_dir)
    store = Path(args.work_dir) / "store"
    ingest_source(load_source_spec(config.source_spec), raw, store)
    snapshot = load_snapshot(store, load_segment_spec(config.segment_spec), config.user_attributes)
    log = snapshot.log
    if args.protocol == "temporal":
        split = temporal_split(log, cutoff_for_fraction(log, args.test_fraction))
    else:
        split = snapshot.split
    train = split.train_positions

    if args.protocol == "temporal":
        cutoff = datetime.fromtimestamp(split.cutoff / 1e6, tz=timezone.utc).isoformat()
        protocol = {"name": "temporal", "cutoff": cutoff, "test_fraction": args.test_fraction,
                    "users_without_later_event": split.users_without_later_event,
                    "users_without_history": split.users_without_history}
    else:
        protocol = {"name": "leave_one_out"}
    print(f"split {protocol} test_users={len(split.test.users)} validation_users={len(split.valid.users)}")

    results: dict = {}
    started = time.perf_counter()
    results["most_popular"] = {"settings": {}, "fit_seconds": time.perf_counter() - started,
                               "test": summarise_test(log, split.test, popularity_scorer(log, train), args.bootstrap_seed)}
    started = time.perf_counter()
    segment_score = segment_popularity_scorer(log, train, snapshot.segments.user_segments,
                                              len(snapshot.segments.names))
    results["most_popular_segment"] = {"settings": {"segments": len(snapshot.segments.names),
                                                    "users_without_segment": snapshot.segments.unassigned_users},
                                       "fit_seconds": time.perf_counter() - started,
                                       "test": summarise_test(log, split.test, segment_score, args.bootstrap_seed)}

    score, settings = tuned("l2", lambda l2: ease_scorer(log, fit_ease(log, train, l2)), EASE_L2_GRID, log, split.valid)
    results["ease"] = {"settings": settings, "test": summarise_test(log, split.test, score, args.bootstrap_seed)}
    score, settings = tuned("neighbours", lambda n: item_knn_scorer(log, fit_item_knn(log, train, n)),
                            KNN_NEIGHBOURS_GRID, log, split.valid)
    results["item_knn"] = {"settings": settings, "test": summarise_test(log, split.test, score, args.bootstrap_seed)}

    for name, result in results.items():
        test = result["test"]
        low, high = test["ndcg@10_ci95"]
        setting = result["settings"].get("setting")
        chosen = f" {setting}={result['settings']['value']}" if setting else ""
        print(f"{name:<22} ndcg@10={test['ndcg@10']:.4f} [{low:.4f}, {high:.4f}] hr@10={test['hr@10']:.4f} "
              f"mrr@10={test['mrr@10']:.4f} recall@10={test['recall@10']:.4f} "
              f"coverage@10={test['coverage@10']:.4f}{chosen}")

    summary = {
        "benchmark": "baselines",
        "data": "MovieLens-100K (recbole==1.2.1 atomic files)",
        "split": protocol,
        "protocol": "full catalogue; items seen before the target excluded; ties count against the model; "
                    "per-user means with 95% percentile bootstrap intervals (1000 resamples)",
        "test_users": int(len(split.test.users)),
        "validation_users": int(len(split.valid.users)),
        "users_without_target": int(split.users_without_target),
        "catalogue_items": int(log.num_items),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "baselines": results,
    }
    results_path = RESULTS if args.protocol == "leave_one_out" else RESULTS.with_name("baselines_temporal.json")
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {results_path}")


if __name__ == "__main__":
    main()
