"""``recsys-peft registry``: list, promote and roll back base models and adapters."""

from __future__ import annotations

import json

import typer

from recsys_peft.cli.errors import EXIT_USAGE, fail
from recsys_peft.registry.store import Registry, RegistryError

app = typer.Typer(no_args_is_help=True, help="List, promote and roll back base models and adapters.")
URL = typer.Argument(..., help="Registry root: a local folder or any fsspec URL (s3://bucket/path, memory://x).")


def _fail(error: Exception) -> None:
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(code=1)


@app.command("list")
def list_command(url: str = URL,
                 base: str | None = typer.Option(None, "--base", help="List the adapter versions of this base model id.")) -> None:
    """Print the base models, the releases with the current one marked, or one base model's adapters.

    Example: recsys-peft registry list data/demo/registry
    """
    registry = Registry(url)
    try:
        if base is not None:
            meta = registry.base_meta(base)
            typer.echo(f"base {base} weights_bytes={meta['weights_bytes']}")
            for segment in meta["segments"]:
                for version in registry.list_adapters(base, segment):
                    adapter = registry.adapter_meta(base, segment, version)
                    typer.echo(f"  {segment}  {version}  kept={adapter['kept']} rank={adapter['rank']} "
                               f"weights_bytes={adapter['weights_bytes']}  {adapter['reason']}")
            return
        history = registry.history()
        for base_id in registry.list_bases():
            meta = registry.base_meta(base_id)
            typer.echo(f"base {base_id} segments={len(meta['segments'])} weights_bytes={meta['weights_bytes']} "
                       f"vocabulary={meta.get('vocabulary_version', '')}")
        for release_id in registry.list_releases():
            release = registry.release(release_id)
            marker = "current" if history and history[0] == release_id else (
                "previous" if release_id in history else "")
            kept = sum(1 for s, v in release.adapters.items() if registry.adapter_meta(release.base_id, s, v)["kept"])
            typer.echo(f"release {release_id} base={release.base_id} adapters={kept}/{len(release.adapters)} {marker}")
    except RegistryError as error:
        _fail(error)


@app.command("promote")
def promote_command(
    url: str = URL,
    base: str | None = typer.Option(None, "--base", help="Promote this base model with the newest adapter of every segment."),
    segment: str | None = typer.Option(None, "--segment", help="Promote one adapter of this segment onto the current base."),
    version: str | None = typer.Option(None, "--version", help="The adapter version to promote with --segment."),
    note: str = typer.Option("", "--note", help="Text stored with the release."),
) -> None:
    """Promote a base model with a full set of adapters, or one adapter version, in one atomic step.

    Example: recsys-peft registry promote data/demo/registry --segment F:25-34 --version VERSION
    """
    if (base is None) == (segment is None):
        fail("pass either --base, or --segment with --version", EXIT_USAGE)
    if segment is not None and version is None:
        fail("--segment needs --version: the adapter version to promote", EXIT_USAGE)
    registry = Registry(url)
    try:
        current = registry.current()
        if current is not None and _already_current(registry, current, base, segment, version):
            typer.echo(f"release {current.release_id} is already current with these versions; nothing promoted",
                       err=True)
            release = current
        elif segment is not None:
            release = registry.promote_adapter(segment, version, note)
        else:
            release = registry.promote_latest(base, note)
    except (RegistryError, ValueError) as error:
        _fail(error)
    typer.echo(json.dumps(release.to_dict(), indent=2))


def _already_current(registry: Registry, current, base: str | None, segment: str | None,
                     version: str | None) -> bool:
    """Tell whether the promotion asked for would only repeat the current release."""
    if segment is not None:
        return current.adapters.get(segment) == version
    if current.base_id != base:
        return False
    return all(current.adapters.get(name) == (registry.list_adapters(base, name) or [None])[-1]
               for name in registry.base_meta(base)["segments"])


@app.command("rollback")
def rollback_command(url: str = URL,
                     steps: int = typer.Option(1, "--steps", min=1, help="How many promotions to undo.")) -> None:
    """Make an earlier release current again.

    Example: recsys-peft registry rollback data/demo/registry --steps 1
    """
    try:
        release = Registry(url).rollback(steps)
    except RegistryError as error:
        typer.echo(f"error: {error}; `recsys-peft registry list {url}` shows the releases", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"current release {release.release_id} base={release.base_id}")
