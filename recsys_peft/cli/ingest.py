"""``recsys-peft ingest`` and ``recsys-peft delete-user``: fill a store, or remove users from it."""

from __future__ import annotations

from pathlib import Path

import typer

from recsys_peft.ingest.delete import delete_users
from recsys_peft.ingest.ingest import TooManyBadRowsError, ingest_source
from recsys_peft.ingest.presets import detect_source_spec
from recsys_peft.ingest.spec import load_source_spec


def ingest(
    source: Path = typer.Argument(..., help="Folder of the raw files, or a MovieLens or RecBole file or folder."),
    store: Path = typer.Option(..., "--store", help="Store folder to create or add to."),
    spec: Path | None = typer.Option(None, "--spec", help="Source spec YAML; without it the layout is detected."),
    max_bad_fraction: float | None = typer.Option(
        None, "--max-bad-fraction", min=0.0, max=1.0,
        help="Largest fraction of invalid rows in one file before the run fails (default: the spec's)."),
) -> None:
    """Add new files to a store; files whose content the store already has are skipped."""
    try:
        if spec is not None:
            source_spec, raw_dir = load_source_spec(spec), source
        else:
            source_spec, raw_dir = detect_source_spec(source)
        summary = ingest_source(source_spec, raw_dir, store, max_bad_fraction=max_bad_fraction)
    except (FileNotFoundError, TooManyBadRowsError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(summary.log_line())


def delete_user(
    user_ids: list[str] = typer.Argument(..., help="Original ids of the users to delete."),
    store: Path = typer.Option(..., "--store", help="Store folder to delete from."),
    recommendations: list[Path] = typer.Option(
        [], "--recommendations", help="Folder of recommendation parquet files to remove the users from. Repeat for several folders."),
) -> None:
    """Delete users' events and recommendations; their vocabulary indices become tombstones."""
    try:
        summary = delete_users(store, user_ids, tuple(recommendations))
    except (FileNotFoundError, KeyError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"delete users={len(summary.user_indices)} events_removed={summary.events_removed} "
               f"partitions_rewritten={len(summary.partitions_rewritten)} "
               f"recommendations_removed={summary.recommendations_removed} vocab={summary.vocabulary_version}")
