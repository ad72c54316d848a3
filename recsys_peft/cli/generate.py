"""``recsys-peft generate``: write a synthetic interaction log of any size."""

from __future__ import annotations

from pathlib import Path

import typer

from recsys_peft.dataset.synthetic import generate_log


def generate(
    out: Path = typer.Argument(..., help="Folder to write interactions, users, items, spec.yaml and truth.npz to."),
    rows: int = typer.Option(100_000, "--rows", min=0, help="Number of interactions to generate."),
    users: int | None = typer.Option(None, "--users", min=1, help="Number of users (default: rows / 50)."),
    items: int | None = typer.Option(None, "--items", min=1, help="Number of items (default: rows / 500)."),
    days: int = typer.Option(60, "--days", min=1, help="Days the events are spread over."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed writes the same files."),
    gzip: bool = typer.Option(False, "--gzip", help="Write interactions.csv.gz instead of interactions.csv."),
) -> None:
    """Generate a log with power-law item popularity, segment tastes and sessions over time.

    Example: recsys-peft generate data/raw/synthetic --rows 100000 --seed 1
    """
    log = generate_log(out, rows, num_users=users, num_items=items, days=days, seed=seed, compress=gzip)
    typer.echo(f"generate rows={log.num_interactions} users={log.num_users} items={log.num_items} "
               f"spec={log.spec_path}")
