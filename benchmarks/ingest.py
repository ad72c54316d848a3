"""Ingest throughput and peak memory on a generated CSV log, next to two references.

    .venv/bin/python benchmarks/ingest.py                 # 10 million rows
    .venv/bin/python benchmarks/ingest.py --rows 1000000  # a quicker check
    .venv/bin/python benchmarks/ingest.py --rows 175000000 --methods recsys_peft --name ingest_5gb
                                                          # about 5 GB of CSV, ingest only

Generates the log under data/cache/ (git-ignored), then converts the same file three ways,
each in its own process so that peak memory (the process's maximum resident set size) is its
own (VmHWM on Linux):

- ``pandas``: ``pandas.read_csv`` then ``DataFrame.to_parquet``, no validation;
- ``pyarrow``: ``pyarrow.csv.read_csv`` then ``pyarrow.parquet.write_table``, no validation
  (the practical limit for CSV to parquet);
- ``recsys_peft``: ``ingest_source`` into a new store, with validation, quarantine,
  deduplication, ordering, vocabulary and date partitions;
- ``duckdb`` and ``duckdb_ordered`` (not run by default; need ``pip install duckdb``, the
  ``bench`` extra): DuckDB's parallel CSV reader and parquet writer, first as a bare
  conversion, then with duplicates dropped and rows sorted by user and time, the two heaviest
  steps of the ingest without any of its validation. They show what a parallel engine gains on
  this machine.

Seconds count the conversion only, not starting Python or importing libraries. Prints a table
and writes the figures, the targets and the machine to benchmarks/results/ingest.json. The
generated files are deleted at the end unless ``--keep`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "ingest.json"
METHODS = ("pandas", "pyarrow", "recsys_peft")
EXTRA_METHODS = ("duckdb", "duckdb_ordered")
# Targets for recsys_peft, all validation on: rows/s against each reference, and peak memory.
MIN_SPEEDUP_OVER_PANDAS = 1.5
MIN_FRACTION_OF_PYARROW = 1 / 3
MAX_MEMORY_FRACTION_OF_PANDAS = 0.5


def _peak_mb() -> float:
    """Return this process's peak resident memory in MiB.

    Linux's VmHWM starts afresh at exec. ru_maxrss does not: a child started by a parent that
    had generated the log would report the parent's peak as its own.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # the line reads "VmHWM:  123456 kB"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _convert(method: str, folder: Path, output: Path) -> dict:
    """Run one conversion in this process and return its seconds and memory."""
    csv_path = folder / "interactions.csv"
    if method == "pandas":
        import pandas as pd

        baseline = _peak_mb()
        started = time.perf_counter()
        pd.read_csv(csv_path).to_parquet(output / "interactions.parquet")
    elif method == "pyarrow":
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        baseline = _peak_mb()
        started = time.perf_counter()
        pq.write_table(pacsv.read_csv(csv_path), output / "interactions.parquet")
    elif method in EXTRA_METHODS:
        import duckdb

        query = f"SELECT * FROM read_csv('{csv_path}')"
        if method == "duckdb_ordered":
            query = f"SELECT DISTINCT * FROM ({query}) ORDER BY \"user\", ts"
        connection = duckdb.connect()
        baseline = _peak_mb()
        started = time.perf_counter()
        connection.execute(f"COPY ({query}) TO '{output / 'interactions.parquet'}' (FORMAT parquet)")
    else:
        from recsys_peft.ingest.ingest import ingest_source
        from recsys_peft.ingest.spec import load_source_spec

        spec = load_source_spec(folder / "spec.yaml")
        baseline = _peak_mb()
        started = time.perf_counter()
        summary = ingest_source(spec, folder, output / "store")
        if summary.rows_quarantined:
            raise RuntimeError(f"generated log had {summary.rows_quarantined} invalid rows")
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "peak_mb": _peak_mb(), "peak_before_mb": baseline}


def _machine() -> dict:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import pandas
    import pyarrow

    return {"cpu": cpu, "cpus": os.cpu_count(), "memory_gib": round(memory_gib, 1),
            "python": platform.python_version(), "pandas": pandas.__version__, "pyarrow": pyarrow.__version__,
            "load_average_1min_before": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="interactions to generate (default: 10 million)")
    parser.add_argument("--cache", default=str(ROOT / "data" / "cache" / "bench-ingest"),
                        help="folder for the generated log and the outputs (default: data/cache/bench-ingest)")
    parser.add_argument("--keep", action="store_true", help="keep the generated log and outputs")
    parser.add_argument("--methods", nargs="+", choices=METHODS + EXTRA_METHODS, default=list(METHODS),
                        help="conversions to run (default: the first three; ratios need them all)")
    parser.add_argument("--name", default="ingest", help="results file name under benchmarks/results (default: ingest)")
    parser.add_argument("--method", choices=METHODS + EXTRA_METHODS, help=argparse.SUPPRESS)  # one conversion, in a child
    args = parser.parse_args(argv)
    cache = Path(args.cache)
    log_dir = cache / f"log-{args.rows}"

    if args.method:
        output = cache / f"out-{args.method}"
        shutil.rmtree(output, ignore_errors=True)
        output.mkdir(parents=True)
        print(json.dumps(_convert(args.method, log_dir, output)))
        return 0

    from recsys_peft.dataset.synthetic import generate_log

    machine = _machine()
    if not (log_dir / "spec.yaml").is_file():
        generate_log(log_dir, args.rows, seed=0)
    csv_bytes = (log_dir / "interactions.csv").stat().st_size
    results = {}
    try:
        for method in args.methods:
            command = [sys.executable, __file__, "--rows", str(args.rows), "--cache", str(cache), "--method", method]
            child = subprocess.run(command, capture_output=True, text=True, check=True)
            figures = json.loads(child.stdout.strip().splitlines()[-1])
            figures["rows_per_second"] = args.rows / figures["seconds"]
            results[method] = figures
    finally:
        if not args.keep:
            shutil.rmtree(cache, ignore_errors=True)
    machine["load_average_1min_after"] = os.getloadavg()[0]

    results_path = RESULTS.parent / f"{args.name}.json"
    if not set(METHODS) <= set(results):
        report = {"rows": args.rows, "csv_bytes": csv_bytes, "machine": machine, "methods": results}
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"{args.rows:,} rows, {csv_bytes / 2**20:.0f} MiB of CSV; {machine['cpu']}, {machine['cpus']} CPUs")
        for method, figures in results.items():
            print(f"{method}: {figures['seconds']:.2f} s, {figures['rows_per_second']:,.0f} rows/s, "
                  f"peak {figures['peak_mb']:.0f} MiB")
        print(f"wrote {results_path}")
        return 0
    ours, pandas_figures, pyarrow_figures = results["recsys_peft"], results["pandas"], results["pyarrow"]
    ratios = {
        "speedup_over_pandas": ours["rows_per_second"] / pandas_figures["rows_per_second"],
        "fraction_of_pyarrow": ours["rows_per_second"] / pyarrow_figures["rows_per_second"],
        "memory_fraction_of_pandas": ours["peak_mb"] / pandas_figures["peak_mb"],
    }
    targets = {
        "speedup_over_pandas": {"min": MIN_SPEEDUP_OVER_PANDAS,
                                "met": ratios["speedup_over_pandas"] >= MIN_SPEEDUP_OVER_PANDAS},
        "fraction_of_pyarrow": {"min": MIN_FRACTION_OF_PYARROW,
                                "met": ratios["fraction_of_pyarrow"] >= MIN_FRACTION_OF_PYARROW},
        "memory_fraction_of_pandas": {"max": MAX_MEMORY_FRACTION_OF_PANDAS,
                                      "met": ratios["memory_fraction_of_pandas"] <= MAX_MEMORY_FRACTION_OF_PANDAS},
    }
    report = {"rows": args.rows, "csv_bytes": csv_bytes, "machine": machine, "methods": results,
              "ratios": ratios, "targets": targets}
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    print(f"{args.rows:,} rows, {csv_bytes / 2**20:.0f} MiB of CSV; {machine['cpu']}, {machine['cpus']} CPUs")
    print(f"{'method':<15} {'seconds':>8} {'rows/s':>12} {'peak MiB':>9}")
    for method, figures in results.items():
        print(f"{method:<15} {figures['seconds']:>8.2f} {figures['rows_per_second']:>12,.0f} {figures['peak_mb']:>9.0f}")
    for name, value in ratios.items():
        print(f"{name}: {value:.2f} (target met: {targets[name]['met']})")
    print(f"wrote {results_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
