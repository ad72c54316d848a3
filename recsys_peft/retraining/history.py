"""Run records of scheduled retraining, and the metric history per segment across runs.

Each run writes one JSON file, ``WORK_DIR/retraining/runs/<finished at>-<run key>.json``, with
every decision it made and the held-out metrics of the candidate and the promoted release.
``metric_history`` reads them back as one table, so drift of a segment shows across runs.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from recsys_peft import atomic

RUNS_FOLDER = Path("retraining") / "runs"
OVERALL = "<overall>"
HISTORY_COLUMNS = ["finished_at", "run_key", "slot", "outcome", "model", "segment", "users", "ndcg@10", "hr@10"]


def runs_folder(work_dir: str | Path) -> Path:
    return Path(work_dir) / RUNS_FOLDER


def save_run_record(work_dir: str | Path, record: dict) -> Path:
    """Write a run's record atomically and return its path; ``record`` needs ``run_key``."""
    finished_at = record.setdefault("finished_at", datetime.now(timezone.utc).isoformat())
    stamp = finished_at.replace(":", "").replace("-", "").split(".")[0].split("+")[0]
    path = runs_folder(work_dir) / f"{stamp}-{record['run_key']}.json"
    atomic.write_json(path, record)
    return path


def load_run_records(work_dir: str | Path) -> list[dict]:
    """Read every run record, oldest first."""
    folder = runs_folder(work_dir)
    return [atomic.read_json(path) for path in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def previous_score(records: list[dict], release_id: str) -> float | None:
    """Return the held-out NDCG@10 of ``release_id`` in the newest record that scored it, or None.

    A release is scored as the candidate of the run that promoted it, and as the promoted
    release of every later run that trained a candidate.
    """
    for record in reversed(records):
        metrics = record.get("holdout_metrics", {})
        if record.get("promoted_before") == release_id and metrics.get("promoted"):
            return float(metrics["promoted"]["ndcg@10"])
        if record.get("release_id") == release_id and record.get("outcome") == "promoted":
            return float(metrics["candidate"]["ndcg@10"])
    return None


def metric_history(work_dir: str | Path) -> pd.DataFrame:
    """Return one row per run, model (candidate or promoted) and segment, oldest run first.

    The segment ``<overall>`` contains every held-out user. Runs that trained nothing have no rows.
    """
    rows = []
    for record in load_run_records(work_dir):
        for model, metrics in record.get("holdout_metrics", {}).items():
            if metrics is None:
                continue
            base = {"finished_at": record["finished_at"], "run_key": record["run_key"], "slot": record.get("slot", ""),
                    "outcome": record.get("outcome", ""), "model": model}
            rows.append({**base, "segment": OVERALL, "users": metrics["users"], "ndcg@10": metrics["ndcg@10"],
                         "hr@10": metrics["hr@10"]})
            for segment, entry in metrics["segments"].items():
                rows.append({**base, "segment": segment, **entry})
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)
