"""Load an exported ranking model (two-tower or SASRec) without training code, checkpoints or unpickling.

An export folder contains::

    model.json                 architecture, adapter settings, attribute encoders, tag values,
                               segment names and each segment's adapter slot
    segment_spec.yaml          the segment spec (optional), to place users who joined later
    user_tower.safetensors     the user side: the embedding tables it reads and its dense
                               layers, with every segment's adapter stacked in its slot
    items.safetensors          precomputed item vectors (I, D), training popularity (I,) and
                               training popularity per segment (S, I)
    segments.parquet           user_id, user_idx, segment, segment_idx, adapter slot (-1 = base model)
    vocab/users.parquet, vocab/items.parquet, vocab/version.json
    manifest.json              versions, hashes, metrics, the parity check result, and the size and
                               SHA-256 of every other file, checked on load
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from recsys_peft import atomic
from typing import TYPE_CHECKING

from recsys_peft.adapters.lora import LoRAConfig
from recsys_peft.dataset.attributes import AttributeEncoder
from recsys_peft.export.digests import ExportCorrupted, verify_digests
from recsys_peft.segments import SegmentSpec, load_segment_spec

if TYPE_CHECKING:
    from recsys_peft.models.sasrec import SASRecModel
    from recsys_peft.models.two_tower import TwoTowerModel, UserBatch

# Version 2 added per-segment popularity, per-segment adapter slots and the segment spec;
# version 3 the size and SHA-256 of every file, checked on load.
EXPORT_SCHEMA_VERSION = 3
SEGMENT_SPEC_FILE = "segment_spec.yaml"
READABLE_SCHEMA_VERSIONS = (1, 2, 3)
EXPORT_FILES = ("model.json", "user_tower.safetensors", "items.safetensors", "segments.parquet", "manifest.json")
# The two-tower user side reads these tables and layers; the item tower is replaced by the
# precomputed item vectors. SASRec's user side is the whole model (its item table is its input).
USER_SIDE_PREFIXES = {
    "two_tower": ("ebc.embedding_bags.t_user.", "ebc.embedding_bags.t_item.", "ebc.embedding_bags.t_attr_",
                  "lookup_adapter.", "user_hidden.", "user_out."),
    "sasrec": ("",),
}
# The one table whose size grows with the number of users; scoring may load only some rows of it.
USER_TABLE = "ebc.embedding_bags.t_user.weight"
USER_ROW_BLOCK = 65_536
MODEL_FAMILIES = ("sasrec", "two_tower")


def model_classes() -> dict[str, tuple[type, type]]:
    """Return each family's model and config class.

    The model modules import TorchRec, which takes seconds; scoring precomputed user vectors
    never needs them, so they are imported on first use.
    """
    from recsys_peft.models.sasrec import SASRecConfig, SASRecModel
    from recsys_peft.models.two_tower import TwoTowerConfig, TwoTowerModel

    return {"two_tower": (TwoTowerModel, TwoTowerConfig), "sasrec": (SASRecModel, SASRecConfig)}


def __getattr__(name: str):
    # ``MODEL_CLASSES`` and ``UserBatch`` stay importable from here without importing TorchRec early.
    if name == "MODEL_CLASSES":
        return model_classes()
    if name == "UserBatch":
        from recsys_peft.models.two_tower import UserBatch

        return UserBatch
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def user_side_state(model: TwoTowerModel | SASRecModel) -> dict[str, torch.Tensor]:
    """Return the parameters the user side reads, contiguous, as safetensors requires."""
    prefixes = USER_SIDE_PREFIXES[model.family]
    return {k: v.detach().contiguous() for k, v in model.state_dict().items() if k.startswith(prefixes)}


def check_export_folder(folder: Path) -> None:
    """Raise unless ``folder`` contains every file of an export."""
    for name in EXPORT_FILES:
        if not (folder / name).is_file():
            raise FileNotFoundError(f"not an export folder: {folder / name} is missing")


@dataclass
class ExportedModel:
    """A loaded export: the user tower with adapters, item vectors and segment information.

    With ``load(..., user_table=False)`` the two-tower user-id table starts empty and
    ``load_user_rows`` fills in the rows a batch needs, so memory does not grow with the number
    of users. With ``load(..., user_side=False)`` there is no model at all (``model`` is None),
    for scoring users whose vectors were computed elsewhere. ``user_slots`` and
    ``segment_of_user`` read ``segments.parquet`` on first use.
    """

    folder: Path
    model: TwoTowerModel | SASRecModel | None
    item_vectors: torch.Tensor              # (I, D)
    item_popularity: torch.Tensor           # (I,) training interactions per item
    segment_popularity: torch.Tensor | None  # (S, I) training interactions per segment and item
    encoders: tuple[AttributeEncoder, ...]
    tag_values: tuple[str, ...]
    segment_names: tuple[str, ...]
    segment_slots: np.ndarray               # (S,) adapter slot of each segment, -1 for the base model
    segment_spec: SegmentSpec | None
    manifest: dict
    user_table_loaded: bool = True

    @property
    def model_version(self) -> str:
        return str(self.manifest["model_version"])

    @property
    def family(self) -> str:
        return str(self.manifest.get("family") or self._spec["family"])

    @cached_property
    def _spec(self) -> dict:
        return atomic.read_json(self.folder / "model.json")

    @cached_property
    def _segment_table(self):
        return pq.read_table(self.folder / "segments.parquet").sort_by("user_idx")

    @cached_property
    def user_slots(self) -> np.ndarray:
        """Adapter slot per user index, -1 for the base model."""
        return self._segment_table.column("adapter_slot").to_numpy()

    @cached_property
    def segment_of_user(self) -> list[str | None]:
        return self._segment_table.column("segment").to_pylist()

    @classmethod
    def load(cls, folder: str | Path, user_table: bool = True, user_side: bool = True) -> "ExportedModel":
        folder = Path(folder)
        check_export_folder(folder)
        spec = atomic.read_json(folder / "model.json")
        manifest = atomic.read_json(folder / "manifest.json")
        schema = manifest.get("schema_version")
        if schema not in READABLE_SCHEMA_VERSIONS:
            raise ValueError(f"{folder / 'manifest.json'}: schema_version {schema!r} is not one of "
                             f"{list(READABLE_SCHEMA_VERSIONS)}; export the model again with this version")
        if schema >= 3:
            if not manifest.get("files"):
                raise ExportCorrupted(f"{folder / 'manifest.json'}: schema_version {schema} but no file digests; "
                                      f"export the model again")
            verify_digests(folder, manifest["files"])
        family = spec.get("family")
        if family not in MODEL_FAMILIES:
            raise ValueError(f"{folder / 'model.json'}: model family {family!r} is not one of {list(MODEL_FAMILIES)}")
        skip_user_table = family == "two_tower" and not user_table
        model = _load_user_side(folder, spec, skip_user_table) if user_side else None

        items = load_file(folder / "items.safetensors")
        names = tuple(spec.get("segment_names", ()))
        slots = spec.get("segment_slots")
        return cls(
            folder=folder,
            model=model,
            item_vectors=items["vectors"],
            item_popularity=items["popularity"],
            segment_popularity=items.get("segment_popularity"),
            encoders=tuple(AttributeEncoder.from_dict(e) for e in spec["encoders"]),
            tag_values=tuple(spec["tag_values"]),
            segment_names=names,
            segment_slots=np.asarray(slots if slots is not None else np.arange(len(names)), dtype=np.int64),
            segment_spec=load_segment_spec(folder / spec["segment_spec"]) if spec.get("segment_spec") else None,
            manifest=manifest,
            user_table_loaded=not skip_user_table,
        )

    def load_user_rows(self, users: np.ndarray) -> np.ndarray:
        """Make the user-table rows of ``users`` available and return the ids to put in a batch.

        With the whole table loaded, this returns ``users`` unchanged. Otherwise it reads only
        the needed rows from ``user_tower.safetensors`` into the model, in blocks of at most
        ``USER_ROW_BLOCK`` rows, and returns each user's row in that smaller table.
        """
        users = np.asarray(users, dtype=np.int64)
        if self.model is None:
            raise RuntimeError(f"the export at {self.folder} was loaded without its user side (user_side=False)")
        if self.user_table_loaded or self.family != "two_tower":
            return users
        wanted = np.unique(users)
        dim = self.model.config.embedding_dim
        rows = torch.empty(max(len(wanted), 1), dim)
        with safe_open(str(self.folder / "user_tower.safetensors"), framework="pt") as handle:
            table = handle.get_slice(USER_TABLE)
            size = table.get_shape()[0]
            if len(wanted) and (wanted[0] < 0 or wanted[-1] >= size):
                raise IndexError(f"user rows must be in [0, {size}) of {self.folder / 'user_tower.safetensors'}, "
                                 f"got {wanted[0]}..{wanted[-1]}")
            begin = 0
            while begin < len(wanted):
                first = int(wanted[begin])
                end = int(np.searchsorted(wanted, first + USER_ROW_BLOCK, side="left"))
                block = table[first:int(wanted[end - 1]) + 1]
                rows[begin:end] = block[torch.from_numpy(wanted[begin:end] - first)]
                begin = end
        bag = self.model.ebc.embedding_bags["t_user"]
        bag.weight = torch.nn.Parameter(rows, requires_grad=False)
        bag.num_embeddings = rows.shape[0]
        return np.searchsorted(wanted, users)

    @torch.no_grad()
    def user_vectors(self, batch: UserBatch) -> torch.Tensor:
        if self.model is None:
            raise RuntimeError(f"the export at {self.folder} was loaded without its user side (user_side=False)")
        return self.model.user_embeddings(batch)


def _load_user_side(folder: Path, spec: dict, skip_user_table: bool) -> TwoTowerModel | SASRecModel:
    """Build the family's model from ``model.json`` and load ``user_tower.safetensors`` into it."""
    model_class, config_class = model_classes()[spec["family"]]
    config = config_class.from_dict(spec["config"])
    if skip_user_table:
        config = replace(config, num_users=1)
    model = model_class(config, num_segments=int(spec["num_segments"]), lora=LoRAConfig(**spec["lora"]))
    weights = load_file(folder / "user_tower.safetensors")
    expected = set(user_side_state(model))
    if set(weights) != expected:
        raise ValueError(
            f"{folder / 'user_tower.safetensors'} does not match model.json: missing "
            f"{sorted(expected - set(weights))}, unexpected {sorted(set(weights) - expected)}"
        )
    if skip_user_table:
        del weights[USER_TABLE]
    model.load_state_dict(weights, strict=False)
    model.eval()
    return model
