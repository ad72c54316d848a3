"""Training sequences for SASRec, built once per data snapshot.

Each user's training events (chronological) are cut into windows of ``max_length + 1`` items
taken from the end: inputs are the first ``max_length`` items of a window, targets the last
``max_length``. Windows are left-padded with -1, and the loss is taken only where the target is
a real item.

A window ends every ``stride`` events counting back from the user's last training event. With
``stride == max_length`` consecutive windows share one item and every target is predicted once;
a shorter stride overlaps the windows, so each target is also predicted from a longer history,
at the cost of ``max_length / stride`` times more windows per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from recsys_peft.dataset.log import InteractionLog

PAD = -1


@dataclass
class Sequences:
    inputs: torch.Tensor    # (N, L) int64, left-padded with -1
    targets: torch.Tensor   # (N, L) int64, -1 where there is no target
    users: torch.Tensor     # (N,) int64 owner of each window

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


def training_sequences(log: InteractionLog, train_positions: np.ndarray, max_length: int,
                       users: np.ndarray | None = None, stride: int | None = None) -> Sequences:
    """Windows over the training events of ``users`` (all users when None), one per ``stride`` events.

    ``stride`` defaults to ``max_length`` (windows that do not overlap).
    """
    stride = max_length if stride is None else stride
    if not 1 <= stride <= max_length:
        raise ValueError(f"window stride must be between 1 and max_length={max_length}, got {stride}")
    train = np.zeros(len(log.items), dtype=bool)
    train[train_positions] = True
    if users is not None:
        keep_user = np.zeros(log.num_users, dtype=bool)
        keep_user[users] = True
        train &= keep_user[log.users]
    owners = log.users[train]
    items = log.items[train]
    counts = np.bincount(owners, minlength=log.num_users)
    ends = np.cumsum(counts)
    starts = ends - counts

    # Window w of a user ends at item (count - 1 - w * stride), walking back from the end, until
    # a window reaches the user's first item: 1 + ceil((count - 1 - max_length) / stride) windows.
    window = max_length + 1
    earlier = np.ceil(np.maximum(counts - 1 - max_length, 0) / stride)
    windows_per_user = np.where(counts >= 2, 1 + earlier, 0).astype(np.int64)
    user_of_window = np.repeat(np.arange(log.num_users), windows_per_user)
    order_in_user = np.arange(windows_per_user.sum()) - np.repeat(np.cumsum(windows_per_user) - windows_per_user,
                                                                 windows_per_user)
    last = ends[user_of_window] - 1 - order_in_user * stride                     # (W,) index of the last item
    offsets = np.arange(-window + 1, 1)                                           # (L + 1,)
    source = last[:, None] + offsets[None, :]                                     # (W, L + 1)
    valid = source >= starts[user_of_window][:, None]
    windows = np.where(valid, items[np.maximum(source, 0)], PAD)
    inputs, targets = windows[:, :-1], windows[:, 1:]
    # A target with no item before it in the window has no context to predict from: no loss there.
    targets = np.where(inputs == PAD, PAD, targets)
    return Sequences(torch.from_numpy(inputs.copy()), torch.from_numpy(targets.copy()),
                     torch.from_numpy(user_of_window))


def full_softmax_loss(states: torch.Tensor, targets: torch.Tensor, item_table: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the whole catalogue at every position with a real target."""
    real = targets != PAD
    logits = states[real] @ item_table.T                                          # (N, I)
    return F.cross_entropy(logits, targets[real])


def sampled_softmax_loss(states: torch.Tensor, targets: torch.Tensor, item_table: torch.Tensor,
                         log_q: torch.Tensor, num_negatives: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Softmax over the target and ``num_negatives`` items drawn from q, with logQ correction.

    Negatives are shared by every position of the batch; a negative equal to a position's
    target is masked for that position.
    """
    real = targets != PAD
    hidden, positive = states[real], targets[real]                                # (N, D), (N,)
    negatives = torch.multinomial(log_q.exp(), num_negatives, replacement=True, generator=generator)
    positive_logit = (hidden * item_table[positive]).sum(-1) - log_q[positive]    # (N,)
    negative_logits = hidden @ item_table[negatives].T - log_q[negatives]         # (N, M)
    negative_logits = negative_logits.masked_fill(positive.unsqueeze(1) == negatives.unsqueeze(0), float("-inf"))
    logits = torch.cat([positive_logit.unsqueeze(1), negative_logits], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(positive), dtype=torch.long))
