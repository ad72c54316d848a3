import pytest
import torch
from torch import nn

from recsys_peft.adapters.lora import (
    LoRAConfig, SegmentLoRALinear, adapter_state, load_adapter_state, lora_layers,
)

IN_FEATURES, OUT_FEATURES, NUM_SEGMENTS = 6, 5, 3


def make_layer(seed: int = 0, random_b: bool = False, config: LoRAConfig | None = None) -> SegmentLoRALinear:
    torch.manual_seed(seed)
    layer = SegmentLoRALinear(nn.Linear(IN_FEATURES, OUT_FEATURES), NUM_SEGMENTS, config or LoRAConfig(r=2, alpha=6.0))
    if random_b:
        with torch.no_grad():
            layer.lora_B.normal_()
    return layer.eval()


def batch(rows: int = 12, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, IN_FEATURES, generator=generator)
    # Every segment and the base model (-1), interleaved.
    segments = torch.arange(rows) % (NUM_SEGMENTS + 1) - 1
    return x, segments


def test_fresh_adapter_equals_base():
    layer = make_layer()
    x, segments = batch()

    with torch.no_grad():
        out = layer(x, segments)

    assert torch.equal(out, layer.base(x))


def test_no_segments_equals_base():
    torch.manual_seed(0)
    layer = SegmentLoRALinear(nn.Linear(IN_FEATURES, OUT_FEATURES), 0, LoRAConfig())
    x, _ = batch()

    with torch.no_grad():
        out = layer(x, torch.full((len(x),), -1))

    assert layer.lora_A.shape == (0, 8, IN_FEATURES)
    assert torch.equal(out, layer.base(x))


def test_forward_matches_formula():
    layer = make_layer(random_b=True)
    x, segments = batch()

    with torch.no_grad():
        out = layer(x, segments)
        for row in range(len(x)):
            s = int(segments[row])
            expected = layer.base.weight @ x[row] + layer.base.bias
            if s >= 0:
                expected = expected + layer.config.scaling * layer.lora_B[s] @ (layer.lora_A[s] @ x[row])
            torch.testing.assert_close(out[row], expected, atol=1e-5, rtol=0)


def test_mixed_batch_equals_alone():
    layer = make_layer(random_b=True)
    x, segments = batch()

    with torch.no_grad():
        mixed = layer(x, segments)
        for s in range(-1, NUM_SEGMENTS):
            rows = segments == s
            alone = layer(x[rows], segments[rows])
            torch.testing.assert_close(mixed[rows], alone, atol=1e-6, rtol=0)


def test_base_rows_ignore_adapters():
    layer = make_layer(random_b=True)
    x, segments = batch()
    rows = segments == -1

    with torch.no_grad():
        out = layer(x, segments)
        base = layer.base(x)

    assert rows.any()
    assert torch.equal(out[rows], base[rows])
    assert not torch.allclose(out[~rows], base[~rows])


@pytest.mark.parametrize("segment", [-1, 0, 1, 2])
def test_merged_equals_unmerged(segment):
    layer = make_layer(random_b=True)
    x, segments = batch()
    rows = segments == segment

    with torch.no_grad():
        unmerged = layer(x[rows], segments[rows])
        merged = x[rows] @ layer.merged_weight(segment).T + layer.base.bias

    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=0)


def test_merged_base_is_copy():
    layer = make_layer(random_b=True)

    weight = layer.merged_weight(-1)
    weight.zero_()

    assert layer.base.weight.abs().sum() > 0


def test_scaling_is_alpha_over_r():
    assert LoRAConfig(r=4, alpha=8.0).scaling == 2.0
    assert LoRAConfig(r=8, alpha=2.0).scaling == 0.25


@pytest.mark.parametrize(("arguments", "message"), [
    ({"r": 0}, r"LoRA rank r must be at least 1, got 0"),
    ({"alpha": 0.0}, r"LoRA alpha must be positive, got 0\.0"),
    ({"alpha": -1.0}, r"LoRA alpha must be positive, got -1\.0"),
    ({"dropout": 1.0}, r"LoRA dropout must be in \[0, 1\), got 1\.0"),
    ({"dropout": -0.1}, r"LoRA dropout must be in \[0, 1\), got -0\.1"),
])
def test_config_rejects_invalid(arguments, message):
    with pytest.raises(ValueError, match=message):
        LoRAConfig(**arguments)


def test_reset_zeroes_b():
    layer = make_layer(random_b=True)

    layer.reset_adapters()

    assert torch.count_nonzero(layer.lora_B) == 0
    bound = 1.0 / IN_FEATURES ** 0.5
    assert layer.lora_A.abs().max() <= bound


class TwoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        config = LoRAConfig(r=2)
        self.first = SegmentLoRALinear(nn.Linear(4, 3), 2, config)
        self.second = SegmentLoRALinear(nn.Linear(3, 2), 2, config)


def test_adapter_state_round_trip():
    torch.manual_seed(0)
    source, target = TwoLayers(), TwoLayers()
    with torch.no_grad():
        source.first.lora_B.normal_()
        source.second.lora_B.normal_()

    load_adapter_state(target, 0, adapter_state(source, 1))

    assert sorted(lora_layers(target)) == ["first", "second"]
    assert torch.equal(target.first.lora_A[0], source.first.lora_A[1])
    assert torch.equal(target.second.lora_B[0], source.second.lora_B[1])
    # Slot 1 of the target was not touched.
    assert torch.count_nonzero(target.first.lora_B[1]) == 0


def test_adapter_state_wrong_names():
    model = TwoLayers()
    state = adapter_state(model, 0)
    state["third.lora_A"] = state.pop("second.lora_A")

    with pytest.raises(ValueError, match=r"missing \['second\.lora_A'\], unexpected \['third\.lora_A'\]"):
        load_adapter_state(model, 0, state)


def test_one_slot_layer_matches_formula():
    # A layer with one slot takes the plain matrix-product path; it must equal the formula too.
    torch.manual_seed(0)
    layer = SegmentLoRALinear(nn.Linear(IN_FEATURES, OUT_FEATURES), 1, LoRAConfig(r=2, alpha=6.0)).eval()
    with torch.no_grad():
        layer.lora_B.normal_()
    x, _ = batch()
    segments = torch.tensor([0, -1] * (len(x) // 2))

    with torch.no_grad():
        out = layer(x, segments)
        update = layer.config.scaling * (x @ layer.lora_A[0].T @ layer.lora_B[0].T)
        expected = x @ layer.base.weight.T + layer.base.bias + update * (segments >= 0).unsqueeze(1)

    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
