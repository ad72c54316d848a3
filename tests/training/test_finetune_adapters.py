"""Fine-tuning: rank by segment size, stacking mixed ranks, shared and full fine-tuning, cached objective."""

import numpy as np
import pytest
import torch

from recsys_peft.adapters.freeze import checksums
from recsys_peft.adapters.lora import LoRAConfig, adapter_layers, load_adapter_state
from recsys_peft.training import finetune as finetune_module
from recsys_peft.training.finetune import (
    SHARED_SEGMENT, FinetuneConfig, finetune_full, finetune_segment, finetune_shared, frozen_checksums,
    stack_adapters, with_adapters,
)
from recsys_peft.training.loop import TrainConfig
from recsys_peft.training.objectives import objective

LARGEST_SEGMENT = 13   # M:56+, 19 users in the session log
SMALL_SEGMENT = 2      # F:25-34, 10 users
ALL_TARGETS = ("lookup_adapter", "user_hidden", "user_out")
TRAIN = TrainConfig(epochs=2, batch_size=32, learning_rate=1e-2, patience=2)


@pytest.fixture
def ranked_config() -> FinetuneConfig:
    lora = LoRAConfig(r=4, alpha=8.0, target_modules=ALL_TARGETS, segment_ranks=((0, 2), (15, 4)))
    return FinetuneConfig(lora=lora, train=TRAIN, min_users=2)


def single_slot_vectors(base_model, snapshot, final_batch, adapter, lora):
    """Vectors of the segment's users from a one-slot model holding only this adapter."""
    model = with_adapters(base_model, 1, lora.with_rank(adapter.rank)).eval()
    load_adapter_state(model, 0, adapter.state)
    members = snapshot.segments.members(adapter.segment_index)
    with torch.no_grad():
        return model.user_embeddings(final_batch(np.where(members, 0, -1)))[torch.from_numpy(members)]


def test_rank_follows_segment_size(base_model, snapshot, ranked_config):
    large = finetune_segment(base_model, snapshot, LARGEST_SEGMENT, ranked_config)
    small = finetune_segment(base_model, snapshot, SMALL_SEGMENT, ranked_config)

    assert (large.users, large.rank) == (19, 4)
    assert (small.users, small.rank) == (10, 2)
    for adapter in (large, small):
        shapes = {name: tuple(t.shape) for name, t in adapter.state.items()} if adapter.state else {}
        assert all(shape[0] == adapter.rank for name, shape in shapes.items() if name.endswith("lora_A"))
    assert small.trainable_parameters * 2 == large.trainable_parameters


def test_stack_mixed_ranks_keeps_each(base_model, snapshot, final_batch, ranked_config):
    adapters = [finetune_segment(base_model, snapshot, s, ranked_config) for s in (SMALL_SEGMENT, LARGEST_SEGMENT)]
    # Random weights of each adapter's own rank, so that every slot changes the scores.
    generator = torch.Generator().manual_seed(0)
    for adapter in adapters:
        probe = with_adapters(base_model, 1, ranked_config.lora.with_rank(adapter.rank))
        with torch.no_grad():
            for layer in adapter_layers(probe).values():
                layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=generator) * 0.3)
        adapter.state = finetune_module.adapter_state(probe, 0)
    stacked = stack_adapters(base_model, adapters, len(snapshot.segments.names), ranked_config.lora)

    with torch.no_grad():
        vectors = stacked.user_embeddings(final_batch(snapshot.segments.user_segments))
    with torch.no_grad():
        base_vectors = base_model.user_embeddings(final_batch())
    for adapter in adapters:
        members = torch.from_numpy(snapshot.segments.members(adapter.segment_index))
        expected = single_slot_vectors(base_model, snapshot, final_batch, adapter, ranked_config.lora)
        torch.testing.assert_close(vectors[members], expected, atol=1e-6, rtol=1e-5)
        assert not torch.allclose(vectors[members], base_vectors[members])


def test_finetune_lookup_keeps_tables(base_model, snapshot, ranked_config, monkeypatch):
    seen = {}
    real_fit = finetune_module.fit_loss

    def recording_fit(model, parameters, *args, **kwargs):
        seen["trainable"] = sorted(n for n, p in model.named_parameters() if any(p is q for q in parameters))
        seen["before"] = frozen_checksums(model)
        result = real_fit(model, parameters, *args, **kwargs)
        seen["after"] = frozen_checksums(model)
        return result

    monkeypatch.setattr(finetune_module, "fit_loss", recording_fit)
    finetune_segment(base_model, snapshot, LARGEST_SEGMENT, ranked_config)

    assert seen["trainable"] == [f"{layer}.lora_{p}" for layer in ALL_TARGETS for p in "AB"]
    assert seen["after"] == seen["before"]
    assert "ebc.embedding_bags.t_item.weight" in seen["after"]


def test_train_users_subset(base_model, snapshot, ranked_config):
    members = snapshot.segments.members(LARGEST_SEGMENT)
    subset = np.zeros_like(members)
    subset[np.flatnonzero(members)[:8]] = True

    whole = finetune_segment(base_model, snapshot, LARGEST_SEGMENT, ranked_config)
    part = finetune_segment(base_model, snapshot, LARGEST_SEGMENT, ranked_config, train_users=subset)

    assert part.users == whole.users == 19
    assert part.rank == whole.rank == 4
    assert 0 < part.train_examples < whole.train_examples


def test_shared_adapter_covers_everyone(base_model, snapshot, tiny_lora):
    config = FinetuneConfig(lora=tiny_lora, train=TrainConfig(epochs=1, batch_size=64, learning_rate=1e-2))

    shared = finetune_shared(base_model, snapshot, config)

    assert shared.segment == SHARED_SEGMENT
    assert shared.users == snapshot.log.num_users
    assert shared.steps > 0
    dense = (base_model.user_hidden, base_model.user_out)
    lookup = 2 * base_model.user_hidden.in_features  # the lookup adapter maps the lookups onto themselves
    assert shared.trainable_parameters == tiny_lora.r * (
        lookup + sum(layer.in_features + layer.out_features for layer in dense))
    assert shared.used == (shared.reason == "beats base on validation")


def test_full_finetune_moves_tables(base_model, snapshot):
    before = checksums(base_model)
    members = snapshot.segments.members(LARGEST_SEGMENT)

    full = finetune_full(base_model, snapshot, members, TRAIN, seed=0)

    after = checksums(full.model)
    assert after["ebc.embedding_bags.t_item.weight"] != before["ebc.embedding_bags.t_item.weight"]
    assert full.trainable_parameters == sum(p.numel() for p in base_model.parameters())
    assert full.result.steps > 0
    assert checksums(base_model) == before


def test_cached_objective_matches_generic(base_model, snapshot):
    # In eval mode (no dropout) the cached lookups and item vectors give the same loss as the
    # objective that looks everything up in every step.
    members = snapshot.segments.members(LARGEST_SEGMENT)
    slots = np.where(members, 0, -1)
    model = with_adapters(base_model, 1, LoRAConfig(r=2, alpha=4.0, target_modules=ALL_TARGETS)).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in adapter_layers(model).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=generator) * 0.1)
    item_vectors = model.all_item_embeddings(snapshot.features.item_tags)

    cached_count, cached_loss = finetune_module._two_tower_adapter_objective(model, snapshot, members, slots,
                                                                             item_vectors)
    generic_count, generic_loss = objective(model, snapshot, members, slots)

    index = torch.arange(min(cached_count, 40))
    assert cached_count == generic_count
    with torch.no_grad():
        torch.testing.assert_close(cached_loss(index), generic_loss(index), atol=1e-5, rtol=1e-5)


def test_min_users_validated():
    with pytest.raises(ValueError, match=r"FinetuneConfig\.min_users must be at least 1, got 0"):
        FinetuneConfig(min_users=0)


def test_keep_rule_needs_gain():
    base = np.array([0.2, 0.5, 0.0, 1.0])

    assert not finetune_module.beats_base(base, base.copy(), confidence=0.8)
    assert not finetune_module.beats_base(base, base - 0.1, confidence=0.8)
    assert not finetune_module.beats_base(np.zeros(0), np.zeros(0), confidence=0.8)


def test_keep_rule_confidence():
    # One user of forty gains, and about a third of resamples leave that user out: confidence about 0.64.
    base = np.zeros(40)
    one_gain = base.copy()
    one_gain[0] = 1.0
    all_gain = base + 0.1

    assert finetune_module.beats_base(base, all_gain, confidence=0.8)
    assert finetune_module.beats_base(base, one_gain, confidence=0.5)
    assert not finetune_module.beats_base(base, one_gain, confidence=0.8)


def test_keep_confidence_validated():
    with pytest.raises(ValueError, match=r"FinetuneConfig\.keep_confidence must be in \[0, 1\), got 1\.0"):
        FinetuneConfig(keep_confidence=1.0)
