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

The blocks are processed a few at a time, and the backward pass recomputes each chunk's scores
from the saved log-sum-exp of every softmax row, as memory-efficient attention kernels do. So
apart from its inputs and output, attention holds one chunk's scores (about
``CHUNK_SCORES`` entries) at a time in both passes, and keeps nothing of that size between
them. Attention dropout draws its masks from a generator seeded once per call, so the
backward pass redraws the same masks.
"""

from __future__ import annotations

import math
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


# Blocks per chunk are chosen so that one chunk's scores, (B, h, blocks, W, 2W + S), have about
# this many entries: 4 MiB in float32. It bounds the memory of attention, not its arithmetic.
CHUNK_SCORES = 1 << 20


def _span(x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Positions [start, stop) of ``x`` along dim 2, with zeros for the positions before 0."""
    if start >= 0:
        return x[:, :, start:stop]
    return F.pad(x[:, :, :stop], (0, 0, -start, 0))


def _set_span(target: torch.Tensor, start: int, values: torch.Tensor) -> None:
    """Write ``values`` to positions [start, start + len) of ``target`` along dim 2, dropping those before 0."""
    if start < 0:
        values = values[:, :, -start:]
        start = 0
    target[:, :, start:start + values.shape[2]] = values


def _add_span(target: torch.Tensor, start: int, values: torch.Tensor) -> None:
    """Add ``values`` to positions [start, start + len) of ``target`` along dim 2, dropping those before 0."""
    if start < 0:
        values = values[:, :, -start:]
        start = 0
    target[:, :, start:start + values.shape[2]] += values


def _to_blocks(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, h, c * W, d) to (B, h, c, W, d)."""
    batch, heads, length, dim = x.shape
    return x.view(batch, heads, length // window, window, dim)


def _from_blocks(x: torch.Tensor) -> torch.Tensor:
    """(B, h, c, W, d) to (B, h, c * W, d)."""
    batch, heads, blocks, window, dim = x.shape
    return x.reshape(batch, heads, blocks * window, dim)


def _halves_to_span(local: torch.Tensor) -> torch.Tensor:
    """Sum per-block key gradients (B, h, c, 2W, d) into the (B, h, (c + 1) W, d) keys they came from."""
    batch, heads, blocks, keys_per_block, dim = local.shape
    window = keys_per_block // 2
    span = local.new_zeros(batch, heads, (blocks + 1) * window, dim)
    span[:, :, :blocks * window] += _from_blocks(local[:, :, :, :window])
    span[:, :, window:] += _from_blocks(local[:, :, :, window:])
    return span


@dataclass
class _Chunk:
    """The tensors of blocks [first, stop) that both passes need. Positions count in the unpadded sequence."""

    query_start: int             # position of the chunk's first query, negative inside the padding
    key_start: int               # query_start - W, because the local keys start one block earlier
    query: torch.Tensor          # (B, h, c, W, d)
    key_local: torch.Tensor      # (B, h, c, d, 2W) view: block i's keys are the span's blocks i and i + 1
    value_local: torch.Tensor    # (B, h, c, 2W, d) view
    masked_out: torch.Tensor     # (B, 1, c, W, 2W + S) bool, True where a query must not attend


def _chunk(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_valid: torch.Tensor,
           layout: BlockLayout, window: int, first: int, stop: int) -> _Chunk:
    batch = query.shape[0]
    blocks = stop - first
    query_start = first * window - layout.padding
    key_start = query_start - window
    query_stop = stop * window - layout.padding
    q = _to_blocks(_span(query, query_start, query_stop), window)
    key_local = _span(key, key_start, query_stop).unfold(2, 2 * window, window)          # (B, h, c, d, 2W)
    value_local = _span(value, key_start, query_stop).unfold(2, 2 * window, window).transpose(-1, -2)

    valid = _span(key_valid.unsqueeze(1).unsqueeze(-1), key_start, query_stop)           # (B, 1, (c + 1) W, 1)
    valid = valid.squeeze(-1).unfold(2, 2 * window, window).view(batch, 1, blocks, 1, 2 * window)
    local = (layout.local_pattern & valid) | layout.diagonal                               # (B, 1, c, W, 2W)
    strided_valid = key_valid[:, layout.strided].view(batch, 1, 1, 1, -1)
    strided = layout.strided_visible[first:stop] & strided_valid                           # (B, 1, c, W, S)
    masked_out = ~torch.cat([local, strided], dim=-1)
    return _Chunk(query_start, key_start, q, key_local, value_local, masked_out)


def _scores(chunk: _Chunk, key_strided: torch.Tensor, scale: float) -> torch.Tensor:
    """Scaled scores (B, h, c, W, 2W + S) of a chunk, -inf where the query must not attend."""
    q = chunk.query * scale
    local = torch.matmul(q, chunk.key_local)                                               # (B, h, c, W, 2W)
    strided = torch.matmul(q, key_strided.transpose(-1, -2).unsqueeze(2))                   # (B, h, c, W, S)
    return torch.cat([local, strided], dim=-1).masked_fill_(chunk.masked_out, float("-inf"))


def _dropout_keep(shape: torch.Size, dropout_p: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device) >= dropout_p


class _SparseCausalAttention(torch.autograd.Function):
    """Blocked sparse attention whose backward pass recomputes the scores chunk by chunk."""

    @staticmethod
    def forward(ctx, query, key, value, key_valid, window: int, stride: int, dropout_p: float):
        batch, heads, length, dim = query.shape
        layout = block_layout(length, window, stride)
        scale = 1.0 / math.sqrt(dim)
        chunk_blocks = max(1, CHUNK_SCORES // (batch * heads * window * (2 * window + len(layout.strided))))
        seed = int(torch.randint(2**62, (1,)).item()) if dropout_p > 0 else 0
        generator = torch.Generator(device=query.device).manual_seed(seed)

        key_strided = key[:, :, layout.strided]                                               # (B, h, S, d)
        value_strided = value[:, :, layout.strided].unsqueeze(2)                              # (B, h, 1, S, d)
        output = query.new_empty(batch, heads, length, dim)
        log_sum_exp = query.new_empty(batch, heads, layout.blocks, window, 1)
        for first in range(0, layout.blocks, chunk_blocks):
            stop = min(first + chunk_blocks, layout.blocks)
            chunk = _chunk(query, key, value, key_valid, layout, window, first, stop)
            scores = _scores(chunk, key_strided, scale)

            # Softmax in place; every row keeps at least its own key, so the log-sum-exp is finite.
            row_log_sum_exp = torch.logsumexp(scores, dim=-1, keepdim=True)                     # (B, h, c, W, 1)
            log_sum_exp[:, :, first:stop] = row_log_sum_exp
            weights = scores.sub_(row_log_sum_exp).exp_()
            if dropout_p > 0:
                weights.mul_(_dropout_keep(weights.shape, dropout_p, generator)).div_(1 - dropout_p)

            attended = (torch.matmul(weights[..., :2 * window], chunk.value_local)
                        + torch.matmul(weights[..., 2 * window:], value_strided))              # (B, h, c, W, d)
            _set_span(output, chunk.query_start, _from_blocks(attended))

        ctx.save_for_backward(query, key, value, key_valid, log_sum_exp)
        ctx.settings = (window, stride, dropout_p, seed, chunk_blocks)
        return output

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        query, key, value, key_valid, log_sum_exp = ctx.saved_tensors
        window, stride, dropout_p, seed, chunk_blocks = ctx.settings
        dim = query.shape[-1]
        layout = block_layout(query.shape[2], window, stride)
        scale = 1.0 / math.sqrt(dim)
        generator = torch.Generator(device=query.device).manual_seed(seed)

        key_strided = key[:, :, layout.strided]
        value_strided = value[:, :, layout.strided]                                            # (B, h, S, d)
        grad_query = torch.zeros_like(query, memory_format=torch.contiguous_format)
        grad_key = torch.zeros_like(key, memory_format=torch.contiguous_format)
        grad_value = torch.zeros_like(value, memory_format=torch.contiguous_format)
        grad_key_strided = torch.zeros_like(key_strided)
        grad_value_strided = torch.zeros_like(value_strided)
        for first in range(0, layout.blocks, chunk_blocks):
            stop = min(first + chunk_blocks, layout.blocks)
            chunk = _chunk(query, key, value, key_valid, layout, window, first, stop)
            query_stop = stop * window - layout.padding
            grad_attended = _to_blocks(_span(grad_output, chunk.query_start, query_stop), window)  # (B, h, c, W, d)

            # Recompute the softmax weights, then the dropout masks from the same generator.
            scores = _scores(chunk, key_strided, scale)
            weights = scores.sub_(log_sum_exp[:, :, first:stop]).exp_()                         # (B, h, c, W, 2W + S)
            grad_weights = torch.cat([torch.matmul(grad_attended, chunk.value_local.transpose(-1, -2)),
                                      torch.matmul(grad_attended, value_strided.transpose(-1, -2).unsqueeze(2))],
                                     dim=-1)
            dropped = weights
            if dropout_p > 0:
                keep = _dropout_keep(weights.shape, dropout_p, generator)
                dropped = weights * keep / (1 - dropout_p)
                grad_weights.mul_(keep).div_(1 - dropout_p)

            # Values: the dropped weights times the output gradient.
            grad_value_local = torch.matmul(dropped[..., :2 * window].transpose(-1, -2), grad_attended)
            _add_span(grad_value, chunk.key_start, _halves_to_span(grad_value_local))
            grad_value_strided += torch.matmul(dropped[..., 2 * window:].transpose(-1, -2), grad_attended).sum(2)
            del dropped

            # Scores: softmax backward, then the scale of the dot products.
            row_dot = (weights * grad_weights).sum(dim=-1, keepdim=True)
            grad_scores = grad_weights.sub_(row_dot).mul_(weights).mul_(scale)
            del weights

            grad_query_blocks = (torch.matmul(grad_scores[..., :2 * window], chunk.key_local.transpose(-1, -2))
                                 + torch.matmul(grad_scores[..., 2 * window:], key_strided.unsqueeze(2)))
            _add_span(grad_query, chunk.query_start, _from_blocks(grad_query_blocks))
            grad_key_local = torch.matmul(grad_scores[..., :2 * window].transpose(-1, -2), chunk.query)
            _add_span(grad_key, chunk.key_start, _halves_to_span(grad_key_local))
            grad_key_strided += torch.matmul(grad_scores[..., 2 * window:].transpose(-1, -2), chunk.query).sum(2)

        grad_key.index_add_(2, layout.strided, grad_key_strided)
        grad_value.index_add_(2, layout.strided, grad_value_strided)
        return grad_query, grad_key, grad_value, None, None, None, None


def sparse_causal_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_valid: torch.Tensor,
                            window: int, stride: int, dropout_p: float = 0.0) -> torch.Tensor:
    """Attend causally within ``window`` positions and to the strided positions; return (B, h, L, d).

    ``query``, ``key`` and ``value`` are (B, h, L, d). ``key_valid`` (B, L) is False at padded
    positions, which no query attends to except itself. Dropout with probability ``dropout_p``
    zeroes attention weights and rescales the rest, as ``scaled_dot_product_attention`` does.
    """
    return _SparseCausalAttention.apply(query, key, value, key_valid, window, stride, dropout_p)
