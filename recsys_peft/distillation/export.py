"""Export a distilled student like any other model, with a manifest that names its teacher."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from recsys_peft.dataset.snapshot import DataSnapshot
from recsys_peft.distillation.student import DistillConfig, Distilled, Model
from recsys_peft.export.exporter import export_model, weights_hash


def teacher_record(teacher: Model, model_version: str | None = None) -> dict:
    """Return what identifies a teacher: family, weights hash, adapter slots, config, export version."""
    return {
        "family": teacher.family,
        "weights_hash": weights_hash(teacher),
        "model_version": model_version,
        "num_segments": teacher.num_segments,
        "config": teacher.config.to_dict(),
    }


def export_student(distilled: Distilled, teacher: Model, snapshot: DataSnapshot, config: DistillConfig,
                   out_dir: str | Path, store_dir: str | Path, teacher_version: str | None = None,
                   manifest_extra: dict | None = None, seed: int = 0) -> dict:
    """Export the student (no adapter slots: every user gets the same model); return the manifest.

    The manifest's ``teacher`` names the teacher (``teacher_record``), and ``distillation``
    contains the settings and the student's best validation NDCG@10.
    """
    slots = np.full(snapshot.log.num_users, -1, dtype=np.int64)
    settings = dataclasses.asdict(config)
    extra = {
        "teacher": teacher_record(teacher, teacher_version),
        "distillation": {**settings, "valid_ndcg@10": distilled.result.best_score,
                         "best_epoch": distilled.result.best_epoch,
                         "trainable_parameters": distilled.trainable_parameters},
        **(manifest_extra or {}),
    }
    return export_model(distilled.model, snapshot, slots, out_dir, store_dir, extra, seed=seed)
