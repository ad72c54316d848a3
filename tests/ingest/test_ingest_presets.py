"""MovieLens and RecBole files ingest without a spec written by hand."""

import re

import pytest

from recsys_peft.dataset.log import load_attributes
from recsys_peft.ingest.ingest import ingest_source
from recsys_peft.ingest.presets import detect_source_spec
from recsys_peft.ingest.store import read_interactions


def ingest_detected(path, store, now):
    spec, raw_dir = detect_source_spec(path)
    return spec, ingest_source(spec, raw_dir, store, now=now)


def test_presets_movielens_100k(tmp_path, now):
    raw = tmp_path / "ml-100k"
    raw.mkdir()
    (raw / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n", encoding="utf-8")
    (raw / "u.user").write_text("196|49|M|writer|55105\n186|39|F|executive|00000\n", encoding="utf-8")
    genres = "|".join(["0"] * 19)
    (raw / "u.item").write_bytes(f"242|Kolya (1996)|24-Jan-1997||http://x|{genres}\n".encode("latin-1")
                                 + f"302|L\xe9on (1994)|01-Jan-1994||http://y|{genres}\n".encode("latin-1"))

    spec, summary = ingest_detected(raw / "u.data", tmp_path / "store", now)

    assert spec.name == "movielens-100k"
    assert summary.rows_written == 2
    events = read_interactions(tmp_path / "store")
    assert events.column("user_id").to_pylist() == ["196", "186"]
    assert events.column("weight").to_pylist() == [3.0, 3.0]
    users = load_attributes(tmp_path / "store", "user")
    assert users.column("occupation").to_pylist() == ["writer", "executive"]
    items = load_attributes(tmp_path / "store", "item")
    assert items.column("title").to_pylist() == ["Kolya (1996)", "L\xe9on (1994)"]


def test_presets_movielens_dat(tmp_path, now):
    raw = tmp_path / "ml-1m"
    raw.mkdir()
    (raw / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n", encoding="utf-8")
    (raw / "users.dat").write_text("1::F::1::10::48067\n", encoding="utf-8")
    (raw / "movies.dat").write_text("1193::Star Wars: Episode IV (1977)::Action|Sci-Fi\n661::Toy::Comedy\n",
                                    encoding="latin-1")

    spec, summary = ingest_detected(raw, tmp_path / "store", now)

    assert spec.name == "movielens-dat"
    assert summary.rows_written == 2
    items = load_attributes(tmp_path / "store", "item")
    assert items.column("title").to_pylist() == ["Star Wars: Episode IV (1977)", "Toy"]
    assert items.column("genres").to_pylist() == [["Action", "Sci-Fi"], ["Comedy"]]


def test_presets_movielens_csv(tmp_path, now):
    raw = tmp_path / "ml-25m"
    raw.mkdir()
    (raw / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,296,5.0,1147880044\n", encoding="utf-8")
    (raw / "movies.csv").write_text('movieId,title,genres\n296,"Pulp Fiction, The (1994)",Crime|Drama\n',
                                    encoding="utf-8")

    spec, summary = ingest_detected(raw / "ratings.csv", tmp_path / "store", now)

    assert spec.name == "movielens-csv"
    assert summary.rows_written == 1
    items = load_attributes(tmp_path / "store", "item")
    assert items.column("title").to_pylist() == ["Pulp Fiction, The (1994)"]


def test_presets_recbole(tmp_path, now):
    raw = tmp_path / "recbole"
    raw.mkdir()
    (raw / "shop.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t4\t100\n", encoding="utf-8")
    (raw / "shop.item").write_text("item_id:token\ttags:token_seq\n10\tred big\n", encoding="utf-8")

    spec, summary = ingest_detected(raw, tmp_path / "store", now)

    assert spec.name == "shop"
    assert spec.users is None
    assert summary.rows_written == 1
    assert load_attributes(tmp_path / "store", "item").column("tags").to_pylist() == [["red", "big"]]


def test_presets_unrecognized(tmp_path):
    (tmp_path / "clicks.csv").write_text("a,b\n", encoding="utf-8")

    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'clicks.csv'}: no recognized data set")):
        detect_source_spec(tmp_path / "clicks.csv")
