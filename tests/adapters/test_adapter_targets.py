"""Adapter targets in both model families, and the lookup adapter's invariants inside a model."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recsys_peft.adapters.freeze import freeze_all_but_adapters
from recsys_peft.adapters.lora import (
    LoRAConfig, adapter_layers, adapter_parameter_count, adapter_state, load_adapter_state, lora_layers,
)
from recsys_peft.models.sasrec import SASRecConfig, SASRecModel
from recsys_peft.models.two_tower import TwoTowerModel, UserBatch
from recsys_peft.training.finetune import with_adapters

ALL_TWO_TOWER = ("lookup_adapter", "user_hidden", "user_out")
SASREC = SASRecConfig(num_items=30, embedding_dim=16, num_layers=2, num_heads=2, ffn_dim=32, max_length=6,
                      dropout=0.0, attention_dropout=0.0)
HISTORY = [[1, 2, 3, -1, -1, -1], [4, 5, -1, -1, -1, -1], [6, 7, 8, 9, -1, -1], [2, -1, -1, -1, -1, -1]]


def randomise_b(model: torch.nn.Module, seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in adapter_layers(model).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=generator) * 0.3)


def sasrec_batch(segments: list[int]) -> UserBatch:
    rows = len(segments)
    return UserBatch(users=torch.zeros(rows, dtype=torch.long), history=torch.tensor(HISTORY[:rows]),
                     attributes=torch.zeros(rows, 0, dtype=torch.long), segments=torch.tensor(segments))


def test_two_tower_default_targets(base_model, tiny_lora):
    model = with_adapters(base_model, 2, tiny_lora)

    assert sorted(adapter_layers(model)) == ["lookup_adapter", "user_hidden", "user_out"]
    assert model.lookup_adapter.num_segments == 2
    assert model.num_segments == 2


def test_two_tower_lookup_target(base_model):
    model = with_adapters(base_model, 2, LoRAConfig(r=4, alpha=8.0, target_modules=ALL_TWO_TOWER))

    assert sorted(adapter_layers(model)) == list(ALL_TWO_TOWER)
    assert sorted(lora_layers(model)) == ["user_hidden", "user_out"]
    trainable = sorted(n for n, p in model.named_parameters() if any(p is q for q in freeze_all_but_adapters(model)))
    assert trainable == [f"{layer}.lora_{p}" for layer in ALL_TWO_TOWER for p in "AB"]


def test_two_tower_only_lookup_target(base_model):
    model = with_adapters(base_model, 1, LoRAConfig(r=2, target_modules=("lookup_adapter",)))

    assert sorted(adapter_layers(model)) == ["lookup_adapter"]
    user_in = model.lookup_adapter.in_features
    assert adapter_parameter_count(model) == 2 * (user_in + user_in)


def test_unknown_target_rejected(tiny_config):
    with pytest.raises(ValueError, match=r"LoRA target 'user_tower' matches no adapter layer of TwoTowerModel; "
                                         r"its adapter layers are \['lookup_adapter', 'user_hidden', 'user_out'\]"):
        TwoTowerModel(tiny_config, 1, LoRAConfig(target_modules=("user_tower",)))


def test_two_tower_fresh_lookup_keeps_scores(base_model, snapshot, final_batch):
    model = with_adapters(base_model, len(snapshot.segments.names),
                          LoRAConfig(r=4, alpha=8.0, target_modules=ALL_TWO_TOWER)).eval()

    with torch.no_grad():
        adapted = model.user_embeddings(final_batch(snapshot.segments.user_segments))
        base = base_model.user_embeddings(final_batch())

    assert torch.equal(adapted, base)


def test_two_tower_lookup_mixed_equals_alone(base_model, snapshot, final_batch):
    model = with_adapters(base_model, len(snapshot.segments.names),
                          LoRAConfig(r=4, alpha=8.0, target_modules=ALL_TWO_TOWER)).eval()
    randomise_b(model)
    # Every third user goes to the base model, the others to their own segment.
    segments = snapshot.segments.user_segments.copy()
    segments[::3] = -1
    batch = final_batch(segments)

    with torch.no_grad():
        mixed = model.user_embeddings(batch)
        for segment in (-1, 1, 6, 13):
            rows = torch.from_numpy(np.flatnonzero(segments == segment))
            alone = model.user_embeddings(batch.select(rows))
            torch.testing.assert_close(mixed[rows], alone, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(mixed, base_model.user_embeddings(final_batch()))


@pytest.mark.parametrize("segment", [1, 13])
def test_two_tower_lookup_merged_equals_unmerged(base_model, snapshot, final_batch, segment):
    # The lookup adapter x -> M x folds into the first dense layer: W' = (W + dW) M.
    model = with_adapters(base_model, len(snapshot.segments.names),
                          LoRAConfig(r=4, alpha=8.0, target_modules=ALL_TWO_TOWER)).eval()
    randomise_b(model)
    rows = torch.from_numpy(np.flatnonzero(snapshot.segments.user_segments == segment))
    batch = final_batch(snapshot.segments.user_segments).select(rows)
    captured = {}

    def capture_input(module, args, output):
        captured["x"] = args[0]

    handle = model.lookup_adapter.register_forward_hook(capture_input)

    with torch.no_grad():
        unmerged = model.user_embeddings(batch)
        handle.remove()
        hidden_weight = model.user_hidden.merged_weight(segment) @ model.lookup_adapter.merged_weight(segment)
        hidden = F.relu(captured["x"] @ hidden_weight.T + model.user_hidden.base.bias)
        out = hidden @ model.user_out.merged_weight(segment).T + model.user_out.base.bias
        merged = F.normalize(out, dim=-1)

    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=1e-4)


def sasrec(num_segments: int = 0, lora: LoRAConfig | None = None) -> SASRecModel:
    torch.manual_seed(0)
    return SASRecModel(SASREC, num_segments, lora or LoRAConfig(r=2, alpha=4.0)).eval()


def test_sasrec_default_targets_include_lookup():
    names = sorted(adapter_layers(sasrec(num_segments=1)))

    assert "lookup_adapter" in names
    assert len(names) == 13
    assert "lookup_adapter" not in lora_layers(sasrec(num_segments=1))


def test_sasrec_fresh_lookup_keeps_scores():
    base = sasrec()
    adapted = with_adapters(base, 3, LoRAConfig(r=2, alpha=4.0)).eval()
    users = sasrec_batch([0, 2, -1, 1])

    with torch.no_grad():
        assert torch.equal(adapted.user_embeddings(users), base.user_embeddings(users))


def test_sasrec_lookup_mixed_equals_alone():
    model = sasrec(num_segments=2, lora=LoRAConfig(r=2, alpha=4.0, target_modules=("lookup_adapter",)))
    randomise_b(model)
    segments = [0, 1, -1, 0]

    with torch.no_grad():
        mixed = model.user_embeddings(sasrec_batch(segments))
        for row, segment in enumerate(segments):
            alone = model.user_embeddings(UserBatch(*(t[row:row + 1] for t in (
                sasrec_batch(segments).users, sasrec_batch(segments).history,
                sasrec_batch(segments).attributes, sasrec_batch(segments).segments))))
            torch.testing.assert_close(mixed[row:row + 1], alone, atol=1e-6, rtol=1e-5)


def test_sasrec_lookup_merged_input_table():
    # Adapting the input lookups equals a model whose input table is the merged one.
    merged = sasrec()
    model = with_adapters(merged, 1, LoRAConfig(r=2, alpha=4.0, target_modules=("lookup_adapter",))).eval()
    randomise_b(model)
    with torch.no_grad():
        merged.item_table.copy_(model.lookup_adapter.merge_into_table(model.item_table, 0))
    sequence = torch.flip(torch.tensor(HISTORY), dims=[1])

    with torch.no_grad():
        unmerged_states = model.sequence_states(sequence, torch.zeros(4, dtype=torch.long))
        merged_states = merged.sequence_states(sequence, torch.full((4,), -1))

    torch.testing.assert_close(merged_states, unmerged_states, atol=1e-5, rtol=1e-4)


def test_lower_rank_state_pads_and_rescales(base_model, snapshot, final_batch):
    targets = ALL_TWO_TOWER
    small = with_adapters(base_model, 1, LoRAConfig(r=2, alpha=8.0, target_modules=targets)).eval()
    randomise_b(small)
    stacked = with_adapters(base_model, 3, LoRAConfig(r=4, alpha=8.0, target_modules=targets)).eval()

    load_adapter_state(stacked, 2, adapter_state(small, 0), scaling=small.lookup_adapter.config.scaling)

    batch = final_batch(np.zeros(snapshot.log.num_users, dtype=np.int64))
    routed = final_batch(np.full(snapshot.log.num_users, 2, dtype=np.int64))
    with torch.no_grad():
        torch.testing.assert_close(stacked.user_embeddings(routed), small.user_embeddings(batch), atol=1e-6, rtol=1e-5)
    assert torch.count_nonzero(stacked.user_out.lora_B[2, :, 2:]) == 0


def test_higher_rank_state_rejected(base_model):
    wide = with_adapters(base_model, 1, LoRAConfig(r=4))
    narrow = with_adapters(base_model, 1, LoRAConfig(r=2))

    with pytest.raises(ValueError, match=r"adapter weights of layer 'user_hidden' have shapes A \(4, \d+\) "
                                         r"and B \(32, 4\), expected A \(r, \d+\) and B \(32, r\) with r <= 2"):
        load_adapter_state(narrow, 0, adapter_state(wide, 0))
