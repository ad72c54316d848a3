import math

import pytest
import torch

from recsys_peft.training.losses import in_batch_softmax_loss, item_log_q


def test_loss_two_by_two_by_hand():
    users = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    items = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    targets = torch.tensor([0, 1])
    log_q = torch.log(torch.tensor([0.75, 0.25]))

    loss = in_batch_softmax_loss(users, items, targets, log_q, temperature=0.5)

    # Logits / 0.5 are [[2, 0], [1.2, 1.6]]. Subtracting log q adds ln(4/3) to column 0 and
    # ln 4 to column 1, so -log softmax is log(1 + 3 e^-2) for row 0 and log(1 + e^-0.4 / 3) for row 1.
    expected = (math.log1p(3 * math.exp(-2)) + math.log1p(math.exp(-0.4) / 3)) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert loss.item() == pytest.approx(0.2712098, abs=1e-6)


def test_loss_masks_duplicate_targets():
    users = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    items = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    targets = torch.tensor([5, 5, 7])
    log_q = torch.zeros(8)

    loss = in_batch_softmax_loss(users, items, targets, log_q, temperature=1.0)

    # Rows 0 and 1 share item 5, so neither is a negative of the other.
    row_0 = math.log1p(math.exp(-1.0))           # logits [1, masked, 0]
    row_1 = math.log1p(math.exp(1.0))            # logits [masked, 0, 1]
    row_2 = math.log(1 + 2 * math.exp(-0.2))     # logits [0.6, 0.6, 0.8], no mask
    assert loss.item() == pytest.approx((row_0 + row_1 + row_2) / 3, abs=1e-6)


def test_loss_all_same_target_zero():
    users = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    items = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))

    loss = in_batch_softmax_loss(users, items, torch.tensor([2, 2, 2, 2]), torch.zeros(3), temperature=0.1)

    assert loss.item() == 0.0


def test_loss_gradient_finite_with_mask():
    users = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    items = torch.tensor([[1.0, 0.0], [1.0, 0.0]], requires_grad=True)

    in_batch_softmax_loss(users, items, torch.tensor([1, 1]), torch.zeros(2), temperature=1.0).backward()

    assert torch.isfinite(users.grad).all()
    assert torch.isfinite(items.grad).all()


def test_log_q_add_one_smoothing():
    log_q = item_log_q(torch.tensor([0, 0, 1]), num_items=3)

    # Counts + 1 = [3, 2, 1] out of 6, so item 2 never appears but keeps a finite log q.
    torch.testing.assert_close(log_q, torch.log(torch.tensor([3 / 6, 2 / 6, 1 / 6])))
    assert log_q.exp().sum().item() == pytest.approx(1.0)
