"""Per-segment biases of the dense adapter layers (``LoRAConfig.segment_bias``)."""

import pytest
import torch
from torch import nn

from recsys_peft.adapters.lora import (
    LoRAConfig, SegmentEmbeddingAdapter, SegmentLoRALinear, adapter_parameter_count, adapter_state, load_adapter_state,
)

IN_FEATURES, OUT_FEATURES, NUM_SEGMENTS = 6, 5, 3
BIASED = LoRAConfig(r=2, alpha=6.0, segment_bias=True)


class TwoLayers(nn.Module):
    def __init__(self, slots: int, config: LoRAConfig) -> None:
        super().__init__()
        self.first = SegmentLoRALinear(nn.Linear(IN_FEATURES, OUT_FEATURES), slots, config)
        self.second = SegmentLoRALinear(nn.Linear(OUT_FEATURES, OUT_FEATURES), slots, config)


def biased_layer(slots: int = NUM_SEGMENTS, seed: int = 0) -> SegmentLoRALinear:
    torch.manual_seed(seed)
    layer = SegmentLoRALinear(nn.Linear(IN_FEATURES, OUT_FEATURES), slots, BIASED)
    with torch.no_grad():
        layer.lora_B.normal_()
        layer.lora_bias.normal_()
    return layer.eval()


def batch(rows: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(rows, IN_FEATURES, generator=torch.Generator().manual_seed(1))
    return x, torch.arange(rows) % (NUM_SEGMENTS + 1) - 1      # every segment and -1, interleaved


def test_fresh_biased_adapter_equals_base():
    torch.manual_seed(0)
    layer = SegmentLoRALinear(nn.Linear(IN_FEATURES, OUT_FEATURES), NUM_SEGMENTS, BIASED).eval()
    x, segments = batch()
    with torch.no_grad():
        assert torch.equal(layer(x, segments), layer.base(x))


def test_bias_matches_formula_and_merged_weights():
    layer = biased_layer()
    x, segments = batch()
    with torch.no_grad():
        out = layer(x, segments)
    for row in range(len(x)):
        s = int(segments[row])
        merged = x[row] @ layer.merged_weight(s).T + layer.merged_bias(s)
        expected = layer.base(x[row])
        if s >= 0:
            expected = expected + layer.config.scaling * layer.lora_B[s] @ (layer.lora_A[s] @ x[row]) \
                + layer.lora_bias[s]
        torch.testing.assert_close(out[row], expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(out[row], merged, atol=1e-5, rtol=0)


def test_mixed_batch_equals_each_segment_alone_with_bias():
    layer = biased_layer()
    x, segments = batch()
    with torch.no_grad():
        mixed = layer(x, segments)
        for s in range(-1, NUM_SEGMENTS):
            rows = segments == s
            torch.testing.assert_close(mixed[rows], layer(x[rows], segments[rows]), atol=1e-6, rtol=0)


def test_bias_on_one_slot_path():
    layer = biased_layer(slots=1)
    x, _ = batch()
    segments = torch.tensor([0, -1] * (len(x) // 2))
    with torch.no_grad():
        out = layer(x, segments)
        update = layer.config.scaling * (x @ layer.lora_A[0].T @ layer.lora_B[0].T) + layer.lora_bias[0]
    torch.testing.assert_close(out, layer.base(x) + update * (segments >= 0).unsqueeze(1), atol=1e-5, rtol=0)


def test_bias_round_trips_through_adapter_state():
    torch.manual_seed(0)
    source = TwoLayers(2, BIASED)
    with torch.no_grad():
        for p in source.parameters():
            p.normal_()
    state = adapter_state(source, 1)
    assert sorted(state) == ["first.lora_A", "first.lora_B", "first.lora_bias",
                             "second.lora_A", "second.lora_B", "second.lora_bias"]

    target = TwoLayers(1, BIASED)
    load_adapter_state(target, 0, state)
    assert torch.equal(target.first.lora_bias[0], source.first.lora_bias[1])


def test_state_without_bias_loads_with_zero_bias():
    source = TwoLayers(1, LoRAConfig(r=2, alpha=6.0))
    target = TwoLayers(1, BIASED)
    with torch.no_grad():
        target.first.lora_bias.fill_(1.0)
    load_adapter_state(target, 0, adapter_state(source, 0))
    assert torch.count_nonzero(target.first.lora_bias) == 0


def test_bias_cannot_load_into_layer_without_room():
    source = TwoLayers(1, BIASED)
    with pytest.raises(ValueError, match=r"unexpected \['first\.lora_bias', 'second\.lora_bias'\]"):
        load_adapter_state(TwoLayers(1, LoRAConfig(r=2, alpha=6.0)), 0, adapter_state(source, 0))


def test_bias_parameter_count():
    plain, biased = TwoLayers(1, LoRAConfig(r=2, alpha=6.0)), TwoLayers(1, BIASED)
    assert adapter_parameter_count(biased) - adapter_parameter_count(plain) == 2 * OUT_FEATURES
    assert SegmentEmbeddingAdapter(4, 2, BIASED).lora_bias.shape == (2, 0)


def test_config_round_trips_segment_bias():
    assert LoRAConfig.from_dict(BIASED.to_dict()) == BIASED
    assert BIASED.with_rank(1).segment_bias


def test_bias_of_wrong_shape_rejected():
    state = adapter_state(TwoLayers(1, BIASED), 0)
    state["first.lora_bias"] = torch.zeros(OUT_FEATURES + 1)
    with pytest.raises(ValueError, match=r"adapter bias of layer 'first' has shape \(6,\), expected \(5,\)"):
        load_adapter_state(TwoLayers(1, BIASED), 0, state)
