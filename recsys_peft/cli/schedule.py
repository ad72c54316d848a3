"""``recsys-peft serve``, ``deploy`` and ``history``: the scheduled deployments and their record."""

from __future__ import annotations

from pathlib import Path

import typer

from recsys_peft.cli.common import CONFIG, DEBUG, SET, import_flows, print_config, resolve_config
from recsys_peft.cli.errors import reported_failures

ONLY = typer.Option("", "--only", help="Comma-separated deployments (ingest, segments, retrain, score); "
                                       "default: all four.")
NO_SCHEDULES = typer.Option(False, "--no-schedules", help="Register without cron schedules: runs start only "
                                                          "when triggered.")


def _names(only: str) -> list[str] | None:
    return [name.strip() for name in only.split(",") if name.strip()] or None


def serve(config_file: Path | None = CONFIG, overrides: list[str] = SET, only: str = ONLY,
          no_schedules: bool = NO_SCHEDULES,
          limit: int | None = typer.Option(None, "--limit", min=1, help="Maximum number of flow runs at once in this process."),
          debug: bool = DEBUG) -> None:
    """Serve the scheduled deployments from this process against the Prefect API in PREFECT_API_URL.

    Runs until interrupted. Set PREFECT_API_URL first: without it, the active Prefect profile
    decides whether a temporary server starts, and its runs end with this process.
    """
    with reported_failures(debug):
        config = resolve_config(config_file, overrides, need_raw=False)
        print_config(config)
        import_flows("deploy").serve_deployments(config, _names(only), schedules=not no_schedules, limit=limit)


def deploy(work_pool: str = typer.Option(..., "--work-pool", help="Work pool whose workers run the flows."),
           config_file: Path | None = CONFIG, overrides: list[str] = SET, only: str = ONLY,
           no_schedules: bool = NO_SCHEDULES, debug: bool = DEBUG) -> None:
    """Register the scheduled deployments with a work pool of the Prefect API in PREFECT_API_URL."""
    with reported_failures(debug):
        config = resolve_config(config_file, overrides, need_raw=False)
        ids = import_flows("deploy").deploy_to_work_pool(config, work_pool, _names(only), schedules=not no_schedules)
        typer.echo(f"deployed {len(ids)} deployments to work pool {work_pool}: {', '.join(ids)}")


def history(config_file: Path | None = CONFIG, overrides: list[str] = SET,
            segment: str | None = typer.Option(None, "--segment", help="Show one segment; default: overall."),
            debug: bool = DEBUG) -> None:
    """Print held-out NDCG@10 of the candidate and the promoted release, run by run."""
    from recsys_peft.retraining.history import OVERALL, metric_history

    with reported_failures(debug):
        config = resolve_config(config_file, overrides, need_raw=False)
        table = metric_history(config.work_dir)
        table = table[table["segment"] == (segment or OVERALL)]
        if table.empty:
            typer.echo(f"no retraining runs with metrics for segment {segment or OVERALL} in {config.work_dir}")
            return
        wide = table.pivot_table(index=["finished_at", "outcome"], columns="model", values="ndcg@10")
        typer.echo(wide.to_string(float_format=lambda value: f"{value:.4f}"))


def register(app: typer.Typer) -> None:
    """Add the ``serve``, ``deploy`` and ``history`` commands to ``app``."""
    app.command("serve")(serve)
    app.command("deploy")(deploy)
    app.command("history")(history)
