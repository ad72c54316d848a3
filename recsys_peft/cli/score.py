"""``recsys-peft score``: batch-score users with an exported model, through the Prefect flow ``flows/score.py``."""

from __future__ import annotations

import os
import traceback
from pathlib import Path

import typer

from recsys_peft.cli.common import import_flows
from recsys_peft.cli.console import setup_console
from recsys_peft.cli.errors import EXIT_FAILED, EXIT_USAGE, fail
from recsys_peft.export.model import check_export_folder
from recsys_peft.scoring.recommend import DEFAULT_USER_CHUNK
from recsys_peft.scoring.settings import ScoringInputError, ScoringSettings, UserSelection, today_utc
from recsys_peft.scoring.topk import DEFAULT_ITEM_CHUNK


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def score(
    export: Path = typer.Option(..., "--export", help="Export folder written by `recsys-peft export`."),
    out: Path = typer.Option(..., "--out", help="Output folder; runs go to run_date=.../model_version=.../."),
    store: Path = typer.Option(..., "--store", help="Store folder to read users and histories from."),
    segment: str | None = typer.Option(None, "--segment", help="Score only the users of this segment."),
    users: Path | None = typer.Option(None, "--users", help="Parquet file with a user_id column: score these ids."),
    top_k: int = typer.Option(10, "--top-k", min=1, help="Recommendations per user."),
    run_date: str | None = typer.Option(None, "--run-date", help="Run date partition as YYYY-MM-DD.",
                                        show_default="today, UTC"),
    catalogue: Path | None = typer.Option(
        None, "--catalogue", help="Parquet with item_id and a bool 'available'; unavailable items are never "
                                  "recommended.",
        show_default="the store's items.parquet when it has 'available'"),
    partition_users: int = typer.Option(10_000, "--partition-users", min=1,
                                        help="Users per partition: the unit of work and of output files."),
    user_chunk: int = typer.Option(DEFAULT_USER_CHUNK, "--user-chunk", min=1, help="Users scored per matrix product."),
    item_chunk: int = typer.Option(DEFAULT_ITEM_CHUNK, "--item-chunk", min=1, help="Items scored per matrix product."),
    runner: str = typer.Option("processes", "--runner", help="Where partitions run: threads, processes or dask."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Parallel workers.", show_default="one per core"),
    dask_address: str | None = typer.Option(None, "--dask-address",
                                            help="Scheduler of a running Dask cluster, e.g. tcp://host:8786."),
    torch_threads: int | None = typer.Option(None, "--torch-threads", min=1,
                                             help="Torch threads per worker.", show_default="cores / workers"),
    restart: bool = typer.Option(False, "--restart", help="Score every partition again, even those an "
                                                          "interrupted run of the same job finished."),
    debug: bool = typer.Option(False, "--debug", help="Show the Python traceback of a failure."),
) -> None:
    """Write the top-K recommendations of all users, one segment's users or a list of ids.

    Example: recsys-peft score --export data/demo/export --store data/demo/store --out data/scores --top-k 100
    """
    try:
        settings = ScoringSettings(
            export_dir=str(export), output_dir=str(out), store_dir=str(store),
            users=UserSelection.from_options(segment, str(users) if users else None), k=top_k,
            run_date=run_date or today_utc(), catalogue=str(catalogue) if catalogue else None,
            partition_users=partition_users, user_chunk=user_chunk, item_chunk=item_chunk,
            resume=not restart, torch_threads=torch_threads)
        check_export_folder(export)
        if not (store / "manifest.json").is_file():
            raise FileNotFoundError(f"not a store: {store / 'manifest.json'} is missing")
        flow_module = import_flows("score")
        flow_module.task_runner(runner, workers or _cores(), dask_address)
    except (ValueError, FileNotFoundError) as error:
        fail(str(error), EXIT_USAGE, debug)
    setup_console(debug)
    try:
        summary = flow_module.run_score_flow(settings, runner, workers or _cores(), dask_address)
    except ScoringInputError as error:
        if debug:
            traceback.print_exc()
        fail(str(error), EXIT_USAGE)
    except Exception as error:  # noqa: BLE001 - the CLI turns any other failure into exit code 1
        if debug:
            traceback.print_exc()
        fail(f"scoring failed: {error}", EXIT_FAILED)
    typer.echo(f"recommendations: {summary['path']}")
