"""Exporting a two-tower model whose user-side lookups carry an adapter."""

import numpy as np
import torch

from recsys_peft.adapters.lora import LoRAConfig
from recsys_peft.export.exporter import export_two_tower
from recsys_peft.export.model import ExportedModel
from recsys_peft.training.finetune import SegmentAdapter, adapter_slots, stack_adapters

LOOKUP_LORA = LoRAConfig(r=4, alpha=8.0, target_modules=("lookup_adapter", "user_hidden", "user_out"))


def test_lookup_adapter_survives_export(tmp_path, snapshot, store, pretrained, final_batch):
    probe = stack_adapters(pretrained.model, [], 1, LOOKUP_LORA)
    generator = torch.Generator().manual_seed(3)
    state = {name: torch.randn(p.shape[1:], generator=generator) * 0.3
             for name, p in probe.named_parameters() if "lora_" in name and p.numel() > 0}
    assert any(name.startswith("lookup_adapter.") for name in state)
    adapters = [SegmentAdapter(name, index, 0, 0, 0.0, 0.0, state if index == 1 else None,
                               "kept" if index == 1 else "fallback")
                for index, name in enumerate(snapshot.segments.names)]
    model = stack_adapters(pretrained.model, adapters, len(snapshot.segments.names), LOOKUP_LORA)
    model.eval()
    slots = adapter_slots(snapshot, adapters)

    export_two_tower(model, snapshot, slots, tmp_path / "export", store.store_dir, {}, seed=0)
    exported = ExportedModel.load(tmp_path / "export")

    batch = final_batch(slots)
    with torch.no_grad():
        expected = model.user_embeddings(batch)
        got = exported.user_vectors(batch)
    assert np.sum(slots == 1) > 0
    assert torch.allclose(got, expected, atol=1e-5)
