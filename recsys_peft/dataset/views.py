"""Training and scoring views built once per log: padded histories and seen-item sets."""

from __future__ import annotations

import numpy as np
import torch

from recsys_peft.dataset.log import InteractionLog

PAD = -1


def history_before(log: InteractionLog, users: np.ndarray, positions: np.ndarray, length: int) -> np.ndarray:
    """The last ``length`` items of each user before log position ``positions`` (exclusive).

    Returns an int64 array (N, length), most recent first, padded with -1 where the user has
    fewer earlier events. For a user with items [5, 7, 9] and the position of 9, length 4 gives
    ``[7, 5, -1, -1]``. A position may be one past the user's last event (``offsets[u + 1]``)
    to take the whole history.
    """
    positions = np.asarray(positions, dtype=np.int64)
    starts = log.offsets[np.asarray(users, dtype=np.int64)]
    steps = np.arange(1, length + 1, dtype=np.int64)
    source = positions[:, None] - steps[None, :]  # (N, length)
    valid = source >= starts[:, None]
    return np.where(valid, log.items[np.maximum(source, 0)], PAD)


def seen_before(log: InteractionLog, users: np.ndarray, positions: np.ndarray) -> torch.Tensor:
    """Build a mask (len(users), num_items) of items each user interacted with before ``positions``."""
    offsets, items = seen_csr(log, users, positions)
    rows = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    mask = torch.zeros(len(offsets) - 1, log.num_items, dtype=torch.bool)
    mask[torch.from_numpy(rows), torch.from_numpy(items)] = True
    return mask


def seen_csr(log: InteractionLog, users: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Items seen before ``positions`` as CSR (offsets, items), for exclusion without a dense mask."""
    users = np.asarray(users, dtype=np.int64)
    starts = log.offsets[users]
    lengths = np.asarray(positions, dtype=np.int64) - starts
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    index = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
    return offsets, log.items[index]
