"""Batch scoring throughput and peak memory at catalogue scale, next to the raw top-K limit.

    .venv/bin/python benchmarks/scoring.py                 # 100,000 and 1,000,000 users
    .venv/bin/python benchmarks/scoring.py --users 20000   # a quick check

For each number of users, the script generates random unit-length user and item vectors
(dimension 64, 100,000 items) and a seen-item history per user. History lengths are geometric
with mean 50, so about 2% of users have none, and items are drawn with a Zipf-like skew to
popular ones. 1% of items are marked unavailable. The script writes them as the scoring job's
prepared inputs (``prepare_precomputed``: one parquet file per partition of 10,000 users) and
a matching export folder, under data/cache/ (git-ignored). Nothing here is timed. Then, in one run:

- raw limit: worker processes read the same partition files, and only then the clock starts:
  user blocks times the item matrix (``torch.mm`` into a reused buffer) and ``torch.topk``,
  merging item chunks with another ``topk``. No exclusion, no fallback, no output.
  users/s = users / (compute seconds summed over workers / workers).
- full job: ``run_job`` on the same inputs, timed from the call to its return. The time covers
  starting the worker processes, reading each partition, and top-K with seen and unavailable
  items excluded and ties in item order. It also covers the popularity fallback for users
  without history, building the output table, writing parquet and publishing the run folder.
  users/s = users / wall seconds.

Both use the same worker count and torch threads per worker. Peak memory is each process's
VmHWM. CPU seconds (all processes) are reported beside wall time, because other jobs on a
shared machine slow both phases unevenly. Prints a table and writes benchmarks/results/scoring.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recsys_peft import atomic  # noqa: E402
from recsys_peft.export.model import EXPORT_SCHEMA_VERSION, user_side_state  # noqa: E402
from recsys_peft.models.sasrec import SASRecConfig, SASRecModel  # noqa: E402
from recsys_peft.scoring.inputs import PartitionInput, read_input_file  # noqa: E402
from recsys_peft.scoring.job import Progress, run_job  # noqa: E402
from recsys_peft.scoring.partition import peak_rss_bytes  # noqa: E402
from recsys_peft.scoring.plan import prepare_precomputed  # noqa: E402
from recsys_peft.scoring.settings import ScoringSettings  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "scoring.json"
WORK = ROOT / "data" / "cache" / "bench-scoring"
MIN_FRACTION_OF_RAW = 0.7
MAX_PEAK_BYTES_PER_PROCESS = 2 * 1024 ** 3
NUM_SEGMENTS = 14
UNAVAILABLE_FRACTION = 0.01
MAX_HISTORY = 2_000
GIB = 1024 ** 3


def item_distribution(num_items: int, seed: int) -> np.ndarray:
    """Return a Zipf-like (exponent 0.8) probability of each item, over shuffled item rows."""
    weights = 1.0 / np.arange(1, num_items + 1) ** 0.8
    np.random.default_rng(seed).shuffle(weights)
    return weights / weights.sum()


def unit_rows(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((rows, dim), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def write_export(folder: Path, num_items: int, dim: int, seed: int) -> str:
    """Write an export folder whose item side is random; return its model version.

    The user side is an untrained SASRec model of the right sizes. The job never runs it,
    because every user comes with a precomputed vector.
    """
    rng = np.random.default_rng(seed)
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "vocab").mkdir(parents=True)
    config = SASRecConfig(num_items=num_items, embedding_dim=dim, num_layers=1, num_heads=2, ffn_dim=2 * dim)
    model = SASRecModel(config)
    version = f"bench-random-d{dim}-i{num_items}-s{seed}"
    probability = item_distribution(num_items, seed)
    popularity = rng.multinomial(50 * num_items, probability).astype(np.float32)
    segment_share = np.ascontiguousarray(rng.dirichlet(np.ones(NUM_SEGMENTS), size=num_items).T, dtype=np.float32)
    atomic.write_json(folder / "model.json", {
        "family": "sasrec", "config": config.to_dict(), "num_segments": 0, "lora": {}, "encoders": [],
        "tag_values": [], "segment_names": [f"segment-{s}" for s in range(NUM_SEGMENTS)],
        "segment_slots": [-1] * NUM_SEGMENTS, "segment_spec": None,
    })
    save_file(user_side_state(model), str(folder / "user_tower.safetensors"))
    save_file({"vectors": torch.from_numpy(unit_rows(rng, num_items, dim)),
               "popularity": torch.from_numpy(popularity),
               "segment_popularity": torch.from_numpy(np.round(segment_share * popularity))},
              str(folder / "items.safetensors"))
    pq.write_table(pa.table({"user_id": pa.array([], pa.string()), "user_idx": pa.array([], pa.int64()),
                             "segment": pa.array([], pa.string()), "segment_idx": pa.array([], pa.int64()),
                             "adapter_slot": pa.array([], pa.int64())}), folder / "segments.parquet")
    pq.write_table(pa.table({"id": pa.array([f"item-{i}" for i in range(num_items)]),
                             "index": pa.array(np.arange(num_items)),
                             "deleted": pa.array(np.zeros(num_items, dtype=bool))}), folder / "vocab" / "items.parquet")
    atomic.write_json(folder / "manifest.json", {
        "schema_version": EXPORT_SCHEMA_VERSION, "model_version": version, "family": "sasrec",
        "base_model_hash": "random", "vocabulary_version": f"bench-i{num_items}", "adapter_versions": {},
        "training_data_snapshot": "generated", "metrics": {}, "created_at": datetime.now(timezone.utc).isoformat(),
    })
    return version


def generate_partitions(num_users: int, num_items: int, dim: int, partition_users: int, history_mean: float,
                        seed: int, totals: dict) -> Iterator[PartitionInput]:
    """Yield the prepared inputs partition by partition; ``totals`` collects sizes as they go."""
    cumulative = np.cumsum(item_distribution(num_items, seed))
    for index, begin in enumerate(range(0, num_users, partition_users)):
        rng = np.random.default_rng([seed, index])
        rows = min(partition_users, num_users - begin)
        lengths = np.minimum(rng.geometric(1.0 / (history_mean + 1.0), size=rows) - 1, MAX_HISTORY)
        items = np.minimum(np.searchsorted(cumulative, rng.random(int(lengths.sum()))), num_items - 1)
        totals["seen_items"] = totals.get("seen_items", 0) + len(items)
        totals["no_history_users"] = totals.get("no_history_users", 0) + int((lengths == 0).sum())
        yield PartitionInput(
            user_ids=pa.array([f"user-{u}" for u in range(begin, begin + rows)]),
            export_users=np.arange(begin, begin + rows, dtype=np.int64),
            segments=rng.integers(0, NUM_SEGMENTS, size=rows).astype(np.int64),
            slots=np.full(rows, -1, dtype=np.int64),
            attributes=np.zeros((rows, 0), dtype=np.int64),
            history_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            history_items=items.astype(np.int64),
            vectors=unit_rows(rng, rows, dim),
        )


_ITEMS: dict[str, torch.Tensor] = {}


def raw_partition(input_file: str, items_file: str, k: int, user_chunk: int, item_chunk: int, threads: int) -> dict:
    """Time chunked matrix products and top-K over one partition's vectors, already in memory."""
    torch.set_num_threads(threads)
    if items_file not in _ITEMS:
        _ITEMS.clear()
        _ITEMS[items_file] = load_file(items_file)["vectors"]
    items = _ITEMS[items_file]
    users = torch.from_numpy(np.ascontiguousarray(read_input_file(input_file).vectors))
    num_items = items.shape[0]
    buffer = torch.empty(user_chunk * min(item_chunk, num_items))

    cpu_started, started = time.process_time(), time.perf_counter()
    for begin in range(0, users.shape[0], user_chunk):
        block = users[begin:begin + user_chunk]
        best_scores = best_items = None
        for start in range(0, num_items, item_chunk):
            stop = min(start + item_chunk, num_items)
            scores = buffer[: block.shape[0] * (stop - start)].view(block.shape[0], stop - start)
            torch.mm(block, items[start:stop].T, out=scores)
            values, index = torch.topk(scores, min(k, stop - start), dim=1)
            index += start
            if best_scores is None:
                best_scores, best_items = values, index
            else:
                merged_scores = torch.cat([best_scores, values], dim=1)
                best_scores, position = torch.topk(merged_scores, k, dim=1)
                best_items = torch.gather(torch.cat([best_items, index], dim=1), 1, position)
    return {"users": int(users.shape[0]), "seconds": time.perf_counter() - started,
            "cpu_seconds": time.process_time() - cpu_started, "pid": os.getpid(), "peak_rss_bytes": peak_rss_bytes()}


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_raw(staging: Path, partitions: int, export_dir: Path, args: argparse.Namespace, threads: int) -> dict:
    arguments = [(str(staging / "inputs" / f"part-{i:05d}.parquet"), str(export_dir / "items.safetensors"),
                  args.k, args.user_chunk, args.item_chunk, threads) for i in range(partitions)]
    cpu_before, load_before = children_cpu_seconds(), os.getloadavg()[0]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(raw_partition, *zip(*arguments)))
    wall = time.perf_counter() - started
    users = sum(r["users"] for r in results)
    compute = sum(r["seconds"] for r in results)
    peaks: dict[int, int] = {}
    for r in results:
        peaks[r["pid"]] = max(peaks.get(r["pid"], 0), r["peak_rss_bytes"])
    return {
        "users": users, "compute_seconds": compute, "wall_seconds": wall,
        "users_per_second": users / (compute / args.workers),
        "cpu_seconds": children_cpu_seconds() - cpu_before,
        "compute_cpu_seconds": sum(r["cpu_seconds"] for r in results),
        "peak_rss_bytes_per_process": sorted(peaks.values()), "load_average_1min": [load_before, os.getloadavg()[0]],
    }


def measure_job(settings: ScoringSettings, workers: int) -> dict:
    last = [0.0]

    def show(progress: Progress) -> None:
        if time.time() - last[0] >= 30 or progress.partitions_done == progress.partitions_total:
            print(f"  {progress.log_line()}", flush=True)
            last[0] = time.time()

    cpu_before, own_before, load_before = children_cpu_seconds(), own_cpu_seconds(), os.getloadavg()[0]
    started = time.perf_counter()
    summary = run_job(settings, workers=workers, on_progress=show)
    wall = time.perf_counter() - started
    run = Path(summary.path)
    output_bytes = sum(p.stat().st_size for p in run.glob("*.parquet"))
    parent = str(os.getpid())
    worker_peaks = [v for pid, v in summary.peak_rss_bytes_by_process.items() if pid != parent]
    result = {
        "users": summary.counts.users, "rows": summary.counts.rows, "wall_seconds": wall,
        "users_per_second": summary.counts.users / wall,
        # The same definition as the raw limit's: time inside partitions only, averaged over workers.
        "partition_seconds": summary.partition_seconds,
        "users_per_second_in_partitions": summary.counts.users / (summary.partition_seconds / workers),
        "cpu_seconds": (children_cpu_seconds() - cpu_before) + (own_cpu_seconds() - own_before),
        "fallback_users": summary.counts.fallback_users, "users_short_of_k": summary.counts.users_short_of_k,
        "partitions": summary.partitions, "output_bytes": output_bytes,
        "peak_rss_bytes_per_worker": sorted(worker_peaks),
        "peak_rss_bytes_parent": summary.peak_rss_bytes_by_process.get(parent, 0),
        "load_average_1min": [load_before, os.getloadavg()[0]], "summary_line": summary.log_line(),
    }
    result["peak_rss_bytes_sum"] = sum(worker_peaks) + result["peak_rss_bytes_parent"]
    shutil.rmtree(run.parents[1], ignore_errors=True)
    return result


def run_scale(num_users: int, args: argparse.Namespace, export_dir: Path, threads: int) -> dict:
    print(f"== {num_users:,} users x {args.items:,} items, dim {args.dim}, top {args.k}", flush=True)
    output = WORK / f"out-{num_users}"
    shutil.rmtree(output, ignore_errors=True)
    settings = ScoringSettings(export_dir=str(export_dir), output_dir=str(output), k=args.k, run_date="2026-01-01",
                               partition_users=args.partition_users, user_chunk=args.user_chunk,
                               item_chunk=args.item_chunk, resume=False, torch_threads=threads)
    totals: dict = {}
    unavailable = np.random.default_rng(args.seed).random(args.items) < UNAVAILABLE_FRACTION
    started = time.perf_counter()
    plan = prepare_precomputed(settings, generate_partitions(num_users, args.items, args.dim, args.partition_users,
                                                             args.history_mean, args.seed, totals), unavailable)
    print(f"  generated {plan.partitions} partitions in {time.perf_counter() - started:.0f}s "
          f"(not timed below)", flush=True)

    raw = measure_raw(plan.staging, plan.partitions, export_dir, args, threads)
    print(f"  raw limit: {raw['users_per_second']:,.0f} users/s", flush=True)
    job = measure_job(settings, args.workers)
    print(f"  full job:  {job['users_per_second']:,.0f} users/s", flush=True)
    shutil.rmtree(output, ignore_errors=True)
    sizes = {"user_vectors_bytes": num_users * args.dim * 4, "item_vectors_bytes": args.items * args.dim * 4,
             "seen_items_bytes": totals["seen_items"] * 8}
    peak = max(job["peak_rss_bytes_per_worker"] + [job["peak_rss_bytes_parent"]])
    fraction = job["users_per_second"] / raw["users_per_second"]
    return {
        "users": num_users, "seen_items": totals["seen_items"], "no_history_users": totals["no_history_users"],
        "unavailable_items": int(unavailable.sum()), "representation_sizes": sizes, "raw": raw, "job": job,
        "job_fraction_of_raw": fraction,
        "job_fraction_of_raw_in_partitions": job["users_per_second_in_partitions"] / raw["users_per_second"],
        "job_fraction_of_raw_cpu": (raw["compute_cpu_seconds"] / raw["users"]) / (job["cpu_seconds"] / job["users"]),
        "peak_rss_bytes_max": peak,
        "targets": {"fraction_of_raw": {"target": MIN_FRACTION_OF_RAW, "met": fraction >= MIN_FRACTION_OF_RAW},
                    "peak_rss_bytes_per_process": {"target": MAX_PEAK_BYTES_PER_PROCESS,
                                                   "met": peak < MAX_PEAK_BYTES_PER_PROCESS}},
    }


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    memory = 0.0
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        memory = int(meminfo.read_text().split("MemTotal:")[1].split()[0]) / 1024 ** 2
    return {"cpu": cpu, "cpus": len(os.sched_getaffinity(0)), "memory_gib": round(memory, 1),
            "python": platform.python_version(), "torch": torch.__version__, "pyarrow": pa.__version__,
            "numpy": np.__version__}


def print_table(scales: list[dict]) -> None:
    print("\nusers      raw users/s  job users/s  job/raw  in partitions  job/raw (CPU)  worker peak  parent peak  "
          "sum of peaks  user+item vectors")
    for s in scales:
        job, sizes = s["job"], s["representation_sizes"]
        print(f"{s['users']:<10,} {s['raw']['users_per_second']:>11,.0f}  {job['users_per_second']:>11,.0f}  "
              f"{s['job_fraction_of_raw']:>7.2f}  {s['job_fraction_of_raw_in_partitions']:>13.2f}  "
              f"{s['job_fraction_of_raw_cpu']:>13.2f}  "
              f"{max(job['peak_rss_bytes_per_worker'], default=0) / GIB:>9.2f} GiB  "
              f"{job['peak_rss_bytes_parent'] / GIB:>7.2f} GiB  "
              f"{job['peak_rss_bytes_sum'] / GIB:>8.2f} GiB  "
              f"{(sizes['user_vectors_bytes'] + sizes['item_vectors_bytes']) / GIB:>13.3f} GiB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark batch scoring against the raw top-K limit.")
    parser.add_argument("--users", type=int, nargs="+", default=[100_000, 1_000_000],
                        help="user counts to run, in order (default: 100000 1000000)")
    parser.add_argument("--items", type=int, default=100_000, help="catalogue size (default: 100000)")
    parser.add_argument("--dim", type=int, default=64, help="vector dimension (default: 64)")
    parser.add_argument("--k", type=int, default=100, help="recommendations per user (default: 100)")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="worker processes (default: one per core)")
    parser.add_argument("--partition-users", type=int, default=10_000, help="users per partition (default: 10000)")
    parser.add_argument("--user-chunk", type=int, default=256, help="users per matrix product (default: 256)")
    parser.add_argument("--item-chunk", type=int, default=131_072, help="items per matrix product (default: 131072)")
    parser.add_argument("--history-mean", type=float, default=50.0, help="mean seen items per user (default: 50)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated data (default: 0)")
    parser.add_argument("--shared", default="", help="note on other work running on the machine, kept in the JSON")
    args = parser.parse_args(argv)

    threads = max(1, len(os.sched_getaffinity(0)) // args.workers)
    export_dir = WORK / "export"
    write_export(export_dir, args.items, args.dim, args.seed)
    scales = [run_scale(n, args, export_dir, threads) for n in args.users]
    print_table(scales)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(RESULTS, {
        "created_at": datetime.now(timezone.utc).isoformat(), "machine": {**machine(), "shared_with": args.shared},
        "settings": {"items": args.items, "dim": args.dim, "k": args.k, "workers": args.workers,
                     "torch_threads_per_worker": threads, "partition_users": args.partition_users,
                     "user_chunk": args.user_chunk, "item_chunk": args.item_chunk,
                     "history_mean": args.history_mean, "seed": args.seed},
        "scales": scales,
    })
    print(f"\nwrote {RESULTS}")
    shutil.rmtree(WORK, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
