"""Export a segment tuned by layer freezing (top_layers or bias_norm) as a model of its own.

Its tuned tensors replace base weights, so it cannot share a stacked model with other
segments. The export contains the base model with that segment's tensors in place and no
adapter slots. It loads and scores like any other export, and its manifest names the method,
the segment and the base model it was tuned from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recsys_peft.dataset.snapshot import DataSnapshot
from recsys_peft.export.exporter import export_model, weights_hash
from recsys_peft.training.finetune import BaseModel, SegmentAdapter
from recsys_peft.training.freezing import FinetuneMethod, apply_tuned


def export_tuned_segment(base: BaseModel, adapter: SegmentAdapter, snapshot: DataSnapshot, out_dir: str | Path,
                         store_dir: str | Path, manifest_extra: dict | None = None, seed: int = 0) -> dict:
    """Export ``base`` with ``adapter``'s tuned tensors in place; return the manifest.

    Raises ValueError for a LoRA adapter (stack those with ``finetune.stack_adapters``) and for a
    segment that kept no tuning.
    """
    if FinetuneMethod.parse(adapter.method).is_lora:
        raise ValueError(f"segment {adapter.segment!r} was tuned with LoRA, not layer freezing; "
                         f"export it stacked with the other adapters (finetune.stack_adapters)")
    if adapter.state is None:
        raise ValueError(f"segment {adapter.segment!r} kept no tuning ({adapter.reason}); export the base model")
    model = apply_tuned(base, adapter.state)
    slots = np.full(snapshot.log.num_users, -1, dtype=np.int64)
    extra = {"base_model_hash": weights_hash(base), "finetune_method": adapter.method,
             "tuned_segment": adapter.segment, "tuned_tensors": sorted(adapter.state), **(manifest_extra or {})}
    return export_model(model, snapshot, slots, out_dir, store_dir, extra, seed=seed)
