"""Locate the line behind a reader error, so that the message can name it.

These helpers run only after a read has failed. Each one scans the file again and returns a
line number or a message for the user.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from recsys_peft.ingest.raw_files import open_binary, open_text
from recsys_peft.ingest.spec import FileLayout

_SCAN_BYTES = 1 << 20


def first_line_with_wrong_field_count(path: Path, layout: FileLayout, delimiter: str) -> int | None:
    """Return the number of the first line whose field count differs from the first line's.

    Only called after a parse error, to say where it is. Commas honour quotes, like the reader.
    """
    with open_text(path, layout.encoding) as handle:
        if delimiter == ",":
            rows = ((number, len(fields)) for number, fields in enumerate(csv.reader(handle), start=1))
        else:
            rows = ((number, len(text.rstrip("\r\n").split(delimiter))) for number, text in enumerate(handle, start=1))
        expected = len(layout.column_names) if layout.column_names else None
        for number, count in rows:
            if count <= 1 and expected != 1:
                continue  # a blank line, which the reader keeps as a row of nulls
            if expected is None:
                expected = count
            elif count != expected:
                return number
    return None


def _line_lengths(path: Path) -> Iterator[tuple[int, int]]:
    """Yield (line number, length in bytes) of each line, reading a bounded chunk at a time."""
    number, length = 1, 0
    with open_binary(path) as handle:
        for chunk in iter(lambda: handle.read(_SCAN_BYTES), b""):
            start = 0
            end = chunk.find(b"\n", start)
            while end >= 0:
                yield number, length + end - start
                number, length, start = number + 1, 0, end + 1
                end = chunk.find(b"\n", start)
            length += len(chunk) - start
    if length:
        yield number, length


def row_larger_than_block(path: Path, block_bytes: int) -> str:
    """Return the message for a row that does not fit in the CSV reader's largest block.

    It names the first line longer than the block, or else the longest line.
    """
    longest_number, longest = 0, -1
    for number, length in _line_lengths(path):
        if length > longest:
            longest_number, longest = number, length
        if length > block_bytes:
            break
    return (f"{path}: line {longest_number} is {longest / 2**20:.1f} MiB, and a line larger than the CSV "
            f"reader's maximum block of {block_bytes >> 20} MiB cannot be read. Shorten or drop its long "
            f"field before ingest, or convert the file to JSON Lines, which is read line by line "
            f"without this limit.")


def _field_at(line: str, delimiter: str, offset: int) -> int:
    """Return the index of the field that contains character ``offset`` of ``line``."""
    prefix = line[:offset + 1]
    if delimiter == ",":
        return len(next(csv.reader([prefix]), [""])) - 1
    return prefix.count(delimiter)


def _split_fields(line: str, delimiter: str) -> list[str]:
    if delimiter == ",":
        return next(csv.reader([line]), [])
    return line.split(delimiter)


def undecodable_line(path: Path, layout: FileLayout, delimiter: str | None, typed_header: bool = False) -> str | None:
    """Return a message naming the first line that is not valid in ``layout.encoding``, or None.

    For a delimited file (``delimiter`` given) it also names the column and shows the raw bytes
    of the field. The column names come from ``layout.column_names`` or else from the file's
    first line, without the ``:type`` suffixes of RecBole headers when ``typed_header`` is set.
    """
    encoding = layout.encoding
    fix = (f"Set `encoding:` for this file in the source spec to the file's encoding "
           f"(for example `encoding: latin-1` under `interactions:`).")
    names = list(layout.column_names) if layout.column_names else None
    with open_binary(path) as handle:
        for number, raw in enumerate(handle, start=1):
            raw = raw.rstrip(b"\r\n")
            text = raw.decode(encoding, errors="surrogateescape")
            if delimiter is not None and names is None:
                names = _split_fields(text, delimiter)
                if typed_header:
                    names = [name.split(":", 1)[0] for name in names]
                header_line = True
            else:
                header_line = False
            try:
                raw.decode(encoding)
                continue
            except UnicodeDecodeError as error:
                bad_byte = error.start
            if delimiter is None:
                return f"{path}: line {number} is not valid {encoding} text: {raw[:80]!r}. {fix}"

            offset = len(raw[:bad_byte].decode(encoding, errors="surrogateescape"))
            index = _field_at(text, delimiter, offset)
            value = _split_fields(text, delimiter)[index].encode(encoding, errors="surrogateescape")
            if header_line:
                where = f"header field {index + 1}"
            elif index < len(names):
                where = f"column {names[index]!r}"
            else:
                where = f"field {index + 1}"
            return f"{path}: line {number}, {where}: value {value[:80]!r} is not valid {encoding} text. {fix}"
    return None
