"""Read a pipeline config from YAML, apply command-line overrides, and build the dataclass.

The loader is generic over dataclass fields: a field whose type is a dataclass becomes a nested
YAML mapping, and a key that names no field is an error naming the file, the dotted key and the
nearest valid key. A nested section may set only some keys; the rest keep the defaults the
top-level dataclass resolves (for ``PipelineConfig``, the model family's training defaults).

    source_spec: features/movielens_100k.yaml
    model: two_tower
    pretrain:
      epochs: 20

Overrides use the same dotted keys, and their values are parsed as YAML: ``pretrain.epochs=5``,
``finetune.lora.target_modules=[user_out]``, ``model_overrides={hidden_dim: 64}``.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from recsys_peft.config import PipelineConfig
from recsys_peft.yaml_file import read_yaml_mapping

T = TypeVar("T")
COMMAND_LINE = "command line"


class ConfigError(ValueError):
    """A config file or override that cannot be used: the message names the source and the key."""


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, raising ``ConfigError`` with the file, line and column of a syntax error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    return read_yaml_mapping(path, f"config file {path}", ConfigError)


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=x"]`` into ``{"a": {"b": 1}, "c": "x"}``; values are parsed as YAML."""
    nested: dict[str, Any] = {}
    for text in overrides:
        key, sep, value_text = text.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"{COMMAND_LINE}: override {text!r} must look like KEY=VALUE, "
                              f"e.g. pretrain.epochs=5")
        try:
            value = yaml.safe_load(value_text) if value_text.strip() else ""
        except yaml.YAMLError as error:
            raise ConfigError(f"{COMMAND_LINE}: override {key}: value {value_text!r} is not valid YAML: "
                              f"{error}") from None
        target = nested
        parts = key.split(".")
        for part in parts[:-1]:
            child = target.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{COMMAND_LINE}: override {key} conflicts with an override of {part}")
            target = child
        target[parts[-1]] = value
    return nested


def merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge two mappings: nested mappings merge, any other value in ``top`` replaces."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _dataclass_in(annotation: Any) -> type | None:
    """Return the dataclass inside ``annotation`` (``X`` or ``X | None``), or None."""
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if dataclasses.is_dataclass(arg) and isinstance(arg, type):
                return arg
    return None


def nearest_key(key: str, names: Iterable[str]) -> str | None:
    """Return the valid name closest to a mistyped ``key``, or None when none is close."""
    names = list(names)
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    if close:
        return close[0]
    # Short names such as LoRA's ``r`` are too short for a similarity ratio, so accept a shared prefix.
    prefixed = [name for name in names if key.startswith(name) or name.startswith(key)]
    return prefixed[0] if len(prefixed) == 1 else None


def _check_keys(cls: type, data: Mapping[str, Any], prefix: str, source: str) -> None:
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key in names:
            continue
        nearest = nearest_key(str(key), names)
        hint = f"; did you mean {prefix}{nearest}?" if nearest else f"; valid keys: {', '.join(names)}"
        raise ConfigError(f"{source}: unknown key {prefix}{key}{hint}")


def _check_scalar(annotation: Any, value: Any, key: str, source: str) -> None:
    """Reject a value whose kind cannot be the annotated scalar type; containers are checked by the dataclass."""
    expected = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    options = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) \
        else (annotation,)
    if value is None and type(None) in options:
        return
    scalars = [option for option in options if option in expected]
    if not scalars or len(scalars) != len([o for o in options if o is not type(None)]):
        return
    for option in scalars:
        if option is bool and isinstance(value, bool):
            return
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return
        if option is str and isinstance(value, str):
            return
    allowed = " or ".join(expected[option] for option in scalars)
    raise ConfigError(f"{source}: {key} must be {allowed}, got {value!r}")


def build(cls: type[T], data: Mapping[str, Any], source: str, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, recursing into dataclass-typed fields."""
    _check_keys(cls, data, prefix, source)
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        annotation = hints[name]
        nested = _dataclass_in(annotation)
        key = f"{prefix}{name}"
        if nested is not None and isinstance(value, Mapping):
            kwargs[name] = build(nested, value, source, f"{key}.")
        elif nested is not None and value is not None and not dataclasses.is_dataclass(value):
            raise ConfigError(f"{source}: {key} must be a mapping of {nested.__name__} keys, got {value!r}")
        else:
            _check_scalar(annotation, value, key, source)
            kwargs[name] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        where = f" in {prefix.rstrip('.')}" if prefix else ""
        raise ConfigError(f"{source}: invalid value{where}: {error}") from None


def _split_sections(cls: type, data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate the keys of dataclass-typed fields (sections) from plain values."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    sections = {k: v for k, v in data.items() if k in names and _dataclass_in(hints[k]) is not None}
    plain = {k: v for k, v in data.items() if k not in sections}
    return plain, sections


def resolve(data: Mapping[str, Any], source: str, cls: type[T] = PipelineConfig) -> T:  # type: ignore[assignment]
    """Build ``cls`` with the defaults its plain values imply, then apply the nested sections on top.

    For ``PipelineConfig`` the plain values pick the model family, whose training defaults fill the
    ``pretrain`` and ``finetune`` sections, and ``seed`` reseeds both before the file's own values
    apply, so ``pretrain.seed`` in the file still wins.
    """
    plain, sections = _split_sections(cls, data)
    skeleton = build(cls, plain, source)
    if "seed" in plain and hasattr(skeleton, "with_seed"):
        skeleton = skeleton.with_seed(skeleton.seed)
    _check_keys(cls, sections, "", source)
    defaults = {name: dataclasses.asdict(value) for name, value in vars(skeleton).items()
                if dataclasses.is_dataclass(value)}
    return build(cls, merge(plain, merge(defaults, sections)), source)


def source_label(path: str | Path | None, overrides: Iterable[str]) -> str:
    parts = [f"config file {path}"] if path else []
    if list(overrides):
        parts.append(COMMAND_LINE)
    return " + ".join(parts) or "defaults"


def load_config(path: str | Path | None = None, overrides: Iterable[str] = (),
                cls: type[T] = PipelineConfig) -> T:  # type: ignore[assignment]
    """Read ``path`` (optional), apply ``KEY=VALUE`` overrides, and build the resolved config.

    Errors name the file for keys read from it, and the command line for keys set there.
    """
    overrides = list(overrides)
    from_file = read_yaml(path) if path else {}
    where = f"config file {path}" if path else "defaults"
    if from_file:
        _check_nested_keys(cls, from_file, "", where)
    from_command_line = parse_overrides(overrides)
    _check_nested_keys(cls, from_command_line, "", COMMAND_LINE)
    return resolve(merge(from_file, from_command_line), source_label(path, overrides), cls)


def _check_nested_keys(cls: type, data: Mapping[str, Any], prefix: str, source: str) -> None:
    """Check every key of ``data`` against ``cls`` before merging, so an error names where the key came from."""
    _check_keys(cls, data, prefix, source)
    hints = typing.get_type_hints(cls)
    for name, value in data.items():
        nested = _dataclass_in(hints[name])
        if nested is not None and isinstance(value, Mapping):
            _check_nested_keys(nested, value, f"{prefix}{name}.", source)


def to_yaml(config: Any) -> str:
    """Render a resolved config as YAML, in field order, as it is printed at the start of a run."""
    return yaml.safe_dump(_plain(dataclasses.asdict(config)), sort_keys=False, default_flow_style=None, width=100)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
