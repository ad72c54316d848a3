"""Segments: the MovieLens gender x age spec, assignment to users, and spec errors."""

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from recsys_peft.segments import NO_SEGMENT, SegmentKey, SegmentSpec, assign_segments, load_segment_spec

GENDER_X_AGE = Path(__file__).resolve().parents[1] / "features" / "segments" / "gender_x_age.yaml"
AGE_LABELS = ("<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")

# Ages are strings, as the ingest stores attributes. u4 has no gender and u5 no age.
USERS = pa.table({
    "user_id": ["u0", "u1", "u2", "u3", "u4", "u5"],
    "gender": ["F", "M", "M", "F", None, "F"],
    "age": ["17", "56", "24", "18", "30", None],
})


def test_segments_spec_fields():
    spec = load_segment_spec(GENDER_X_AGE)

    assert spec.name == "gender_x_age"
    assert spec.separator == ":"
    assert spec.path == str(GENDER_X_AGE)
    assert spec.keys == (
        SegmentKey("gender"),
        SegmentKey("age", (18, 25, 35, 45, 50, 56), AGE_LABELS),
    )


def test_segments_movielens_names():
    assignment = assign_segments(load_segment_spec(GENDER_X_AGE), USERS)

    assert assignment.names == tuple(f"F:{a}" for a in AGE_LABELS) + tuple(f"M:{a}" for a in AGE_LABELS)
    assert len(assignment.names) == 14


def test_segments_user_indices():
    # F:<18 = 0, F:18-24 = 1, M:18-24 = 8, M:56+ = 13.
    assignment = assign_segments(load_segment_spec(GENDER_X_AGE), USERS)

    assert assignment.user_segments.tolist() == [0, 13, 8, 1, NO_SEGMENT, NO_SEGMENT]
    assert NO_SEGMENT == -1


def test_segments_unassigned_counted():
    assignment = assign_segments(load_segment_spec(GENDER_X_AGE), USERS)

    assert assignment.unassigned_users == 2
    sizes = assignment.sizes()
    assert sum(sizes.values()) == 4
    assert {name: n for name, n in sizes.items() if n} == {"F:<18": 1, "F:18-24": 1, "M:18-24": 1, "M:56+": 1}


def test_segments_table():
    assignment = assign_segments(load_segment_spec(GENDER_X_AGE), USERS)

    table = assignment.table(USERS.column("user_id").to_pylist())

    assert table.column("segment").to_pylist() == ["F:<18", "M:56+", "M:18-24", "F:18-24", None, None]
    assert table.column("segment_idx").to_pylist() == [0, 13, 8, 1, -1, -1]
    assert table.column("user_idx").to_pylist() == [0, 1, 2, 3, 4, 5]


def test_segments_missing_attribute_column():
    users = USERS.drop_columns(["gender"])
    expected = re.escape(f"segment spec {GENDER_X_AGE}: attributes ['gender'] are not in the users table")

    with pytest.raises(ValueError, match=expected):
        assign_segments(load_segment_spec(GENDER_X_AGE), users)


def test_segments_custom_separator():
    spec = SegmentSpec("gender_x_occupation", (SegmentKey("gender"), SegmentKey("occupation")), separator="/")
    users = pa.table({"gender": ["M", "F", "M"], "occupation": ["nurse", "artist", "artist"]})

    assignment = assign_segments(spec, users)

    assert assignment.names == ("F/artist", "F/nurse", "M/artist", "M/nurse")
    assert assignment.user_segments.tolist() == [3, 0, 2]


def test_segments_numeric_age_column():
    users = pa.table({"gender": ["F", "M"], "age": pa.array([56, None], pa.int64())})

    assignment = assign_segments(load_segment_spec(GENDER_X_AGE), users)

    assert assignment.user_segments.tolist() == [6, NO_SEGMENT]
    assert assignment.user_segments.dtype == np.int64


def test_segments_spec_unknown_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nkeys: [{attribute: gender}]\nseparatr: '-'\n", encoding="utf-8")

    with pytest.raises(ValueError, match=re.escape(f"segment spec {path}: unknown keys ['separatr']")):
        load_segment_spec(path)


def test_segments_spec_key_without_attribute(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("keys: [{attribute: gender}, {bins: [18]}]\n", encoding="utf-8")

    with pytest.raises(ValueError, match=re.escape(f"segment spec {path}: keys[1] needs an 'attribute'")):
        load_segment_spec(path)


def test_segments_spec_key_unknown_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("keys: [{attribute: age, bands: [18]}]\n", encoding="utf-8")

    with pytest.raises(ValueError, match=re.escape(f"segment spec {path}: keys[0] has unknown keys ['bands']")):
        load_segment_spec(path)


def test_segments_spec_no_keys(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("name: empty\nkeys: []\n", encoding="utf-8")

    with pytest.raises(ValueError, match=re.escape(f"segment spec {path}: 'keys' must list at least one attribute")):
        load_segment_spec(path)


def test_segments_spec_not_found(tmp_path):
    path = tmp_path / "absent.yaml"

    with pytest.raises(FileNotFoundError, match=re.escape(f"segment spec not found: {path}")):
        load_segment_spec(path)
