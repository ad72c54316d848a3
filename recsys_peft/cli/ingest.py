"""``recsys-peft ingest`` and ``recsys-peft delete-user``: fill a store, or remove users from it."""

from __future__ import annotations

from pathlib import Path

import typer

from recsys_peft.cli.common import CONFIG, DEBUG, SET, import_flows, print_config, resolve_config
from recsys_peft.cli.console import setup_console
from recsys_peft.cli.errors import EXIT_FAILED, EXIT_USAGE, fail, reported_failures
from recsys_peft.ingest.delete import delete_users
from recsys_peft.ingest.ingest import TooManyBadRowsError, ingest_source
from recsys_peft.ingest.presets import detect_source_spec
from recsys_peft.ingest.spec import load_source_spec


def ingest(
    source: Path | None = typer.Argument(
        None, help="Folder of the raw files, or a MovieLens or RecBole file or folder. Leave out with --config."),
    store: Path | None = typer.Option(None, "--store", help="Store folder to create or add to (with SOURCE)."),
    spec: Path | None = typer.Option(None, "--spec", help="Source spec YAML; without it the layout is detected."),
    max_bad_fraction: float | None = typer.Option(
        None, "--max-bad-fraction", min=0.0, max=1.0,
        help="Largest fraction of invalid rows in one file before the run fails (default: the spec's)."),
    config: Path | None = CONFIG,
    overrides: list[str] = SET,
    debug: bool = DEBUG,
) -> None:
    """Add new files to a store; files whose content the store already has are skipped.

    With SOURCE and --store, the files are ingested in this process.
    With --config and no SOURCE, the scheduled ingest flow runs on the config's raw_dir and WORK_DIR/store.

    Example: recsys-peft ingest data/raw/ml-100k --store data/demo/store
    """
    if source is None:
        _ingest_flow(config, overrides, debug)
        return
    if store is None:
        fail("ingest SOURCE needs --store: the store folder to create or add to", EXIT_USAGE)
    try:
        if spec is not None:
            source_spec, raw_dir = load_source_spec(spec), source
        else:
            source_spec, raw_dir = detect_source_spec(source)
    except (FileNotFoundError, ValueError) as error:  # the spec or the source folder: bad usage
        fail(str(error), EXIT_USAGE, debug)
    try:
        summary = ingest_source(source_spec, raw_dir, store, max_bad_fraction=max_bad_fraction)
    except (OSError, TooManyBadRowsError, ValueError, RuntimeError) as error:  # the data: the work failed
        fail(str(error), EXIT_FAILED, debug)
    typer.echo(summary.log_line())


def _ingest_flow(config_file: Path | None, overrides: list[str], debug: bool) -> None:
    """Run ``flows.retrain.ingest_flow``, the flow the hourly ingest schedule runs."""
    if config_file is None and not overrides:
        fail("pass SOURCE with --store, or --config for the config's raw_dir and store", EXIT_USAGE)
    with reported_failures(debug):
        config = resolve_config(config_file, overrides)
    print_config(config)
    with reported_failures(debug):
        setup_console(debug)
        summary = import_flows("retrain").ingest_flow(config)
    typer.echo(f"ingest run={summary['run_id']} files_ingested={len(summary['files_ingested'])} "
               f"rows_written={summary['rows_written']} quarantined={summary['rows_quarantined']} "
               f"vocab={summary['vocabulary_version']}")


def delete_user(
    user_ids: list[str] = typer.Argument(..., help="Original ids of the users to delete."),
    store: Path = typer.Option(..., "--store", help="Store folder to delete from."),
    recommendations: list[Path] = typer.Option(
        [], "--recommendations", help="Folder of recommendation parquet files to remove the users from. Repeat for several folders."),
) -> None:
    """Delete users' events and recommendations; their vocabulary indices become tombstones.

    Example: recsys-peft delete-user 42 --store data/demo/store --recommendations data/demo/recommendations
    """
    if any(not user_id.strip() for user_id in user_ids):
        fail("user ids must not be empty", EXIT_USAGE)
    try:
        summary = delete_users(store, user_ids, tuple(recommendations))
    except (FileNotFoundError, KeyError) as error:
        fail(str(error.args[0]) if error.args else str(error), EXIT_USAGE)
    typer.echo(f"delete users={len(summary.user_indices)} events_removed={summary.events_removed} "
               f"partitions_rewritten={len(summary.partitions_rewritten)} "
               f"recommendations_removed={summary.recommendations_removed} vocab={summary.vocabulary_version}")
