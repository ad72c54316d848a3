"""Segments: the MovieLens gender x age spec, assignment to users, and spec errors."""

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from recsys_peft.segments import (
    NO_SEGMENT, SegmentKey, SegmentSpec, assign_segments, load_segment_spec, route_users,
)

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


OCCUPATION = Path(__file__).resolve().parents[1] / "features" / "segments" / "occupation.yaml"

# A chain: tenant from a user-to-segment file, then country from the users table.
CHAIN_USERS = pa.table({
    "user_id": ["a", "b", "c", "d", "e"],
    "country": ["DE", "FR", None, "DE", None],
})
CHAIN_SPEC = """\
name: tenant_then_country
levels:
  - name: tenant
    source: table
    path: tenants.csv
  - name: country
    keys: [{attribute: country}]
"""


def write_chain(tmp_path: Path, tenants: str = "user_id,segment\na,acme\nc,acme\nd,globex\n") -> Path:
    (tmp_path / "tenants.csv").write_text(tenants, encoding="utf-8")
    path = tmp_path / "chain.yaml"
    path.write_text(CHAIN_SPEC, encoding="utf-8")
    return path


def test_segments_occupation_spec():
    users = pa.table({"occupation": ["writer", "nurse", None, "writer"]})

    assignment = assign_segments(load_segment_spec(OCCUPATION), users)

    assert assignment.names == ("nurse", "writer")
    assert assignment.user_segments.tolist() == [1, 0, NO_SEGMENT, 1]


def test_segments_chain_names_and_candidates(tmp_path):
    spec = load_segment_spec(write_chain(tmp_path))

    assignment = assign_segments(spec, CHAIN_USERS)

    assert spec.is_chain
    assert assignment.levels == ("tenant", "country")
    assert assignment.names == ("tenant=acme", "tenant=globex", "country=DE", "country=FR")
    assert assignment.segment_levels == (0, 0, 1, 1)
    assert assignment.candidates.tolist() == [[0, 2], [-1, 3], [0, -1], [1, 2], [-1, -1]]
    assert assignment.user_segments.tolist() == [0, 3, 0, 1, NO_SEGMENT]


def test_segments_chain_members(tmp_path):
    assignment = assign_segments(load_segment_spec(write_chain(tmp_path)), CHAIN_USERS)

    # A segment's members are every user with that value at its level, also those a more
    # specific level serves.
    assert assignment.members(2).tolist() == [True, False, False, True, False]
    assert assignment.sizes() == {"tenant=acme": 2, "tenant=globex": 1, "country=DE": 2, "country=FR": 1}


def test_segments_route_fallback_counts(tmp_path):
    assignment = assign_segments(load_segment_spec(write_chain(tmp_path)), CHAIN_USERS)
    # tenant=acme and country=DE have adapters; tenant=globex and country=FR do not.
    has_adapter = np.array([True, False, True, False])

    routing = route_users(assignment, has_adapter)

    assert routing.slots.tolist() == [0, -1, 0, 2, -1]
    assert routing.served == {"tenant": 2, "country": 1, "base": 2}
    assert routing.fell_back == 2   # b (country=FR has none) and d (tenant=globex has none)
    assert routing.unknown == 1     # e
    assert routing.summary() == ("served_by_tenant=2 served_by_country=1 served_by_base=2 fell_back=2 "
                                 "unknown_segment=1")


def test_segments_route_wrong_length():
    assignment = assign_segments(load_segment_spec(GENDER_X_AGE), USERS)

    with pytest.raises(ValueError, match=r"has_adapter must have one entry per segment \(14\), got shape \(3,\)"):
        route_users(assignment, np.ones(3, dtype=bool))


def test_segments_fixed_names_for_new_users():
    spec = load_segment_spec(GENDER_X_AGE)
    trained = assign_segments(spec, USERS)
    new_users = pa.table({"gender": ["M", "X"], "age": ["40", "40"]})

    assignment = assign_segments(spec, new_users, names=trained.names)

    assert assignment.names == trained.names
    assert assignment.user_segments.tolist() == [trained.names.index("M:35-44"), NO_SEGMENT]


def log_spec(tmp_path: Path, rule: str) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(f"name: plan\nsource: log_column\ncolumn: plan\nrule: {rule}\n", encoding="utf-8")
    return path


INTERACTIONS = pa.table({
    "user_id": ["u0", "u1", "u0", "u0", "u1", "u2"],
    "plan": ["free", "pro", "pro", "free", "pro", None],
})


def test_segments_log_column_latest(tmp_path):
    users = pa.table({"user_id": ["u0", "u1", "u2", "u3"]})

    assignment = assign_segments(load_segment_spec(log_spec(tmp_path, "latest")), users, INTERACTIONS)

    assert assignment.names == ("free", "pro")
    assert assignment.user_segments.tolist() == [0, 1, NO_SEGMENT, NO_SEGMENT]


def test_segments_log_column_most_frequent(tmp_path):
    interactions = INTERACTIONS.slice(0, 5).append_column("order", pa.array(range(5)))
    users = pa.table({"user_id": ["u0", "u1"]})

    assignment = assign_segments(load_segment_spec(log_spec(tmp_path, "most_frequent")), users, interactions)

    # u0: free twice, pro once.
    assert assignment.user_segments.tolist() == [0, 1]


def test_segments_log_column_needs_interactions(tmp_path):
    users = pa.table({"user_id": ["u0"]})

    with pytest.raises(ValueError, match=r"level 'plan' reads the log column 'plan', so assign_segments needs "
                                         r"the interactions table; pass interactions="):
        assign_segments(load_segment_spec(log_spec(tmp_path, "latest")), users)


def test_segments_log_column_missing(tmp_path):
    users = pa.table({"user_id": ["u0"]})

    with pytest.raises(ValueError, match=r"the log has no column 'plan'; found \['user_id'\]"):
        assign_segments(load_segment_spec(log_spec(tmp_path, "latest")), users, INTERACTIONS.select(["user_id"]))


def test_segments_table_two_segments(tmp_path):
    path = write_chain(tmp_path, "user_id,segment\na,acme\na,globex\n")

    with pytest.raises(ValueError, match=r"user 'a' has two segments in .*tenants\.csv: 'acme' and 'globex'; "
                                         r"expected one"):
        assign_segments(load_segment_spec(path), CHAIN_USERS)


def test_segments_table_missing_file(tmp_path):
    path = write_chain(tmp_path)
    (tmp_path / "tenants.csv").unlink()

    with pytest.raises(FileNotFoundError, match=r"user-to-segment table not found: .*tenants\.csv"):
        assign_segments(load_segment_spec(path), CHAIN_USERS)


def test_segments_table_parquet(tmp_path):
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"uid": ["b", "e"], "group": ["gold", "silver"]}), tmp_path / "groups.parquet")
    path = tmp_path / "groups.yaml"
    path.write_text("name: groups\nsource: table\npath: groups.parquet\nuser_column: uid\nsegment_column: group\n",
                    encoding="utf-8")
    users = pa.table({"uid": ["a", "b", "e"]})

    assignment = assign_segments(load_segment_spec(path), users)

    assert assignment.names == ("gold", "silver")
    assert assignment.user_segments.tolist() == [NO_SEGMENT, 0, 1]


@pytest.mark.parametrize(("text", "message"), [
    ("levels: [{name: a, keys: [{attribute: x}]}]\nkeys: [{attribute: y}]\n",
     r"put \['keys'\] inside a level, not beside 'levels'"),
    ("levels: []\n", r"'levels' must be a non-empty list, got \[\]"),
    ("levels: [{keys: [{attribute: x}]}]\n", r"levels\[0\] needs a 'name'"),
    ("levels: [{name: a, source: api}]\n", r"levels\[0\]: source must be one of \['attributes', 'log_column', "
                                           r"'table'\], got 'api'"),
    ("source: log_column\n", r"source log_column needs a 'column'"),
    ("source: log_column\ncolumn: plan\nrule: first\n", r"rule must be one of \['latest', 'most_frequent'\], "
                                                        r"got 'first'"),
    ("source: table\n", r"source table needs a 'path'"),
    ("levels: [{name: a, keys: [{attribute: x}]}, {name: a, keys: [{attribute: y}]}]\n",
     r"level names must be unique, got \['a', 'a'\]"),
    ("levels: [{name: a, keys: [{attribute: x}], bins: [1]}]\n", r"levels\[0\] has unknown keys \['bins'\]"),
])
def test_segments_spec_level_errors(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(ValueError, match=message):
        load_segment_spec(path)


def test_segment_spec_yaml_syntax_error_names_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nlevels: [a\n", encoding="utf-8")

    with pytest.raises(ValueError, match=r"segment spec .*broken\.yaml: invalid YAML"):
        load_segment_spec(path)
