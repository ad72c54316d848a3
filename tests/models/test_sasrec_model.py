"""SASRec: masking, causality, adapter invariants and the shared item table."""

from __future__ import annotations

import pytest
import torch

from recsys_peft.adapters.lora import LoRAConfig, lora_layers
from recsys_peft.models.sasrec import SASRecConfig, SASRecModel
from recsys_peft.models.two_tower import UserBatch
from recsys_peft.training.finetune import with_adapters

CONFIG = SASRecConfig(num_items=30, embedding_dim=16, num_layers=2, num_heads=2, ffn_dim=32, max_length=6,
                      dropout=0.0, attention_dropout=0.0)


def batch(history: list[list[int]], segments: list[int] | None = None) -> UserBatch:
    rows = len(history)
    return UserBatch(users=torch.zeros(rows, dtype=torch.long), history=torch.tensor(history),
                     attributes=torch.zeros(rows, 0, dtype=torch.long),
                     segments=torch.tensor(segments if segments is not None else [-1] * rows))


def model(num_segments: int = 0) -> SASRecModel:
    torch.manual_seed(0)
    return SASRecModel(CONFIG, num_segments, LoRAConfig(r=2, alpha=4.0)).eval()


def test_config_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="embedding_dim=10 must be divisible by num_heads=3"):
        SASRecConfig(num_items=5, embedding_dim=10, num_heads=3)


def test_config_rejects_unknown_loss():
    with pytest.raises(ValueError, match="got 'bpr'"):
        SASRecConfig(num_items=5, loss="bpr")


def test_user_embedding_is_last_state():
    sasrec = model()
    users = batch([[3, 2, 1, -1, -1, -1]])
    sequence = torch.tensor([[-1, -1, -1, 1, 2, 3]])
    expected = sasrec.sequence_states(sequence, torch.tensor([-1]))[:, -1]
    torch.testing.assert_close(sasrec.user_embeddings(users), expected)


def test_states_are_causal():
    sasrec = model()
    first = sasrec.sequence_states(torch.tensor([[-1, 4, 5, 6, 7, 8]]), torch.tensor([-1]))
    second = sasrec.sequence_states(torch.tensor([[-1, 4, 5, 6, 7, 20]]), torch.tensor([-1]))
    torch.testing.assert_close(first[:, :5], second[:, :5])
    assert not torch.allclose(first[:, 5], second[:, 5])


def test_padding_rows_of_table_unused():
    sasrec = model()
    users = batch([[5, 6, -1, -1, -1, -1]])
    before = sasrec.user_embeddings(users)
    with torch.no_grad():
        sasrec.item_table[7:].add_(1.0)
    torch.testing.assert_close(sasrec.user_embeddings(users), before)


def test_empty_history_is_finite():
    vector = model().user_embeddings(batch([[-1] * 6]))
    assert torch.isfinite(vector).all()


def test_item_embeddings_share_table():
    sasrec = model()
    torch.testing.assert_close(sasrec.all_item_embeddings(), sasrec.item_table.detach())
    torch.testing.assert_close(sasrec.item_embeddings(torch.tensor([3])), sasrec.item_table[3:4])


def test_fresh_adapter_keeps_scores():
    base = model()
    adapted = with_adapters(base, 3, LoRAConfig(r=2, alpha=4.0)).eval()
    users = batch([[1, 2, 3, -1, -1, -1], [4, 5, -1, -1, -1, -1]], segments=[0, 2])
    torch.testing.assert_close(adapted.user_embeddings(users), base.user_embeddings(users), rtol=0, atol=0)


def test_mixed_batch_equals_each_segment():
    adapted = model(num_segments=2)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in lora_layers(adapted).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=generator))
    history = [[1, 2, 3, -1, -1, -1], [4, 5, -1, -1, -1, -1], [6, -1, -1, -1, -1, -1]]
    mixed = adapted.user_embeddings(batch(history, segments=[0, 1, -1]))
    for row, segment in enumerate([0, 1, -1]):
        alone = adapted.user_embeddings(batch([history[row]], segments=[segment]))
        torch.testing.assert_close(mixed[row:row + 1], alone, atol=1e-6, rtol=1e-5)


def test_adapters_cover_attention_and_ffn():
    names = sorted(lora_layers(model(num_segments=1)))
    assert names == sorted(f"blocks.{b}.{layer}" for b in range(2) for layer in (
        "attention.query", "attention.key", "attention.value", "attention.output", "ffn.inner", "ffn.outer"))
