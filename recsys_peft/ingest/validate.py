"""Row validation: parse ids, timestamps, event types and weights; send every bad row to quarantine.

A bad row is never dropped silently or guessed: it goes to the quarantine table with its source
file, line, column, value and the reason, and the good rows go on. When a row has several
problems, the first check in the order of ``validate_interactions`` is the one reported.

Each parser tries one vectorized pyarrow conversion of the whole batch first and falls back to
checking value by value only when that fails, so clean batches stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recsys_peft.ingest.readers import SOURCE_LINE, json_type_column
from recsys_peft.ingest.spec import SourceSpec

QUARANTINE_SCHEMA = pa.schema([
    pa.field("source_file", pa.string()),
    pa.field("source_line", pa.int64()),
    pa.field("column", pa.string()),
    pa.field("value", pa.string()),
    pa.field("reason", pa.string()),
])

_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_INTEGER = r"^[+-]?\d{1,18}$"
_INTEGRAL_FLOAT = r"^[+-]?\d{1,15}\.0*$"
_UNIT_TO_NS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_MAX_MICROS = 2**62  # about year 148,000: beyond it the conversion to microseconds could overflow


@dataclass
class ValidatedRows:
    """Good rows with parsed columns, and the quarantine rows of everything else.

    ``good`` has ``user_id``, ``item_id`` (string), ``timestamp`` (int64 UTC microseconds),
    ``event_type`` (string), ``weight`` (float64, null when missing) and ``source_line``.
    """

    good: pa.Table
    quarantine: pa.Table
    valid: np.ndarray  # (rows,) bool: which input rows are in ``good``


class _Flags:
    """The first reason each row is invalid for, as a small integer code (0: valid)."""

    def __init__(self, rows: int) -> None:
        self.code = np.zeros(rows, dtype=np.int16)
        self.reasons: list[tuple[str, str]] = []  # code i + 1 is reasons[i]: (column, reason)

    def flag(self, mask: np.ndarray, column: str, reason: str) -> None:
        fresh = mask & (self.code == 0)
        if fresh.any():
            self.reasons.append((column, reason))
            self.code[fresh] = len(self.reasons)


def _mask(array: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=bool)


def _parse_numbers(values: pa.ChunkedArray, target: pa.DataType) -> tuple[np.ndarray, np.ndarray]:
    """Return ``values`` as numbers of ``target`` type and a mask of those that parsed."""
    present = ~_mask(values.is_null())
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
        return pc.fill_null(values.cast(target), 0).to_numpy(zero_copy_only=False), present
    try:
        return pc.fill_null(pc.cast(values, target), 0).to_numpy(zero_copy_only=False), present
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    ok = _mask(pc.fill_null(pc.match_substring_regex(values, _NUMBER), False))
    numbers = np.zeros(len(values), dtype=target.to_pandas_dtype())
    if ok.any():
        numbers[ok] = pc.cast(pc.filter(values, pa.array(ok)), target).to_numpy(zero_copy_only=False)
    return numbers, ok


def _parse_epoch(values: pa.ChunkedArray, unit: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return UTC epoch microseconds, a mask of values that parsed and a mask of those out of range.

    Integer text converts exactly; other numbers ("1.5" seconds, "2e3") go through float64.
    """
    integers = np.zeros(len(values), dtype=np.int64)
    floats = np.zeros(len(values), dtype=np.float64)
    if pa.types.is_integer(values.type):
        integers, integer = _parse_numbers(values, pa.int64())
        numeric = integer
    elif pa.types.is_floating(values.type):
        floats, present = _parse_numbers(values, pa.float64())
        integer = np.zeros(len(values), dtype=bool)
        numeric = present & np.isfinite(floats)
    else:
        try:
            integers = pc.fill_null(pc.cast(values, pa.int64()), 0).to_numpy(zero_copy_only=False)
            integer = numeric = ~_mask(values.is_null())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            integer = _mask(pc.fill_null(pc.match_substring_regex(values, _INTEGER), False))
            if integer.any():
                chosen = pc.filter(values, pa.array(integer))
                integers[integer] = pc.cast(chosen, pa.int64()).to_numpy(zero_copy_only=False)
            floats, numeric = _parse_numbers(values, pa.float64())
            numeric = (numeric & np.isfinite(floats)) | integer

    per_micro = _UNIT_TO_NS[unit] / 1000  # microseconds per unit: 1e6 for s, 0.001 for ns
    limit = _MAX_MICROS / max(per_micro, 1.0)
    out_of_range = numeric & np.where(integer, np.abs(integers) > limit, np.abs(floats) > limit)
    micros = np.zeros(len(values), dtype=np.int64)
    exact = integer & ~out_of_range
    if per_micro >= 1:
        micros[exact] = integers[exact] * int(per_micro)
    else:
        micros[exact] = integers[exact] // int(round(1 / per_micro))
    fractional = numeric & ~integer & ~out_of_range
    micros[fractional] = np.round(floats[fractional] * per_micro).astype(np.int64)
    return micros, numeric, out_of_range


# A naive local time that a daylight-saving change makes ambiguous or nonexistent in the zone.
_DST_GAP = "dst"


def _parse_iso_one(value: str | None, tz: str) -> pd.Timestamp | str | None:
    """Parse one ISO 8601 value; None when it is not ISO 8601, ``_DST_GAP`` when DST rejects it."""
    if value is None:
        return None
    try:
        stamp = pd.Timestamp(datetime.fromisoformat(value))
    except ValueError:
        return None
    if stamp.tzinfo is not None:
        return stamp
    try:
        return stamp.tz_localize(tz, ambiguous="raise", nonexistent="raise")
    except ValueError:  # pandas raises ValueError for a time in a DST gap or overlap
        return _DST_GAP


def _parse_iso(values: pa.ChunkedArray, tz: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return UTC epoch microseconds, a mask of values that parsed, and a mask of DST-gap values.

    Naive values are read in ``tz``, and values with an offset or a Z keep their own. The
    vectorized path parses both kinds with pyarrow. A value it rejects (not ISO 8601, or a
    local time that daylight saving makes ambiguous or nonexistent) sends the batch to the
    value-by-value path, which quarantines exactly those values.
    """
    values = values.cast(pa.string())
    try:
        zoned = _mask(pc.fill_null(pc.match_substring_regex(values, r"(Z|[+-]\d\d:?\d\d)$"), False))
        micros = np.zeros(len(values), dtype=np.int64)
        present = ~_mask(values.is_null())
        if zoned.any():
            parsed = pc.cast(pc.filter(values, pa.array(zoned)), pa.timestamp("us", tz="UTC"))
            micros[zoned] = parsed.cast(pa.int64()).to_numpy(zero_copy_only=False)
        naive = present & ~zoned
        if naive.any():
            local = pc.cast(pc.filter(values, pa.array(naive)), pa.timestamp("us"))
            utc = pc.assume_timezone(local, timezone=tz, ambiguous="raise", nonexistent="raise")
            micros[naive] = utc.cast(pa.int64()).to_numpy(zero_copy_only=False)
        return micros, present, np.zeros(len(values), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    parsed = [_parse_iso_one(v, tz) for v in values.to_pylist()]
    dst = np.array([p is _DST_GAP for p in parsed], dtype=bool)
    stamps = pd.Series([None if p is _DST_GAP else p for p in parsed], dtype=object)
    ok = stamps.notna().to_numpy()
    micros = np.zeros(len(values), dtype=np.int64)
    if ok.any():
        utc = pd.to_datetime(stamps[ok], utc=True)
        micros[ok] = utc.astype("datetime64[us, UTC]").astype("int64").to_numpy()
    return micros, ok, dst


def normalize_int_ids(values: pa.ChunkedArray) -> tuple[pa.ChunkedArray, np.ndarray]:
    """Rewrite integer ids in canonical form ("007", "+7" and "7.0" become "7").

    Returns the rewritten ids and a mask of values that are not integers in the int64 range.
    """
    try:
        return pc.cast(pc.cast(values, pa.int64()), pa.string()), np.zeros(len(values), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    present = ~_mask(values.is_null())
    integer = _mask(pc.fill_null(pc.match_substring_regex(values, _INTEGER), False))
    integral_float = _mask(pc.fill_null(pc.match_substring_regex(values, _INTEGRAL_FLOAT), False))
    text = values.to_pylist()
    for row in np.flatnonzero(integer | integral_float):
        text[row] = str(int(float(text[row]))) if integral_float[row] else str(int(text[row]))
    return pa.chunked_array([pa.array(text, pa.string())]), present & ~(integer | integral_float)


def validate_interactions(
    table: pa.Table,
    source_file: str,
    spec: SourceSpec,
    now: datetime | None = None,
) -> ValidatedRows:
    """Validate canonical columns (``user_id``, ``item_id``, ``timestamp``, optional ``weight``
    and ``event_type``) by the rules of ``spec``; ``now`` bounds timestamps from above."""
    inter = spec.interactions
    now = now or datetime.now(timezone.utc)
    rows = table.num_rows
    flags = _Flags(rows)
    ids = {}
    for name in ("user_id", "item_id"):
        ids[name] = table.column(name)
        flags.flag(_mask(ids[name].is_null()), name, f"missing {name}")
    for name in ("user_id", "item_id", "event_type"):
        _flag_json_non_scalars(table, name, flags)
    if spec.id_type == "int":
        for name in ("user_id", "item_id"):
            ids[name], not_int = normalize_int_ids(ids[name])
            flags.flag(not_int, name, f"{name} is not an integer (id_type int)")

    raw_ts = table.column("timestamp")
    if inter.timestamp_unit == "iso":
        micros, ok, dst_gap = _parse_iso(raw_ts, inter.timezone)
        out_of_range = np.zeros(rows, dtype=bool)
        flags.flag(dst_gap, "timestamp", f"local time does not exist or is ambiguous in {inter.timezone} "
                                         f"(daylight-saving change); give it an offset or a Z")
    else:
        micros, ok, out_of_range = _parse_epoch(raw_ts, inter.timestamp_unit)
    flags.flag(_mask(raw_ts.is_null()), "timestamp", "missing timestamp")
    flags.flag(~ok, "timestamp", f"unparsable timestamp (unit {inter.timestamp_unit})")
    flags.flag(out_of_range, "timestamp", f"timestamp out of range (unit {inter.timestamp_unit})")
    now_us = int(now.timestamp() * 1_000_000)
    flags.flag(ok & (micros > now_us), "timestamp", "timestamp in the future")
    if inter.min_timestamp is not None:
        min_us = int(inter.min_timestamp.timestamp() * 1_000_000)
        flags.flag(ok & (micros < min_us), "timestamp",
                   f"timestamp before min_timestamp {inter.min_timestamp.isoformat()}")

    if spec.has_event_type:
        events = table.column("event_type")
        flags.flag(_mask(events.is_null()), "event_type", "missing event_type")
        if inter.event_types is not None:
            allowed = pa.array(list(inter.event_types), pa.string())
            known = _mask(pc.fill_null(pc.is_in(events, value_set=allowed), True))
            flags.flag(~known, "event_type", f"unknown event_type (expected one of {list(inter.event_types)})")
    else:
        events = pa.chunked_array([pa.array([inter.default_event_type] * rows, pa.string())])

    if "weight" in table.column_names:
        raw_weight = table.column("weight")
        weights, weight_ok = _parse_numbers(raw_weight, pa.float64())
        weight_null = _mask(raw_weight.is_null())
        flags.flag(~weight_ok & ~weight_null, "weight", "unparsable weight")
        weight_array = pa.array(weights, pa.float64(), mask=weight_null | ~weight_ok)
    else:
        weight_array = pa.nulls(rows, pa.float64())

    columns = {"user_id": ids["user_id"], "item_id": ids["item_id"], "timestamp": micros,
               "event_type": events, "weight": weight_array, SOURCE_LINE: table.column(SOURCE_LINE)}
    good = pa.table(columns)
    bad = flags.code > 0
    if not bad.any():
        return ValidatedRows(good, QUARANTINE_SCHEMA.empty_table(), ~bad)
    return ValidatedRows(good.filter(pa.array(~bad)), _quarantine_rows(table, source_file, flags, bad), ~bad)


def _flag_json_non_scalars(table: pa.Table, name: str, flags: _Flags) -> None:
    """Flag rows where JSON Lines gave column ``name`` a boolean, array or object."""
    types_name = json_type_column(name)
    if types_name not in table.column_names:
        return
    types = table.column(types_name)
    for json_type in ("boolean", "array", "object"):
        is_type = _mask(pc.fill_null(pc.equal(types, json_type), False))
        flags.flag(is_type, name, f"{name} is a JSON {json_type}; expected a string or a number")


def _quarantine_rows(table: pa.Table, source_file: str, flags: _Flags, bad: np.ndarray) -> pa.Table:
    positions = np.flatnonzero(bad)
    codes = flags.code[positions]
    columns = [flags.reasons[c - 1][0] for c in codes]
    values = []
    for position, column in zip(positions, columns):
        value = table.column(column)[int(position)].as_py()
        values.append(None if value is None else str(value))
    return pa.table({
        "source_file": pa.array([source_file] * len(positions), pa.string()),
        "source_line": pc.take(table.column(SOURCE_LINE), pa.array(positions)),
        "column": pa.array(columns, pa.string()),
        "value": pa.array(values, pa.string()),
        "reason": pa.array([flags.reasons[c - 1][1] for c in codes], pa.string()),
    }, schema=QUARANTINE_SCHEMA)
