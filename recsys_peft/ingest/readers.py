"""Readers: raw files to pyarrow tables of string columns plus the source line of each row.

Every column is read as a string, so that validation, not the reader, decides what a value
means. Then ``"12"`` and ``12`` become the same id, and an unparsable timestamp becomes a
quarantined row instead of a reader crash. ``source_line`` is
the 1-based line of the row in the file (the header is line 1 for delimited files), or the
0-based row index for parquet.

A JSON Lines value that is a boolean, an array or an object also keeps its JSON text, and
its type name goes to a companion column named by ``json_type_column``, so that validation
can quarantine it where only a string or a number is an acceptable value (ids).

``iter_raw_batches`` streams a file in batches so that memory does not grow with its size;
``read_raw_table`` reads a whole (small) file, as attribute files are. A name ending in
``.gz`` is read as gzip, and a 0-byte file, compressed or not, has no rows and no columns.
"""

from __future__ import annotations

import glob
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recsys_peft.ingest.raw_files import open_text
from recsys_peft.ingest.read_errors import first_line_with_wrong_field_count, row_larger_than_block, undecodable_line
from recsys_peft.ingest.spec import FileLayout

LOGGER = logging.getLogger(__name__)

SOURCE_LINE = "source_line"
BLOCK_BYTES = 1 << 22   # CSV block: 4 MiB kept peak memory at a quarter of 16 MiB blocks, as fast
# The largest block tried for a file with a row larger than BLOCK_BYTES. pyarrow keeps a few
# blocks in memory at once (an estimate), so this cap also bounds the memory one long row takes.
MAX_BLOCK_BYTES = 1 << 28
_STRADDLING_ROW = "straddling object straddles two block boundaries"
PYTHON_BATCH_ROWS = 65_536
_DEFAULT_DELIMITERS = {"csv": ",", "tsv": "\t", "recbole": "\t"}
_GLOB_CHARACTERS = set("*?[")
_JSON_TYPE_SUFFIX = ":json_type"


def json_type_column(name: str) -> str:
    """Name the companion column of JSON Lines column ``name``.

    It is present only in a batch where ``name`` has a boolean, array or object value, and contains
    ``"boolean"``, ``"array"`` or ``"object"`` for those rows and null for the others.
    """
    return f"{name}{_JSON_TYPE_SUFFIX}"


def is_json_type_column(name: str) -> bool:
    """Tell whether ``name`` is a companion column made by ``json_type_column``."""
    return name.endswith(_JSON_TYPE_SUFFIX)


class EmptyInputError(ValueError):
    """A file that is empty where rows were expected."""


def list_input_files(raw_dir: Path, pattern: str) -> list[Path]:
    """Resolve a spec's ``file``: one file, every visible file in a folder, or a glob; sorted by name.

    Raises ``FileNotFoundError`` when nothing matches.
    """
    path = raw_dir / pattern
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise FileNotFoundError(f"input folder is empty: {path}")
        return files
    if _GLOB_CHARACTERS & set(pattern):
        files = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file())
        if files:
            return files
        raise FileNotFoundError(f"no input file matches: {path}")
    raise FileNotFoundError(f"input file not found: {path}")


def _recbole_header(path: Path, encoding: str) -> list[str]:
    # RecBole atomic files type each header field: "user_id:token	rating:float".
    with open_text(path, encoding) as handle:
        header = handle.readline().rstrip("\r\n")
    return [name.split(":", 1)[0] for name in header.split("\t")]


def _with_lines(table: pa.Table, first_line: int) -> pa.Table:
    lines = np.arange(first_line, first_line + table.num_rows, dtype=np.int64)
    return table.append_column(SOURCE_LINE, pa.array(lines))


def _iter_jsonl(path: Path, encoding: str) -> Iterator[pa.Table]:
    """Parse JSON Lines into string columns, with the 1-based line number of each record.

    The file is parsed here, not by pyarrow, because pyarrow infers one type per column and
    fails on a column that contains both ``12`` and ``"12"``, and it skips blank lines without
    counting them. Non-string values keep their JSON text: ``12`` becomes ``"12"``, and a
    boolean, array or object also gets its type in the ``json_type_column`` companion. Batches
    may have different columns when records do: a key missing from a record is null.
    """
    records: list[dict] = []
    lines: list[int] = []

    def as_text(value: object) -> str | None:
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value)

    def flush() -> pa.Table:
        names = dict.fromkeys(name for record in records for name in record)
        columns = {}
        for name in names:
            values = [r.get(name) for r in records]
            columns[name] = pa.array([as_text(v) for v in values], pa.string())
            types = [_json_type_name(v) for v in values]
            if any(types):
                columns[json_type_column(name)] = pa.array(types, pa.string())
        columns[SOURCE_LINE] = pa.array(lines, pa.int64())
        return pa.table(columns)

    with open_text(path, encoding) as handle:
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
            if len(records) == PYTHON_BATCH_ROWS:
                yield flush()
                records, lines = [], []
    if records:
        yield flush()


def _json_type_name(value: object) -> str | None:
    """Return the JSON type name of a boolean, array or object, or None for a string, number or null."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return None


def _iter_split_lines(path: Path, layout: FileLayout, delimiter: str) -> Iterator[pa.Table]:
    """Split lines on a delimiter of several characters (MovieLens ``::``), which pyarrow cannot."""
    with open_text(path, layout.encoding) as handle:
        names = list(layout.column_names) if layout.column_names else None
        number = 0
        if names is None:
            header = handle.readline()
            number = 1
            if not header:
                return
            names = header.rstrip("\r\n").split(delimiter)
        rows: list[list[str]] = []
        first_line = number + 1
        for number, text in enumerate(handle, start=number + 1):
            fields = text.rstrip("\r\n").split(delimiter)
            if len(fields) != len(names):
                raise ValueError(
                    f"{path}: cannot be read: line {number} has {len(fields)} fields, expected "
                    f"{len(names)} ({names}) separated by {delimiter!r}"
                )
            rows.append(fields)
            if len(rows) == PYTHON_BATCH_ROWS:
                yield _split_rows_table(names, rows, first_line)
                rows, first_line = [], number + 1
        if rows:
            yield _split_rows_table(names, rows, first_line)


def _split_rows_table(names: list[str], rows: list[list[str]], first_line: int) -> pa.Table:
    columns = {name: pa.array([row[i] or None for row in rows], pa.string()) for i, name in enumerate(names)}
    return _with_lines(pa.table(columns), first_line)


def _iter_delimited(path: Path, fmt: str, layout: FileLayout, delimiter: str) -> Iterator[pa.Table]:
    """Stream a one-character-delimited file with pyarrow, growing the block for a row larger than it.

    pyarrow (26.0) fails on a row that spans more than two blocks. Then the file is opened again with
    a block four times larger, and the rows already yielded are skipped, up to ``MAX_BLOCK_BYTES``.
    """
    block_size = BLOCK_BYTES
    rows_yielded = 0
    while True:
        try:
            for table in _iter_delimited_blocks(path, fmt, layout, delimiter, block_size, rows_yielded):
                yield table
                rows_yielded += table.num_rows
            return
        except pa.ArrowInvalid as error:
            if _STRADDLING_ROW not in str(error):
                raise
            if block_size >= MAX_BLOCK_BYTES:
                raise ValueError(row_larger_than_block(path, MAX_BLOCK_BYTES)) from error
            block_size = min(block_size * 4, MAX_BLOCK_BYTES)
            LOGGER.info("read file=%s rows_read=%d block_mib=%d: a row is larger than the block, reading again "
                        "with larger blocks", path, rows_yielded, block_size >> 20)


def _iter_delimited_blocks(path: Path, fmt: str, layout: FileLayout, delimiter: str, block_size: int,
                           rows_to_skip: int) -> Iterator[pa.Table]:
    """Yield the rows of ``path`` after the first ``rows_to_skip``, read in blocks of ``block_size`` bytes."""
    names: list[str] | None
    if layout.column_names:
        names, skip = list(layout.column_names), 0
    elif fmt == "recbole":
        names, skip = _recbole_header(path, layout.encoding), 1
    else:
        names, skip = None, 0
    read_options = pacsv.ReadOptions(column_names=names, skip_rows=skip, skip_rows_after_names=rows_to_skip,
                                     block_size=block_size, encoding=layout.encoding)
    # Quoting is on for commas only: MovieLens titles in tab- and pipe-separated files contain
    # bare quotes. A blank line stays a row (of nulls, so validation quarantines it) to keep
    # source_line equal to the line number. A quoted value that spans lines is read as one row,
    # so source_line of each later row is one too small for each extra line.
    parse_options = pacsv.ParseOptions(delimiter=delimiter, quote_char='"' if delimiter == "," else False,
                                       ignore_empty_lines=False)
    if names is None:
        try:
            header = pacsv.open_csv(path, read_options=read_options, parse_options=parse_options).schema.names
        except pa.ArrowInvalid as error:
            if "Empty CSV file" in str(error):
                return
            raise
    else:
        header = names
    # Only an empty field is missing: ids such as "NA", "null" or "nan" are kept as strings.
    convert_options = pacsv.ConvertOptions(column_types={name: pa.string() for name in header}, strings_can_be_null=True,
                                           quoted_strings_can_be_null=False, null_values=[""])
    reader = pacsv.open_csv(path, read_options, parse_options, convert_options)
    first_line = (1 if names is not None and skip == 0 else 2) + rows_to_skip
    emitted = False
    for batch in reader:
        emitted = True
        table = pa.Table.from_batches([batch])
        yield _with_lines(table, first_line)
        first_line += table.num_rows
    if not emitted and rows_to_skip == 0:  # a header and no rows: keep the columns so that they can be checked
        yield _with_lines(pa.table({name: pa.array([], pa.string()) for name in header}), first_line)


def _iter_parquet(path: Path) -> Iterator[pa.Table]:
    parquet = pq.ParquetFile(path)
    strings = pa.schema([pa.field(name, pa.string()) for name in parquet.schema_arrow.names])
    if parquet.metadata.num_rows == 0:  # no rows: keep the columns so that they can be checked
        yield _with_lines(strings.empty_table(), 0)
        return
    first = 0
    for batch in parquet.iter_batches(batch_size=1 << 20):
        table = pa.Table.from_batches([batch]).cast(strings)
        yield _with_lines(table, first)
        first += table.num_rows


def iter_raw_batches(path: str | Path, fmt: str, layout: FileLayout = FileLayout()) -> Iterator[pa.Table]:
    """Yield ``path`` in batches of string columns plus ``source_line`` (int64).

    A file with a header and no rows yields one empty batch with its columns. A 0-byte file,
    or a gzip file whose content is empty, yields nothing. Raises
    ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file when it cannot
    be parsed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    if path.stat().st_size == 0:
        return
    delimiter = layout.delimiter or _DEFAULT_DELIMITERS.get(fmt)
    try:
        if fmt in _DEFAULT_DELIMITERS:
            assert delimiter is not None
            if len(delimiter) > 1:
                yield from _iter_split_lines(path, layout, delimiter)
            else:
                yield from _iter_delimited(path, fmt, layout, delimiter)
        elif fmt == "jsonl":
            yield from _iter_jsonl(path, layout.encoding)
        elif fmt == "parquet":
            yield from _iter_parquet(path)
        else:
            raise ValueError(f"{path}: format {fmt!r} is not supported")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, EOFError, UnicodeDecodeError) as error:
        if isinstance(error, UnicodeDecodeError) or "invalid UTF8" in str(error):
            message = undecodable_line(path, layout, delimiter if fmt != "jsonl" else None, fmt == "recbole")
            if message is not None:
                raise ValueError(message) from error
        where = ""
        if "columns, got" in str(error) and delimiter is not None and len(delimiter) == 1:
            line = first_line_with_wrong_field_count(path, layout, delimiter)
            where = f" (line {line})" if line is not None else ""
        raise ValueError(f"{path}: cannot be read as {fmt}{where}: {error}") from error


def read_raw_table(path: str | Path, fmt: str, layout: FileLayout = FileLayout()) -> pa.Table:
    """Read all of ``path`` into string columns plus ``source_line`` (int64)."""
    batches = list(iter_raw_batches(path, fmt, layout))
    if not batches:
        return pa.table({SOURCE_LINE: pa.array([], pa.int64())})
    return pa.concat_tables(batches, promote_options="permissive")


def strip_strings(table: pa.Table, columns: list[str]) -> pa.Table:
    """Trim whitespace in ``columns`` and turn empty strings into nulls."""
    for name in columns:
        index = table.column_names.index(name)
        stripped = pc.utf8_trim_whitespace(table.column(name))
        cleaned = pc.if_else(pc.equal(stripped, ""), pa.scalar(None, pa.string()), stripped)
        table = table.set_column(index, name, cleaned)
    return table
