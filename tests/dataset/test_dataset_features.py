"""Feature tables: attribute codes in sorted attribute order, item tags as CSR, user batches."""

import numpy as np
import pyarrow as pa
import pytest

from recsys_peft.dataset.features import build_feature_tables, user_batch

USERS = pa.table({
    "user_id": ["u1", "u2", "u3"],
    "user_idx": [0, 1, 2],
    "age": ["17", "30", None],
    "gender": ["M", "F", "M"],
})
ITEMS = pa.table({
    "item_id": ["i1", "i2", "i3"],
    "item_idx": [0, 1, 2],
    "genres": pa.array([["Drama", "Action"], None, ["Comedy"]], pa.list_(pa.string())),
})
# Age bands "<18", "18-25", "25+" (codes 1-3); gender is categorical: F = 1, M = 2.
ATTRIBUTES = {"gender": [], "age": [18, 25]}


def test_features_attribute_codes():
    tables = build_feature_tables(USERS, ITEMS, ATTRIBUTES)

    assert [e.name for e in tables.encoders] == ["age", "gender"]
    assert tables.user_attributes.tolist() == [[1, 2], [3, 1], [0, 2]]
    assert tables.attribute_cardinalities == {"age": 4, "gender": 3}


def test_features_item_tags():
    tables = build_feature_tables(USERS, ITEMS, ATTRIBUTES)

    # Tags sorted: Action = 0, Comedy = 1, Drama = 2.
    assert tables.tag_values == ("Action", "Comedy", "Drama")
    assert tables.item_tags.offsets.tolist() == [0, 2, 2, 3]
    assert tables.item_tags.values.tolist() == [2, 0, 1]


def test_features_no_tag_column():
    tables = build_feature_tables(USERS, ITEMS, ATTRIBUTES, tag_column=None)

    assert tables.tag_values == ()
    assert tables.item_tags.offsets.tolist() == [0, 0, 0, 0]


def test_features_missing_attribute():
    with pytest.raises(ValueError, match=r"user attributes \['occupation'\] are not in the users table"):
        build_feature_tables(USERS, ITEMS, {"occupation": []})


def test_features_reuse_encoders():
    # New data encoded with a trained model's encoders: unseen values become 0 or are dropped.
    trained = build_feature_tables(USERS, ITEMS, ATTRIBUTES)
    new_users = pa.table({"age": ["20"], "gender": ["X"]})
    new_items = pa.table({"genres": pa.array([["Western", "Comedy"]], pa.list_(pa.string()))})

    tables = build_feature_tables(new_users, new_items, ATTRIBUTES, encoders=trained.encoders,
                                  tag_values=trained.tag_values)

    assert tables.user_attributes.tolist() == [[2, 0]]
    assert tables.item_tags.values.tolist() == [1]


def test_features_user_batch(small_log):
    users = pa.table({"age": ["17", "30", None, "40"], "gender": ["M", "F", "M", "F"]})
    tables = build_feature_tables(users, pa.table({"genres": pa.array([[]] * 10, pa.list_(pa.string()))}),
                                  ATTRIBUTES)

    batch = user_batch(small_log, tables, np.array([0, 1]), np.array([3, 6]), history_length=2)

    assert batch.users.tolist() == [0, 1]
    assert batch.history.tolist() == [[9, 7], [2, 1]]
    assert batch.attributes.tolist() == [[1, 2], [3, 1]]
    assert batch.segments.tolist() == [-1, -1]


def test_features_user_batch_segments(small_log):
    users = pa.table({"age": ["17", "30", None, "40"], "gender": ["M", "F", "M", "F"]})
    tables = build_feature_tables(users, pa.table({"genres": pa.array([[]] * 10, pa.list_(pa.string()))}),
                                  ATTRIBUTES)
    segments = np.array([5, -1, 2, 0])

    batch = user_batch(small_log, tables, np.array([2, 0]), np.array([6, 0]), history_length=1, segments=segments)

    assert batch.segments.tolist() == [2, 5]
    assert batch.history.tolist() == [[-1], [-1]]
