"""Load an exported ranking model (two-tower or SASRec) without training code, checkpoints or unpickling.

An export folder holds::

    model.json                 architecture, adapter settings, attribute encoders, tag values
    user_tower.safetensors     the user side: the embedding tables it reads and its dense
                               layers, with every segment's adapter stacked in its slot
    items.safetensors          precomputed item vectors (I, D) and training popularity (I,)
    segments.parquet           user_id, user_idx, segment, adapter slot (-1 = base model)
    vocab/users.parquet, vocab/items.parquet
    manifest.json              versions, hashes, metrics and the parity check result
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file

from recsys_peft import atomic
from recsys_peft.adapters.lora import LoRAConfig
from recsys_peft.dataset.attributes import AttributeEncoder
from recsys_peft.models.sasrec import SASRecConfig, SASRecModel
from recsys_peft.models.two_tower import TwoTowerConfig, TwoTowerModel, UserBatch

EXPORT_SCHEMA_VERSION = 1
# The two-tower user side reads these tables and layers; the item tower is replaced by the
# precomputed item vectors. SASRec's user side is the whole model (its item table is its input).
USER_SIDE_PREFIXES = {
    "two_tower": ("ebc.embedding_bags.t_user.", "ebc.embedding_bags.t_item.", "ebc.embedding_bags.t_attr_",
                  "user_hidden.", "user_out."),
    "sasrec": ("",),
}
MODEL_CLASSES: dict[str, tuple[type, type]] = {
    "two_tower": (TwoTowerModel, TwoTowerConfig),
    "sasrec": (SASRecModel, SASRecConfig),
}


def user_side_state(model: TwoTowerModel | SASRecModel) -> dict[str, torch.Tensor]:
    """The parameters the user side reads, contiguous, as safetensors requires."""
    prefixes = USER_SIDE_PREFIXES[model.family]
    return {k: v.detach().contiguous() for k, v in model.state_dict().items() if k.startswith(prefixes)}


@dataclass
class ExportedModel:
    """A loaded export: the user tower with adapters, item vectors and the segment table."""

    folder: Path
    model: TwoTowerModel | SASRecModel
    item_vectors: torch.Tensor       # (I, D)
    item_popularity: torch.Tensor    # (I,) training interactions per item
    user_slots: np.ndarray           # (U,) adapter slot per user index, -1 for the base model
    segment_of_user: list[str | None]
    encoders: tuple[AttributeEncoder, ...]
    tag_values: tuple[str, ...]
    manifest: dict

    @property
    def model_version(self) -> str:
        return str(self.manifest["model_version"])

    @classmethod
    def load(cls, folder: str | Path) -> "ExportedModel":
        folder = Path(folder)
        for name in ("model.json", "user_tower.safetensors", "items.safetensors", "segments.parquet", "manifest.json"):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"not an export folder: {folder / name} is missing")
        spec = atomic.read_json(folder / "model.json")
        family = spec.get("family")
        if family not in MODEL_CLASSES:
            raise ValueError(f"{folder / 'model.json'}: model family {family!r} is not one of {sorted(MODEL_CLASSES)}")
        model_class, config_class = MODEL_CLASSES[family]
        model = model_class(config_class.from_dict(spec["config"]), num_segments=int(spec["num_segments"]),
                            lora=LoRAConfig(**spec["lora"]))
        weights = load_file(folder / "user_tower.safetensors")
        expected = set(user_side_state(model))
        if set(weights) != expected:
            raise ValueError(
                f"{folder / 'user_tower.safetensors'} does not match model.json: missing "
                f"{sorted(expected - set(weights))}, unexpected {sorted(set(weights) - expected)}"
            )
        model.load_state_dict(weights, strict=False)
        model.eval()
        items = load_file(folder / "items.safetensors")
        segments = pq.read_table(folder / "segments.parquet").sort_by("user_idx")
        return cls(
            folder=folder,
            model=model,
            item_vectors=items["vectors"],
            item_popularity=items["popularity"],
            user_slots=segments.column("adapter_slot").to_numpy(),
            segment_of_user=segments.column("segment").to_pylist(),
            encoders=tuple(AttributeEncoder.from_dict(e) for e in spec["encoders"]),
            tag_values=tuple(spec["tag_values"]),
            manifest=atomic.read_json(folder / "manifest.json"),
        )

    @torch.no_grad()
    def user_vectors(self, batch: UserBatch) -> torch.Tensor:
        return self.model.user_embeddings(batch)
