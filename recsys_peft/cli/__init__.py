"""The ``recsys-peft`` command line: one command per stage, each running the stage's Prefect flow."""

from __future__ import annotations

import importlib
import sys

import typer

from recsys_peft.cli import interrupt
from recsys_peft.cli.errors import EXIT_FAILED
from recsys_peft.cli.export import export
from recsys_peft.cli.generate import generate
from recsys_peft.cli.ingest import delete_user, ingest
from recsys_peft.cli.registry import app as registry_app
from recsys_peft.cli.score import score
from recsys_peft.cli.stages import demo, evaluate, finetune, report, run, train

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Personalise recommender models per user segment.\n\n"
                       "Exit codes: 0 success, 1 the work failed, 2 bad usage or bad config, 130 interrupted.")
app.command("demo")(demo)
app.command("run")(run)
app.command("generate")(generate)
app.command("ingest")(ingest)
app.command("delete-user")(delete_user)
app.command("train")(train)
app.command("finetune")(finetune)
app.command("evaluate")(evaluate)
app.command("export")(export)
app.command("score")(score)
app.command("report")(report)
app.add_typer(registry_app, name="registry")


def _add_schedule_commands(target: typer.Typer) -> None:
    """Add ``deploy`` and ``serve`` from ``recsys_peft.cli.schedule`` when that module is installed."""
    try:
        schedule = importlib.import_module("recsys_peft.cli.schedule")
    except ModuleNotFoundError as error:
        if error.name != "recsys_peft.cli.schedule":
            raise
        return
    schedule.register(target)


_add_schedule_commands(app)


def main() -> None:
    """Run the command line; an error that escapes a command becomes one line on stderr and exit code 1."""
    interrupt.install()
    try:
        app(standalone_mode=True)
    except SystemExit:
        if interrupt.interrupted():
            sys.exit(interrupt.EXIT_INTERRUPTED)
        raise
    except Exception as error:  # noqa: BLE001 - the last guard, so no traceback reaches the user by default
        if interrupt.interrupted():
            print("error: interrupted", file=sys.stderr)
            sys.exit(interrupt.EXIT_INTERRUPTED)
        if "--debug" in sys.argv:
            raise
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(EXIT_FAILED)
