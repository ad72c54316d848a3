"""The ``recsys-peft`` command line."""

from __future__ import annotations

import typer

from recsys_peft.cli.export import export
from recsys_peft.cli.generate import generate
from recsys_peft.cli.ingest import delete_user, ingest
from recsys_peft.cli.registry import app as registry_app
from recsys_peft.cli.score import score

app = typer.Typer(no_args_is_help=True, help="Personalise recommender models per user segment.")
app.command("generate")(generate)
app.command("ingest")(ingest)
app.command("delete-user")(delete_user)
app.command("export")(export)
app.command("score")(score)
app.add_typer(registry_app, name="registry")


def main() -> None:
    app()
