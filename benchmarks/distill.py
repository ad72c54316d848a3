"""Does a distilled student keep the teacher's quality at a fraction of its scoring cost?

For each data set and teacher-student pair, this trains the teacher and distils it into the
student (``recsys_peft.distillation``: softened listwise KL over the teacher's top-K plus the
true next items). It exports both and batch-scores every user with each export
(``scoring.score_users``, top 10, seen items excluded), the two exports taking turns so that a
change in machine load affects both timings. It reports test NDCG@10 with 95%
bootstrap intervals (leave-one-out by time, full-catalogue ranking), parameter counts, export
sizes and users scored per second.

Pairs (``--pairs``):

- ``sasrec_adapters:two_tower``: SASRec with one LoRA adapter per segment (gender x age band),
  each user scored with its segment's adapter, into a 32-dimension two-tower student;
- ``sasrec128:sasrec32``: a 128-dimension SASRec into a 32-dimension SASRec.

    .venv/bin/python benchmarks/distill.py                               # both data sets, first pair
    .venv/bin/python benchmarks/distill.py --pairs sasrec128:sasrec32 --teacher-epochs 50

The default epoch caps keep a run to minutes on 2 cores, so the teachers stop short of
convergence; raise ``--teacher-epochs`` and ``--student-epochs`` for a full-length run.
Target: the student keeps at least 95% of the teacher's NDCG@10 at a quarter or less of its
scoring cost (seconds per user).

Writes benchmarks/results/distill.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recsys_peft.config import MOVIELENS_USER_ATTRIBUTES, SASREC_DEFAULTS
from recsys_peft.dataset.snapshot import DataSnapshot, load_snapshot
from recsys_peft.dataset.synthetic import generate_log
from recsys_peft.distillation import DistillConfig, distill, export_student
from recsys_peft.evaluation.bootstrap import bootstrap_ci
from recsys_peft.evaluation.metrics import ranking_metrics
from recsys_peft.evaluation.ranking import rank_targets
from recsys_peft.export.exporter import export_model
from recsys_peft.export.model import ExportedModel
from recsys_peft.ingest.fetch import fetch_movielens_100k
from recsys_peft.ingest.ingest import ingest_source
from recsys_peft.ingest.spec import load_source_spec
from recsys_peft.models.sasrec import SASRecModel
from recsys_peft.models.two_tower import TwoTowerModel, parameter_count
from recsys_peft.scoring.batch import score_users
from recsys_peft.segments import load_segment_spec
from recsys_peft.training.finetune import FinetuneConfig, adapter_slots, finetune_segment, stack_adapters
from recsys_peft.training.loop import TrainConfig
from recsys_peft.training.pretrain import model_config, pretrain

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "distill.json"
SEGMENT_SPEC = ROOT / "features" / "segments" / "gender_x_age.yaml"


@dataclass(frozen=True)
class Pair:
    """A teacher and the student distilled from it."""

    name: str
    teacher_dim: int
    teacher_adapters: bool
    student_family: str
    student_overrides: dict


PAIRS = {
    "sasrec_adapters:two_tower": Pair("sasrec_adapters:two_tower", 64, True, "two_tower",
                                      {"embedding_dim": 32, "hidden_dim": 64}),
    "sasrec128:sasrec32": Pair("sasrec128:sasrec32", 128, False, "sasrec",
                               {**SASREC_DEFAULTS, "embedding_dim": 32, "ffn_dim": 128}),
}


def log(message: str) -> None:
    print(message, flush=True)


def prepare(dataset: str, work: Path, args: argparse.Namespace) -> Path:
    """Ingest the data set into a store under ``work`` (once) and return the store folder."""
    if dataset == "movielens":
        raw = fetch_movielens_100k(ROOT / "data" / "raw" / "ml-100k")
        spec = load_source_spec(ROOT / "features" / "movielens_100k.yaml")
        store = work / "movielens" / "store"
    else:
        folder = work / f"generated-u{args.generated_users}-i{args.generated_items}-e{args.generated_events}"
        raw = folder / "raw"
        if not (raw / "spec.yaml").is_file():
            generate_log(raw, args.generated_events, num_users=args.generated_users,
                         num_items=args.generated_items, seed=args.seed)
        spec = load_source_spec(raw / "spec.yaml")
        store = folder / "store"
    if not (store / "manifest.json").is_file():
        ingest_source(spec, raw, store)
    return store


def train_teacher(snapshot: DataSnapshot, pair: Pair, args: argparse.Namespace) -> tuple[SASRecModel, np.ndarray, dict]:
    """Pretrain the SASRec teacher and, for an adapted teacher, stack one adapter per segment."""
    started = time.perf_counter()
    config = model_config("sasrec", snapshot, **SASREC_DEFAULTS, embedding_dim=pair.teacher_dim,
                          ffn_dim=4 * pair.teacher_dim)
    train = TrainConfig(epochs=args.teacher_epochs, batch_size=128, learning_rate=2e-3, patience=8, seed=args.seed)
    base = pretrain(snapshot, config, train, on_epoch=lambda r: log(
        f"  teacher epoch={r['epoch']} valid_ndcg@10={r['valid_ndcg@10']:.4f} {r['seconds']:.1f}s")).model
    slots = np.full(snapshot.log.num_users, -1, dtype=np.int64)
    info: dict = {"embedding_dim": pair.teacher_dim, "pretrain": train.__dict__}
    model = base
    if pair.teacher_adapters:
        finetune = FinetuneConfig(train=TrainConfig(epochs=args.adapter_epochs, batch_size=64, learning_rate=1e-3,
                                                    patience=2, seed=args.seed))
        adapters = [finetune_segment(base, snapshot, s, finetune) for s in range(len(snapshot.segments.names))]
        model = stack_adapters(base, adapters, len(snapshot.segments.names), finetune.lora)
        slots = adapter_slots(snapshot, adapters)
        info["adapters_kept"] = int(sum(a.used for a in adapters))
        info["adapter_train"] = finetune.train.__dict__
    info["seconds"] = time.perf_counter() - started
    model.eval()
    return model, slots, info


def make_student(snapshot: DataSnapshot, pair: Pair, seed: int) -> TwoTowerModel | SASRecModel:
    torch.manual_seed(seed)
    config = model_config(pair.student_family, snapshot, **pair.student_overrides)
    return TwoTowerModel(config) if pair.student_family == "two_tower" else SASRecModel(config)


def test_quality(model: torch.nn.Module, snapshot: DataSnapshot, slots: np.ndarray | None, seed: int) -> dict:
    targets = snapshot.split.test
    items = model.all_item_embeddings(snapshot.features.item_tags)
    ranks = rank_targets(model, snapshot.log, snapshot.features, targets, items, slots, chunk=512)
    mean, low, high = bootstrap_ci(ranking_metrics(ranks, 10)["ndcg@10"], seed=seed)
    return {"test_ndcg@10": mean, "test_ndcg@10_ci95": [low, high], "test_users": int(len(ranks))}


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def scoring_speed(folders: dict[str, Path], snapshot: DataSnapshot, repeats: int) -> dict[str, dict]:
    """Time batch scoring of every user (top 10 as of the end of the log) with each export.

    The exports take turns, one run each per round, with the same user chunk, item chunk and
    torch threads, so a change in machine load during the measurement affects both. A first,
    untimed round warms up both exports' code paths and caches. Each export's fastest timed run
    counts.
    """
    exports = {name: ExportedModel.load(folder) for name, folder in folders.items()}
    users = np.arange(snapshot.log.num_users)
    positions = snapshot.log.offsets[users + 1]
    seconds: dict[str, list[float]] = {name: [] for name in folders}
    for round_index in range(repeats + 1):
        for name, export in exports.items():
            _, summary = score_users(export, snapshot.log, snapshot.users, users, positions, k=10)
            if round_index > 0:
                seconds[name].append(summary.seconds)
    speeds = {}
    for name, runs in seconds.items():
        best = min(runs)
        speeds[name] = {"users": int(len(users)), "scoring_seconds": best, "users_per_second": len(users) / best,
                        "scoring_seconds_all_runs": runs}
    return speeds


def run_pair(dataset: str, store: Path, pair: Pair, args: argparse.Namespace, work: Path) -> dict:
    snapshot = load_snapshot(store, load_segment_spec(SEGMENT_SPEC), MOVIELENS_USER_ATTRIBUTES)
    log(f"== {dataset} / {pair.name}: {snapshot.log.num_users} users, {snapshot.log.num_items} items")

    # Teacher: train, test, export.
    teacher, slots, teacher_info = train_teacher(snapshot, pair, args)
    teacher_folder = work / "exports" / dataset / pair.name.replace(":", "-") / "teacher"
    teacher_manifest = export_model(teacher, snapshot, slots, teacher_folder, store, {}, seed=args.seed)
    teacher_result = {
        **teacher_info, **test_quality(teacher, snapshot, slots, args.seed),
        "parameters": parameter_count(teacher), "export_bytes": folder_bytes(teacher_folder),
        "model_version": teacher_manifest["model_version"],
    }

    # Student: distil, test, export.
    student = make_student(snapshot, pair, args.seed)
    config = DistillConfig(top_k=args.top_k, temperature=args.temperature, kd_weight=args.kd_weight,
                           train=TrainConfig(epochs=args.student_epochs, batch_size=256, learning_rate=2e-3,
                                             patience=3, seed=args.seed))
    started = time.perf_counter()
    distilled = distill(teacher, student, snapshot, config, slots, on_epoch=lambda r: log(
        f"  student epoch={r['epoch']} valid_ndcg@10={r['valid_ndcg@10']:.4f} {r['seconds']:.1f}s"))
    student_seconds = time.perf_counter() - started
    student_folder = teacher_folder.parent / "student"
    export_student(distilled, teacher, snapshot, config, student_folder, store,
                   teacher_version=teacher_manifest["model_version"], seed=args.seed)
    student_result = {
        "family": pair.student_family, "overrides": pair.student_overrides, "seconds": student_seconds,
        "best_epoch": distilled.result.best_epoch, **test_quality(distilled.model, snapshot, None, args.seed),
        "parameters": parameter_count(distilled.model), "export_bytes": folder_bytes(student_folder),
    }

    # Scoring speed of both exports, measured in alternation.
    speeds = scoring_speed({"teacher": teacher_folder, "student": student_folder}, snapshot, args.scoring_repeats)
    teacher_result.update(speeds["teacher"])
    student_result.update(speeds["student"])

    kept = student_result["test_ndcg@10"] / teacher_result["test_ndcg@10"] if teacher_result["test_ndcg@10"] else None
    # Scoring cost is seconds per user, so the student's share is the inverse ratio of users per second.
    cost = teacher_result["users_per_second"] / student_result["users_per_second"]
    targets = {"ndcg_kept": kept, "ndcg_kept_met": kept is not None and kept >= 0.95,
               "scoring_cost_student_over_teacher": cost, "scoring_cost_met": cost <= 0.25}
    log(f"  teacher ndcg@10={teacher_result['test_ndcg@10']:.4f} params={teacher_result['parameters']:,} "
        f"export={teacher_result['export_bytes']:,}B users/s={teacher_result['users_per_second']:.0f}")
    log(f"  student ndcg@10={student_result['test_ndcg@10']:.4f} params={student_result['parameters']:,} "
        f"export={student_result['export_bytes']:,}B users/s={student_result['users_per_second']:.0f}")
    log(f"  kept={kept if kept is None else f'{kept:.1%}'} scoring_cost={cost:.2f} of the teacher's")
    return {"dataset": dataset, "pair": pair.name, "distillation": config.__dict__ | {"train": config.train.__dict__},
            "teacher": teacher_result, "student": student_result, "targets": targets}


def machine() -> dict:
    return {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average": list(os.getloadavg())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["movielens", "generated"], choices=["movielens", "generated"])
    parser.add_argument("--pairs", nargs="+", default=["sasrec_adapters:two_tower"], choices=sorted(PAIRS))
    parser.add_argument("--teacher-epochs", type=int, default=8, help="cap on teacher pretraining epochs (default: 8)")
    parser.add_argument("--adapter-epochs", type=int, default=3, help="cap on epochs per segment adapter (default: 3)")
    parser.add_argument("--student-epochs", type=int, default=8, help="cap on student epochs (default: 8)")
    parser.add_argument("--top-k", type=int, default=50, help="teacher items per example in the KL (default: 50)")
    parser.add_argument("--temperature", type=float, default=2.0, help="softening temperature (default: 2.0)")
    parser.add_argument("--kd-weight", type=float, default=0.7, help="weight of the KL term (default: 0.7)")
    parser.add_argument("--generated-users", type=int, default=2000)
    parser.add_argument("--generated-items", type=int, default=1000)
    parser.add_argument("--generated-events", type=int, default=60_000)
    parser.add_argument("--scoring-repeats", type=int, default=5,
                        help="timed scoring runs per export, after one untimed run, teacher and student in "
                             "turn; the fastest counts (default: 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1, so that timings do not depend on how many cores are free)")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "data" / "cache" / "bench-distill")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.scoring_repeats < 1:
        parser.error(f"--scoring-repeats must be at least 1, got {args.scoring_repeats}")
    torch.set_num_threads(args.threads)

    started = time.perf_counter()
    report: dict = {"benchmark": "distill", "machine_at_start": machine(),
                    "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "runs": []}
    for dataset in args.datasets:
        store = prepare(dataset, args.work_dir, args)
        for name in args.pairs:
            report["runs"].append(run_pair(dataset, store, PAIRS[name], args, args.work_dir))
            write(report, args.out)
    report["machine_at_end"] = machine()
    report["seconds"] = time.perf_counter() - started
    write(report, args.out)
    log(f"wrote {args.out} in {report['seconds']:.0f}s")


def write(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
