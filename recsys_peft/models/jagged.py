"""Helpers that turn padded or CSR id lists into the (values, lengths) of a KeyedJaggedTensor.

A KeyedJaggedTensor stores, for each key, one variable-length id list per row. For keys
``["history"]`` and a batch of three rows with histories ``[7, 5]``, ``[]`` and ``[3]``::

    values  = [7, 5, 3]
    lengths = [2, 0, 1]

With several keys, the lengths are concatenated key by key (each of batch size) and so are
the values.
"""

from __future__ import annotations

import torch
from torchrec import KeyedJaggedTensor


def jagged_from_padded(padded: torch.Tensor, pad: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """Values and lengths of a padded (B, L) id matrix; ``pad`` entries are dropped."""
    keep = padded != pad
    return padded[keep], keep.sum(dim=1)


def jagged_from_csr(offsets: torch.Tensor, values: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Values and lengths of the CSR lists of ``rows`` (each row's list ``values[offsets[r]:offsets[r+1]]``)."""
    starts = offsets[rows]
    lengths = offsets[rows + 1] - starts
    total = int(lengths.sum())
    if total == 0:
        return values.new_empty(0), lengths
    # Position of each output value inside its row, then the global index into values.
    row_start_in_output = torch.cumsum(lengths, 0) - lengths
    within = torch.arange(total) - torch.repeat_interleave(row_start_in_output, lengths)
    return values[torch.repeat_interleave(starts, lengths) + within], lengths


def build_kjt(features: dict[str, tuple[torch.Tensor, torch.Tensor]], keys: list[str], batch_size: int) -> KeyedJaggedTensor:
    """One KJT over ``keys``; a key missing from ``features`` gets an empty list in every row."""
    values, lengths = [], []
    for key in keys:
        if key in features:
            key_values, key_lengths = features[key]
        else:
            key_values = torch.empty(0, dtype=torch.long)
            key_lengths = torch.zeros(batch_size, dtype=torch.long)
        values.append(key_values.long())
        lengths.append(key_lengths.long())
    return KeyedJaggedTensor.from_lengths_sync(keys=keys, values=torch.cat(values), lengths=torch.cat(lengths))
