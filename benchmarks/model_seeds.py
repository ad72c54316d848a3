"""Base and adapted NDCG@10 of one model family on MovieLens-100K over three seeds.

Runs the pipeline's stages in-process (no Prefect server) with the demo's default config for
the family: leave-one-out by time, full-catalogue ranking, seen items excluded, ties against the
model. Prints one line per seed and writes benchmarks/results/MODEL_seeds.json.

    .venv/bin/python benchmarks/model_seeds.py --model two_tower [--seeds 0 1 2]
    .venv/bin/python benchmarks/model_seeds.py --model sasrec
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from recsys_peft.config import PipelineConfig
from recsys_peft.dataset.snapshot import load_snapshot
from recsys_peft.evaluation.baselines import most_popular_ranks
from recsys_peft.evaluation.metrics import ranking_metrics
from recsys_peft.evaluation.report import metrics_report, test_ranks
from recsys_peft.ingest.fetch import fetch_movielens_100k
from recsys_peft.ingest.ingest import ingest_source
from recsys_peft.ingest.spec import load_source_spec
from recsys_peft.segments import load_segment_spec
from recsys_peft.training.finetune import adapter_slots, finetune_segment, stack_adapters
from recsys_peft.training.pretrain import model_config, pretrain

RESULTS_DIR = Path(__file__).parent / "results"


def run_seed(config: PipelineConfig, snapshot) -> dict:
    started = time.perf_counter()
    architecture = model_config(config.model, snapshot, **config.resolved_model_overrides())
    pretrained = pretrain(snapshot, architecture, config.pretrain)
    pretrain_seconds = time.perf_counter() - started
    adapters = [finetune_segment(pretrained.model, snapshot, s, config.finetune)
                for s in range(len(snapshot.segments.names))]
    finetune_seconds = time.perf_counter() - started - pretrain_seconds
    adapted = stack_adapters(pretrained.model, adapters, len(snapshot.segments.names), config.finetune.lora)
    ranks = test_ranks(snapshot, {"base": (pretrained.model, None),
                                  "adapted": (adapted, adapter_slots(snapshot, adapters))})
    report = metrics_report(snapshot, ranks, seed=config.seed)
    overall = report["overall"]
    return {
        "seed": config.seed,
        "base_ndcg@10": overall["base"]["ndcg@10"], "base_hr@10": overall["base"]["hr@10"],
        "adapted_ndcg@10": overall["adapted"]["ndcg@10"], "adapted_hr@10": overall["adapted"]["hr@10"],
        "paired_diff_ndcg@10": overall["paired_ndcg@10"],
        "adapters_kept": sum(a.used for a in adapters),
        "base_best_epoch": pretrained.result.best_epoch,
        "base_valid_ndcg@10": pretrained.result.best_score,
        "pretrain_history": pretrained.result.history,
        "pretrain_seconds": pretrain_seconds, "finetune_seconds": finetune_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="two_tower", choices=["two_tower", "sasrec"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work-dir", default="data/cache/bench")
    parser.add_argument("--patience", type=int, default=None,
                        help="pretraining early-stopping patience in epochs (default: the family's)")
    parser.add_argument("--learning-rate", type=float, default=None, help="pretraining Adam rate (default: the family's)")
    parser.add_argument("--dropout", type=float, default=None,
                        help="SASRec dropout and attention dropout (default: the family's)")
    parser.add_argument("--ema-decay", type=float, default=None,
                        help="pretraining weight average decay, 0 for none (default: the family's)")
    parser.add_argument("--window-stride", type=int, default=None,
                        help="SASRec training windows start every N events (default: the family's)")
    parser.add_argument("--model-override", action="append", default=[], metavar="KEY=VALUE",
                        help="an architecture setting on top of the family's defaults, e.g. embedding_dim=128 "
                             "(repeatable; values are read as YAML)")
    parser.add_argument("--out", default=None, help="results file (default: benchmarks/results/MODEL_seeds.json)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch threads (default: all cores); on a machine shared with other jobs, 1 "
                             "avoids threads waiting on each other")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_at_start = os.getloadavg()[0]

    config = PipelineConfig(model=args.model)
    if args.patience is not None:
        config = dataclasses.replace(config, pretrain=dataclasses.replace(config.pretrain, patience=args.patience))
    if args.learning_rate is not None:
        config = dataclasses.replace(config, pretrain=dataclasses.replace(config.pretrain,
                                                                          learning_rate=args.learning_rate))
    if args.dropout is not None:
        config = dataclasses.replace(config, model_overrides={**config.model_overrides, "dropout": args.dropout,
                                                              "attention_dropout": args.dropout})
    if args.ema_decay is not None:
        config = dataclasses.replace(config, pretrain=dataclasses.replace(config.pretrain, ema_decay=args.ema_decay))
    if args.window_stride is not None:
        config = dataclasses.replace(config, model_overrides={**config.model_overrides,
                                                              "window_stride": args.window_stride})
    for item in args.model_override:
        key, _, value = item.partition("=")
        config = dataclasses.replace(config, model_overrides={**config.model_overrides, key: yaml.safe_load(value)})
    raw = fetch_movielens_100k(config.raw_dir)
    store = Path(args.work_dir) / "store"
    ingest_source(load_source_spec(config.source_spec), raw, store)
    snapshot = load_snapshot(store, load_segment_spec(config.segment_spec), config.user_attributes)

    popular = ranking_metrics(most_popular_ranks(snapshot.log, snapshot.split, snapshot.split.test), 10)
    runs = []
    for seed in args.seeds:
        run = run_seed(config.with_seed(seed), snapshot)
        runs.append(run)
        diff = run["paired_diff_ndcg@10"]
        print(f"seed={seed} base_ndcg@10={run['base_ndcg@10']:.4f} adapted_ndcg@10={run['adapted_ndcg@10']:.4f} "
              f"diff={diff['mean_diff']:+.4f} ci95=[{diff['low']:+.4f},{diff['high']:+.4f}] "
              f"base_hr@10={run['base_hr@10']:.4f} adapters_kept={run['adapters_kept']} "
              f"pretrain={run['pretrain_seconds']:.1f}s finetune={run['finetune_seconds']:.1f}s", flush=True)

    base = np.array([r["base_ndcg@10"] for r in runs])
    adapted = np.array([r["adapted_ndcg@10"] for r in runs])
    summary = {
        "benchmark": f"{args.model}_seeds",
        "model": args.model,
        "config": config.to_dict(),
        "data": "MovieLens-100K (recbole==1.2.1 atomic files), leave-one-out by time",
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_average_1min": {"start": load_at_start, "end": os.getloadavg()[0]}},
        "most_popular_ndcg@10": float(popular["ndcg@10"].mean()),
        "most_popular_hr@10": float(popular["hr@10"].mean()),
        "runs": runs,
        "base_ndcg@10_mean": float(base.mean()), "base_ndcg@10_std": float(base.std(ddof=1)) if len(base) > 1 else 0.0,
        "adapted_ndcg@10_mean": float(adapted.mean()),
        "adapted_ndcg@10_std": float(adapted.std(ddof=1)) if len(adapted) > 1 else 0.0,
    }
    print(f"most_popular_ndcg@10={summary['most_popular_ndcg@10']:.4f} "
          f"base_ndcg@10_mean={summary['base_ndcg@10_mean']:.4f} (std {summary['base_ndcg@10_std']:.4f}) "
          f"adapted_ndcg@10_mean={summary['adapted_ndcg@10_mean']:.4f} (std {summary['adapted_ndcg@10_std']:.4f})")
    results = Path(args.out) if args.out else RESULTS_DIR / f"{args.model}_seeds.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"wrote {results}")


if __name__ == "__main__":
    main()
