"""Source spec loading: the shipped MovieLens spec, defaults, and every rejected key or value."""

import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from recsys_peft.ingest.spec import load_source_spec

MOVIELENS_SPEC = Path(__file__).resolve().parents[2] / "features" / "movielens_100k.yaml"

MINIMAL = """\
interactions:
  file: events.csv
  columns: {user_id: user, item_id: item, timestamp: ts}
"""


def write_spec(folder: Path, text: str, name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_spec_movielens_fields():
    spec = load_source_spec(MOVIELENS_SPEC)

    assert spec.name == "movielens-100k"
    assert spec.format == "recbole"
    assert spec.dedup == "first"
    assert spec.path == str(MOVIELENS_SPEC)
    assert spec.interactions.file == "ml-100k.inter"
    assert spec.interactions.columns == {
        "user_id": "user_id", "item_id": "item_id", "timestamp": "timestamp", "weight": "rating",
    }
    assert spec.interactions.timestamp_unit == "s"
    assert spec.interactions.timezone == "UTC"
    assert spec.users.file == "ml-100k.user"
    assert spec.users.id == "user_id"
    assert spec.users.attributes == {"age": "age", "gender": "gender", "occupation": "occupation"}
    assert spec.items.file == "ml-100k.item"
    assert spec.items.id == "item_id"
    assert spec.items.attributes == {"title": "movie_title", "year": "release_year", "genres": "class"}
    assert spec.items.multi_valued == {"genres": " "}


def test_spec_minimal_defaults(tmp_path):
    spec = load_source_spec(write_spec(tmp_path, MINIMAL, "clicks.yaml"))

    assert spec.name == "clicks"
    assert spec.format == "csv"
    assert spec.dedup == "first"
    assert spec.interactions.timestamp_unit == "s"
    assert spec.interactions.timezone == "UTC"
    assert spec.users is None
    assert spec.items is None


def test_spec_missing_file(tmp_path):
    path = tmp_path / "absent.yaml"

    with pytest.raises(FileNotFoundError, match=f"source spec not found: {re.escape(str(path))}"):
        load_source_spec(path)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (MINIMAL + "formt: csv\n", r"unknown keys in the top level: \['formt'\]"),
        (MINIMAL + "  time_unit: ms\n", r"unknown keys in interactions: \['time_unit'\]"),
        (
            MINIMAL + "users: {file: u.csv, id: user, attrs: {age: age}}\n",
            r"unknown keys in users: \['attrs'\]",
        ),
        (
            MINIMAL + "items: {file: i.csv, id: item, genre: g}\n",
            r"unknown keys in items: \['genre'\]",
        ),
        (
            MINIMAL.replace("ts}", "ts, rating: r}"),
            r"interactions.columns has unknown keys \['rating'\]",
        ),
    ],
    ids=["top", "interactions", "users", "items", "columns"],
)
def test_spec_unknown_key(tmp_path, text, pattern):
    path = write_spec(tmp_path, text)

    with pytest.raises(ValueError, match=f"source spec {re.escape(str(path))}: {pattern}"):
        load_source_spec(path)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (MINIMAL + "format: xml\n", r"format must be one of .* got 'xml'"),
        (MINIMAL + "dedup: newest\n", r"dedup must be one of .* got 'newest'"),
        (MINIMAL + "  timestamp_unit: minutes\n", r"interactions.timestamp_unit must be one of .* got 'minutes'"),
    ],
    ids=["format", "dedup", "timestamp_unit"],
)
def test_spec_bad_value(tmp_path, text, pattern):
    path = write_spec(tmp_path, text)

    with pytest.raises(ValueError, match=f"source spec {re.escape(str(path))}: {pattern}"):
        load_source_spec(path)


def test_spec_missing_timestamp_column(tmp_path):
    path = write_spec(tmp_path, MINIMAL.replace(", timestamp: ts", ""))

    with pytest.raises(ValueError, match=r"interactions.columns must map \['timestamp'\]"):
        load_source_spec(path)


def test_spec_max_weight_needs_weight(tmp_path):
    path = write_spec(tmp_path, MINIMAL + "dedup: max_weight\n")

    with pytest.raises(ValueError, match=r"dedup 'max_weight' needs a weight column"):
        load_source_spec(path)


def test_spec_interactions_missing(tmp_path):
    path = write_spec(tmp_path, "name: empty\n")

    with pytest.raises(ValueError, match=r"'interactions' is missing or not a mapping"):
        load_source_spec(path)


def test_spec_users_without_id(tmp_path):
    path = write_spec(tmp_path, MINIMAL + "users: {file: u.csv}\n")

    with pytest.raises(ValueError, match=r"users needs 'file' and 'id'"):
        load_source_spec(path)


FULL = MINIMAL.replace("ts}", "ts, event_type: action, weight: qty}") + """\
  timestamp_unit: iso
  timezone: Europe/Berlin
  min_timestamp: 2020-01-01
  event_types: [view, buy]
  delimiter: ";"
id_type: int
max_bad_fraction: 0.1
"""


def test_spec_full_fields(tmp_path):
    spec = load_source_spec(write_spec(tmp_path, FULL))

    assert spec.interactions.columns["event_type"] == "action"
    assert spec.interactions.event_types == ("view", "buy")
    assert spec.interactions.min_timestamp == datetime(2020, 1, 1, tzinfo=timezone.utc)
    assert spec.interactions.timezone == "Europe/Berlin"
    assert spec.interactions.layout.delimiter == ";"
    assert spec.id_type == "int"
    assert spec.max_bad_fraction == 0.1
    assert spec.has_event_type


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (MINIMAL + "  timezone: Mars/Olympus\n", r"interactions.timezone must be an IANA time zone .* got 'Mars/Olympus'"),
        (MINIMAL + "  min_timestamp: soon\n", r"interactions.min_timestamp must be an ISO 8601 date .* got 'soon'"),
        (MINIMAL + "  event_types: []\n", r"interactions.event_types must list at least one event type"),
        (MINIMAL + "  event_types: view\n", r"interactions.event_types must be a list, got 'view'"),
        (MINIMAL + "  event_types: [view]\n", r"interactions.default_event_type 'interaction' is not in event_types \['view'\]"),
        (MINIMAL + "id_type: uuid\n", r"id_type must be one of \('string', 'int'\), got 'uuid'"),
        (MINIMAL + "max_bad_fraction: 1.5\n", r"max_bad_fraction must be between 0 and 1, got 1.5"),
        (MINIMAL + "  column_names: [a, a]\n", r"interactions.column_names must be unique, got \['a', 'a'\]"),
    ],
    ids=["timezone", "min_timestamp", "event_types_empty", "event_types_scalar", "default_event_type",
         "id_type", "max_bad_fraction", "column_names"],
)
def test_spec_rejected_value(tmp_path, text, pattern):
    path = write_spec(tmp_path, text)

    with pytest.raises(ValueError, match=f"source spec {re.escape(str(path))}: {pattern}"):
        load_source_spec(path)


def test_spec_yaml_syntax_error_names_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\ninteractions: {file: a.csv\n", encoding="utf-8")

    with pytest.raises(ValueError, match=r"source spec .*broken\.yaml: invalid YAML at line 3 column 1: expected .,. or .}., but got .<stream end>."):
        load_source_spec(path)


def test_spec_percent_fraction_rejected(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("name: x\nformat: csv\ninteractions:\n  file: a.csv\n"
                    "  columns: {user_id: u, item_id: i, timestamp: t}\nmax_bad_fraction: 5%\n", encoding="utf-8")

    with pytest.raises(ValueError, match=r"spec\.yaml: max_bad_fraction must be a number between 0 and 1 .*got '5%'"):
        load_source_spec(path)
