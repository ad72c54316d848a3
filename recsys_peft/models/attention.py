"""Sparse causal self-attention for long histories: a local window plus strided positions.

A query at position ``q`` attends to key ``k <= q`` when ``q - k < window`` (the local window)
or when ``k`` is a strided position: every ``stride``-th position counting back from the last
one, the most recent item. Strides count from the end because sequences are left-padded, so
the pattern over real items does not depend on how much padding a batch carries. Every query
also attends to itself, so no row of the softmax is empty.

The computation never builds an (L, L) score matrix. The sequence is cut into blocks of
``window`` positions (left-padded to a whole number of blocks). Each block of queries scores
its own block, the block before it, and the S strided keys, so the scores take
(L / window) * window * (2 * window + S) entries instead of L * L. With ``stride`` equal to
the window, that is about 3 * window entries per query. With ``window >= L`` the local window
covers the whole sequence and the result equals dense causal attention.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class BlockLayout:
    """Index tensors of the blocked computation for one (length, window, stride), built once."""

    length: int
    blocks: int                  # n = ceil(length / window)
    padding: int                 # positions added on the left: n * window - length
    local_pattern: torch.Tensor  # (W, 2W) bool: query i of a block attends to key j of (previous block, own block)
    diagonal: torch.Tensor       # (W, 2W) bool: each query's own key
    strided: torch.Tensor        # (S,) int64 strided key positions, ascending
    strided_visible: torch.Tensor  # (n, W, S) bool: strided key outside the query's local window, and causal


@lru_cache(maxsize=64)
def block_layout(length: int, window: int, stride: int) -> BlockLayout:
    """Return the block layout of a sequence of ``length``; cached per (length, window, stride)."""
    blocks = -(-length // window)
    padding = blocks * window - length
    query = torch.arange(window).unsqueeze(1)                                 # (W, 1)
    key = torch.arange(2 * window).unsqueeze(0)                               # (1, 2W)
    distance = window + query - key                                           # q - k in positions
    local_pattern = (distance >= 0) & (distance < window)                     # (W, 2W)

    if stride > 0:
        strided = torch.arange(length - 1, -1, -stride).flip(0)               # (S,)
    else:
        strided = torch.zeros(0, dtype=torch.long)
    query_position = torch.arange(blocks * window).view(blocks, window) - padding   # (n, W)
    strided_visible = strided.view(1, 1, -1) <= query_position.unsqueeze(-1) - window  # (n, W, S)
    return BlockLayout(length, blocks, padding, local_pattern, distance == 0, strided, strided_visible)


def sparse_pattern(length: int, window: int, stride: int) -> torch.Tensor:
    """Return the (L, L) boolean pattern (query, key) that ``sparse_causal_attention`` computes.

    It is the reference for tests and for reading the pattern. Attention itself never builds it.
    """
    query = torch.arange(length).unsqueeze(1)
    key = torch.arange(length).unsqueeze(0)
    causal = key <= query
    local = (query - key) < window
    strided = ((length - 1 - key) % stride == 0) if stride > 0 else torch.zeros_like(local)
    return causal & (local | strided)


def _blocks(x: torch.Tensor, layout: BlockLayout, window: int) -> torch.Tensor:
    """Left-pad (B, h, L, d) with zeros and cut it into (B, h, n, W, d) blocks."""
    batch, heads, _, dim = x.shape
    x = F.pad(x, (0, 0, layout.padding, 0))
    return x.view(batch, heads, layout.blocks, window, dim)


def _with_previous(blocks: torch.Tensor) -> torch.Tensor:
    """Concatenate each block with the block before it (zeros before the first): (..., n, 2W, ...)."""
    previous = torch.cat([torch.zeros_like(blocks[:, :, :1]), blocks[:, :, :-1]], dim=2)
    return torch.cat([previous, blocks], dim=3)


def sparse_causal_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_valid: torch.Tensor,
                            window: int, stride: int, dropout_p: float = 0.0) -> torch.Tensor:
    """Attend causally within ``window`` positions and to the strided positions; return (B, h, L, d).

    ``query``, ``key`` and ``value`` are (B, h, L, d). ``key_valid`` (B, L) is False at padded
    positions, which no query attends to except itself.
    """
    batch, heads, length, dim = query.shape
    layout = block_layout(length, window, stride)

    # Local keys: each block of W queries scores the 2W keys of the previous block and its own.
    q = _blocks(query, layout, window)                                            # (B, h, n, W, d)
    k = _with_previous(_blocks(key, layout, window))                              # (B, h, n, 2W, d)
    v = _with_previous(_blocks(value, layout, window))                            # (B, h, n, 2W, d)
    valid = F.pad(key_valid, (layout.padding, 0), value=False).view(batch, 1, layout.blocks, window)
    valid = _with_previous(valid.unsqueeze(-1)).view(batch, layout.blocks, 1, 2 * window)  # (B, n, 1, 2W)
    mask = (layout.local_pattern & valid) | layout.diagonal                       # (B, n, W, 2W)

    # Strided keys: shared by every block; visible only outside the local window, so none is counted twice.
    strided = layout.strided
    if len(strided):
        expand = (batch, heads, layout.blocks, len(strided), dim)
        k = torch.cat([k, key[:, :, strided].unsqueeze(2).expand(expand)], dim=3)       # (B, h, n, 2W + S, d)
        v = torch.cat([v, value[:, :, strided].unsqueeze(2).expand(expand)], dim=3)
        strided_mask = layout.strided_visible & key_valid[:, strided].view(batch, 1, 1, -1)  # (B, n, W, S)
        mask = torch.cat([mask, strided_mask], dim=-1)                            # (B, n, W, 2W + S)

    attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.unsqueeze(1), dropout_p=dropout_p)
    attended = attended.reshape(batch, heads, layout.blocks * window, dim)        # (B, h, nW, d)
    return attended[:, :, layout.padding:]
