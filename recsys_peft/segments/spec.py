"""Segment specs: YAML files under ``features/segments/`` that say how users split into segments.

A spec has one level or a chain of levels. Each level maps a user to at most one segment, from
one of three sources:

- ``attributes`` (the default): the combination of user attributes under ``keys``, each
  optionally binned into labelled bands;
- ``log_column``: a column of the interaction log, taken from the user's latest event
  (``rule: latest``) or the value on most of its events (``rule: most_frequent``);
- ``table``: a user-to-segment file (Parquet or CSV) with the columns ``user_id`` and
  ``segment``, at ``path`` relative to the spec.

A chain lists levels under ``levels``, most specific first. At scoring time a user is served by
the adapter of the first level whose segment is known and has an adapter, and by the base model
when none has. docs/segments.md has examples of every form.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from recsys_peft.yaml_file import read_yaml_mapping

SOURCES = ("attributes", "log_column", "table")
LOG_RULES = ("latest", "most_frequent")
_LEVEL_KEYS = {"name", "source", "keys", "column", "rule", "path", "user_column", "segment_column"}
_TOP_KEYS = {"name", "separator", "levels"} | _LEVEL_KEYS


@dataclass(frozen=True)
class SegmentKey:
    attribute: str
    bins: tuple[float, ...] = ()
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class SegmentLevel:
    """One way of mapping users to segments. Which fields apply depends on ``source``."""

    name: str
    source: str = "attributes"
    keys: tuple[SegmentKey, ...] = ()
    column: str = ""                 # log_column: the interaction column
    rule: str = "latest"             # log_column: latest or most_frequent
    path: str = ""                   # table: the user-to-segment file
    user_column: str = "user_id"     # table: the column of user ids
    segment_column: str = "segment"  # table: the column of segment names

    def validate(self, where: str) -> None:
        """Raise ValueError naming ``where`` when a field this level's source needs is missing or invalid."""
        if self.source not in SOURCES:
            raise ValueError(f"{where}: source must be one of {list(SOURCES)}, got {self.source!r}")
        if self.source == "attributes" and not self.keys:
            raise ValueError(f"{where}: 'keys' must list at least one attribute")
        if self.source == "log_column" and not self.column:
            raise ValueError(f"{where}: source log_column needs a 'column'")
        if self.source == "log_column" and self.rule not in LOG_RULES:
            raise ValueError(f"{where}: rule must be one of {list(LOG_RULES)}, got {self.rule!r}")
        if self.source == "table" and not self.path:
            raise ValueError(f"{where}: source table needs a 'path'")


@dataclass(frozen=True)
class SegmentSpec:
    """A named chain of segment levels. A one-level spec may set ``keys`` directly."""

    name: str
    keys: tuple[SegmentKey, ...] = ()
    separator: str = ":"
    path: str = ""
    levels: tuple[SegmentLevel, ...] = ()

    def __post_init__(self) -> None:
        where = f"segment spec {self.path or self.name}"
        if not self.levels:
            if not self.keys:
                raise ValueError(f"{where}: 'keys' must list at least one attribute")
            object.__setattr__(self, "levels", (SegmentLevel(self.name, "attributes", self.keys),))
        names = [level.name for level in self.levels]
        if len(set(names)) != len(names):
            raise ValueError(f"{where}: level names must be unique, got {names}")
        for position, level in enumerate(self.levels):
            level.validate(where if len(self.levels) == 1 else f"{where}: levels[{position}]")

    @property
    def is_chain(self) -> bool:
        return len(self.levels) > 1


def _parse_keys(entries: object, where: str) -> tuple[SegmentKey, ...]:
    keys = []
    for i, entry in enumerate(entries or []):
        if not isinstance(entry, dict) or "attribute" not in entry:
            raise ValueError(f"{where}: keys[{i}] needs an 'attribute', got {entry!r}")
        extra = sorted(set(entry) - {"attribute", "bins", "labels"})
        if extra:
            raise ValueError(f"{where}: keys[{i}] has unknown keys {extra}")
        keys.append(SegmentKey(str(entry["attribute"]), tuple(entry.get("bins") or ()),
                               tuple(str(x) for x in entry.get("labels") or ())))
    return tuple(keys)


def _parse_level(raw: dict, default_name: str, folder: Path, where: str) -> SegmentLevel:
    path = str(raw.get("path", ""))
    if path and not Path(path).is_absolute():
        path = str(folder / path)
    level = SegmentLevel(
        name=str(raw.get("name", default_name)),
        source=str(raw.get("source", "attributes")),
        keys=_parse_keys(raw.get("keys"), where),
        column=str(raw.get("column", "")),
        rule=str(raw.get("rule", "latest")),
        path=path,
        user_column=str(raw.get("user_column", "user_id")),
        segment_column=str(raw.get("segment_column", "segment")),
    )
    level.validate(where)
    return level


def load_segment_spec(path: str | Path) -> SegmentSpec:
    """Read a segment spec, or raise FileNotFoundError or ValueError naming the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"segment spec not found: {path}")
    where = f"segment spec {path}"
    raw = read_yaml_mapping(path, where)
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; allowed: {sorted(_TOP_KEYS)}")
    name = str(raw.get("name", path.stem))
    separator = str(raw.get("separator", ":"))

    if "levels" not in raw:
        level = _parse_level(raw, name, path.parent, where)
        return SegmentSpec(name, level.keys, separator, str(path), (level,) if level.source != "attributes" else ())

    if set(raw) & (_LEVEL_KEYS - {"name"}):
        raise ValueError(f"{where}: put {sorted(set(raw) & (_LEVEL_KEYS - {'name'}))} inside a level, "
                         "not beside 'levels'")
    entries = raw["levels"] or []
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{where}: 'levels' must be a non-empty list, got {entries!r}")
    levels = []
    for position, entry in enumerate(entries):
        level_where = f"{where}: levels[{position}]"
        if not isinstance(entry, dict) or "name" not in entry:
            raise ValueError(f"{level_where} needs a 'name', got {entry!r}")
        extra = sorted(set(entry) - _LEVEL_KEYS)
        if extra:
            raise ValueError(f"{level_where} has unknown keys {extra}; allowed: {sorted(_LEVEL_KEYS)}")
        levels.append(_parse_level(entry, str(entry["name"]), path.parent, level_where))
    return SegmentSpec(name, (), separator, str(path), tuple(levels))
