import numpy as np
import pytest
import torch

from recsys_peft.models.two_tower import TwoTowerConfig, TwoTowerModel, UserBatch
from recsys_peft.training.finetune import adapter_slots, stack_adapters, with_adapters


def scores(model: TwoTowerModel, batch: UserBatch, items: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.user_embeddings(batch) @ items.T


def test_user_vectors_unit_norm(base_model, final_batch, tiny_config):
    with torch.no_grad():
        vectors = base_model.user_embeddings(final_batch())

    assert vectors.shape == (tiny_config.num_users, tiny_config.embedding_dim)
    torch.testing.assert_close(vectors.norm(dim=1), torch.ones(tiny_config.num_users))


def test_item_vectors_unit_norm(base_model, snapshot, tiny_config):
    items = torch.tensor([0, 5, 149])

    with torch.no_grad():
        vectors = base_model.item_embeddings(items, snapshot.features.item_tags)
    catalogue = base_model.all_item_embeddings(snapshot.features.item_tags, chunk=64)

    assert vectors.shape == (3, tiny_config.embedding_dim)
    assert catalogue.shape == (tiny_config.num_items, tiny_config.embedding_dim)
    torch.testing.assert_close(catalogue.norm(dim=1), torch.ones(tiny_config.num_items))
    torch.testing.assert_close(catalogue[items], vectors)


def test_all_items_keeps_train_mode(base_model, snapshot):
    base_model.train()

    base_model.all_item_embeddings(snapshot.features.item_tags)

    assert base_model.training


def test_with_adapters_same_scores(base_model, snapshot, final_batch, tiny_lora):
    num_segments = len(snapshot.segments.names)
    copy = with_adapters(base_model, num_segments, tiny_lora).eval()
    # Every user routed to its own segment's fresh adapter (B = 0), and one to none.
    slots = snapshot.segments.user_segments.copy()
    slots[0] = -1
    items = base_model.all_item_embeddings(snapshot.features.item_tags)

    assert copy.num_segments == num_segments
    assert torch.equal(copy.all_item_embeddings(snapshot.features.item_tags), items)
    assert torch.equal(scores(copy, final_batch(slots), items), scores(base_model, final_batch(), items))


def test_stack_fallback_uses_base(base_model, snapshot, final_batch, make_adapters, tiny_lora):
    kept = (2, 7)
    adapters = make_adapters(base_model, kept)
    stacked = stack_adapters(base_model, adapters, len(snapshot.segments.names), tiny_lora)
    slots = adapter_slots(snapshot, adapters)
    items = base_model.all_item_embeddings(snapshot.features.item_tags)
    in_kept = np.isin(snapshot.segments.user_segments, kept)

    adapted_scores = scores(stacked, final_batch(slots), items)
    base_scores = scores(base_model, final_batch(), items)

    assert in_kept.any()
    assert (~in_kept).any()
    assert (slots[~in_kept] == -1).all()
    assert (slots[in_kept] == snapshot.segments.user_segments[in_kept]).all()
    assert torch.equal(adapted_scores[~in_kept], base_scores[~in_kept])
    # Every user of a kept segment is scored by its (non-zero) adapter.
    row_changed = (adapted_scores[in_kept] - base_scores[in_kept]).abs().amax(dim=1) > 1e-4
    assert row_changed.all()


@pytest.mark.parametrize(("overrides", "message"), [
    ({"num_users": 0}, r"TwoTowerConfig\.num_users must be at least 1, got 0"),
    ({"embedding_dim": 0}, r"TwoTowerConfig\.embedding_dim must be at least 1, got 0"),
    ({"recent_length": 0}, r"recent_length must be in \[1, history_length=50\], got 0"),
    ({"recent_length": 51}, r"recent_length must be in \[1, history_length=50\], got 51"),
])
def test_config_rejects_invalid(overrides, message):
    arguments = {"num_users": 3, "num_items": 4, "num_tags": 2, **overrides}

    with pytest.raises(ValueError, match=message):
        TwoTowerConfig(**arguments)


def test_config_dict_round_trip(tiny_config):
    assert TwoTowerConfig.from_dict(tiny_config.to_dict()) == tiny_config
