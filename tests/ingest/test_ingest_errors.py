"""Ingest errors: a missing file or a missing column stops the run before anything is written."""

import re
from pathlib import Path

import pytest

from recsys_peft.ingest.ingest import ingest_source
from recsys_peft.ingest.spec import AttributeSource

EVENTS = "user,item,ts,rating\nu1,a,100,5\nu2,b,200,4\n"


def file_contents(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``, keyed by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_ingest_missing_interactions_file(raw_dir, tmp_path, make_spec, now):
    store = tmp_path / "store"
    expected = re.escape(f"input file not found: {raw_dir / 'events.csv'} (named by source spec test-source)")

    with pytest.raises(FileNotFoundError, match=expected):
        ingest_source(make_spec(), raw_dir, store, now=now)

    assert not store.exists()


def test_ingest_missing_attribute_file(raw_dir, tmp_path, make_spec, now):
    (raw_dir / "events.csv").write_text(EVENTS, encoding="utf-8")
    spec = make_spec(users=AttributeSource("users.csv", "user", {"age": "age"}))
    store = tmp_path / "store"

    with pytest.raises(FileNotFoundError, match=re.escape(f"input file not found: {raw_dir / 'users.csv'}")):
        ingest_source(spec, raw_dir, store, now=now)

    assert not store.exists()


def test_ingest_interaction_columns_differ(raw_dir, tmp_path, make_spec, now):
    # The spec maps timestamp to "ts" and weight to "rating", but the file has "time" and "score".
    (raw_dir / "events.csv").write_text("user,item,time,score\nu1,a,100,5\n", encoding="utf-8")
    store = tmp_path / "store"
    expected = re.escape(
        f"{raw_dir / 'events.csv'}: missing column(s) ['ts', 'rating'] required by source spec "
        "test-source; found columns ['user', 'item', 'time', 'score']"
    )

    with pytest.raises(ValueError, match=expected):
        ingest_source(make_spec(), raw_dir, store, now=now)

    assert not store.exists()


def test_ingest_attribute_columns_differ(raw_dir, tmp_path, make_spec, now):
    (raw_dir / "events.csv").write_text(EVENTS, encoding="utf-8")
    (raw_dir / "users.csv").write_text("uid,age\nu1,30\n", encoding="utf-8")
    spec = make_spec(users=AttributeSource("users.csv", "user", {"age": "age", "gender": "sex"}))
    store = tmp_path / "store"
    expected = re.escape(f"{raw_dir / 'users.csv'}: missing column(s) ['user', 'sex']")

    with pytest.raises(ValueError, match=expected):
        ingest_source(spec, raw_dir, store, now=now)

    assert not store.exists()


def test_ingest_attribute_empty_id(raw_dir, tmp_path, make_spec, now):
    (raw_dir / "events.csv").write_text(EVENTS, encoding="utf-8")
    (raw_dir / "users.csv").write_text("user,age\nu1,30\n ,40\n", encoding="utf-8")
    spec = make_spec(users=AttributeSource("users.csv", "user", {"age": "age"}))
    store = tmp_path / "store"

    with pytest.raises(ValueError, match=re.escape(f"{raw_dir / 'users.csv'}: column 'user' has 1 empty id(s)")):
        ingest_source(spec, raw_dir, store, now=now)

    assert not store.exists()


def test_ingest_failure_keeps_previous_store(raw_dir, tmp_path, make_spec, now):
    events = raw_dir / "events.csv"
    events.write_text(EVENTS, encoding="utf-8")
    store = tmp_path / "store"
    ingest_source(make_spec(), raw_dir, store, now=now)
    before = file_contents(store)
    siblings_before = sorted(p.name for p in tmp_path.iterdir())

    events.write_text("user,item,when,rating\nu3,c,300,1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['ts'\]"):
        ingest_source(make_spec(), raw_dir, store, now=now)

    assert file_contents(store) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == siblings_before


def test_ingest_invalid_utf8_keeps_previous_store(raw_dir, tmp_path, make_spec, now):
    events = raw_dir / "events.csv"
    events.write_text(EVENTS, encoding="utf-8")
    store = tmp_path / "store"
    ingest_source(make_spec(), raw_dir, store, now=now)
    before = file_contents(store)

    events.write_bytes(b"user,item,ts,rating\nu3,c,300,1\nu\xe94,d,400,2\n")
    with pytest.raises(ValueError, match=re.escape(f"{events}: line 3, column 'user': value b'u\\xe94' "
                                                   f"is not valid utf-8 text")):
        ingest_source(make_spec(), raw_dir, store, now=now)

    assert file_contents(store) == before
