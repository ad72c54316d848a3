"""The bytes of saved base models and adapters: safetensors weights and JSON metadata.

Nothing here unpickles: weights are safetensors and metadata is JSON, so loading a file cannot
run code. Both the local-folder functions (``artifacts``) and the registry (``store``) write
these bytes, so a folder written by one reads with the other.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from recsys_peft.adapters.lora import LoRAConfig
from recsys_peft.export.exporter import weights_hash
from recsys_peft.models.sasrec import SASRecConfig, SASRecModel
from recsys_peft.models.two_tower import TwoTowerConfig, TwoTowerModel
from recsys_peft.training.finetune import SegmentAdapter

MODEL_WEIGHTS = "model.safetensors"
MODEL_METADATA = "model.json"
ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_METADATA = "adapter.json"
MODEL_CLASSES: dict[str, tuple[type, type]] = {
    "two_tower": (TwoTowerModel, TwoTowerConfig),
    "sasrec": (SASRecModel, SASRecConfig),
}


class BaseModelMismatch(ValueError):
    """An adapter was loaded onto a base model or vocabulary it was not trained on."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


def json_bytes(payload: dict) -> bytes:
    return (json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8")


def base_model_files(model: torch.nn.Module, metadata: dict) -> tuple[str, dict[str, bytes]]:
    """Return the base model's weights hash and its two files, by name."""
    base_hash = weights_hash(model)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if ".lora_" not in k}
    weights = save_safetensors(state)
    meta = {
        "family": model.family,
        "config": model.config.to_dict(),
        "weights_hash": base_hash,
        "weights_bytes": len(weights),
        "created_at": now(),
        **metadata,
    }
    return base_hash, {MODEL_WEIGHTS: weights, MODEL_METADATA: json_bytes(meta)}


def base_model_from_files(weights: bytes, meta: dict, where: str) -> torch.nn.Module:
    """Build the base model that ``meta`` describes and load ``weights`` into it, in eval mode."""
    model_class, config_class = MODEL_CLASSES[meta.get("family", "two_tower")]
    model = model_class(config_class.from_dict(meta["config"]))
    missing, unexpected = model.load_state_dict(load_safetensors(weights), strict=False)
    # A base model has no adapter slots, so its LoRA tensors are expected to be absent.
    missing = [k for k in missing if ".lora_" not in k]
    if unexpected or missing:
        raise ValueError(f"{where} does not match {MODEL_METADATA}: missing {missing}, unexpected {unexpected}")
    model.eval()
    return model


def adapter_layer_names(state: dict[str, torch.Tensor]) -> list[str]:
    return sorted({name.rsplit(".lora_", 1)[0] for name in state})


def training_record(adapter: SegmentAdapter) -> dict:
    """Return the fields that describe how one segment's fine-tuning went, for its metadata."""
    return {
        "kept": adapter.used, "reason": adapter.reason,
        "users": adapter.users, "train_examples": adapter.train_examples,
        "metrics": {"base_valid_ndcg@10": adapter.base_valid_ndcg, "valid_ndcg@10": adapter.valid_ndcg},
        "best_epoch": adapter.best_epoch, "train_seconds": adapter.seconds,
        "trainable_parameters": adapter.trainable_parameters,
    }


def adapter_files(adapter: SegmentAdapter, lora: LoRAConfig, base_hash: str, vocabulary_version: str,
                  snapshot_id: str, layers: list[str], extra: dict | None = None) -> dict[str, bytes]:
    """Return an adapter's files by name. A segment without an adapter gets only its JSON."""
    files: dict[str, bytes] = {}
    if adapter.state is not None:
        files[ADAPTER_WEIGHTS] = save_safetensors({k: v.contiguous() for k, v in adapter.state.items()})
    rank = adapter.rank or lora.r
    alpha = adapter.alpha if adapter.alpha is not None else lora.alpha
    meta = {
        "segment": adapter.segment,
        "segment_index": adapter.segment_index,
        "base_model_hash": base_hash,
        "vocabulary_version": vocabulary_version,
        "training_data_snapshot": snapshot_id,
        "rank": rank, "alpha": alpha, "dropout": lora.dropout, "layers": layers,
        "lora": {**lora.to_dict(), "r": rank, "alpha": alpha, "segment_ranks": []},
        **training_record(adapter),
        "weights_bytes": len(files.get(ADAPTER_WEIGHTS, b"")),
        "created_at": now(),
        **(extra or {}),
    }
    files[ADAPTER_METADATA] = json_bytes(meta)
    return files


def check_binding(meta: dict, base_hash: str, vocabulary_version: str, where: str) -> None:
    """Raise BaseModelMismatch, naming both sides, unless the adapter was trained on this base and vocabulary."""
    if meta["base_model_hash"] != base_hash:
        raise BaseModelMismatch(
            f"adapter {where} was trained on base model {meta['base_model_hash'][:12]}, "
            f"not on {base_hash[:12]}; load it onto its own base model or retrain it"
        )
    if meta["vocabulary_version"] != vocabulary_version:
        raise BaseModelMismatch(
            f"adapter {where} was trained on vocabulary {meta['vocabulary_version']}, "
            f"not on {vocabulary_version}; load it onto its own base model or retrain it"
        )


def segment_adapter_from_files(weights: bytes | None, meta: dict) -> SegmentAdapter:
    """Rebuild the ``SegmentAdapter`` an adapter's files were written from (history is not saved)."""
    metrics = meta.get("metrics", {})
    return SegmentAdapter(
        segment=meta["segment"], segment_index=int(meta["segment_index"]), users=int(meta.get("users", 0)),
        train_examples=int(meta.get("train_examples", 0)),
        base_valid_ndcg=float(metrics.get("base_valid_ndcg@10", 0.0)),
        valid_ndcg=float(metrics.get("valid_ndcg@10", 0.0)),
        state=None if weights is None else load_safetensors(weights),
        reason=str(meta.get("reason", "")), best_epoch=int(meta.get("best_epoch", 0)),
        seconds=float(meta.get("train_seconds", 0.0)), trainable_parameters=int(meta.get("trainable_parameters", 0)),
        rank=int(meta["rank"]), alpha=float(meta["alpha"]),
    )
