"""Retention: remove old recommendation runs, quarantine files and run records.

Model versions are pruned by ``Registry.prune``. Each function returns what it removed and
never removes what is still current: the run ``_LATEST.json`` points at, or the newest records.
"""

from __future__ import annotations

import shutil
from datetime import date, datetime, timedelta
from pathlib import Path

from recsys_peft import atomic
from recsys_peft.retraining.history import runs_folder
from recsys_peft.scoring.output import read_latest


def prune_recommendations(output_dir: str | Path, keep_days: int, today: date) -> list[str]:
    """Remove ``run_date=YYYY-MM-DD`` folders older than ``today - keep_days``, except the latest run's."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    latest = read_latest(output_dir)
    latest_date = str(latest["run_date"]) if latest else None
    cutoff = today - timedelta(days=keep_days)
    removed = []
    for folder in sorted(output_dir.glob("run_date=*")):
        value = folder.name.split("=", 1)[1]
        try:
            run_date = date.fromisoformat(value)
        except ValueError:
            continue  # not a folder the scoring job wrote
        if run_date < cutoff and value != latest_date:
            shutil.rmtree(folder)
            removed.append(folder.name)
    return removed


def prune_quarantine(store_dir: str | Path, keep_days: int, now: datetime) -> list[str]:
    """Remove quarantine files of ingest runs that started more than ``keep_days`` before ``now``.

    A run's start time comes from its manifest in ``runs/``. A quarantine file without one is kept.
    """
    store_dir = Path(store_dir)
    cutoff = now - timedelta(days=keep_days)
    removed = []
    for path in sorted((store_dir / "quarantine").glob("run-*.parquet")):
        manifest = store_dir / "runs" / f"{path.stem}.json"
        if not manifest.is_file():
            continue
        if datetime.fromisoformat(atomic.read_json(manifest)["started_at"]) < cutoff:
            path.unlink()
            removed.append(path.name)
    return removed


def prune_run_records(work_dir: str | Path, keep: int) -> list[str]:
    """Remove all but the newest ``keep`` retraining run records."""
    folder = runs_folder(work_dir)
    records = sorted(folder.glob("*.json")) if folder.is_dir() else []
    stale = records[:-keep] if keep else records
    for path in stale:
        path.unlink()
    return [path.name for path in stale]
