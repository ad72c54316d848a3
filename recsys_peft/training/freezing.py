"""Fine-tuning by layer freezing: the alternatives to low-rank adapters that train base weights.

A fine-tuning method is one of:

    lora            a low-rank adapter per segment; every base weight stays frozen (the default)
    top_layers:N    only the top N layers train: of the two-tower user tower (``user_out``, then
                    ``user_hidden``; N <= 2), or of SASRec's blocks (the last N blocks and the
                    final LayerNorm above them)
    bias_norm       only biases and LayerNorm weights train, on the user side of the model

Embedding tables and, for the two-tower model, the item tower never train, so one set of item
vectors serves every segment. A segment tuned this way changes base tensors, so it cannot share
a model with other segments the way stacked adapters do. Its result contains the changed tensors
only, and ``apply_tuned`` puts them into a copy of the base model for evaluation and export.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from recsys_peft.adapters.freeze import checksums, is_adapter_parameter

LORA = "lora"
TOP_LAYERS = "top_layers"
BIAS_NORM = "bias_norm"
METHOD_FORMS = ("lora", "top_layers:N", "bias_norm")
# The two-tower user tower's trainable layers, top first.
TWO_TOWER_LAYERS = ("user_out", "user_hidden")


@dataclass(frozen=True)
class FinetuneMethod:
    """A parsed fine-tuning method: ``kind`` is lora, top_layers or bias_norm; ``layers`` is N."""

    kind: str
    layers: int = 0

    @classmethod
    def parse(cls, text: str) -> "FinetuneMethod":
        """Parse ``lora``, ``bias_norm`` or ``top_layers:N`` (N >= 1)."""
        if text in (LORA, BIAS_NORM):
            return cls(text)
        kind, _, count = text.partition(":")
        if kind == TOP_LAYERS and count.isdigit() and int(count) >= 1:
            return cls(TOP_LAYERS, int(count))
        raise ValueError(f"fine-tuning method must be one of {list(METHOD_FORMS)} with N >= 1, got {text!r}")

    @property
    def is_lora(self) -> bool:
        return self.kind == LORA

    def __str__(self) -> str:
        return f"{TOP_LAYERS}:{self.layers}" if self.kind == TOP_LAYERS else self.kind


def _is_trainable_base(name: str, parameter: nn.Parameter) -> bool:
    return parameter.numel() > 0 and not is_adapter_parameter(name)


def _top_layer_prefixes(model: nn.Module, layers: int) -> tuple[str, ...]:
    if model.family == "two_tower":
        if layers > len(TWO_TOWER_LAYERS):
            raise ValueError(f"top_layers:{layers} asks for more layers than the two-tower user tower has "
                             f"({len(TWO_TOWER_LAYERS)}: {', '.join(TWO_TOWER_LAYERS)})")
        return tuple(f"{name}." for name in TWO_TOWER_LAYERS[:layers])
    if model.family == "sasrec":
        blocks = len(model.blocks)
        if layers > blocks:
            raise ValueError(f"top_layers:{layers} asks for more blocks than the SASRec model has ({blocks})")
        return tuple(f"blocks.{index}." for index in range(blocks - layers, blocks)) + ("final_norm.",)
    raise TypeError(f"no layer freezing for model family {getattr(model, 'family', type(model).__name__)!r}")


def _user_side(model: nn.Module, name: str) -> bool:
    """Return whether ``name`` is a user-side parameter, whose tuning leaves the item vectors unchanged."""
    if model.family == "two_tower":
        return name.startswith(tuple(f"{layer}." for layer in TWO_TOWER_LAYERS))
    return name.startswith(("blocks.", "final_norm."))


def _is_norm_parameter(model: nn.Module, name: str) -> bool:
    module_name = name.rsplit(".", 1)[0]
    return isinstance(model.get_submodule(module_name), nn.LayerNorm)


def trainable_names(model: nn.Module, method: FinetuneMethod) -> list[str]:
    """Return the names of the parameters that ``method`` trains, in the model's order."""
    if method.is_lora:
        raise ValueError("trainable_names covers the freezing methods; LoRA trains the adapter weights")
    if method.kind == TOP_LAYERS:
        prefixes = _top_layer_prefixes(model, method.layers)
        return [name for name, p in model.named_parameters()
                if _is_trainable_base(name, p) and name.startswith(prefixes)]
    return [name for name, p in model.named_parameters()
            if _is_trainable_base(name, p) and _user_side(model, name)
            and (name.endswith(".bias") or _is_norm_parameter(model, name))]


def freeze_except(model: nn.Module, names: list[str]) -> list[nn.Parameter]:
    """Set ``requires_grad`` only on the parameters in ``names`` and return them."""
    wanted = set(names)
    trainable = []
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name in wanted)
        if name in wanted:
            trainable.append(parameter)
    return trainable


def frozen_checksums_except(model: nn.Module, names: list[str]) -> dict[str, str]:
    """Return the checksum of every parameter not in ``names``: the ones that must not change."""
    wanted = set(names)
    return {name: value for name, value in checksums(model).items() if name not in wanted}


def tuned_state(model: nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    """Return copies of the tuned tensors, by parameter name: all a tuned segment needs to store."""
    parameters = dict(model.named_parameters())
    return {name: parameters[name].detach().clone().contiguous() for name in names}


def apply_tuned(base: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Return a copy of ``base`` in eval mode with the tuned tensors of ``state`` in place.

    Raises ValueError naming the tensor when a name is not a parameter of ``base`` or a shape differs.
    """
    model = copy.deepcopy(base)
    parameters = dict(model.named_parameters())
    unknown = sorted(set(state) - set(parameters))
    if unknown:
        raise ValueError(f"tuned tensors {unknown} are not parameters of the {model.family} base model")
    with torch.no_grad():
        for name, tensor in state.items():
            if tuple(tensor.shape) != tuple(parameters[name].shape):
                raise ValueError(f"tuned tensor {name!r} has shape {tuple(tensor.shape)}, the base model's "
                                 f"parameter has {tuple(parameters[name].shape)}")
            parameters[name].copy_(tensor)
    model.eval()
    return model
