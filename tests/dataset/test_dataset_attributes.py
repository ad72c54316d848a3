"""AttributeEncoder: numeric bands with labels, categorical values, and code 0 for unknown."""

import logging

import pytest

from recsys_peft.dataset.attributes import AttributeEncoder

AGE_BINS = (18, 25, 35, 45, 50, 56)
AGE_LABELS = ("<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")


def test_encoder_age_bands():
    encoder = AttributeEncoder.fit("age", [], AGE_BINS, AGE_LABELS)

    labels = encoder.labels_of([17, 18, 24.9, 25, "30", 55, 56, 90])

    assert labels == ["<18", "18-24", "18-24", "25-34", "25-34", "50-55", "56+", "56+"]


def test_encoder_age_codes():
    # Code i + 1 is label i, so "<18" is 1 and "56+" is 7.
    encoder = AttributeEncoder.fit("age", [], AGE_BINS, AGE_LABELS)

    codes = encoder.encode([17, 18, 56])

    assert codes.tolist() == [1, 2, 7]
    assert encoder.cardinality == 8


def test_encoder_age_unknown_zero():
    encoder = AttributeEncoder.fit("age", [], AGE_BINS, AGE_LABELS)

    assert encoder.encode([None, "", "old", "NaN", float("nan")]).tolist() == [0, 0, 0, 0, 0]
    assert encoder.labels_of([None, "old", "NaN"]) == [None, None, None]


def test_encoder_default_labels():
    encoder = AttributeEncoder.fit("age", [], [18, 25.5])

    assert encoder.values == ("<18", "18-25.5", "25.5+")
    assert encoder.encode([10, 20, 30]).tolist() == [1, 2, 3]


def test_encoder_categorical_sorted():
    encoder = AttributeEncoder.fit("gender", ["M", "F", None, "", "M"])

    assert encoder.values == ("F", "M")
    assert encoder.encode(["F", "M", "X", None, ""]).tolist() == [1, 2, 0, 0, 0]
    assert encoder.cardinality == 3


def test_encoder_label_count_mismatch():
    with pytest.raises(ValueError, match=r"attribute 'age': 2 bin edges need 3 labels, got 2"):
        AttributeEncoder.fit("age", [], [18, 25], ["young", "old"])


def test_encoder_dict_round_trip():
    encoder = AttributeEncoder.fit("age", [], AGE_BINS, AGE_LABELS)

    restored = AttributeEncoder.from_dict(encoder.to_dict())

    assert restored == encoder
    assert restored.encode([17, 56]).tolist() == [1, 7]


def test_bins_on_text_attribute_rejected():
    with pytest.raises(ValueError, match=r"attribute 'occupation' has bins, but none of its 2 values is a number"):
        AttributeEncoder.fit("occupation", ["writer", "artist", None], bins=(18.0, 25.0))


def test_bins_count_non_numeric_values(caplog):
    with caplog.at_level(logging.WARNING):
        encoder = AttributeEncoder.fit("age", ["20", "thirty", "40"], bins=(25.0,))

    assert encoder.labels_of(["20", "thirty", "40"]) == ["<25", None, "25+"]
    assert "attribute=age non_numeric_values=1 of=3 example='thirty'" in caplog.text
