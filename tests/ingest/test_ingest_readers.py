"""Readers: every format comes back as string columns plus the source line of each row."""

import gzip
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys_peft.ingest import readers
from recsys_peft.ingest.readers import SOURCE_LINE, read_raw_table, strip_strings
from recsys_peft.ingest.spec import FileLayout


def test_read_recbole_header_types_stripped(tmp_path):
    path = tmp_path / "ml.inter"
    path.write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "196\t242\t3\t881250949\n"
        "186\t302\t3\t891717742\n",
        encoding="utf-8",
    )

    table = read_raw_table(path, "recbole")

    assert table.column_names == ["user_id", "item_id", "rating", "timestamp", SOURCE_LINE]
    assert table.column("user_id").to_pylist() == ["196", "186"]
    assert table.column("timestamp").to_pylist() == ["881250949", "891717742"]
    assert table.column(SOURCE_LINE).to_pylist() == [2, 3]


def test_read_recbole_bare_quote(tmp_path):
    # Tab-separated files are read without quoting, so a lone quote stays in the value.
    path = tmp_path / "ml.item"
    path.write_text('item_id:token\tmovie_title:token_seq\n1\tThe "Big One\n2\tPlain\n', encoding="utf-8")

    table = read_raw_table(path, "recbole")

    assert table.column("movie_title").to_pylist() == ['The "Big One', "Plain"]


def test_read_csv_strings_and_lines(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user,item,ts\n007,a,100\n8,,200\n", encoding="utf-8")

    table = read_raw_table(path, "csv")

    assert table.schema.field("user").type == pa.string()
    assert table.column("user").to_pylist() == ["007", "8"]
    assert table.column("item").to_pylist() == ["a", None]
    assert table.column(SOURCE_LINE).to_pylist() == [2, 3]


def test_read_csv_quoted_comma(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text('item,title\n1,"Hello, World"\n', encoding="utf-8")

    table = read_raw_table(path, "csv")

    assert table.column("title").to_pylist() == ["Hello, World"]


def test_read_tsv_strings_and_lines(tmp_path):
    path = tmp_path / "events.tsv"
    path.write_text("user\titem\tts\n1\t10\t100\n2\t20\t200\n3\t30\t300\n", encoding="utf-8")

    table = read_raw_table(path, "tsv")

    assert table.column_names == ["user", "item", "ts", SOURCE_LINE]
    assert table.column("item").to_pylist() == ["10", "20", "30"]
    assert table.column(SOURCE_LINE).to_pylist() == [2, 3, 4]


def test_read_csv_gzip(tmp_path):
    path = tmp_path / "events.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("user,item,ts\n1,10,100\n2,20,200\n")

    table = read_raw_table(path, "csv")

    assert table.column("user").to_pylist() == ["1", "2"]
    assert table.column(SOURCE_LINE).to_pylist() == [2, 3]


def test_read_jsonl_numbers_as_strings(tmp_path):
    # The same column contains a number and a string, and both must come back as "12".
    path = tmp_path / "events.jsonl"
    path.write_text(
        '{"user": 12, "item": "a", "ts": 100, "rating": 4.5}\n'
        '{"user": "12", "item": "b", "ts": "200"}\n',
        encoding="utf-8",
    )

    table = read_raw_table(path, "jsonl")

    assert table.column_names == ["user", "item", "ts", "rating", SOURCE_LINE]
    assert table.column("user").to_pylist() == ["12", "12"]
    assert table.column("ts").to_pylist() == ["100", "200"]
    assert table.column("rating").to_pylist() == ["4.5", None]
    assert table.column(SOURCE_LINE).to_pylist() == [1, 2]


def test_read_jsonl_blank_line_counted(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"user": "a"}\n\n{"user": "b"}\n', encoding="utf-8")

    table = read_raw_table(path, "jsonl")

    assert table.column("user").to_pylist() == ["a", "b"]
    assert table.column(SOURCE_LINE).to_pylist() == [1, 3]


def test_read_jsonl_gzip(tmp_path):
    path = tmp_path / "events.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write('{"user": 1, "item": "a"}\n{"user": 2, "item": "b"}\n')

    table = read_raw_table(path, "jsonl")

    assert table.column("user").to_pylist() == ["1", "2"]
    assert table.column(SOURCE_LINE).to_pylist() == [1, 2]


def test_read_jsonl_invalid_line(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"user": "a"}\n{"user": \n', encoding="utf-8")

    with pytest.raises(ValueError, match=f"{re.escape(str(path))}: line 2 is not valid JSON"):
        read_raw_table(path, "jsonl")


def test_read_jsonl_not_object(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"user": "a"}\n[1, 2]\n', encoding="utf-8")

    with pytest.raises(ValueError, match=r"line 2 is not a JSON object: '\[1, 2\]'"):
        read_raw_table(path, "jsonl")


def test_read_parquet_strings_zero_based(tmp_path):
    path = tmp_path / "events.parquet"
    pq.write_table(pa.table({"user": [12, 13], "ts": [100.5, 200.0]}), path)

    table = read_raw_table(path, "parquet")

    assert table.schema.field("user").type == pa.string()
    assert table.column("user").to_pylist() == ["12", "13"]
    assert table.column("ts").to_pylist() == ["100.5", "200"]
    assert table.column(SOURCE_LINE).to_pylist() == [0, 1]


def test_read_empty_file(tmp_path):
    path = tmp_path / "events.csv"
    path.write_bytes(b"")

    table = read_raw_table(path, "csv")

    assert table.num_rows == 0
    assert table.column_names == [SOURCE_LINE]


def test_read_header_only(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user,item,ts\n", encoding="utf-8")

    table = read_raw_table(path, "csv")

    assert table.num_rows == 0
    assert table.column_names == ["user", "item", "ts", SOURCE_LINE]


def test_read_missing_file(tmp_path):
    path = tmp_path / "absent.csv"

    with pytest.raises(FileNotFoundError, match=f"input file not found: {re.escape(str(path))}"):
        read_raw_table(path, "csv")


def test_read_unsupported_format(tmp_path):
    path = tmp_path / "events.xml"
    path.write_text("<events/>", encoding="utf-8")

    with pytest.raises(ValueError, match=r"format 'xml' is not supported"):
        read_raw_table(path, "xml")


def test_read_ragged_csv(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user,item,ts\n1,10\n", encoding="utf-8")

    with pytest.raises(ValueError, match=f"{re.escape(str(path))}: cannot be read as csv"):
        read_raw_table(path, "csv")


def test_strip_strings_blank_to_null():
    table = pa.table({"user": ["  a ", "   ", None, "b"], "other": [" x ", " ", "y", "z"]})

    stripped = strip_strings(table, ["user"])

    assert stripped.column("user").to_pylist() == ["a", None, None, "b"]
    assert stripped.column("other").to_pylist() == [" x ", " ", "y", "z"]


def test_read_csv_blank_lines_keep_numbers(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user,item,ts\nu1,a,100\n\nu2,b,200\n\n\nu3,c,300\n", encoding="utf-8")

    table = read_raw_table(path, "csv")

    assert table.column("user").to_pylist() == ["u1", None, "u2", None, None, "u3"]
    assert table.column(SOURCE_LINE).to_pylist() == [2, 3, 4, 5, 6, 7]


def test_read_csv_na_like_ids_are_values(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user,item,ts\nNA,null,100\nnan,N/A,200\n,x,300\n", encoding="utf-8")

    table = read_raw_table(path, "csv")

    assert table.column("user").to_pylist() == ["NA", "nan", None]
    assert table.column("item").to_pylist() == ["null", "N/A", "x"]


def test_read_csv_wrong_field_count_names_line(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text('user,item,ts\nu1,"a,b",100\n\nu2,b,200\nu3,c,300,extra\n', encoding="utf-8")

    with pytest.raises(ValueError, match=r"events\.csv: cannot be read as csv \(line 5\): .*Expected 3 columns, got 4"):
        read_raw_table(path, "csv")


def _write_long_field_csv(path, field_bytes):
    """Write 3.5 MiB of short rows first, so that the long field on line 306,002 spans three 4 MiB blocks."""
    short_rows = "".join(f"u{i:06d},i,1\n" for i in range(306_000))  # 12 bytes each
    path.write_text(f"user,item,ts\n{short_rows}u_long,{'x' * field_bytes},2\nu_last,i,3\n", encoding="utf-8")


def test_read_csv_field_larger_than_block(tmp_path):
    path = tmp_path / "events.csv"
    _write_long_field_csv(path, 5 << 20)

    table = read_raw_table(path, "csv")

    assert table.num_rows == 306_002
    assert table.column(SOURCE_LINE).to_pylist() == list(range(2, 306_004))
    assert table.column("user").to_pylist()[-3:] == ["u305999", "u_long", "u_last"]
    assert len(table.column("item")[-2].as_py()) == 5 << 20
    assert table.column("ts").to_pylist()[-2:] == ["2", "3"]


def test_read_csv_line_larger_than_max_block(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "MAX_BLOCK_BYTES", readers.BLOCK_BYTES)
    path = tmp_path / "events.csv"
    _write_long_field_csv(path, 5 << 20)

    expected = (f"{path}: line 306002 is 5.0 MiB, and a line larger than the CSV reader's maximum block of 4 MiB "
                f"cannot be read. Shorten or drop its long field before ingest, or convert the file to JSON Lines")
    with pytest.raises(ValueError, match=re.escape(expected)):
        read_raw_table(path, "csv")


ENCODING_FIX = ("Set `encoding:` for this file in the source spec to the file's encoding "
                "(for example `encoding: latin-1` under `interactions:`).")


@pytest.mark.parametrize(("fmt", "content", "where"), [
    ("csv", b'user,item,ts\nu1,a,100\nu2,"Caf\xe9, bar",200\n', "line 3, column 'item': value b'Caf\\xe9, bar'"),
    ("tsv", b"user\titem\tts\nu1\ta\t100\n\nu\xe92\tb\t200\n", "line 4, column 'user': value b'u\\xe92'"),
    ("csv", b"us\xe9r,item,ts\nu1,a,100\n", "line 1, header field 1: value b'us\\xe9r'"),
    ("jsonl", b'{"user": "u1"}\n{"user": "u\xe92"}\n', "line 2 is not valid utf-8 text: b'{\"user\": \"u\\xe92\"}'"),
])
def test_read_invalid_utf8_names_line(tmp_path, fmt, content, where):
    path = tmp_path / f"events.{fmt}"
    path.write_bytes(content)

    with pytest.raises(ValueError) as raised:
        read_raw_table(path, fmt)

    message = str(raised.value)
    assert message.startswith(f"{path}: {where}")
    assert message.endswith(ENCODING_FIX)


def test_read_invalid_utf8_with_column_names(tmp_path):
    path = tmp_path / "events.csv"
    path.write_bytes(b"u1,a,100\nu2,b,2\xe900\n")
    layout = FileLayout(column_names=("user", "item", "ts"))

    with pytest.raises(ValueError, match=re.escape(f"{path}: line 2, column 'ts': value b'2\\xe900' is not valid utf-8")):
        read_raw_table(path, "csv", layout)


def test_read_csv_quoted_newline_shifts_lines(tmp_path):
    # A documented limit: u2 is on line 4, but the quoted field above it spans two lines, so it reads as 3.
    path = tmp_path / "events.csv"
    path.write_text('user,item,ts\nu1,"a\nb",100\nu2,c,200\n', encoding="utf-8")

    table = read_raw_table(path, "csv")

    assert table.column("item").to_pylist() == ["a\nb", "c"]
    assert table.column(SOURCE_LINE).to_pylist() == [2, 3]
