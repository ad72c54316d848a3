"""Write an export folder, and fail unless the folder scores like the training model."""

from __future__ import annotations

import dataclasses
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
from recsys_peft.adapters.lora import adapter_state
from recsys_peft.dataset.snapshot import DataSnapshot
from recsys_peft.export.digests import folder_digests
from recsys_peft.export.model import EXPORT_SCHEMA_VERSION, SEGMENT_SPEC_FILE, ExportedModel, user_side_state
from recsys_peft.models.sasrec import SASRecModel
from recsys_peft.models.two_tower import TwoTowerModel
from recsys_peft.segments import SegmentSpec

# Exported and training scores are float32 cosine similarities from the same operations, so
# they agree far inside this bound. A larger difference means a wrong weight or feature.
PARITY_TOLERANCE = 1e-5
PARITY_USERS_PER_SEGMENT = 16
# Row groups of the segment table, so that scoring can read one range of users cheaply.
SEGMENT_TABLE_ROW_GROUP = 65_536


class ParityError(RuntimeError):
    """The exported model's scores differ from the training model's."""


def weights_hash(model: torch.nn.Module) -> str:
    return _tensors_hash(model.state_dict())


def _tensors_hash(tensors: dict[str, torch.Tensor]) -> str:
    hasher = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        hasher.update(name.encode())
        hasher.update(tensor.detach().contiguous().view(torch.uint8).numpy().tobytes())
    return hasher.hexdigest()


def segment_adapter_slots(snapshot: DataSnapshot, slots: np.ndarray) -> np.ndarray:
    """Return the adapter slot that most users of each segment use, -1 for a segment without users.

    Scoring gives this slot to users who joined after the export. With fallback routing, a
    segment without its own adapter may use another segment's slot.
    """
    segments = snapshot.segments.user_segments
    result = np.full(len(snapshot.segments.names), -1, dtype=np.int64)
    for segment in range(len(result)):
        values, counts = np.unique(slots[segments == segment], return_counts=True)
        if len(values):
            result[segment] = values[np.argmax(counts)]
    return result


def adapter_versions(model: TwoTowerModel | SASRecModel, snapshot: DataSnapshot,
                     segment_slots: np.ndarray) -> dict[str, str | None]:
    """Return a content hash of each segment's adapter weights, None for segments on the base model."""
    versions: dict[str, str | None] = {}
    for name, slot in zip(snapshot.segments.names, segment_slots):
        versions[name] = "sha256:" + _tensors_hash(adapter_state(model, int(slot)))[:16] if slot >= 0 else None
    return versions


def training_popularity(snapshot: DataSnapshot) -> tuple[torch.Tensor, torch.Tensor]:
    """Count training interactions per item (I,) and per segment and item (S, I)."""
    log = snapshot.log
    positions = snapshot.split.train_positions
    items = log.items[positions]
    overall = np.bincount(items, minlength=log.num_items).astype(np.float32)
    segments = snapshot.segments.user_segments[log.users[positions]]
    assigned = segments >= 0
    num_segments = len(snapshot.segments.names)
    flat = segments[assigned] * log.num_items + items[assigned]
    per_segment = np.bincount(flat, minlength=num_segments * log.num_items).astype(np.float32)
    return torch.from_numpy(overall), torch.from_numpy(per_segment.reshape(num_segments, log.num_items))


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
    segment_spec: SegmentSpec | None = None,
) -> dict:
    """Export ``model`` (with its stacked adapters) to ``out_dir``; return the manifest.

    Scores for all users are the scores as of the end of the log. The parity check compares the
    training model with the export, loaded back from disk, on a sample of users from every
    segment, and the folder replaces ``out_dir`` only when they agree within ``PARITY_TOLERANCE``.
    With ``segment_spec``, scoring can place users that joined after the export in a segment.
    """
    model.eval()
    log = snapshot.log
    item_vectors = model.all_item_embeddings(snapshot.features.item_tags)
    popularity, segment_popularity = training_popularity(snapshot)
    segment_slots = segment_adapter_slots(snapshot, slots)
    base_hash = manifest_extra.get("base_model_hash", weights_hash(model))
    model_version = f"{model.family}-{weights_hash(model)[:12]}"

    with atomic.replace_dir(Path(out_dir)) as staging:
        atomic.write_json(staging / "model.json", {
            "family": model.family,
            "config": model.config.to_dict(),
            "num_segments": model.num_segments,
            "lora": dataclasses.asdict(model.lora_config),
            "encoders": [e.to_dict() for e in snapshot.features.encoders],
            "tag_values": list(snapshot.features.tag_values),
            "segment_names": list(snapshot.segments.names),
            "segment_slots": segment_slots.tolist(),
            "segment_spec": SEGMENT_SPEC_FILE if segment_spec is not None else None,
        })
        save_file(user_side_state(model), str(staging / "user_tower.safetensors"))
        save_file({"vectors": item_vectors.contiguous(), "popularity": popularity,
                   "segment_popularity": segment_popularity.contiguous()}, str(staging / "items.safetensors"))
        table = snapshot.segments.table(snapshot.user_ids).append_column("adapter_slot", pa.array(slots, pa.int64()))
        pq.write_table(table, staging / "segments.parquet", row_group_size=SEGMENT_TABLE_ROW_GROUP)
        shutil.copytree(Path(store_dir) / "vocab", staging / "vocab")
        if segment_spec is not None:
            if not segment_spec.path or not Path(segment_spec.path).is_file():
                raise ValueError(f"segment spec {segment_spec.name!r} has no file to copy into the export "
                                 f"(path {segment_spec.path!r}); load it with load_segment_spec")
            # NOTE: a level that reads a user table names it relative to the spec, and that file is not copied.
            shutil.copyfile(segment_spec.path, staging / SEGMENT_SPEC_FILE)

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
            "adapter_versions": adapter_versions(model, snapshot, segment_slots),
            "created_at": datetime.now(timezone.utc).isoformat(),
            **manifest_extra,
            "files": folder_digests(staging),
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
