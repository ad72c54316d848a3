"""Sparse causal attention: the blocked computation against the dense pattern it stands for."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from recsys_peft.models import attention
from recsys_peft.models.attention import sparse_causal_attention, sparse_pattern
from recsys_peft.models.sasrec import PAD, SASRecConfig, SASRecModel


def _inputs(batch: int, heads: int, length: int, dim: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, heads, length, dim, generator=generator) for _ in range(3))
    # Left padding of different lengths per row, as SASRec feeds it.
    real = torch.tensor([length, length - 3, 1, length // 2][:batch])
    valid = torch.arange(length).unsqueeze(0) >= (length - real).unsqueeze(1)          # (B, L)
    return q, k, v, valid


def _masked_dense(q, k, v, valid, pattern):
    length = q.shape[2]
    mask = (pattern.unsqueeze(0) & valid.unsqueeze(1)) | torch.eye(length, dtype=torch.bool)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask.unsqueeze(1))


@pytest.mark.parametrize("length,window", [(7, 7), (7, 20), (16, 16), (1, 4)])
def test_whole_sequence_window_equals_dense(length, window):
    q, k, v, valid = _inputs(4, 2, length, 8)
    causal = torch.tril(torch.ones(length, length, dtype=torch.bool))
    dense = _masked_dense(q, k, v, valid, causal)
    sparse = sparse_causal_attention(q, k, v, valid, window=window, stride=3)
    torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("length,window,stride", [(23, 4, 4), (23, 5, 3), (32, 8, 0), (10, 3, 1), (9, 2, 7)])
def test_blocked_matches_pattern(length, window, stride):
    q, k, v, valid = _inputs(4, 2, length, 8, seed=1)
    expected = _masked_dense(q, k, v, valid, sparse_pattern(length, window, stride))
    actual = sparse_causal_attention(q, k, v, valid, window=window, stride=stride)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("chunk_scores", [1, attention.CHUNK_SCORES])
@pytest.mark.parametrize("length,window,stride", [(23, 4, 4), (23, 5, 3), (32, 8, 0), (9, 2, 7), (7, 20, 3)])
def test_blocked_gradients_match_pattern(monkeypatch, chunk_scores, length, window, stride):
    """The recomputing backward pass equals autograd through dense attention, one block per chunk or all at once."""
    monkeypatch.setattr(attention, "CHUNK_SCORES", chunk_scores)
    q, k, v, valid = _inputs(4, 2, length, 8, seed=2)
    q, k, v = (t.double().requires_grad_() for t in (q, k, v))
    weights = torch.randn(q.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)

    expected = torch.autograd.grad(
        (_masked_dense(q, k, v, valid, sparse_pattern(length, window, stride)) * weights).sum(), (q, k, v))
    actual = torch.autograd.grad((sparse_causal_attention(q, k, v, valid, window, stride) * weights).sum(), (q, k, v))

    for name, actual_grad, expected_grad in zip("qkv", actual, expected):
        torch.testing.assert_close(actual_grad, expected_grad, rtol=1e-9, atol=1e-10, msg=f"gradient of {name}")


@pytest.mark.parametrize("chunk_scores", [1, attention.CHUNK_SCORES])
def test_dropout_gradients_match_finite_differences(monkeypatch, chunk_scores):
    """The backward pass redraws the forward pass's dropout masks, chunk by chunk."""
    monkeypatch.setattr(attention, "CHUNK_SCORES", chunk_scores)
    q, k, v, valid = _inputs(2, 2, 11, 4, seed=3)
    q, k, v = (t.double().requires_grad_() for t in (q, k, v))

    def attend(q, k, v):
        torch.manual_seed(7)
        return sparse_causal_attention(q, k, v, valid, window=3, stride=4, dropout_p=0.4)

    assert torch.autograd.gradcheck(attend, (q, k, v))


def test_dropout_changes_output_reproducibly():
    q, k, v, valid = _inputs(2, 2, 16, 8, seed=4)
    torch.manual_seed(0)
    dropped = sparse_causal_attention(q, k, v, valid, window=4, stride=4, dropout_p=0.5)
    without_dropout = sparse_causal_attention(q, k, v, valid, window=4, stride=4)
    assert not torch.allclose(dropped, without_dropout)
    torch.manual_seed(0)
    torch.testing.assert_close(sparse_causal_attention(q, k, v, valid, window=4, stride=4, dropout_p=0.5), dropped)


def test_pattern_keeps_window_and_strides():
    pattern = sparse_pattern(10, window=2, stride=4)
    # The last query attends to itself, the one before it, and positions 9 - 4 = 5 and 9 - 8 = 1.
    assert torch.nonzero(pattern[9]).flatten().tolist() == [1, 5, 8, 9]
    assert torch.nonzero(pattern[4]).flatten().tolist() == [1, 3, 4]
    assert not pattern.triu(1).any()


def test_sasrec_sparse_whole_window_equals_dense():
    torch.manual_seed(0)
    dense_config = SASRecConfig(num_items=30, max_length=12, embedding_dim=16, num_heads=2, ffn_dim=32)
    dense = SASRecModel(dense_config).eval()
    sparse = SASRecModel(dataclasses.replace(dense_config, attention="sparse", attention_window=12,
                                             attention_stride=5)).eval()
    sparse.load_state_dict(dense.state_dict())
    generator = torch.Generator().manual_seed(3)
    sequence = torch.randint(0, 30, (5, 12), generator=generator)
    sequence[1, :4] = PAD
    sequence[2, :11] = PAD
    segments = torch.full((5,), -1)
    with torch.no_grad():
        torch.testing.assert_close(sparse.sequence_states(sequence, segments),
                                   dense.sequence_states(sequence, segments), rtol=1e-5, atol=1e-5)


def test_sasrec_sparse_gradients_flow():
    config = SASRecConfig(num_items=30, max_length=20, embedding_dim=16, num_heads=2, ffn_dim=32,
                          attention="sparse", attention_window=4, attention_stride=4)
    model = SASRecModel(config).train()
    sequence = torch.randint(0, 30, (3, 20), generator=torch.Generator().manual_seed(0))
    model.sequence_states(sequence, torch.full((3,), -1)).sum().backward()
    query_weight = model.blocks[0].attention.query.base.weight
    assert query_weight.grad is not None
    assert torch.isfinite(query_weight.grad).all()


@pytest.mark.parametrize("overrides,match", [
    ({"attention": "local"}, "attention must be 'dense' or 'sparse', got 'local'"),
    ({"attention_window": 0}, "attention_window >= 1"),
    ({"attention_stride": -1}, "attention_stride >= 0"),
])
def test_config_rejects_bad_attention(overrides, match):
    with pytest.raises(ValueError, match=match):
        SASRecConfig(num_items=10, **overrides)


def test_sasrec_sparse_training_matches_dense():
    """In training mode a whole-sequence window gives dense outputs and gradients."""
    torch.manual_seed(0)
    dense_config = SASRecConfig(num_items=30, max_length=12, embedding_dim=16, num_heads=2, ffn_dim=32,
                                dropout=0.0, attention_dropout=0.0)
    dense = SASRecModel(dense_config).train()
    sparse = SASRecModel(dataclasses.replace(dense_config, attention="sparse", attention_window=12)).train()
    sparse.load_state_dict(dense.state_dict())
    sequence = torch.randint(0, 30, (4, 12), generator=torch.Generator().manual_seed(5))
    sequence[0, :6] = PAD
    segments = torch.full((4,), -1)

    dense_states = dense.sequence_states(sequence, segments)
    sparse_states = sparse.sequence_states(sequence, segments)
    dense_states.square().sum().backward()
    sparse_states.square().sum().backward()

    torch.testing.assert_close(sparse_states, dense_states, rtol=1e-5, atol=1e-5)
    for (name, dense_parameter), sparse_parameter in zip(dense.named_parameters(), sparse.parameters()):
        if dense_parameter.grad is not None:
            torch.testing.assert_close(sparse_parameter.grad, dense_parameter.grad, rtol=1e-4, atol=1e-5,
                                       msg=f"gradient of {name}")
