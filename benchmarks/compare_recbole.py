"""RecBole 1.2.1's SASRec and BPR on this project's leave-one-out split, scored by this project.

Steps:
1. Install RecBole 1.2.1 into its own virtual environment under data/cache/ (once). RecBole
   needs numpy below 2 and setuptools below 70, and torch 2.13.0 requires setuptools 77 or
   later, so RecBole and torch are installed without dependencies and their requirements are
   listed here. Runs set TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1, because RecBole reloads its own
   checkpoints with torch.load, whose default since torch 2.6 rejects them.
2. Write MovieLens-100K as RecBole atomic files. The timestamp column contains the event's log
   position, which is unique and follows this project's order (timestamp, then position in the
   source), so RecBole's leave-one-out by time (last event test, second-to-last validation)
   picks exactly this project's targets.
3. Train each RecBole model in that environment (this file, run with --worker), with early
   stopping on RecBole's validation NDCG@10, and reload the best checkpoint. Then write each
   test user's top-K items as of the test target, with the user's earlier items excluded.
4. Score those lists, and optionally this project's recommendations file, with this project's
   evaluator, and write benchmarks/results/compare_recbole.json.

    .venv/bin/python benchmarks/compare_recbole.py [--epochs 2] [--models SASRec BPR]
        [--recommendations data/demo/recommendations]

A list carries no scores, so ties inside a list cannot be counted against the model here. Each
model orders its own ties, unlike the baselines, which are ranked from scores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "compare_recbole.json"
DATASET = "ml-100k-loo"
K = 10

# Requirements of RecBole 1.2.1 as its wheel declares them, with numpy and setuptools capped as it
# needs, and those of torch 2.13.0, because both packages are installed with --no-deps (below). pandas is
# capped below 3, a release that RecBole 1.2.1 predates.
RECBOLE_REQUIREMENTS = (
    "numpy<2", "setuptools<70", "scipy>=1.6.0", "pandas>=1.3.0,<3", "tqdm>=4.48.2", "colorlog==4.7.2",
    "colorama==0.4.4", "scikit-learn>=0.23.2", "pyyaml>=5.1.0", "tensorboard>=2.5.0",
    "tabulate>=0.8.10", "plotly>=4.0.0", "texttable>=0.9.0",
    "psutil>=5.9.0", "ray>=1.13.0,<=2.6.3",
)
TORCH_REQUIREMENTS = ("filelock", "typing-extensions>=4.10.0", "sympy>=1.13.3", "networkx>=2.5.1", "jinja2",
                      "fsspec>=0.8.5")
# Installed with --no-deps: thop declares torch without a version, so pip would otherwise pull
# the newest CUDA build of torch and its nvidia packages (several GB) before torch 2.13.0 replaces it.
PINNED = ("torch==2.13.0", "recbole==1.2.1", "thop>=0.1.1.post2207130030")

# RecBole settings per model. SASRec follows RecBole's default architecture, spelled out here
# so that a change of RecBole's defaults cannot change the benchmark. BPR keeps RecBole's
# defaults (64-dimension embeddings, batch 2048, one uniform negative). Pop, RecBole's most
# popular model, is not run by default: in RecBole 1.2.1 it adds 1 per training batch that
# contains an item (an indexed += with repeated indices), so it counts batches, not events, and
# ranks worse than benchmarks/baselines.py's most popular.
MODEL_SETTINGS = {
    "SASRec": {
        "n_layers": 2, "n_heads": 2, "hidden_size": 64, "inner_size": 256, "MAX_ITEM_LIST_LENGTH": 50,
        "hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5, "hidden_act": "gelu", "loss_type": "CE",
        "train_batch_size": 256, "train_neg_sample_args": None,
    },
    "BPR": {"embedding_size": 64},
    "Pop": {},
}


# ----- this project's side (main virtual environment) -----

def ensure_recbole_venv(venv: Path) -> Path:
    """Create the RecBole environment unless a finished one is there, and return its python."""
    python = venv / "bin" / "python"
    marker = venv / ".recbole-1.2.1-installed"
    if marker.is_file():
        return python
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run(pip + list(RECBOLE_REQUIREMENTS) + list(TORCH_REQUIREMENTS), check=True)
    subprocess.run(pip + ["--no-deps"] + list(PINNED), check=True)
    marker.write_text("\n".join(RECBOLE_REQUIREMENTS + TORCH_REQUIREMENTS + PINNED) + "\n")
    return python


def write_atomic_files(snapshot, folder: Path) -> None:
    """Write the interaction log as RecBole's ``.inter`` file, with log positions as timestamps."""
    log = snapshot.log
    user_ids, item_ids = snapshot.user_ids, snapshot.item_ids
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    lines += [f"{user_ids[u]}\t{item_ids[i]}\t{p}" for p, (u, i) in enumerate(zip(log.users, log.items))]
    (folder / f"{DATASET}.inter").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_requests(snapshot, path: Path) -> None:
    """Write one line per test user: the user id, then the item ids before the target, oldest first."""
    log, test = snapshot.log, snapshot.split.test
    user_ids, item_ids = snapshot.user_ids, snapshot.item_ids
    lines = []
    for user, position in zip(test.users, test.positions):
        history = " ".join(item_ids[i] for i in log.items[log.offsets[user]:position])
        lines.append(f"{user_ids[user]}\t{history}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def score_lists(name: str, frame, snapshot, bootstrap_seed: int) -> tuple[dict, "object"]:
    """Score one model's list table with this project's protocol, and return the summary and the ranks."""
    from recsys_peft.evaluation.bootstrap import bootstrap_ci
    from recsys_peft.evaluation.lists import lists_for_targets, target_list_ranks
    from recsys_peft.evaluation.metrics import catalogue_coverage, ranking_metrics

    test = snapshot.split.test
    lists = lists_for_targets(frame, snapshot.user_ids, snapshot.item_ids, snapshot.log, test, K)
    ranks = target_list_ranks(lists, test)
    summary: dict = {"users": int(len(test.users)), "users_without_list": lists.users_without_list,
                     "unknown_items": lists.unknown_items, "seen_items_removed": lists.seen_items}
    for metric, values in ranking_metrics(ranks, K).items():
        mean, low, high = bootstrap_ci(values, seed=bootstrap_seed)
        summary[metric] = mean
        summary[f"{metric}_ci95"] = [low, high]
    summary[f"coverage@{K}"] = catalogue_coverage(lists.items, snapshot.log.num_items)
    print(f"{name:<14} ndcg@10={summary['ndcg@10']:.4f} [{summary['ndcg@10_ci95'][0]:.4f}, "
          f"{summary['ndcg@10_ci95'][1]:.4f}] hr@10={summary['hr@10']:.4f} mrr@10={summary['mrr@10']:.4f} "
          f"coverage@10={summary['coverage@10']:.4f} seen_removed={lists.seen_items}", flush=True)
    return summary, ranks


def run_main(args: argparse.Namespace) -> None:
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    from recsys_peft.config import PipelineConfig
    from recsys_peft.dataset.snapshot import load_snapshot
    from recsys_peft.evaluation.bootstrap import paired_bootstrap
    from recsys_peft.evaluation.metrics import ranking_metrics
    from recsys_peft.ingest.fetch import fetch_movielens_100k
    from recsys_peft.ingest.ingest import ingest_source
    from recsys_peft.ingest.spec import load_source_spec
    from recsys_peft.segments import load_segment_spec

    work = Path(args.work_dir).resolve()
    python = ensure_recbole_venv(Path(args.venv).resolve())

    config = PipelineConfig()
    raw = fetch_movielens_100k(config.raw_dir)
    store = work / "store"
    ingest_source(load_source_spec(config.source_spec), raw, store)
    snapshot = load_snapshot(store, load_segment_spec(config.segment_spec), config.user_attributes)
    write_atomic_files(snapshot, work / "dataset" / DATASET)
    requests = work / "requests.tsv"
    write_requests(snapshot, requests)

    models: dict = {}
    ranks: dict = {}
    environment = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    for model in args.models:
        out = work / f"{model}.recommendations.tsv"
        info = work / f"{model}.run.json"
        command = [str(python), str(Path(__file__).resolve()), "--worker", "--model", model,
                   "--epochs", str(args.epochs), "--seed", str(args.seed), "--data-path", str(work / "dataset"),
                   "--requests", str(requests), "--out", str(out), "--info", str(info)]
        started = time.perf_counter()
        subprocess.run(command, check=True, cwd=work, env=environment)
        frame = pd.read_csv(out, sep="\t", dtype={"user_id": str, "item_id": str, "rank": np.int64})
        summary, ranks[model] = score_lists(model, frame, snapshot, args.bootstrap_seed)
        summary["recbole"] = json.loads(info.read_text())
        summary["wall_seconds"] = time.perf_counter() - started
        models[model] = summary

    if args.recommendations:
        frame = pq.read_table(args.recommendations, columns=["user_id", "item_id", "rank"]).to_pandas()
        models["project"], ranks["project"] = score_lists("project", frame, snapshot, args.bootstrap_seed)
        models["project"]["source"] = str(args.recommendations)

    ndcg = {name: ranking_metrics(values, K)[f"ndcg@{K}"] for name, values in ranks.items()}
    paired = {f"{b}-{a}": paired_bootstrap(ndcg[a], ndcg[b], seed=args.bootstrap_seed)
              for a in ndcg for b in ndcg if a < b}
    summary = {
        "benchmark": "compare_recbole",
        "data": "MovieLens-100K (recbole==1.2.1 atomic files), leave-one-out by time",
        "protocol": "each model's top-10 list as of the test target; items seen before the target removed; "
                    "full catalogue; per-user means with 95% percentile bootstrap intervals",
        "recbole": "1.2.1", "epochs_limit": args.epochs, "seed": args.seed,
        "test_users": int(len(snapshot.split.test.users)),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count()},
        "models": models,
        "paired_ndcg@10": paired,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {RESULTS}")


# ----- RecBole's side (its own virtual environment, --worker) -----

def recbole_config(model: str, epochs: int, seed: int, data_path: str) -> dict:
    """Return the RecBole settings shared by every model, with the model's own on top."""
    settings = {
        "data_path": data_path, "checkpoint_dir": "checkpoints", "use_gpu": False, "show_progress": False,
        "seed": seed, "reproducibility": True, "epochs": epochs, "stopping_step": 10,
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "metrics": ["NDCG", "Hit", "MRR"], "topk": [K], "valid_metric": f"NDCG@{K}",
    }
    settings.update(MODEL_SETTINGS[model])
    return settings


def run_worker(args: argparse.Namespace) -> None:
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.data.interaction import Interaction
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    config = Config(model=args.model, dataset=DATASET,
                    config_dict=recbole_config(args.model, args.epochs, args.seed, args.data_path))
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)

    started = time.perf_counter()
    best_valid, _ = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    train_seconds = time.perf_counter() - started
    # RecBole's own test metrics, which do not exclude seen items for sequential models.
    recbole_test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    model = trainer.model
    model.eval()

    item_field, user_field = config["ITEM_ID_FIELD"], config["USER_ID_FIELD"]
    requests = [line.rstrip("\n").split("\t") for line in Path(args.requests).read_text().splitlines()]
    user_tokens = [user for user, _ in requests]
    histories = [dataset.token2id(item_field, items.split()) if items else [] for _, items in requests]
    max_length = config["MAX_ITEM_LIST_LENGTH"] or 50
    rows = []
    with torch.no_grad():
        for start in range(0, len(requests), 256):
            chunk = range(start, min(start + 256, len(requests)))
            sequences = torch.zeros(len(chunk), max_length, dtype=torch.long)
            lengths = torch.zeros(len(chunk), dtype=torch.long)
            for row, index in enumerate(chunk):
                recent = list(histories[index])[-max_length:]
                sequences[row, :len(recent)] = torch.tensor(recent, dtype=torch.long)
                lengths[row] = len(recent)
            users = torch.tensor(dataset.token2id(user_field, [user_tokens[i] for i in chunk]), dtype=torch.long)
            batch = Interaction({user_field: users, item_field + config["LIST_SUFFIX"]: sequences,
                                 config["ITEM_LIST_LENGTH_FIELD"]: lengths})
            scores = model.full_sort_predict(batch).view(len(chunk), -1)
            scores[:, 0] = float("-inf")  # internal id 0 is RecBole's padding token
            for row, index in enumerate(chunk):
                seen = list(histories[index])
                if seen:
                    scores[row, torch.tensor(seen, dtype=torch.long)] = float("-inf")
            top = torch.topk(scores, K, dim=1).indices.numpy()
            for row, index in enumerate(chunk):
                for rank, item in enumerate(dataset.id2token(item_field, top[row]), start=1):
                    rows.append(f"{user_tokens[index]}\t{item}\t{rank}")

    Path(args.out).write_text("user_id\titem_id\trank\n" + "\n".join(rows) + "\n", encoding="utf-8")
    Path(args.info).write_text(json.dumps({
        "model": args.model, "train_seconds": train_seconds, "best_valid_ndcg@10": float(best_valid),
        "recbole_test_without_seen_exclusion": {key: float(value) for key, value in recbole_test.items()},
        "settings": MODEL_SETTINGS[args.model], "torch": torch.__version__, "threads": torch.get_num_threads(),
    }, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["SASRec", "BPR"], choices=sorted(MODEL_SETTINGS),
                        help="RecBole models to train (default: SASRec BPR)")
    parser.add_argument("--epochs", type=int, default=300,
                        help="maximum training epochs, with early stopping after 10 epochs without a better "
                             "validation NDCG@10 (default: 300, RecBole's default)")
    parser.add_argument("--seed", type=int, default=2020, help="RecBole's seed (default: 2020, RecBole's default)")
    parser.add_argument("--recommendations", default=None,
                        help="also score this project's recommendations: a parquet file or folder with user_id, "
                             "item_id and rank columns, as of each test target, such as data/demo/recommendations")
    parser.add_argument("--work-dir", default="data/cache/recbole", help="folder for atomic files and RecBole runs")
    parser.add_argument("--venv", default="data/cache/recbole-venv", help="RecBole's virtual environment")
    parser.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap resampling")
    # Used by this script when it runs itself inside RecBole's environment.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--data-path", help=argparse.SUPPRESS)
    parser.add_argument("--requests", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--info", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    if args.worker:
        run_worker(args)
    else:
        Path(args.work_dir).mkdir(parents=True, exist_ok=True)
        run_main(args)


if __name__ == "__main__":
    main()
