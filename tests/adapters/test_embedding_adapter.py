"""The low-rank adapter on embedding lookups: fresh = identity, mixed = alone, merged = unmerged."""

import pytest
import torch
from torch import nn

from recsys_peft.adapters.lora import LoRAConfig, SegmentEmbeddingAdapter

DIM, NUM_SEGMENTS, NUM_ROWS = 6, 3, 20


def make_adapter(random_b: bool = True, seed: int = 0) -> SegmentEmbeddingAdapter:
    torch.manual_seed(seed)
    adapter = SegmentEmbeddingAdapter(DIM, NUM_SEGMENTS, LoRAConfig(r=2, alpha=4.0))
    if random_b:
        with torch.no_grad():
            adapter.lora_B.normal_()
    return adapter.eval()


def lookups(rows: int = 12, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, DIM, generator=generator)
    segments = torch.arange(rows) % (NUM_SEGMENTS + 1) - 1
    return x, segments


def test_fresh_embedding_adapter_is_identity():
    adapter = make_adapter(random_b=False)
    x, segments = lookups()

    with torch.no_grad():
        out = adapter(x, segments)

    assert torch.equal(out, x)


def test_embedding_adapter_base_rows_unchanged():
    adapter = make_adapter()
    x, segments = lookups()
    rows = segments == -1

    with torch.no_grad():
        out = adapter(x, segments)

    assert torch.equal(out[rows], x[rows])
    assert not torch.allclose(out[~rows], x[~rows])


def test_embedding_adapter_formula():
    adapter = make_adapter()
    x, segments = lookups()

    with torch.no_grad():
        out = adapter(x, segments)
        for row in range(len(x)):
            s = int(segments[row])
            expected = x[row].clone()
            if s >= 0:
                expected += 2.0 * adapter.lora_B[s] @ (adapter.lora_A[s] @ x[row])
            torch.testing.assert_close(out[row], expected, atol=1e-5, rtol=0)


def test_embedding_adapter_mixed_equals_alone():
    adapter = make_adapter()
    x, segments = lookups()

    with torch.no_grad():
        mixed = adapter(x, segments)
        for s in range(-1, NUM_SEGMENTS):
            rows = segments == s
            torch.testing.assert_close(mixed[rows], adapter(x[rows], segments[rows]), atol=1e-6, rtol=0)


def test_embedding_adapter_sequence_rows():
    # A (B, L, D) sequence: every position of a row uses that row's segment.
    adapter = make_adapter()
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(4, 5, DIM, generator=generator)
    segments = torch.tensor([0, -1, 2, 1])

    with torch.no_grad():
        out = adapter(x, segments)
        for row in range(4):
            flat = adapter(x[row], segments[row].repeat(5))
            torch.testing.assert_close(out[row], flat, atol=1e-6, rtol=0)


@pytest.mark.parametrize("segment", [-1, 0, 1, 2])
@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_merged_table_equals_unmerged(segment, mode):
    adapter = make_adapter()
    table = torch.randn(NUM_ROWS, DIM, generator=torch.Generator().manual_seed(3))
    bag = nn.EmbeddingBag.from_pretrained(table, mode=mode)
    merged_bag = nn.EmbeddingBag.from_pretrained(adapter.merge_into_table(table, segment), mode=mode)
    ids = torch.tensor([1, 4, 7, 0, 19, 3])
    offsets = torch.tensor([0, 2, 5])
    segments = torch.full((3,), segment)

    with torch.no_grad():
        unmerged = adapter(bag(ids, offsets), segments)
        merged = merged_bag(ids, offsets)

    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=0)


def test_merged_weight_base_is_identity():
    adapter = make_adapter()

    assert torch.equal(adapter.merged_weight(-1), torch.eye(DIM))


def test_disabled_adapter_is_identity():
    adapter = make_adapter()
    x, segments = lookups()

    adapter.disable()

    assert adapter.num_segments == 0
    assert adapter.lora_A.numel() == 0
    assert not adapter.targeted
    assert torch.equal(adapter(x, segments), x)
