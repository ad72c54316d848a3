"""Readers: one raw file to a pyarrow table of string columns plus its source line numbers.

Every column is read as a string so that validation, not the reader, decides what a value
means: ``"12"`` and ``12`` become the same id, and an unparsable timestamp becomes a quarantined
row instead of a reader crash. ``source_line`` is the 1-based line of the row in the file (the
header is line 1 for delimited files), or the 0-based row index for parquet.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

SOURCE_LINE = "source_line"


def _recbole_header(path: Path) -> list[str]:
    # RecBole atomic files type each header field: "user_id:token	rating:float".
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        header = handle.readline().rstrip("\r\n")
    return [name.split(":", 1)[0] for name in header.split("\t")]


def _read_jsonl(path: Path) -> tuple[pa.Table, list[int]]:
    """Read JSON Lines into string columns, with the 1-based line number of each record.

    The file is parsed here, not by pyarrow, because pyarrow infers one type per column and
    fails on a column that contains both ``12`` and ``"12"``, and it skips blank lines without
    counting them. Non-string values keep their JSON text: ``12`` becomes ``"12"``.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    records: list[dict] = []
    lines: list[int] = []
    names: dict[str, None] = {}  # column names in order of first appearance
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}: line {number} is not valid JSON: {error}") from error
            if not isinstance(record, dict):
                raise ValueError(f"{path}: line {number} is not a JSON object: {text.strip()[:80]!r}")
            records.append(record)
            lines.append(number)
            names.update(dict.fromkeys(record))

    def as_text(value: object) -> str | None:
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value)

    if not names:  # only blank lines or empty objects: no columns, so no rows
        return pa.table({}), []
    columns = {name: pa.array([as_text(r.get(name)) for r in records], pa.string()) for name in names}
    return pa.table(columns), lines


def _read_delimited(path: Path, delimiter: str, names: list[str] | None) -> pa.Table:
    read_options = pacsv.ReadOptions(
        column_names=names, skip_rows=1 if names else 0, block_size=1 << 24
    )
    # Quoting is off for tab-separated files: MovieLens titles contain bare quotes.
    # NOTE: pyarrow skips blank lines and reads a quoted field that spans lines as one row, so
    # source_line is too small by one for each blank or continuation line above a row.
    parse_options = pacsv.ParseOptions(delimiter=delimiter, quote_char='"' if delimiter == "," else False)
    if names is None:
        header = pacsv.open_csv(path, read_options=read_options, parse_options=parse_options).schema.names
    else:
        header = names
    convert_options = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in header}, strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )
    return pacsv.read_csv(path, read_options, parse_options, convert_options)


def read_raw_table(path: str | Path, fmt: str) -> pa.Table:
    """Read ``path`` in format ``fmt`` into string columns plus ``source_line`` (int64).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file when it
    cannot be parsed at all.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    lines: list[int] | None = None
    try:
        if path.stat().st_size == 0:
            return pa.table({SOURCE_LINE: pa.array([], pa.int64())})
        if fmt == "recbole":
            table = _read_delimited(path, "\t", _recbole_header(path))
            first_line = 2
        elif fmt in ("csv", "tsv"):
            table = _read_delimited(path, "," if fmt == "csv" else "\t", None)
            first_line = 2
        elif fmt == "jsonl":
            table, lines = _read_jsonl(path)
        elif fmt == "parquet":
            table = pq.read_table(path)
            table = table.cast(pa.schema([pa.field(n, pa.string()) for n in table.column_names]))
            first_line = 0
        else:
            raise ValueError(f"{path}: format {fmt!r} is not supported")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot be read as {fmt}: {error}") from error

    if lines is None:
        lines = list(range(first_line, first_line + table.num_rows))
    return table.append_column(SOURCE_LINE, pa.array(lines, pa.int64()))


def strip_strings(table: pa.Table, columns: list[str]) -> pa.Table:
    """Trim whitespace in ``columns`` and turn empty strings into nulls."""
    for name in columns:
        index = table.column_names.index(name)
        stripped = pc.utf8_trim_whitespace(table.column(name))
        cleaned = pc.if_else(pc.equal(stripped, ""), pa.scalar(None, pa.string()), stripped)
        table = table.set_column(index, name, cleaned)
    return table
