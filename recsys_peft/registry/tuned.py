"""Save and load a segment tuned by layer freezing (top_layers or bias_norm) as its changed tensors.

A folder contains ``tuned.safetensors`` (only the tensors the method trained, by parameter name)
and ``tuned.json`` (method, segment, base model hash, vocabulary version, data snapshot, the
name and shape of every tensor, metrics). A segment that fell back to the base model gets only
the JSON, with the reason. Loading checks the base model and vocabulary like an adapter does,
then puts the tensors into a copy of the base model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from recsys_peft import atomic
from recsys_peft.export.exporter import weights_hash
from recsys_peft.registry.formats import check_binding, json_bytes, now, training_record
from recsys_peft.training.finetune import SegmentAdapter
from recsys_peft.training.freezing import FinetuneMethod, apply_tuned

TUNED_WEIGHTS = "tuned.safetensors"
TUNED_METADATA = "tuned.json"


def tuned_files(adapter: SegmentAdapter, base_hash: str, vocabulary_version: str,
                snapshot_id: str) -> dict[str, bytes]:
    """Return a tuned segment's files by name; raise ValueError for a LoRA adapter."""
    method = FinetuneMethod.parse(adapter.method)
    if method.is_lora:
        raise ValueError(f"segment {adapter.segment!r} was tuned with LoRA, not layer freezing; "
                         f"save it with registry.artifacts.save_adapter")
    files: dict[str, bytes] = {}
    if adapter.state is not None:
        files[TUNED_WEIGHTS] = save_safetensors({k: v.contiguous() for k, v in adapter.state.items()})
    meta = {
        "method": str(method),
        "segment": adapter.segment,
        "segment_index": adapter.segment_index,
        "base_model_hash": base_hash,
        "vocabulary_version": vocabulary_version,
        "training_data_snapshot": snapshot_id,
        "tensors": {name: list(t.shape) for name, t in (adapter.state or {}).items()},
        **training_record(adapter),
        "weights_bytes": len(files.get(TUNED_WEIGHTS, b"")),
        "created_at": now(),
    }
    files[TUNED_METADATA] = json_bytes(meta)
    return files


def save_tuned(adapter: SegmentAdapter, folder: str | Path, base_hash: str, vocabulary_version: str,
               snapshot_id: str) -> None:
    """Write one tuned segment to ``folder``, replacing it atomically."""
    files = tuned_files(adapter, base_hash, vocabulary_version, snapshot_id)
    with atomic.replace_dir(Path(folder)) as staging:
        for name, data in files.items():
            (staging / name).write_bytes(data)


def load_tuned(folder: str | Path, base: torch.nn.Module,
               vocabulary_version: str) -> tuple[torch.nn.Module | None, dict]:
    """Return the tuned model (None when the segment fell back to the base model) and its metadata.

    Raises BaseModelMismatch unless the tensors were trained on ``base`` and ``vocabulary_version``,
    and ValueError when a stored tensor is not in ``tuned.json`` or has another shape.
    """
    folder = Path(folder)
    meta = atomic.read_json(folder / TUNED_METADATA)
    check_binding(meta, weights_hash(base), vocabulary_version, str(folder))
    path = folder / TUNED_WEIGHTS
    if not path.is_file():
        if meta.get("kept"):
            raise FileNotFoundError(f"{path} is missing, but {folder / TUNED_METADATA} records kept=true; "
                                    f"save the segment again")
        return None, meta
    state = load_safetensors(path.read_bytes())
    listed = {name: tuple(shape) for name, shape in meta["tensors"].items()}
    stored = {name: tuple(t.shape) for name, t in state.items()}
    if stored != listed:
        raise ValueError(f"{path} does not match {folder / TUNED_METADATA}: stored tensors {stored}, "
                         f"listed {listed}")
    return apply_tuned(base, state), meta
