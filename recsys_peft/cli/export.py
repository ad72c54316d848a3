"""``recsys-peft export``: export a registry release (base model and adapters) for batch scoring."""

from __future__ import annotations

import traceback
from pathlib import Path

import typer

from recsys_peft import atomic
from recsys_peft.config import PipelineConfig


def export(
    work_dir: Path = typer.Option(Path("data/demo"), "--work-dir",
                                  help="Pipeline folder; the defaults of the options below are inside it."),
    registry: Path | None = typer.Option(None, "--registry", help="Model registry.",
                                         show_default="WORK_DIR/registry"),
    release: str | None = typer.Option(None, "--release", help="Release id.", show_default="the promoted release"),
    store: Path | None = typer.Option(None, "--store", help="Store the models were trained on.",
                                      show_default="WORK_DIR/store"),
    config: Path | None = typer.Option(
        None, "--config", help="Pipeline config JSON with the segment spec and user attributes.",
        show_default="WORK_DIR/config.json, else the demo defaults"),
    out: Path | None = typer.Option(None, "--out", help="Export folder to replace.", show_default="WORK_DIR/export"),
    seed: int = typer.Option(0, "--seed", help="Seed of the parity check's user sample."),
    debug: bool = typer.Option(False, "--debug", help="Show the Python traceback of a failure."),
) -> None:
    """Export the release and check that its scores match the training model's on every segment.

    Example: recsys-peft export --work-dir data/demo
    """
    from recsys_peft.dataset.snapshot import load_snapshot
    from recsys_peft.export.exporter import ParityError, export_model
    from recsys_peft.registry.store import Registry, RegistryError
    from recsys_peft.segments import load_segment_spec
    from recsys_peft.training.finetune import adapter_slots

    registry = registry or work_dir / "registry"
    store = store or work_dir / "store"
    out = out or work_dir / "export"
    config = config or (work_dir / "config.json" if (work_dir / "config.json").is_file() else None)
    try:
        settings = atomic.read_json(config) if config else PipelineConfig().to_dict()
        segment_spec = load_segment_spec(settings["segment_spec"])
        loaded = Registry(registry).load_release(release)
        snapshot = load_snapshot(store, segment_spec, settings["user_attributes"])
        trained_on = loaded.base_meta.get("vocabulary_version")
        if trained_on and trained_on != snapshot.log.vocabulary_version:
            raise ValueError(f"store {store} has vocabulary {snapshot.log.vocabulary_version}, but the release was "
                             f"trained on {trained_on}; export from the store the models were trained on")
    except (FileNotFoundError, KeyError, ValueError, RegistryError) as error:
        if debug:
            traceback.print_exc()
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None

    metrics_path = work_dir / "metrics.json"
    extra = {
        "base_model_hash": loaded.base_meta["weights_hash"],
        "release": loaded.release.release_id,
        "registry_adapter_versions": dict(loaded.release.adapters),
        "config": settings,
    }
    if metrics_path.is_file():
        report = atomic.read_json(metrics_path)
        extra["metrics"] = {"test": {m: report["overall"][m]["ndcg@10"] for m in ("base", "adapted")}}
    try:
        slots = adapter_slots(snapshot, loaded.adapters)
        manifest = export_model(loaded.adapted, snapshot, slots, out, store, extra, seed=seed,
                                segment_spec=segment_spec)
    except (ParityError, ValueError) as error:
        if debug:
            traceback.print_exc()
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    parity = manifest["parity"]
    typer.echo(f"export model_version={manifest['model_version']} release={loaded.release.release_id} "
               f"parity_users={parity['users']} max_abs_diff={parity['max_abs_diff']:.2e} "
               f"tolerance={parity['tolerance']:.0e} path={out}")
