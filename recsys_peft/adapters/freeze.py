"""Freezing and the checksums that prove frozen weights did not move."""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def tensor_checksum(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's bytes: equal only when every element is bit-identical."""
    data = tensor.detach().cpu().contiguous()
    return hashlib.sha256(data.view(torch.uint8).numpy().tobytes()).hexdigest()


def checksums(module: nn.Module, prefix: str = "") -> dict[str, str]:
    """Checksum of every parameter whose name starts with ``prefix``."""
    return {name: tensor_checksum(p) for name, p in module.named_parameters() if name.startswith(prefix)}


def is_adapter_parameter(name: str) -> bool:
    return ".lora_A" in name or ".lora_B" in name or ".lora_bias" in name or name.startswith("lora_")


def freeze_all_but_adapters(module: nn.Module) -> list[nn.Parameter]:
    """Set ``requires_grad`` only on non-empty LoRA parameters and return them.

    Adapter points outside the config's targets hold empty weights, which stay frozen.
    """
    trainable = []
    for name, parameter in module.named_parameters():
        is_adapter = is_adapter_parameter(name) and parameter.numel() > 0
        parameter.requires_grad_(is_adapter)
        if is_adapter:
            trainable.append(parameter)
    return trainable


class FrozenWeightsChanged(RuntimeError):
    """A parameter that should have stayed frozen changed during training."""


def assert_unchanged(before: dict[str, str], after: dict[str, str]) -> None:
    changed = sorted(name for name in before if before[name] != after.get(name))
    if changed:
        raise FrozenWeightsChanged(f"frozen parameters changed during fine-tuning: {changed}")
