"""Losses for retrieval training."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def in_batch_softmax_loss(
    user_vectors: torch.Tensor,
    item_vectors: torch.Tensor,
    target_items: torch.Tensor,
    log_q: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Sampled softmax over the batch's own targets, with logQ correction.

    Row ``i`` scores its own target against every other row's target. In-batch negatives are
    drawn in proportion to item popularity, so each logit is corrected by subtracting
    ``log_q[item]``, the log of that item's sampling probability (Yi et al., RecSys 2019).
    When another row has the same target item, that column is masked: it is not a negative.
    """
    logits = user_vectors @ item_vectors.T / temperature          # (B, B)
    logits = logits - log_q[target_items].unsqueeze(0)
    same_item = target_items.unsqueeze(0) == target_items.unsqueeze(1)
    diagonal = torch.eye(len(target_items), dtype=torch.bool)
    logits = logits.masked_fill(same_item & ~diagonal, float("-inf"))
    labels = torch.arange(len(target_items))
    return F.cross_entropy(logits, labels)


def item_log_q(target_items: torch.Tensor, num_items: int) -> torch.Tensor:
    """Log sampling probability of each item as an in-batch negative (its target frequency)."""
    counts = torch.bincount(target_items, minlength=num_items).double() + 1.0
    return torch.log(counts / counts.sum()).float()
