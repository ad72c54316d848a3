"""Options shared by the pipeline commands, config resolution, and the import of ``flows/``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import typer

from recsys_peft.config import PipelineConfig
from recsys_peft.config_check import check_config
from recsys_peft.config_file import load_config, to_yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = Path("flows/configs/movielens.yaml")

CONFIG = typer.Option(None, "--config", "-c", help="Pipeline config YAML; keys it leaves out keep their defaults.",
                      show_default="built-in defaults, those of the MovieLens-100K demo")
SET = typer.Option([], "--set", "-s", metavar="KEY=VALUE",
                   help="Override one config key, e.g. --set pretrain.epochs=5; repeat for several.")
WORK_DIR = typer.Option(None, "--work-dir", help="Folder for every output (the config key work_dir).",
                        show_default="the config's work_dir")
MODEL = typer.Option(None, "--model", help="Model family, two_tower or sasrec (the config key model).",
                     show_default="the config's model")
SEED = typer.Option(None, "--seed", help="Seed of training and sampling (the config key seed).",
                    show_default="the config's seed")
DRY_RUN = typer.Option(False, "--dry-run", help="Check the config and print it resolved; run nothing.")
DEBUG = typer.Option(False, "--debug", help="Show the Python traceback of a failure.")


def demo_config_path() -> Path:
    """Return the demo's config file: under the working folder, else beside the installed package."""
    return DEMO_CONFIG if DEMO_CONFIG.is_file() else REPO_ROOT / DEMO_CONFIG


def resolve_config(config_file: Path | None, overrides: list[str], work_dir: Path | None = None,
                   model: str | None = None, seed: int | None = None, need_raw: bool = True) -> PipelineConfig:
    """Build the config from the file, the shortcut options and ``--set`` (which wins), then check it."""
    shortcuts = [f"{key}={value}" for key, value in (("work_dir", work_dir), ("model", model), ("seed", seed))
                 if value is not None]
    config = load_config(config_file, shortcuts + list(overrides))
    check_config(config, need_raw=need_raw)
    return config


def print_config(config: PipelineConfig) -> None:
    """Print the resolved config on stderr at the start of a run, so stdout keeps only results."""
    typer.echo("resolved config:\n" + "\n".join(f"  {line}" for line in to_yaml(config).splitlines()), err=True)


def import_flows(name: str) -> ModuleType:
    """Import ``flows.<name>``, which lives beside the package in the repository, not inside it."""
    try:
        return importlib.import_module(f"flows.{name}")
    except ModuleNotFoundError as error:
        # An editable install puts only recsys_peft on the path; the flows sit one folder above it.
        if error.name not in ("flows", f"flows.{name}") or not (REPO_ROOT / "flows" / f"{name}.py").is_file():
            raise
        sys.path.insert(0, str(REPO_ROOT))
        return importlib.import_module(f"flows.{name}")
