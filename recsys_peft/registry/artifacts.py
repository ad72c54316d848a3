"""Save and load base models and per-segment adapters.

A base model folder holds ``model.safetensors`` and ``model.json`` (architecture, resolved
training config, vocabulary version, data snapshot, metrics, weights hash). An adapter folder
holds ``adapter.safetensors`` and ``adapter.json`` (segment, base model hash, vocabulary
version, rank and layers, data snapshot, metrics on its segment, creation time). Nothing here
unpickles: weights are safetensors and metadata is JSON.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from recsys_peft import atomic
from recsys_peft.adapters.lora import LoRAConfig, lora_layers
from recsys_peft.export.exporter import weights_hash
from recsys_peft.export.model import MODEL_CLASSES
from recsys_peft.models.two_tower import TwoTowerModel
from recsys_peft.training.finetune import SegmentAdapter


def segment_slug(index: int, name: str) -> str:
    """A file-system-safe folder name for a segment, e.g. ``03-F_35-44`` for ``F:35-44``."""
    return f"{index:02d}-" + re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_")


def save_base_model(model: torch.nn.Module, folder: Path, metadata: dict) -> str:
    """Write the base model; return its weights hash (the id adapters are bound to)."""
    folder = Path(folder)
    base_hash = weights_hash(model)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if ".lora_" not in k}
    with atomic.replace_dir(folder) as staging:
        save_file(state, str(staging / "model.safetensors"))
        atomic.write_json(staging / "model.json", {
            "family": model.family,
            "config": model.config.to_dict(),
            "weights_hash": base_hash,
            "created_at": datetime.now(timezone.utc).isoformat(),
            **metadata,
        })
    return base_hash


def load_base_model(folder: Path) -> tuple[torch.nn.Module, dict]:
    folder = Path(folder)
    meta = atomic.read_json(folder / "model.json")
    model_class, config_class = MODEL_CLASSES[meta.get("family", "two_tower")]
    model = model_class(config_class.from_dict(meta["config"]))
    state = load_file(folder / "model.safetensors")
    missing, unexpected = model.load_state_dict(state, strict=False)
    # A base model has no adapter slots, so its LoRA tensors are expected to be absent.
    missing = [k for k in missing if ".lora_" not in k]
    if unexpected or missing:
        raise ValueError(f"{folder / 'model.safetensors'} does not match model.json: missing {missing}, "
                         f"unexpected {unexpected}")
    model.eval()
    return model, meta


def save_adapter(adapter: SegmentAdapter, folder: Path, lora: LoRAConfig, base_hash: str,
                 vocabulary_version: str, snapshot_id: str, model: TwoTowerModel) -> None:
    """Write one segment's adapter; a segment without an adapter gets only its JSON (its reason)."""
    layers = sorted(lora_layers(model))
    with atomic.replace_dir(Path(folder)) as staging:
        if adapter.state is not None:
            save_file(adapter.state, str(staging / "adapter.safetensors"))
        atomic.write_json(staging / "adapter.json", {
            "segment": adapter.segment,
            "segment_index": adapter.segment_index,
            "base_model_hash": base_hash,
            "vocabulary_version": vocabulary_version,
            "training_data_snapshot": snapshot_id,
            "rank": lora.r, "alpha": lora.alpha, "dropout": lora.dropout, "layers": layers,
            "kept": adapter.used, "reason": adapter.reason,
            "users": adapter.users, "train_examples": adapter.train_examples,
            "metrics": {"base_valid_ndcg@10": adapter.base_valid_ndcg, "valid_ndcg@10": adapter.valid_ndcg},
            "best_epoch": adapter.best_epoch, "train_seconds": adapter.seconds,
            "trainable_parameters": adapter.trainable_parameters,
            "created_at": datetime.now(timezone.utc).isoformat(),
        })


def load_adapter(folder: Path, base_hash: str, vocabulary_version: str) -> tuple[dict[str, torch.Tensor] | None, dict]:
    """Read an adapter and check it belongs to the given base model and vocabulary."""
    folder = Path(folder)
    meta = atomic.read_json(folder / "adapter.json")
    if meta["base_model_hash"] != base_hash:
        raise ValueError(
            f"adapter {folder} was trained on base model {meta['base_model_hash'][:12]}, "
            f"not on {base_hash[:12]}"
        )
    if meta["vocabulary_version"] != vocabulary_version:
        raise ValueError(
            f"adapter {folder} was trained on vocabulary {meta['vocabulary_version']}, "
            f"not on {vocabulary_version}"
        )
    path = folder / "adapter.safetensors"
    return (load_file(path) if path.is_file() else None), meta
