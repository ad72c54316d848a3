"""Item-kNN, a sparse item-to-item baseline for catalogues too large for EASE.

The similarity of items i and j is the cosine of their 0/1 columns in the (users, items)
matrix of training events. That is the number of users with both, divided by the square root
of the product of the two items' user counts. Only each item's ``neighbours`` most similar other items
are kept, so the model is a sparse (items, items) matrix with at most ``neighbours`` entries per
item. A user's score for item j is the sum of j's kept similarities to the items the user had
before the target. Nothing dense of size (items, items) is built: the similarities are computed
in blocks of items.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from recsys_peft.dataset.log import InteractionLog
from recsys_peft.evaluation.baselines import ScoreFunction, history_matrix

# Number of float32 similarities computed at once: the block of items times the catalogue size.
_SIMILARITY_BLOCK_VALUES = 1 << 24


def _sparse_training_matrix(log: InteractionLog, train_positions: np.ndarray) -> torch.Tensor:
    """Build the sparse (items, users) 0/1 COO matrix of training events (repeats count once)."""
    pairs = np.unique(np.stack([log.items[train_positions], log.users[train_positions]]), axis=1)
    values = torch.ones(pairs.shape[1], dtype=torch.float32)
    return torch.sparse_coo_tensor(torch.from_numpy(pairs), values, (log.num_items, log.num_users),
                                   check_invariants=False).coalesce()


def fit_item_knn(log: InteractionLog, train_positions: np.ndarray, neighbours: int) -> torch.Tensor:
    """Fit the sparse (items, items) neighbour matrix, row j holding item j's nearest neighbours.

    Entry (j, i) is the cosine similarity of items j and i when i is among the ``neighbours``
    most similar items to j and the similarity is positive. Among equal similarities the lower
    item index is kept. Returns a coalesced float32 COO tensor.

    Raises:
        ValueError: when neighbours is not a positive integer.
    """
    if isinstance(neighbours, bool) or not isinstance(neighbours, (int, np.integer)) or neighbours < 1:
        raise ValueError(f"neighbours must be a positive integer, got {neighbours!r}")
    item_users = _sparse_training_matrix(log, train_positions)                   # (I, U)
    user_items = item_users.t().coalesce()                                       # (U, I)
    norms = torch.zeros(log.num_items).index_add_(0, item_users.indices()[0], item_users.values()).sqrt()
    inverse_norms = torch.where(norms > 0, 1.0 / norms, torch.zeros_like(norms))
    keep = min(int(neighbours), max(log.num_items - 1, 1))
    block = max(1, _SIMILARITY_BLOCK_VALUES // max(log.num_items, 1))

    rows, cols, values = [], [], []
    for start in range(0, log.num_items, block):
        stop = min(start + block, log.num_items)
        block_rows = item_users.index_select(0, torch.arange(start, stop))
        with warnings.catch_warnings():
            # torch 2.13 warns that the sparse CSR format it uses inside this product is in beta.
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            overlap = torch.sparse.mm(block_rows, user_items).to_dense()          # (B, I) co-occurrence counts
        similarity = overlap * inverse_norms[start:stop].unsqueeze(1) * inverse_norms.unsqueeze(0)
        local = torch.arange(stop - start)
        similarity[local, local + start] = 0.0                                    # an item is not its own neighbour
        # A stable descending sort keeps the lower item index among equal similarities.
        order = torch.sort(similarity, dim=1, descending=True, stable=True).indices[:, :keep]  # (B, keep)
        best = torch.gather(similarity, 1, order)
        positive = best > 0
        rows.append((local.unsqueeze(1) + start).expand_as(order)[positive])
        cols.append(order[positive])
        values.append(best[positive])

    indices = torch.stack([torch.cat(rows), torch.cat(cols)])
    return torch.sparse_coo_tensor(indices, torch.cat(values), (log.num_items, log.num_items),
                                   check_invariants=False).coalesce()


def item_knn_scorer(log: InteractionLog, neighbour_matrix: torch.Tensor) -> ScoreFunction:
    """Score item j for each user as the sum of j's kept similarities to the user's earlier items."""
    def score(users: np.ndarray, positions: np.ndarray) -> torch.Tensor:
        history = history_matrix(log, users, positions)                            # (C, I)
        return torch.sparse.mm(neighbour_matrix, history.T).T                       # (C, I)

    return score
