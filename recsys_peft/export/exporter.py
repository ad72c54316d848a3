"""Write an export folder and refuse to finish unless it scores like the training model."""

from __future__ import annotations

import hashlib
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import save_file

from recsys_peft import atomic
from recsys_peft.dataset.features import user_batch
from recsys_peft.dataset.snapshot import DataSnapshot
from recsys_peft.export.model import EXPORT_SCHEMA_VERSION, ExportedModel, user_side_state
from recsys_peft.models.sasrec import SASRecModel
from recsys_peft.models.two_tower import TwoTowerModel

# Exported and training scores are both float32 cosine similarities from the same operations,
# so they agree far inside this bound; anything larger means a wrong weight or feature.
PARITY_TOLERANCE = 1e-5
PARITY_USERS_PER_SEGMENT = 16


class ParityError(RuntimeError):
    """The exported model's scores differ from the training model's."""


def weights_hash(model: torch.nn.Module) -> str:
    hasher = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        hasher.update(name.encode())
        hasher.update(tensor.detach().contiguous().view(torch.uint8).numpy().tobytes())
    return hasher.hexdigest()


def parity_sample(snapshot: DataSnapshot, seed: int) -> np.ndarray:
    """Up to ``PARITY_USERS_PER_SEGMENT`` users of every segment, and of users without one."""
    rng = np.random.default_rng(seed)
    segments = snapshot.segments.user_segments
    chosen = []
    for segment in np.unique(segments):
        members = np.flatnonzero(segments == segment)
        chosen.append(rng.choice(members, size=min(len(members), PARITY_USERS_PER_SEGMENT), replace=False))
    return np.sort(np.concatenate(chosen))


def export_model(
    model: TwoTowerModel | SASRecModel,
    snapshot: DataSnapshot,
    slots: np.ndarray,
    out_dir: str | Path,
    store_dir: str | Path,
    manifest_extra: dict,
    seed: int = 0,
) -> dict:
    """Export ``model`` (with its stacked adapters) to ``out_dir``; return the manifest.

    Scores for all users are the scores as of the end of the log. The parity check compares the
    training model with the export, loaded back from disk, on a sample of users from every
    segment, and the folder replaces ``out_dir`` only when they agree within ``PARITY_TOLERANCE``.
    """
    model.eval()
    log = snapshot.log
    item_vectors = model.all_item_embeddings(snapshot.features.item_tags)
    popularity = torch.from_numpy(np.bincount(log.items[snapshot.split.train_positions],
                                              minlength=log.num_items).astype(np.float32))
    base_hash = manifest_extra.get("base_model_hash", weights_hash(model))
    model_version = f"{model.family}-{weights_hash(model)[:12]}"

    with atomic.replace_dir(Path(out_dir)) as staging:
        atomic.write_json(staging / "model.json", {
            "family": model.family,
            "config": model.config.to_dict(),
            "num_segments": model.num_segments,
            "lora": {"r": model.lora_config.r, "alpha": model.lora_config.alpha, "dropout": model.lora_config.dropout},
            "encoders": [e.to_dict() for e in snapshot.features.encoders],
            "tag_values": list(snapshot.features.tag_values),
            "segment_names": list(snapshot.segments.names),
        })
        save_file(user_side_state(model), str(staging / "user_tower.safetensors"))
        save_file({"vectors": item_vectors.contiguous(), "popularity": popularity}, str(staging / "items.safetensors"))
        table = snapshot.segments.table(snapshot.user_ids).append_column("adapter_slot", pa.array(slots, pa.int64()))
        pq.write_table(table, staging / "segments.parquet")
        shutil.copytree(Path(store_dir) / "vocab", staging / "vocab")

        # Parity: the export, loaded back from disk, against the training model.
        users = parity_sample(snapshot, seed)
        positions = log.offsets[users + 1]
        batch = user_batch(log, snapshot.features, users, positions, model.config.history_length, slots)
        manifest = {
            "schema_version": EXPORT_SCHEMA_VERSION,
            "model_version": model_version,
            "family": model.family,
            "base_model_hash": base_hash,
            "vocabulary_version": log.vocabulary_version,
            "training_data_snapshot": snapshot.snapshot_id,
            "created_at": datetime.now(timezone.utc).isoformat(),
            **manifest_extra,
        }
        atomic.write_json(staging / "manifest.json", manifest)
        exported = ExportedModel.load(staging)
        with torch.no_grad():
            expected = model.user_embeddings(batch) @ item_vectors.T            # (S, I)
            actual = exported.user_vectors(batch) @ exported.item_vectors.T     # (S, I)
        max_diff = float((expected - actual).abs().max())
        segments_checked = sorted({snapshot.segments.names[s] if s >= 0 else "<no segment>"
                                   for s in snapshot.segments.user_segments[users]})
        manifest["parity"] = {"users": int(len(users)), "segments": segments_checked,
                              "max_abs_diff": max_diff, "tolerance": PARITY_TOLERANCE,
                              "passed": max_diff <= PARITY_TOLERANCE}
        if max_diff > PARITY_TOLERANCE:
            raise ParityError(
                f"exported scores differ from the training model's by {max_diff:.3g} on {len(users)} users "
                f"(tolerance {PARITY_TOLERANCE}); the export at {out_dir} was not replaced"
            )
        atomic.write_json(staging / "manifest.json", manifest)
    return manifest


# The first export function's name, kept for callers written before SASRec could export.
export_two_tower = export_model
