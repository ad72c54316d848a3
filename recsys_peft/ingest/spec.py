"""Source specs: declarative YAML files under ``features/`` that map a data set's columns.

A spec names the interaction file (or a folder or glob of them) and, optionally, user and item
attribute files. It maps their columns to the canonical names (``user_id``, ``item_id``,
``timestamp``, ``weight``, ``event_type``). It also sets how to read timestamps and ids, which
rows to reject, and how to collapse duplicates. Example::

    name: shop-clicks
    format: csv                      # csv, tsv, jsonl, parquet or recbole; .gz is read as gzip
    id_type: string                  # or int: "007", "7" and "7.0" are then the same id
    dedup: first                     # first, last or max_weight
    max_bad_fraction: 0.05           # more quarantined rows than this in one file fails the run
    interactions:
      file: clicks/                  # a file, a folder (every file in it) or a glob
      columns: {user_id: uid, item_id: sku, timestamp: ts, event_type: action, weight: qty}
      timestamp_unit: iso            # s, ms, us, ns or iso (ISO 8601 text)
      timezone: Europe/Berlin        # applies to naive timestamps only
      min_timestamp: "2020-01-01"    # earlier events are quarantined
      event_types: [view, cart, purchase]
    users:
      file: users.csv
      id: uid
      attributes: {age: age, gender: gender}
    items:
      file: items.csv
      id: sku
      attributes: {genres: categories}
      multi_valued: {genres: "|"}

A file without a header row gets its column names from ``column_names``; ``delimiter`` (one
or more characters) and ``encoding`` override the format's defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from recsys_peft.yaml_file import read_yaml_mapping

FORMATS = ("csv", "tsv", "jsonl", "parquet", "recbole")
TIMESTAMP_UNITS = ("s", "ms", "us", "ns", "iso")
DEDUP_RULES = ("first", "last", "max_weight")
ID_TYPES = ("string", "int")
REQUIRED_INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp")
OPTIONAL_INTERACTION_COLUMNS = ("weight", "event_type")
DEFAULT_EVENT_TYPE = "interaction"

_LAYOUT_KEYS = {"delimiter", "column_names", "encoding"}
_INTERACTION_KEYS = {"file", "columns", "timestamp_unit", "timezone", "min_timestamp", "event_types",
                     "default_event_type"} | _LAYOUT_KEYS
_ATTRIBUTE_KEYS = {"file", "id", "attributes", "multi_valued"} | _LAYOUT_KEYS
_TOP_KEYS = {"name", "format", "interactions", "users", "items", "dedup", "id_type", "max_bad_fraction"}


@dataclass(frozen=True)
class FileLayout:
    """How to split a delimited file into columns when the format's defaults do not fit.

    ``delimiter`` None means the format's own (comma, tab). ``column_names`` set means the file
    has no header row and its columns get these names in order.
    """

    delimiter: str | None = None
    column_names: tuple[str, ...] | None = None
    encoding: str = "utf-8"


@dataclass(frozen=True)
class InteractionSource:
    """The interaction files, how their columns map to the canonical ones, and row rules."""

    file: str
    columns: dict[str, str]
    timestamp_unit: str = "s"
    timezone: str = "UTC"
    min_timestamp: datetime | None = None
    event_types: tuple[str, ...] | None = None  # None accepts any event type
    default_event_type: str = DEFAULT_EVENT_TYPE  # stored when no event_type column is mapped
    layout: FileLayout = FileLayout()


@dataclass(frozen=True)
class AttributeSource:
    """A user or item attribute file: its id column and the attributes to keep."""

    file: str
    id: str
    attributes: dict[str, str] = field(default_factory=dict)
    multi_valued: dict[str, str] = field(default_factory=dict)
    layout: FileLayout = FileLayout()


@dataclass(frozen=True)
class SourceSpec:
    """A whole data set: format, interaction files, optional attribute files and row rules."""

    name: str
    format: str
    interactions: InteractionSource
    users: AttributeSource | None = None
    items: AttributeSource | None = None
    dedup: str = "first"
    path: str = ""
    id_type: str = "string"
    max_bad_fraction: float = 0.05

    def __post_init__(self) -> None:
        where = f"source spec {self.path or self.name}"
        if self.format not in FORMATS:
            raise ValueError(f"{where}: format must be one of {FORMATS}, got {self.format!r}")
        if self.dedup not in DEDUP_RULES:
            raise ValueError(f"{where}: dedup must be one of {DEDUP_RULES}, got {self.dedup!r}")
        if self.id_type not in ID_TYPES:
            raise ValueError(f"{where}: id_type must be one of {ID_TYPES}, got {self.id_type!r}")
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            raise ValueError(f"{where}: max_bad_fraction must be between 0 and 1, got {self.max_bad_fraction}")
        self._check_interactions(where)
        for section, source in (("users", self.users), ("items", self.items)):
            if source is not None:
                _check_layout(f"{where}: {section}", source.layout)

    def _check_interactions(self, where: str) -> None:
        inter = self.interactions
        if inter.timestamp_unit not in TIMESTAMP_UNITS:
            raise ValueError(
                f"{where}: interactions.timestamp_unit must be one of {TIMESTAMP_UNITS}, "
                f"got {inter.timestamp_unit!r}"
            )
        try:
            ZoneInfo(inter.timezone)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(
                f"{where}: interactions.timezone must be an IANA time zone such as 'UTC' or "
                f"'Europe/Berlin', got {inter.timezone!r}"
            ) from error
        missing = [c for c in REQUIRED_INTERACTION_COLUMNS if c not in inter.columns]
        if missing:
            raise ValueError(f"{where}: interactions.columns must map {missing}")
        unknown = sorted(set(inter.columns) - set(REQUIRED_INTERACTION_COLUMNS) - set(OPTIONAL_INTERACTION_COLUMNS))
        if unknown:
            raise ValueError(
                f"{where}: interactions.columns has unknown keys {unknown}; "
                f"expected {REQUIRED_INTERACTION_COLUMNS + OPTIONAL_INTERACTION_COLUMNS}"
            )
        if self.dedup == "max_weight" and "weight" not in inter.columns:
            raise ValueError(f"{where}: dedup 'max_weight' needs a weight column in interactions.columns")
        if inter.event_types is not None and not inter.event_types:
            raise ValueError(f"{where}: interactions.event_types must list at least one event type")
        if (inter.event_types is not None and "event_type" not in inter.columns
                and inter.default_event_type not in inter.event_types):
            raise ValueError(
                f"{where}: interactions.default_event_type {inter.default_event_type!r} is not in "
                f"event_types {list(inter.event_types)}"
            )
        _check_layout(f"{where}: interactions", inter.layout)

    @property
    def has_event_type(self) -> bool:
        return "event_type" in self.interactions.columns


def _check_layout(where: str, layout: FileLayout) -> None:
    if layout.delimiter is not None and (not layout.delimiter or "\n" in layout.delimiter):
        raise ValueError(f"{where}.delimiter must be one or more characters other than a newline, "
                         f"got {layout.delimiter!r}")
    if layout.column_names is not None and len(set(layout.column_names)) != len(layout.column_names):
        raise ValueError(f"{where}.column_names must be unique, got {list(layout.column_names)}")


def _check_keys(section: str, raw: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown keys in {section}: {unknown}; allowed: {sorted(allowed)}")


def _layout(raw: dict[str, Any]) -> FileLayout:
    names = raw.get("column_names")
    return FileLayout(
        delimiter=None if raw.get("delimiter") is None else str(raw["delimiter"]),
        column_names=None if names is None else tuple(str(n) for n in names),
        encoding=str(raw.get("encoding", "utf-8")),
    )


def _attribute_source(section: str, raw: Any, where: str) -> AttributeSource | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: {section} must be a mapping, got {type(raw).__name__}")
    _check_keys(section, raw, _ATTRIBUTE_KEYS, where)
    if "file" not in raw or "id" not in raw:
        raise ValueError(f"{where}: {section} needs 'file' and 'id'")
    return AttributeSource(
        file=str(raw["file"]),
        id=str(raw["id"]),
        attributes={str(k): str(v) for k, v in (raw.get("attributes") or {}).items()},
        multi_valued={str(k): str(v) for k, v in (raw.get("multi_valued") or {}).items()},
        layout=_layout(raw),
    )


def parse_min_timestamp(value: Any, where: str) -> datetime | None:
    """Parse ``min_timestamp`` (an ISO 8601 date or time; naive means UTC) to an aware datetime."""
    if value is None:
        return None
    try:
        parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError as error:
        raise ValueError(
            f"{where}: interactions.min_timestamp must be an ISO 8601 date or time such as "
            f"'2020-01-01', got {value!r}"
        ) from error
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def load_source_spec(path: str | Path) -> SourceSpec:
    """Load and validate a source spec; every unknown key is reported with the file name."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"source spec not found: {path}")
    where = f"source spec {path}"
    raw = read_yaml_mapping(path, where)
    _check_keys("the top level", raw, _TOP_KEYS, where)

    inter = raw.get("interactions")
    if not isinstance(inter, dict):
        raise ValueError(f"{where}: 'interactions' is missing or not a mapping")
    _check_keys("interactions", inter, _INTERACTION_KEYS, where)
    if "file" not in inter or not isinstance(inter.get("columns"), dict):
        raise ValueError(f"{where}: interactions needs 'file' and a 'columns' mapping")
    event_types = inter.get("event_types")
    if event_types is not None and not isinstance(event_types, list):
        raise ValueError(f"{where}: interactions.event_types must be a list, got {event_types!r}")
    # The spec's min_timestamp is a date (YAML parses an unquoted one) or an ISO string.
    min_timestamp = inter.get("min_timestamp")
    if min_timestamp is not None and not isinstance(min_timestamp, (str, datetime)):
        min_timestamp = str(min_timestamp)

    return SourceSpec(
        name=str(raw.get("name", path.stem)),
        format=str(raw.get("format", "csv")),
        interactions=InteractionSource(
            file=str(inter["file"]),
            columns={str(k): str(v) for k, v in inter["columns"].items()},
            timestamp_unit=str(inter.get("timestamp_unit", "s")),
            timezone=str(inter.get("timezone", "UTC")),
            min_timestamp=parse_min_timestamp(min_timestamp, where),
            event_types=None if event_types is None else tuple(str(e) for e in event_types),
            default_event_type=str(inter.get("default_event_type", DEFAULT_EVENT_TYPE)),
            layout=_layout(inter),
        ),
        users=_attribute_source("users", raw.get("users"), where),
        items=_attribute_source("items", raw.get("items"), where),
        dedup=str(raw.get("dedup", "first")),
        path=str(path),
        id_type=str(raw.get("id_type", "string")),
        max_bad_fraction=_fraction(raw.get("max_bad_fraction", 0.05), where),
    )


def _fraction(value: Any, where: str) -> float:
    """Read ``max_bad_fraction`` as a number, naming the key when it is not one (``5%`` is not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: max_bad_fraction must be a number between 0 and 1 such as 0.05, got {value!r}")
    return float(value)
