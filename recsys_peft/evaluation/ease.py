"""EASE, a linear item-to-item baseline with a closed-form solution.

From Steck, "Embarrassingly Shallow Autoencoders for Sparse Data" (WWW 2019): with X the
(users, items) 0/1 matrix of training events and G = X^T X, the weights are
B = I - P diag(1 / diag(P)) with P = (G + l2 I)^-1, so the diagonal of B is zero and no item
recommends itself. A user's scores are h B, where h is the 0/1 row of the items the user had
before the target. The fit keeps a few dense (items, items) float64 matrices, so it suits
catalogues of up to some tens of thousands of items. Use item-kNN beyond that.
"""

from __future__ import annotations

import numpy as np
import torch

from recsys_peft.dataset.log import InteractionLog
from recsys_peft.evaluation.baselines import ScoreFunction, history_matrix

# The fit keeps about three (items, items) float64 matrices: 9.6 GB at 20,000 items.
DEFAULT_MAX_ITEMS = 20_000


def training_matrix(log: InteractionLog, train_positions: np.ndarray) -> torch.Tensor:
    """Build the dense (users, items) float64 0/1 matrix of training events (repeats count once)."""
    matrix = torch.zeros(log.num_users, log.num_items, dtype=torch.float64)
    users = torch.from_numpy(log.users[train_positions])
    items = torch.from_numpy(log.items[train_positions])
    matrix[users, items] = 1.0
    return matrix


def fit_ease(log: InteractionLog, train_positions: np.ndarray, l2: float,
             max_items: int = DEFAULT_MAX_ITEMS) -> torch.Tensor:
    """Fit the (items, items) float32 EASE weight matrix B on training events.

    Raises:
        ValueError: when l2 is not positive, or the catalogue has more than max_items items.
    """
    if not l2 > 0.0:
        raise ValueError(f"l2 must be a positive regularisation weight, got {l2!r}")
    if log.num_items > max_items:
        raise ValueError(
            f"EASE needs dense (items, items) matrices, and the catalogue has {log.num_items} items, more "
            f"than max_items={max_items}. Use item-kNN (recsys_peft.evaluation.item_knn) or raise max_items"
        )
    matrix = training_matrix(log, train_positions)
    gram = matrix.T @ matrix                                                   # (I, I)
    gram.diagonal().add_(l2)
    precision = torch.linalg.inv(gram)
    weights = -precision / precision.diagonal().unsqueeze(0)                    # column j divided by P[j, j]
    weights.diagonal().zero_()
    return weights.to(torch.float32)


def ease_scorer(log: InteractionLog, weights: torch.Tensor) -> ScoreFunction:
    """Score items for each user as h B, with h the items the user had before the target."""
    return lambda users, positions: history_matrix(log, users, positions) @ weights
