"""Training windows and losses of the sequential model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recsys_peft.dataset.log import InteractionLog
from recsys_peft.training.sequences import full_softmax_loss, sampled_softmax_loss, training_sequences


def two_user_log() -> InteractionLog:
    # User 0: items 10..16 (7 events); user 1: items 20, 21 (2 events). Timestamps increase.
    users = np.array([0] * 7 + [1] * 2)
    items = np.array([10, 11, 12, 13, 14, 15, 16, 20, 21])
    return InteractionLog.from_arrays(users, items, np.arange(9), num_users=2, num_items=30)


def test_windows_cover_all_targets():
    log = two_user_log()
    sequences = training_sequences(log, np.arange(9), max_length=3)
    rows = {tuple(t.tolist()): tuple(i.tolist()) for i, t in zip(sequences.inputs, sequences.targets)}
    assert rows == {
        (14, 15, 16): (13, 14, 15),
        (11, 12, 13): (10, 11, 12),
        (-1, -1, 21): (-1, -1, 20),
    }
    assert sorted(sequences.users.tolist()) == [0, 0, 1]


def test_windows_use_only_train_positions():
    log = two_user_log()
    train = np.array([0, 1, 2, 3, 4, 7])  # user 0's last two events held out, user 1's second one too
    sequences = training_sequences(log, train, max_length=5)
    assert sequences.targets.tolist() == [[-1, 11, 12, 13, 14]]
    assert sequences.inputs.tolist() == [[-1, 10, 11, 12, 13]]


def test_windows_for_chosen_users():
    sequences = training_sequences(two_user_log(), np.arange(9), max_length=3, users=np.array([1]))
    assert sequences.users.tolist() == [1]


def test_full_softmax_skips_padding():
    states = torch.randn(1, 3, 4)
    table = torch.randn(6, 4)
    targets = torch.tensor([[-1, -1, 2]])
    expected = F.cross_entropy(states[0, 2:] @ table.T, torch.tensor([2]))
    torch.testing.assert_close(full_softmax_loss(states, targets, table), expected)


def test_sampled_softmax_masks_hits():
    states = torch.ones(1, 1, 2)
    table = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    log_q = torch.log(torch.tensor([1.0, 1e-9]))  # every negative draw is item 0, the target
    loss = sampled_softmax_loss(states, torch.tensor([[0]]), table, log_q, num_negatives=4,
                                generator=torch.Generator().manual_seed(0))
    # All negatives are masked, so only the positive logit remains: the loss is zero.
    assert float(loss) == 0.0


def test_overlapping_windows_give_targets_longer_histories():
    log = two_user_log()
    sequences = training_sequences(log, np.arange(9), max_length=3, stride=1)
    rows = sorted((tuple(i.tolist()), tuple(t.tolist())) for i, t in zip(sequences.inputs, sequences.targets))
    assert rows == [
        ((-1, -1, 20), (-1, -1, 21)),
        ((10, 11, 12), (11, 12, 13)),
        ((11, 12, 13), (12, 13, 14)),
        ((12, 13, 14), (13, 14, 15)),
        ((13, 14, 15), (14, 15, 16)),
    ]
    # Stride 2: windows end at 16 and 14, then one more reaches the first item.
    ends = sorted(int(t[-1]) for t in training_sequences(log, np.arange(9), max_length=3, stride=2).targets)
    assert ends == [12, 14, 16, 21]


def test_window_stride_is_checked():
    with pytest.raises(ValueError, match="window stride must be between 1 and max_length=3, got 4"):
        training_sequences(two_user_log(), np.arange(9), max_length=3, stride=4)
