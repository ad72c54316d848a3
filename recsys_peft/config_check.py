"""Check a resolved pipeline config before any stage runs.

Every file the config names must exist and parse, and the model overrides must be valid for
the model family, so a typo fails in a second rather than after ingest or pretraining.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

from recsys_peft.config import PipelineConfig
from recsys_peft.config_file import ConfigError, nearest_key
from recsys_peft.models.sasrec import SASRecConfig
from recsys_peft.models.two_tower import TwoTowerConfig

if typing.TYPE_CHECKING:
    from recsys_peft.ingest.spec import SourceSpec
    from recsys_peft.segments import SegmentSpec

T = typing.TypeVar("T")

# Architecture fields sized from the data; a config cannot set them.
DATA_SIZED_FIELDS = frozenset({"num_users", "num_items", "num_tags", "attribute_cardinalities"})
ARCHITECTURES: dict[str, type] = {"two_tower": TwoTowerConfig, "sasrec": SASRecConfig}
# Placeholder sizes that let an architecture's own checks run before the data is loaded.
_PLACEHOLDER_SIZES = {"num_users": 1, "num_items": 1, "num_tags": 1, "attribute_cardinalities": {}}


def check_model_overrides(model: str, overrides: dict[str, object]) -> None:
    """Raise ``ConfigError`` unless every override is a settable field of ``model``'s architecture."""
    cls = ARCHITECTURES[model]
    settable = [f.name for f in dataclasses.fields(cls) if f.name not in DATA_SIZED_FIELDS]
    for key in overrides:
        if key in DATA_SIZED_FIELDS:
            raise ConfigError(f"model_overrides.{key}: {key} is sized from the data and cannot be set")
        if key not in settable:
            nearest = nearest_key(str(key), settable)
            hint = f"; did you mean model_overrides.{nearest}?" if nearest else \
                f"; valid keys for model {model}: {', '.join(settable)}"
            raise ConfigError(f"model_overrides.{key} is not a setting of model {model}{hint}")
    sizes = {k: v for k, v in _PLACEHOLDER_SIZES.items() if k in {f.name for f in dataclasses.fields(cls)}}
    try:
        cls(**sizes, **overrides)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"model_overrides for model {model}: {error}") from None


def _check_adapter_targets(config: PipelineConfig) -> None:
    """Build a one-row model of the family with the config's LoRA settings, so a bad target fails now."""
    from recsys_peft.models.sasrec import SASRecModel
    from recsys_peft.models.two_tower import TwoTowerModel

    if config.finetune is None:
        return
    cls = ARCHITECTURES[config.model]
    sizes = {k: v for k, v in _PLACEHOLDER_SIZES.items() if k in {f.name for f in dataclasses.fields(cls)}}
    model_class = TwoTowerModel if config.model == "two_tower" else SASRecModel
    try:
        model_class(cls(**sizes, **config.resolved_model_overrides()), num_segments=1, lora=config.finetune.lora)
    except ValueError as error:
        raise ConfigError(f"finetune.lora.target_modules: {error}") from None


def _check_spec(kind: str, path: str, load: typing.Callable[[str], T]) -> T:
    """Load the spec at ``path`` and return it; raise ``ConfigError`` naming ``kind`` when that fails."""
    if not Path(path).is_file():
        raise ConfigError(f"{kind}: file not found: {path}")
    try:
        return load(path)  # the spec loaders report YAML syntax errors as ValueError, with line and column
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"{kind}: {error}") from None


def _check_user_attributes(attributes: object) -> None:
    if not isinstance(attributes, dict):
        raise ConfigError(f"user_attributes must map attribute names to lists of bin edges, got {attributes!r}")
    for name, edges in attributes.items():
        if not isinstance(edges, (list, tuple)) or not all(
                isinstance(edge, (int, float)) and not isinstance(edge, bool) for edge in edges):
            raise ConfigError(f"user_attributes.{name} must be a list of numeric bin edges "
                              f"([] for a categorical attribute), got {edges!r}")
        if any(later <= earlier for earlier, later in zip(edges, edges[1:])):
            raise ConfigError(f"user_attributes.{name} bin edges must increase, got {list(edges)}")


def _check_segment_attributes(source: SourceSpec, segments: SegmentSpec, source_spec_path: str,
                              segment_spec_path: str) -> None:
    """Raise ``ConfigError`` when the segment spec groups users by attributes the source spec does not map."""
    needed = sorted({key.attribute for level in segments.levels if level.source == "attributes" for key in level.keys})
    mapped = set(source.users.attributes) if source.users is not None else set()
    missing = [name for name in needed if name not in mapped]
    if missing:
        raise ConfigError(
            f"segment_spec {segment_spec_path}: attributes {missing} are not mapped by source_spec "
            f"{source_spec_path} (its users.attributes: {sorted(mapped)}); add them there or segment by "
            f"attributes it maps")


def check_config(config: PipelineConfig, need_raw: bool = True) -> None:
    """Raise ``ConfigError`` naming the key and value of the first problem in ``config``.

    ``need_raw`` is False for stages that read the store, not the raw files.
    """
    from recsys_peft.ingest.spec import load_source_spec
    from recsys_peft.segments import load_segment_spec

    source = _check_spec("source_spec", config.source_spec, load_source_spec)
    segments = _check_spec("segment_spec", config.segment_spec, load_segment_spec)
    _check_segment_attributes(source, segments, config.source_spec, config.segment_spec)
    if need_raw and not config.fetch_movielens and not Path(config.raw_dir).is_dir():
        raise ConfigError(f"raw_dir: folder not found: {config.raw_dir} (set fetch_movielens=true to download "
                          f"MovieLens-100K there, or point raw_dir at your files)")
    _check_user_attributes(config.user_attributes)
    check_model_overrides(config.model, dict(config.model_overrides))
    _check_adapter_targets(config)
    work_dir = Path(config.work_dir)
    if work_dir.exists() and not work_dir.is_dir():
        raise ConfigError(f"work_dir: {work_dir} exists and is not a folder")
