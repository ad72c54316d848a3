"""User and item attribute files: read them, and keep one attribute row per vocabulary entry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys_peft.ingest.readers import (SOURCE_LINE, is_json_type_column, json_type_column, read_raw_table,
                                       strip_strings)
from recsys_peft.ingest.spec import AttributeSource, SourceSpec
from recsys_peft.ingest.validate import normalize_int_ids
from recsys_peft.ingest.vocab import Vocabulary


def require_columns(table: pa.Table, path: Path, needed: list[str], spec: SourceSpec) -> None:
    """Raise ``ValueError`` naming the file and the missing columns unless ``table`` has ``needed``."""
    missing = [name for name in needed if name not in table.column_names]
    if missing:
        found = [name for name in table.column_names if name != SOURCE_LINE and not is_json_type_column(name)]
        raise ValueError(
            f"{path}: missing column(s) {missing} required by source spec {spec.path or spec.name}; "
            f"found columns {found}"
        )


def read_attributes(source: AttributeSource, path: Path, spec: SourceSpec) -> pa.Table:
    """Read an attribute file into ``id`` plus one column per attribute; the first row of an id wins."""
    table = read_raw_table(path, spec.format, source.layout)
    require_columns(table, path, [source.id, *source.attributes.values()], spec)
    columns = {"id": table.column(source.id)}
    for name, column_name in source.attributes.items():
        column = table.column(column_name)
        if name in source.multi_valued:
            column = pc.split_pattern(pc.utf8_trim_whitespace(column), source.multi_valued[name])
        columns[name] = column
    types_name = json_type_column(source.id)
    if types_name in table.column_names and table.column(types_name).null_count < table.num_rows:
        row = int(np.flatnonzero(~table.column(types_name).is_null().to_numpy(zero_copy_only=False))[0])
        raise ValueError(f"{path}: line {table.column(SOURCE_LINE)[row].as_py()}, column {source.id!r}: "
                         f"id {table.column(source.id)[row].as_py()!r} is a JSON "
                         f"{table.column(types_name)[row].as_py()}; expected a string or a number")
    result = strip_strings(pa.table(columns), ["id"])
    null_ids = result.column("id").null_count
    if null_ids:
        raise ValueError(f"{path}: column {source.id!r} has {null_ids} empty id(s)")
    if spec.id_type == "int":
        # The same canonical form as the interactions' ids, so "007" here finds user 7 there.
        ids, not_int = normalize_int_ids(result.column("id"))
        if not_int.any():
            row = int(np.flatnonzero(not_int)[0])
            raise ValueError(f"{path}: line {table.column(SOURCE_LINE)[row].as_py()}, column {source.id!r}: "
                             f"id {result.column('id')[row].as_py()!r} is not an integer, but the source spec "
                             f"sets id_type int")
        result = result.set_column(0, "id", ids)
    # A repeated id is kept at its first row rather than failing the run.
    first = pc.index_in(result.column("id"), value_set=pc.unique(result.column("id")))
    unique_rows = np.unique(first.to_numpy(zero_copy_only=False), return_index=True)[1]
    return result.take(pa.array(np.sort(unique_rows)))


def attributes_table(vocab: Vocabulary, kind: str, attributes: pa.Table | None,
                     previous: pa.Table | None) -> pa.Table:
    """Return one row per vocabulary entry: original id, index and attributes.

    Values come from ``attributes`` (this run's file) where it has the id, else from
    ``previous`` (the store's table, indexed by the same vocabulary), else null. Tombstoned
    entries keep no attributes.
    """
    ids = pa.array(vocab.ids, pa.string())
    base = pa.table({f"{kind}_id": ids, f"{kind}_idx": pa.array(np.arange(len(vocab)), pa.int64())})
    names: list[str] = []
    for table in (previous, attributes):
        if table is not None:
            names += [n for n in table.column_names if n not in names and n not in ("id", f"{kind}_id", f"{kind}_idx")]
    live = pc.not_equal(ids, "")
    for name in names:
        column = None
        if previous is not None and name in previous.column_names:
            indices = np.arange(len(vocab))
            column = pc.take(previous.column(name), pa.array(indices, mask=indices >= previous.num_rows))
        if attributes is not None and name in attributes.column_names:
            position = pc.index_in(ids, value_set=attributes.column("id"))
            fresh = pc.take(attributes.column(name), position)
            column = fresh if column is None else pc.coalesce(fresh, column.cast(fresh.type))
        column = pc.if_else(live, column, pa.scalar(None, column.type))
        base = base.append_column(name, column)
    return base
