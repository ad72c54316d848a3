"""Save and load base models and per-segment adapters in local folders.

A base model folder holds ``model.safetensors`` and ``model.json`` (architecture, resolved
training config, vocabulary version, data snapshot, metrics, weights hash). An adapter folder
holds ``adapter.safetensors`` and ``adapter.json`` (segment, base model hash, vocabulary
version, rank and layers, data snapshot, metrics on its segment, creation time). ``store``
keeps the same files in a versioned registry on any fsspec file system.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import load_file

from recsys_peft import atomic
from recsys_peft.adapters.lora import LoRAConfig, adapter_layers
from recsys_peft.registry.formats import (
    ADAPTER_METADATA, ADAPTER_WEIGHTS, MODEL_METADATA, MODEL_WEIGHTS, adapter_files, base_model_files,
    base_model_from_files, check_binding,
)
from recsys_peft.training.finetune import SegmentAdapter


def segment_slug(index: int, name: str) -> str:
    """Return a file-system-safe folder name for a segment, e.g. ``03-F_35-44`` for ``F:35-44``."""
    return f"{index:02d}-" + re.sub(r"[^A-Za-z0-9.=-]+", "_", name).strip("_")


def _write_files(folder: Path, files: dict[str, bytes]) -> None:
    with atomic.replace_dir(Path(folder)) as staging:
        for name, data in files.items():
            (staging / name).write_bytes(data)


def save_base_model(model: torch.nn.Module, folder: Path, metadata: dict) -> str:
    """Write the base model; return its weights hash (the id adapters are bound to)."""
    base_hash, files = base_model_files(model, metadata)
    _write_files(folder, files)
    return base_hash


def load_base_model(folder: Path) -> tuple[torch.nn.Module, dict]:
    folder = Path(folder)
    meta = atomic.read_json(folder / MODEL_METADATA)
    model = base_model_from_files((folder / MODEL_WEIGHTS).read_bytes(), meta, str(folder / MODEL_WEIGHTS))
    return model, meta


def save_adapter(adapter: SegmentAdapter, folder: Path, lora: LoRAConfig, base_hash: str,
                 vocabulary_version: str, snapshot_id: str, model: torch.nn.Module) -> None:
    """Write one segment's adapter. A segment without an adapter gets only its JSON, with the reason.

    ``model`` is any model with the same adapter targets, and names the adapted layers.
    """
    layers = sorted(adapter_layers(model))
    _write_files(folder, adapter_files(adapter, lora, base_hash, vocabulary_version, snapshot_id, layers))


def load_adapter(folder: Path, base_hash: str, vocabulary_version: str) -> tuple[dict[str, torch.Tensor] | None, dict]:
    """Read an adapter and check it belongs to the given base model and vocabulary."""
    folder = Path(folder)
    meta = atomic.read_json(folder / ADAPTER_METADATA)
    check_binding(meta, base_hash, vocabulary_version, str(folder))
    path = folder / ADAPTER_WEIGHTS
    return (load_file(path) if path.is_file() else None), meta
