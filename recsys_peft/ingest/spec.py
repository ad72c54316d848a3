"""Source specs: declarative YAML files under ``features/`` that map a data set's columns.

A spec names the interaction file and, optionally, user and item attribute files, maps their
columns to the canonical names (``user_id``, ``item_id``, ``timestamp``, ``weight``) and says how
to read timestamps and how to collapse duplicates. Example::

    name: movielens-100k
    format: recbole
    interactions:
      file: ml-100k.inter
      columns: {user_id: user_id, item_id: item_id, timestamp: timestamp, weight: rating}
      timestamp_unit: s
      timezone: UTC
    users:
      file: ml-100k.user
      id: user_id
      attributes: {age: age, gender: gender, occupation: occupation}
    items:
      file: ml-100k.item
      id: item_id
      attributes: {genres: class, title: movie_title}
      multi_valued: {genres: " "}
    dedup: first
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

FORMATS = ("csv", "tsv", "jsonl", "parquet", "recbole")
TIMESTAMP_UNITS = ("s", "ms", "us", "ns", "iso")
DEDUP_RULES = ("first", "last", "max_weight")
REQUIRED_INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp")
OPTIONAL_INTERACTION_COLUMNS = ("weight",)


@dataclass(frozen=True)
class InteractionSource:
    """The interaction file and how its columns map to the canonical ones."""

    file: str
    columns: dict[str, str]
    timestamp_unit: str = "s"
    timezone: str = "UTC"


@dataclass(frozen=True)
class AttributeSource:
    """A user or item attribute file: its id column and the attributes to keep."""

    file: str
    id: str
    attributes: dict[str, str] = field(default_factory=dict)
    multi_valued: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceSpec:
    """A whole data set: format, interaction file, optional attribute files, dedup rule."""

    name: str
    format: str
    interactions: InteractionSource
    users: AttributeSource | None = None
    items: AttributeSource | None = None
    dedup: str = "first"
    path: str = ""

    def __post_init__(self) -> None:
        where = f"source spec {self.path or self.name}"
        if self.format not in FORMATS:
            raise ValueError(f"{where}: format must be one of {FORMATS}, got {self.format!r}")
        if self.dedup not in DEDUP_RULES:
            raise ValueError(f"{where}: dedup must be one of {DEDUP_RULES}, got {self.dedup!r}")
        unit = self.interactions.timestamp_unit
        if unit not in TIMESTAMP_UNITS:
            raise ValueError(
                f"{where}: interactions.timestamp_unit must be one of {TIMESTAMP_UNITS}, got {unit!r}"
            )
        missing = [c for c in REQUIRED_INTERACTION_COLUMNS if c not in self.interactions.columns]
        if missing:
            raise ValueError(f"{where}: interactions.columns must map {missing}")
        unknown = sorted(
            set(self.interactions.columns)
            - set(REQUIRED_INTERACTION_COLUMNS)
            - set(OPTIONAL_INTERACTION_COLUMNS)
        )
        if unknown:
            raise ValueError(
                f"{where}: interactions.columns has unknown keys {unknown}; "
                f"expected {REQUIRED_INTERACTION_COLUMNS + OPTIONAL_INTERACTION_COLUMNS}"
            )
        if self.dedup == "max_weight" and "weight" not in self.interactions.columns:
            raise ValueError(f"{where}: dedup 'max_weight' needs a weight column in interactions.columns")


def _check_keys(section: str, raw: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown keys in {section}: {unknown}; allowed: {sorted(allowed)}")


def _attribute_source(section: str, raw: Any, where: str) -> AttributeSource | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: {section} must be a mapping, got {type(raw).__name__}")
    _check_keys(section, raw, {"file", "id", "attributes", "multi_valued"}, where)
    if "file" not in raw or "id" not in raw:
        raise ValueError(f"{where}: {section} needs 'file' and 'id'")
    return AttributeSource(
        file=str(raw["file"]),
        id=str(raw["id"]),
        attributes={str(k): str(v) for k, v in (raw.get("attributes") or {}).items()},
        multi_valued={str(k): str(v) for k, v in (raw.get("multi_valued") or {}).items()},
    )


def load_source_spec(path: str | Path) -> SourceSpec:
    """Load and validate a source spec; every unknown key is reported with the file name."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"source spec not found: {path}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    where = f"source spec {path}"
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping at the top level")
    _check_keys("the top level", raw, {"name", "format", "interactions", "users", "items", "dedup"}, where)

    inter = raw.get("interactions")
    if not isinstance(inter, dict):
        raise ValueError(f"{where}: 'interactions' is missing or not a mapping")
    _check_keys("interactions", inter, {"file", "columns", "timestamp_unit", "timezone"}, where)
    if "file" not in inter or not isinstance(inter.get("columns"), dict):
        raise ValueError(f"{where}: interactions needs 'file' and a 'columns' mapping")

    return SourceSpec(
        name=str(raw.get("name", path.stem)),
        format=str(raw.get("format", "csv")),
        interactions=InteractionSource(
            file=str(inter["file"]),
            columns={str(k): str(v) for k, v in inter["columns"].items()},
            timestamp_unit=str(inter.get("timestamp_unit", "s")),
            timezone=str(inter.get("timezone", "UTC")),
        ),
        users=_attribute_source("users", raw.get("users"), where),
        items=_attribute_source("items", raw.get("items"), where),
        dedup=str(raw.get("dedup", "first")),
        path=str(path),
    )
