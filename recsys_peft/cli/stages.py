"""``recsys-peft run``, ``demo``, ``train``, ``finetune``, ``evaluate`` and ``report``.

Each resolves and checks the pipeline config before any work, prints it on stderr, and runs
the Prefect flow of ``flows/pipeline.py`` that a schedule would run.
"""

from __future__ import annotations

from pathlib import Path

import typer

from recsys_peft.cli.common import (
    CONFIG, DEBUG, DRY_RUN, MODEL, SEED, SET, WORK_DIR, demo_config_path, import_flows, print_config,
    resolve_config,
)
from recsys_peft.cli.console import setup_console
from recsys_peft.cli.errors import EXIT_USAGE, fail, reported_failures


def _run_flow(flow_name: str, config_file: Path | None, overrides: list[str], work_dir: Path | None,
              model: str | None, seed: int | None, dry_run: bool, debug: bool, need_raw: bool = True) -> None:
    """Resolve and print the config, then run ``flows.pipeline.<flow_name>`` and print its output paths."""
    with reported_failures(debug):
        config = resolve_config(config_file, overrides, work_dir, model, seed, need_raw=need_raw)
    print_config(config)
    if dry_run:
        return
    with reported_failures(debug):
        setup_console(debug)
        flows = import_flows("pipeline")
        paths = getattr(flows, flow_name)(config)
    if paths:
        _print_paths(paths)


def _print_paths(paths: dict) -> None:
    width = max(len(key) for key in paths) + 2
    for key, value in paths.items():
        typer.echo(f"{key + ':':<{width}}{value}")


def run(config: Path | None = CONFIG, overrides: list[str] = SET, work_dir: Path | None = WORK_DIR,
        model: str | None = MODEL, seed: int | None = SEED, dry_run: bool = DRY_RUN, debug: bool = DEBUG) -> None:
    """Run every stage: ingest, split, pretrain, fine-tune, evaluate, export, score and report.

    Example: recsys-peft run --config flows/configs/movielens.yaml --set pretrain.epochs=5
    """
    _run_flow("pipeline", config, overrides, work_dir, model, seed, dry_run, debug)


def demo(model: str | None = MODEL, seed: int | None = SEED, work_dir: Path | None = WORK_DIR,
         overrides: list[str] = SET, dry_run: bool = DRY_RUN, debug: bool = DEBUG) -> None:
    """Run the whole pipeline on MovieLens-100K (downloaded on first use), as `make demo` does.

    Example: recsys-peft demo --model sasrec
    """
    _run_flow("pipeline", demo_config_path(), overrides, work_dir, model, seed, dry_run, debug)


def train(config: Path | None = CONFIG, overrides: list[str] = SET, work_dir: Path | None = WORK_DIR,
          model: str | None = MODEL, seed: int | None = SEED, dry_run: bool = DRY_RUN, debug: bool = DEBUG) -> None:
    """Ingest new raw files and pretrain the base model into WORK_DIR/models/base.

    Example: recsys-peft train --config flows/configs/movielens.yaml --set pretrain.epochs=10
    """
    _run_flow("train_flow", config, overrides, work_dir, model, seed, dry_run, debug)


def finetune(config: Path | None = CONFIG, overrides: list[str] = SET, work_dir: Path | None = WORK_DIR,
             seed: int | None = SEED, dry_run: bool = DRY_RUN, debug: bool = DEBUG) -> None:
    """Fine-tune one adapter per segment on the saved base model, and promote them as a release.

    Example: recsys-peft finetune --config flows/configs/movielens.yaml --set finetune.lora.r=4
    """
    _run_flow("finetune_flow", config, overrides, work_dir, None, seed, dry_run, debug, need_raw=False)


def evaluate(config: Path | None = CONFIG, overrides: list[str] = SET, work_dir: Path | None = WORK_DIR,
             dry_run: bool = DRY_RUN, debug: bool = DEBUG) -> None:
    """Evaluate the promoted release against the base model; write metrics.json and report.html.

    Example: recsys-peft evaluate --work-dir data/demo
    """
    _run_flow("evaluate_flow", config, overrides, work_dir, None, None, dry_run, debug, need_raw=False)


def report(work_dir: Path = typer.Option(Path("data/demo"), "--work-dir", help="Folder of the run to report on."),
           out: Path | None = typer.Option(None, "--out", help="HTML file to write.",
                                           show_default="WORK_DIR/report.html"),
           sample_users: int = typer.Option(3, "--sample-users", min=0, help="Users whose lists the report shows."),
           debug: bool = DEBUG) -> None:
    """Write a self-contained HTML report of a run: metrics per segment, curves, costs, data, sample users.

    Example: recsys-peft report --work-dir data/demo --out /tmp/report.html
    """
    from recsys_peft.report import write_report

    if not (work_dir / "metrics.json").is_file():
        fail(f"no metrics in {work_dir}: {work_dir / 'metrics.json'} is missing; run `recsys-peft evaluate` "
             f"or `recsys-peft run` first", EXIT_USAGE)
    with reported_failures(debug):
        path = write_report(work_dir, out, sample_users)
    typer.echo(f"report path={path} bytes={path.stat().st_size}")
