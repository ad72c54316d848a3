"""Scaling on one machine: sharded pretraining under torchrun, and fine-tuning fanned out on Dask.

Two comparisons, each run in fresh subprocesses so that every wall time includes starting
Python, imports and loading the data:

1. Pretraining the two-tower base model for the same number of epochs, once in a single
   process (``training.pretrain``, once per ``--threads`` count of torch threads) and once under
   ``torch.distributed.run`` with ``--ranks`` processes of one thread each, the tables
   sharded table-wise (``recsys_peft.distributed.pretrain``). Records the wall seconds of each
   command, seconds per training epoch, and validation NDCG@10 after the last epoch. Early
   stopping is off in the single-process run (patience = epochs), so both run every epoch.
   A failed torchrun command is retried once (``--torchrun-attempts``), and its exit code
   and output file are recorded with the figures.
2. The retraining flow (``flows/retrain.py``, weekly mode: base model and every adapter),
   once with its default runner (one task at a time, in the flow's process) and once on a
   local Dask cluster of ``--dask-workers`` worker processes through Prefect's
   ``DaskTaskRunner``. Every process uses one torch thread. Records the wall seconds of each
   command and of the flow call, and the span from the first fine-tuning task's start to the
   last one's end (from the Prefect API). It also checks whether both runs gave the same
   adapters: the same kept decisions, the largest absolute difference of any weight of the kept
   adapters (a segment that falls back to the base model stores none), and the candidate's
   held-out NDCG@10. Each flow run talks to its own temporary Prefect server.

The defaults are small on purpose: MovieLens-100K (in ``data/raw/ml-100k``, fetched when
missing), 3 pretraining epochs in comparison 1, and in comparison 2 a base model of 1 epoch
with 14 adapters of at most 5 epochs each. With them the whole script took 7 min 48 s on 2
cores that other jobs kept busy (load average 7 to 8), most of it the single-process run with
2 threads. At this size both engines mostly show their fixed costs. Raise the epochs to see more.

    .venv/bin/python benchmarks/scaling.py
    .venv/bin/python benchmarks/scaling.py --dataset generated --rows 200000 --epochs 5
    .venv/bin/python benchmarks/scaling.py --only pretrain

Writes benchmarks/results/scaling.json: the machine, the load average at start and end, the
arguments and every figure printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "scaling.json"
SEGMENT_SPEC = "features/segments/gender_x_age.yaml"
MOVIELENS_SPEC = "features/movielens_100k.yaml"


# Data.

def prepare_raw(dataset: str, work: Path, rows: int, raw_dir: Path) -> tuple[Path, Path]:
    """Return the raw folder and source spec of ``dataset``, fetching or generating it first."""
    if dataset == "movielens":
        from recsys_peft.ingest.fetch import fetch_movielens_100k

        return fetch_movielens_100k(raw_dir), ROOT / MOVIELENS_SPEC
    from recsys_peft.dataset.synthetic import generate_log

    folder = work / f"raw-generated-{rows}"
    if not (folder / "spec.yaml").is_file():
        generate_log(folder, rows, seed=0)
    return folder, folder / "spec.yaml"


def prepare_store(raw: Path, spec_path: Path, store: Path) -> dict:
    """Ingest ``raw`` into a new store at ``store`` and return its size."""
    from recsys_peft.ingest.ingest import ingest_source
    from recsys_peft.ingest.spec import load_source_spec

    shutil.rmtree(store, ignore_errors=True)
    summary = ingest_source(load_source_spec(spec_path), raw, store)
    return {"store": str(store), "rows": summary.rows_written}


# Subprocesses.

class CommandFailed(RuntimeError):
    """Error of a measured command that exited with a non-zero status. Its whole output is in ``log``."""

    def __init__(self, command: list[str], returncode: int, log: Path, tail: str) -> None:
        super().__init__(f"{' '.join(command[:6])} ... failed (exit {returncode}), output in {log}:\n{tail}")
        self.returncode, self.log = returncode, log


def run_command(command: list[str], env: dict[str, str], log: Path) -> tuple[str, float]:
    """Run ``command`` from the repository root and return its stdout and wall seconds.

    On failure its stdout and stderr are written to ``log``.
    """
    started = time.perf_counter()
    finished = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                              capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if finished.returncode != 0:
        log.write_text(finished.stdout + "\n" + finished.stderr)
        raise CommandFailed(command, finished.returncode, log, finished.stderr[-3000:])
    return finished.stdout, seconds


def run_worker(kind: str, settings: dict, env: dict[str, str], log: Path) -> dict:
    """Run one measurement of this script in a fresh process and return its result with the wall seconds."""
    stdout, seconds = run_command([sys.executable, __file__, "--worker", kind, json.dumps(settings)], env, log)
    return {**json.loads(stdout.strip().splitlines()[-1]), "wall_seconds": seconds}


# 1. Pretraining: one process against torchrun.

def single_pretrain(settings: dict) -> dict:
    """Pretrain in this process for exactly ``epochs`` epochs. Runs inside its own subprocess."""
    import torch

    from recsys_peft.config import MOVIELENS_USER_ATTRIBUTES
    from recsys_peft.dataset.snapshot import load_snapshot
    from recsys_peft.segments import load_segment_spec
    from recsys_peft.training.loop import TrainConfig
    from recsys_peft.training.pretrain import pretrain, two_tower_config

    torch.set_num_threads(settings["threads"])
    snapshot = load_snapshot(settings["store"], load_segment_spec(SEGMENT_SPEC), MOVIELENS_USER_ATTRIBUTES)
    train = TrainConfig(epochs=settings["epochs"], batch_size=settings["batch_size"],
                        learning_rate=settings["learning_rate"], patience=settings["epochs"], seed=0)
    epochs: list[dict] = []
    pretrain(snapshot, two_tower_config(snapshot), train, on_epoch=epochs.append)
    return {"threads": settings["threads"], "epochs": len(epochs),
            "epoch_seconds": [e["train_seconds"] for e in epochs],
            "train_seconds": sum(e["train_seconds"] for e in epochs),
            "valid_ndcg@10": epochs[-1]["valid_ndcg@10"], "examples_per_epoch": epochs[-1]["examples"]}


def sharded_pretrain(settings: dict, out: Path, attempts: int) -> dict:
    """Pretrain under torchrun with ``ranks`` processes of one thread each.

    A failed attempt is recorded under ``failed_attempts`` and retried, up to ``attempts`` in all.
    """
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(settings["ranks"]),
               "--standalone", "-m", "recsys_peft.distributed.pretrain", "--store", settings["store"],
               "--out", str(out), "--sharding", "table_wise", "--epochs", str(settings["epochs"]),
               "--batch-size", str(settings["batch_size"]), "--learning-rate", str(settings["learning_rate"]),
               "--seed", "0"]
    failed = []
    while True:
        shutil.rmtree(out, ignore_errors=True)
        try:
            _, wall = run_command(command, {"OMP_NUM_THREADS": "1"}, out.with_name(f"torchrun-{len(failed)}.log"))
            break
        except CommandFailed as failure:
            failed.append({"exit": failure.returncode, "log": str(failure.log)})
            print(f"torchrun attempt {len(failed)} failed with exit {failure.returncode}; output in {failure.log}",
                  flush=True)
            if len(failed) >= attempts:
                raise
    record = json.loads((out / "run.json").read_text())
    epoch_seconds = [entry["seconds"] for entry in record["history"]]
    return {"ranks": record["world_size"], "threads_per_rank": 1, "epochs": len(epoch_seconds),
            "epoch_seconds": epoch_seconds, "train_seconds": record["seconds"],
            "valid_ndcg@10": record["valid_ndcg@10"], "wall_seconds": wall,
            "tables_per_rank": tables_per_rank(record["plan"]), "failed_attempts": failed}


def tables_per_rank(plan: dict) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in plan.values():
        for rank in entry["ranks"]:
            counts[str(rank)] = counts.get(str(rank), 0) + 1
    return dict(sorted(counts.items()))


def compare_pretraining(args: argparse.Namespace, store: Path, work: Path) -> dict:
    settings = {"store": str(store), "epochs": args.epochs, "batch_size": args.batch_size,
                "learning_rate": args.learning_rate, "ranks": args.ranks}
    single = [run_worker("single", {**settings, "threads": threads}, {}, work / f"single-{threads}.log")
              for threads in args.threads]
    sharded = sharded_pretrain(settings, work / "sharded", args.torchrun_attempts)
    return {"settings": {k: v for k, v in settings.items() if k != "store"}, "single_process": single,
            "torchrun": sharded,
            "ndcg_difference": {f"{run['threads']}_threads": sharded["valid_ndcg@10"] - run["valid_ndcg@10"]
                                for run in single}}


# 2. Fine-tuning: one task at a time against a local Dask cluster.

def retrain_config(settings: dict):
    from recsys_peft.config import PipelineConfig
    from recsys_peft.training.finetune import FinetuneConfig
    from recsys_peft.training.loop import TrainConfig

    base = PipelineConfig()
    finetune = FinetuneConfig(lora=base.finetune.lora, min_users=base.finetune.min_users,
                              train=TrainConfig(**{**base.finetune.train.__dict__,
                                                   "epochs": settings["finetune_epochs"]}))
    return PipelineConfig(source_spec=settings["spec"], segment_spec=str(ROOT / SEGMENT_SPEC),
                          raw_dir=settings["raw"], work_dir=settings["work_dir"], fetch_movielens=False,
                          pretrain=TrainConfig(**{**base.pretrain.__dict__, "epochs": settings["base_epochs"]}),
                          finetune=finetune)


def finetune_span(flow_run_id: str, expected: int) -> dict:
    """Read the fine-tuning task runs of ``flow_run_id`` back from the Prefect API."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs: list = []
    for _ in range(40):  # task run states reach the API as events, shortly after the flow ends
        with get_client(sync_client=True) as client:
            runs = [run for run in client.read_task_runs(
                        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)])))
                    if run.name.startswith("finetune-") and run.start_time and run.end_time]
        if len(runs) >= expected:
            break
        time.sleep(0.5)
    if len(runs) < expected:
        return {"tasks_read": len(runs), "span_seconds": None, "task_seconds": None}
    start = min(run.start_time for run in runs)
    end = max(run.end_time for run in runs)
    return {"tasks_read": len(runs), "span_seconds": (end - start).total_seconds(),
            "task_seconds": sum((run.end_time - run.start_time).total_seconds() for run in runs)}


def retrain_run(settings: dict) -> dict:
    """Run the retraining flow once on the chosen runner, inside its own subprocess."""
    import torch

    torch.set_num_threads(1)
    from prefect.testing.utilities import prefect_test_harness

    from flows.retrain import retrain_flow
    from flows.score import task_runner

    shutil.rmtree(settings["work_dir"], ignore_errors=True)
    config = retrain_config(settings)
    flow = retrain_flow
    if settings["runner"] == "dask":
        flow = retrain_flow.with_options(task_runner=task_runner("dask", workers=settings["workers"]))
    with prefect_test_harness():
        started = time.perf_counter()
        record = flow(config, base_due=True, slot=f"benchmark/{settings['runner']}")
        flow_seconds = time.perf_counter() - started
        span = finetune_span(record["flow_run_id"], len(record["adapters_trained"]))
    candidate = record["candidate"]
    return {"runner": settings["runner"], "flow_seconds": flow_seconds, "finetune": span,
            "outcome": record["outcome"], "base_id": candidate["base_id"], "adapters": candidate["adapters"],
            "kept": {a["segment"]: a["kept"] for a in record["adapters_trained"]},
            "processes": len({a["pid"] for a in record["adapters_trained"]}),
            "holdout_ndcg@10": record["holdout_metrics"]["candidate"]["ndcg@10"],
            "registry": str(Path(settings["work_dir"]) / "registry")}


def adapter_difference(first: dict, second: dict) -> float:
    """Return the largest absolute difference of any adapter weight between two runs' candidates.

    Only kept adapters have weights. A segment kept in one run and not in the other returns inf.
    """
    from recsys_peft.registry.store import Registry

    loaded = [Registry(run["registry"]).load_candidate(run["base_id"], run["adapters"]).adapters
              for run in (first, second)]
    largest = 0.0
    for a, b in zip(*(sorted(adapters, key=lambda x: x.segment) for adapters in loaded), strict=True):
        if a.segment != b.segment or (a.state is None) != (b.state is None):
            return float("inf")
        for name, value in (a.state or {}).items():
            largest = max(largest, float((value - b.state[name]).abs().max()))
    return largest


def compare_finetuning(args: argparse.Namespace, raw: Path, spec: Path, work: Path) -> dict:
    settings = {"raw": str(raw), "spec": str(spec), "base_epochs": args.base_epochs,
                "finetune_epochs": args.finetune_epochs, "workers": args.dask_workers}
    one_thread = {"OMP_NUM_THREADS": "1"}
    in_process = run_worker("retrain", {**settings, "runner": "in_process",
                                        "work_dir": str(work / "retrain-in-process")}, one_thread,
                            work / "retrain-in-process.log")
    dask = run_worker("retrain", {**settings, "runner": "dask", "work_dir": str(work / "retrain-dask")}, one_thread,
                      work / "retrain-dask.log")
    match = {"same_kept": in_process["kept"] == dask["kept"],
             "max_adapter_weight_difference": adapter_difference(in_process, dask),
             "holdout_ndcg@10_difference": dask["holdout_ndcg@10"] - in_process["holdout_ndcg@10"]}
    return {"settings": {k: v for k, v in settings.items() if k not in ("raw", "spec")},
            "in_process": in_process, "dask": dask, "match": match}


# Report.

def machine() -> dict:
    import psutil

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").is_file() \
        else platform.processor()
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu": model,
            "cpus": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1)}


def seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def print_tables(report: dict) -> None:
    if "pretraining" in report:
        p = report["pretraining"]
        print(f"\npretraining, {p['settings']['epochs']} epochs, batch {p['settings']['batch_size']}")
        print(f"{'run':<28}{'wall s':>9}{'train s':>9}{'s/epoch':>9}{'valid NDCG@10':>15}")
        runs = [(f"single process, {run['threads']} thread{'s' * (run['threads'] > 1)}", run)
                for run in p["single_process"]]
        for label, run in runs + [(f"torchrun, {p['torchrun']['ranks']} ranks x 1 thread", p["torchrun"])]:
            per_epoch = run["train_seconds"] / max(run["epochs"], 1)
            print(f"{label:<28}{run['wall_seconds']:>9.1f}{run['train_seconds']:>9.1f}{per_epoch:>9.2f}"
                  f"{run['valid_ndcg@10']:>15.4f}")
        print(f"tables per rank: {p['torchrun']['tables_per_rank']}; failed torchrun attempts: "
              f"{len(p['torchrun']['failed_attempts'])}")
    if "finetuning" in report:
        f = report["finetuning"]
        print(f"\nretraining flow, base {f['settings']['base_epochs']} epoch(s), adapters up to "
              f"{f['settings']['finetune_epochs']} epochs, 1 torch thread per process")
        print(f"{'run':<28}{'wall s':>9}{'flow s':>9}{'fine-tune s':>13}{'processes':>11}{'held-out NDCG@10':>18}")
        for label, run in (("in process, 1 task at a time", f["in_process"]),
                           (f"Dask, {f['settings']['workers']} workers", f["dask"])):
            print(f"{label:<28}{run['wall_seconds']:>9.1f}{run['flow_seconds']:>9.1f}"
                  f"{seconds(run['finetune']['span_seconds']):>13}{run['processes']:>11}"
                  f"{run['holdout_ndcg@10']:>18.4f}")
        m = f["match"]
        print(f"same kept decisions: {m['same_kept']}; largest adapter weight difference: "
              f"{m['max_adapter_weight_difference']:.3g}; held-out NDCG@10 difference: "
              f"{m['holdout_ndcg@10_difference']:+.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["movielens", "generated"], default="movielens",
                        help="MovieLens-100K or a generated log (default: movielens)")
    parser.add_argument("--rows", type=int, default=100_000, help="events of the generated log (default: 100000)")
    parser.add_argument("--raw-dir", type=Path, default=ROOT / "data" / "raw" / "ml-100k",
                        help="where MovieLens-100K is, or is fetched to (default: data/raw/ml-100k)")
    parser.add_argument("--only", choices=["pretrain", "finetune"], help="run one comparison only")
    parser.add_argument("--epochs", type=int, default=3, help="pretraining epochs of comparison 1 (default: 3)")
    parser.add_argument("--batch-size", type=int, default=512, help="pretraining batch size (default: 512)")
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="pretraining Adam rate (default: 2e-3)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="torch threads of the single-process runs, one run each (default: 1 2)")
    parser.add_argument("--ranks", type=int, default=2, help="torchrun processes (default: 2)")
    parser.add_argument("--torchrun-attempts", type=int, default=2,
                        help="attempts at the torchrun command, each failure recorded (default: 2)")
    parser.add_argument("--base-epochs", type=int, default=1, help="base epochs in the retraining flow (default: 1)")
    parser.add_argument("--finetune-epochs", type=int, default=5, help="maximum epochs per adapter; early stopping may end sooner (default: 5)")
    parser.add_argument("--dask-workers", type=int, default=2, help="Dask worker processes (default: 2)")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "data" / "cache" / "bench-scaling")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results file (default: {RESULTS})")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, settings = args.worker
        run = single_pretrain if kind == "single" else retrain_run
        print(json.dumps(run(json.loads(settings))))
        return

    started_at, load_at_start = time.time(), os.getloadavg()
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    raw, spec = prepare_raw(args.dataset, work, args.rows, args.raw_dir)
    report: dict = {"benchmark": "scaling", "command": " ".join([Path(sys.executable).name, *sys.argv]),
                    "machine": machine(), "load_average_at_start": list(load_at_start),
                    "arguments": {k: str(v) if isinstance(v, Path) else v
                                  for k, v in vars(args).items() if k != "worker"}}
    if args.only != "finetune":
        report["data"] = prepare_store(raw, spec, work / f"store-{args.dataset}")
        report["pretraining"] = compare_pretraining(args, work / f"store-{args.dataset}", work)
    if args.only != "pretrain":
        report["finetuning"] = compare_finetuning(args, raw, spec, work)
    report["load_average_at_end"] = list(os.getloadavg())
    report["total_seconds"] = time.time() - started_at

    print(f"machine: {report['machine']['cpu']}, {report['machine']['cpus']} cpus, "
          f"{report['machine']['memory_gib']} GiB; data: {args.dataset}")
    print_tables(report)
    print(f"\nload average (1, 5, 15 min): start {', '.join(f'{v:.2f}' for v in load_at_start)}; "
          f"end {', '.join(f'{v:.2f}' for v in report['load_average_at_end'])}; "
          f"total {report['total_seconds']:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
