"""Source specs for well-known layouts, so that they ingest without a spec written by hand.

Recognized, by file name:

- MovieLens 100K: ``u.data`` (tab-separated, no header), ``u.user`` and ``u.item`` (``|``).
- MovieLens 1M and 10M: ``ratings.dat``, ``users.dat``, ``movies.dat`` (``::``, no header).
- MovieLens 20M, 25M, 32M and the "latest" sets: ``ratings.csv`` and ``movies.csv`` (header).
- RecBole atomic files: ``NAME.inter`` with optional ``NAME.user`` and ``NAME.item``, whose
  typed headers (``user_id:token``) name the columns.

Column layouts are those of the MovieLens README files (files.grouplens.org) and of RecBole's
atomic file documentation.
"""

from __future__ import annotations

from pathlib import Path

from recsys_peft.ingest.readers import open_text
from recsys_peft.ingest.spec import AttributeSource, FileLayout, InteractionSource, SourceSpec

_RATINGS = ("user_id", "item_id", "rating", "timestamp")
_WEIGHTED = {"user_id": "user_id", "item_id": "item_id", "timestamp": "timestamp", "weight": "rating"}
_ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                  "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
                  "Sci-Fi", "Thriller", "War", "Western")


def _movielens_100k(folder: Path) -> SourceSpec:
    users = items = None
    if (folder / "u.user").is_file():
        users = AttributeSource("u.user", "user_id", {"age": "age", "gender": "gender", "occupation": "occupation"},
                                layout=FileLayout("|", ("user_id", "age", "gender", "occupation", "zip_code")))
    if (folder / "u.item").is_file():
        names = ("item_id", "title", "release_date", "video_release_date", "imdb_url") + _ML100K_GENRES
        items = AttributeSource("u.item", "item_id", {"title": "title", "release_date": "release_date"},
                                layout=FileLayout("|", names, "latin-1"))
    return SourceSpec("movielens-100k", "csv",
                      InteractionSource("u.data", dict(_WEIGHTED), layout=FileLayout("\t", _RATINGS)),
                      users=users, items=items, id_type="int")


def _movielens_dat(folder: Path) -> SourceSpec:
    users = items = None
    if (folder / "users.dat").is_file():
        users = AttributeSource("users.dat", "user_id", {"gender": "gender", "age": "age", "occupation": "occupation"},
                                layout=FileLayout("::", ("user_id", "gender", "age", "occupation", "zip_code")))
    if (folder / "movies.dat").is_file():
        # NOTE: MovieLens 1M's movies.dat is Latin-1; latin-1 also reads any other file without
        # failing, but shows UTF-8 titles (10M) with two characters for each accented letter.
        items = AttributeSource("movies.dat", "item_id", {"title": "title", "genres": "genres"}, {"genres": "|"},
                                layout=FileLayout("::", ("item_id", "title", "genres"), "latin-1"))
    return SourceSpec("movielens-dat", "csv",
                      InteractionSource("ratings.dat", dict(_WEIGHTED), layout=FileLayout("::", _RATINGS)),
                      users=users, items=items, id_type="int")


def _movielens_csv(folder: Path) -> SourceSpec:
    items = None
    if (folder / "movies.csv").is_file():
        items = AttributeSource("movies.csv", "movieId", {"title": "title", "genres": "genres"}, {"genres": "|"})
    columns = {"user_id": "userId", "item_id": "movieId", "timestamp": "timestamp", "weight": "rating"}
    return SourceSpec("movielens-csv", "csv", InteractionSource("ratings.csv", columns), items=items, id_type="int")


def _recbole_fields(path: Path) -> dict[str, str]:
    """Return the header of a RecBole atomic file as {name: type}."""
    with open_text(path, "utf-8") as handle:
        header = handle.readline().rstrip("\r\n")
    fields = {}
    for field in header.split("\t"):
        name, _, kind = field.partition(":")
        fields[name] = kind
    return fields


def _recbole_attributes(path: Path, id_field: str) -> AttributeSource | None:
    if not path.is_file():
        return None
    fields = _recbole_fields(path)
    if id_field not in fields:
        raise ValueError(f"{path}: RecBole header has no {id_field!r} field; found {list(fields)}")
    attributes = {name: name for name in fields if name != id_field}
    multi = {name: " " for name, kind in fields.items() if kind == "token_seq" and name != id_field}
    return AttributeSource(path.name, id_field, attributes, multi)


def _recbole(inter: Path) -> SourceSpec:
    fields = _recbole_fields(inter)
    missing = [name for name in ("user_id", "item_id", "timestamp") if name not in fields]
    if missing:
        raise ValueError(f"{inter}: RecBole header lacks {missing}; found {list(fields)}")
    columns = {"user_id": "user_id", "item_id": "item_id", "timestamp": "timestamp"}
    if "rating" in fields:
        columns["weight"] = "rating"
    stem = inter.name.removesuffix(".inter")
    return SourceSpec(stem, "recbole", InteractionSource(inter.name, columns),
                      users=_recbole_attributes(inter.with_name(f"{stem}.user"), "user_id"),
                      items=_recbole_attributes(inter.with_name(f"{stem}.item"), "item_id"))


def detect_source_spec(path: str | Path) -> tuple[SourceSpec, Path]:
    """Return the spec of a recognized data set and the folder its files are in.

    ``path`` is the data set's folder or its interaction file. Raises ``ValueError`` listing
    the recognized names when none is found.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path}")
    folder = path if path.is_dir() else path.parent
    name = None if path.is_dir() else path.name
    if name in (None, "u.data") and (folder / "u.data").is_file():
        return _movielens_100k(folder), folder
    if name in (None, "ratings.dat") and (folder / "ratings.dat").is_file():
        return _movielens_dat(folder), folder
    if name in (None, "ratings.csv") and (folder / "ratings.csv").is_file():
        return _movielens_csv(folder), folder
    inters = [path] if name and name.endswith(".inter") else sorted(folder.glob("*.inter"))
    if len(inters) == 1:
        return _recbole(inters[0]), folder
    raise ValueError(
        f"{path}: no recognized data set; expected u.data, ratings.dat, ratings.csv or one RecBole "
        f"NAME.inter file (found {len(inters)} .inter files), or pass a source spec"
    )
