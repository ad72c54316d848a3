"""Which layers of a model get adapters, and the adapter weights of one segment.

The models build an adapter point (``SegmentLoRALinear`` or ``SegmentEmbeddingAdapter``) at
every place an adapter may go. ``restrict_to_targets`` then disables the points that the
config does not target, so their output is the base output and they hold no weights.
"""

from __future__ import annotations

import torch
from torch import nn

from recsys_peft.adapters.config import LoRAConfig
from recsys_peft.adapters.layers import SegmentLoRALinear, SegmentLowRank


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def adapter_points(module: nn.Module) -> dict[str, SegmentLowRank]:
    """Return every adapter point of ``module``, targeted or not, by qualified name."""
    return {name: m for name, m in module.named_modules() if isinstance(m, SegmentLowRank)}


def adapter_layers(module: nn.Module) -> dict[str, SegmentLowRank]:
    """Return the targeted adapter points (linear and embedding) of ``module`` by qualified name."""
    return {name: m for name, m in adapter_points(module).items() if m.targeted}


def lora_layers(module: nn.Module) -> dict[str, SegmentLoRALinear]:
    """Return the targeted dense adapter layers of ``module`` (no embedding adapters)."""
    return {name: m for name, m in adapter_layers(module).items() if isinstance(m, SegmentLoRALinear)}


def restrict_to_targets(model: nn.Module, config: LoRAConfig, defaults: tuple[str, ...] | None) -> None:
    """Disable every adapter point of ``model`` outside ``config.target_modules`` (or ``defaults``).

    ``defaults`` None targets every point. Raises ValueError when a target matches no point,
    and the message lists the points of the model.
    """
    targets = config.target_modules if config.target_modules is not None else defaults
    if targets is None:
        return
    points = adapter_points(model)
    for target in targets:
        if not any(_matches(name, target) for name in points):
            raise ValueError(
                f"LoRA target {target!r} matches no adapter layer of {type(model).__name__}; "
                f"its adapter layers are {sorted(points)}")
    for name, point in points.items():
        if not any(_matches(name, target) for target in targets):
            point.disable()


def adapter_state(module: nn.Module, segment: int) -> dict[str, torch.Tensor]:
    """Return the adapter weights of one segment, keyed ``<layer>.lora_A``, ``<layer>.lora_B``
    and, for layers with a segment bias, ``<layer>.lora_bias``."""
    state: dict[str, torch.Tensor] = {}
    for name, layer in adapter_layers(module).items():
        state[f"{name}.lora_A"] = layer.lora_A[segment].detach().clone().contiguous()
        state[f"{name}.lora_B"] = layer.lora_B[segment].detach().clone().contiguous()
        if layer.has_bias:
            state[f"{name}.lora_bias"] = layer.lora_bias[segment].detach().clone().contiguous()
    return state


def load_adapter_state(module: nn.Module, segment: int, state: dict[str, torch.Tensor],
                       scaling: float | None = None) -> None:
    """Copy one segment's adapter weights into slot ``segment``. The layer names must match exactly.

    A state of lower rank than the model's is padded with zeros, which add nothing to the
    update. ``scaling`` is the alpha / r the state was trained with. When it differs from the
    model's, ``B`` is rescaled so that the update, and so the scores, stay the same.
    """
    layers = adapter_layers(module)
    expected = {f"{n}.lora_{p}" for n in layers for p in "AB"}
    # A model with segment biases loads adapters trained without them (their bias stays zero),
    # never the other way round: a bias the model has no room for would be lost.
    expected |= {f"{n}.lora_bias" for n, layer in layers.items() if layer.has_bias and f"{n}.lora_bias" in state}
    if set(state) != expected:
        raise ValueError(
            f"adapter weights do not match the model: missing {sorted(expected - set(state))}, "
            f"unexpected {sorted(set(state) - expected)}"
        )
    with torch.no_grad():
        for name, layer in layers.items():
            a, b = state[f"{name}.lora_A"], state[f"{name}.lora_B"]
            rank = a.shape[0]
            if rank > layer.config.r or a.shape[1:] != layer.lora_A.shape[2:] \
                    or b.shape != (layer.out_features, rank):
                raise ValueError(
                    f"adapter weights of layer {name!r} have shapes A {tuple(a.shape)} and B {tuple(b.shape)}, "
                    f"expected A (r, {layer.in_features}) and B ({layer.out_features}, r) with r <= {layer.config.r}")
            factor = 1.0 if scaling is None else scaling / layer.config.scaling
            layer.lora_A[segment].zero_()
            layer.lora_B[segment].zero_()
            layer.lora_A[segment, :rank].copy_(a)
            layer.lora_B[segment, :, :rank].copy_(b * factor if factor != 1.0 else b)
            if layer.has_bias:
                bias = state.get(f"{name}.lora_bias")
                if bias is not None and bias.shape != (layer.out_features,):
                    raise ValueError(f"adapter bias of layer {name!r} has shape {tuple(bias.shape)}, "
                                     f"expected ({layer.out_features},)")
                layer.lora_bias[segment].copy_(bias if bias is not None else torch.zeros(layer.out_features))


def adapter_rank(state: dict[str, torch.Tensor]) -> int:
    """Return the rank of a saved adapter state (the row count of its ``A`` matrices)."""
    ranks = {tensor.shape[0] for name, tensor in state.items() if name.endswith(".lora_A")}
    if len(ranks) != 1:
        raise ValueError(f"adapter weights must have one rank across layers, got ranks {sorted(ranks)}")
    return ranks.pop()


def adapter_parameter_count(module: nn.Module) -> int:
    """Return how many adapter weights one segment has in ``module``."""
    return sum(layer.adapter_parameters_per_segment() for layer in adapter_layers(module).values())
