"""The HTML report of a pipeline run: metrics per segment, training curves, costs, data and sample users."""

from __future__ import annotations

from pathlib import Path

from recsys_peft import atomic
from recsys_peft.report.html import render
from recsys_peft.report.inputs import ReportInputs, collect


def write_report(work_dir: str | Path, out: str | Path | None = None, sample_users: int = 3) -> Path:
    """Write the report of the run in ``work_dir`` to ``out`` (default ``WORK_DIR/report.html``)."""
    inputs = collect(work_dir, sample_users)
    path = Path(out) if out is not None else Path(work_dir) / "report.html"
    atomic.write_bytes(path, render(inputs).encode("utf-8"))
    return path


__all__ = ["ReportInputs", "collect", "render", "write_report"]
