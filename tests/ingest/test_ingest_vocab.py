"""Id vocabulary: lookup, append-only extension, save and load, and the version string."""

import re

import pyarrow as pa

from recsys_peft.ingest.vocab import Vocabulary, vocabulary_version


def test_vocab_extended_first_appearance():
    vocab = Vocabulary("users", ("a",))

    extended = vocab.extended(pa.array(["c", "a", None, "b", "c"]))

    assert extended.ids == ("a", "c", "b")
    assert vocab.ids == ("a",)


def test_vocab_lookup_unknown():
    vocab = Vocabulary("items", ("x", "y", "z"))

    assert vocab.lookup(["z", "x", "nope", None]).tolist() == [2, 0, -1, -1]


def test_vocab_save_load(tmp_path):
    vocab = Vocabulary("items", ("b", "a", "c"))

    vocab.save(tmp_path)

    assert Vocabulary.load(tmp_path, "items") == vocab


def test_vocab_version_format():
    users = Vocabulary("users", ("u1", "u2"))
    items = Vocabulary("items", ("i1", "i2", "i3"))

    version = vocabulary_version(users, items)

    assert re.fullmatch(r"u2-i3-[0-9a-f]{12}", version)
    assert version == vocabulary_version(Vocabulary("users", ("u1", "u2")), items)


def test_vocab_version_order_sensitive():
    items = Vocabulary("items", ("i1",))

    forward = vocabulary_version(Vocabulary("users", ("u1", "u2")), items)
    reverse = vocabulary_version(Vocabulary("users", ("u2", "u1")), items)

    assert forward != reverse
