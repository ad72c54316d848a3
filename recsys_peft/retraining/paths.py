"""Paths that scheduled retraining reads and writes, all under the pipeline's work folder by default."""

from __future__ import annotations

from pathlib import Path

from recsys_peft.config import PipelineConfig


def store_dir(config: PipelineConfig) -> Path:
    return Path(config.work_dir) / "store"


def registry_url(config: PipelineConfig) -> str:
    return config.retraining.registry_url or str(Path(config.work_dir) / "registry")


def exports_dir(config: PipelineConfig) -> Path:
    """Exports of promoted releases, one folder per release id."""
    return Path(config.work_dir) / "exports"


def recommendations_dir(config: PipelineConfig) -> Path:
    """Scheduled scoring output: ``run_date=.../model_version=...`` partitions and ``_LATEST.json``."""
    return Path(config.work_dir) / "scheduled_recommendations"
