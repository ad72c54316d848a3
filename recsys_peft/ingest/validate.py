"""Row validation: parse ids, timestamps and weights; send every bad row to quarantine.

A bad row is never dropped silently or guessed: it goes to the quarantine table with its source
file, line, column, value and the reason, and the good rows go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recsys_peft.ingest.readers import SOURCE_LINE

QUARANTINE_SCHEMA = pa.schema([
    pa.field("source_file", pa.string()),
    pa.field("source_line", pa.int64()),
    pa.field("column", pa.string()),
    pa.field("value", pa.string()),
    pa.field("reason", pa.string()),
])

_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_UNIT_TO_NS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


@dataclass
class ValidatedRows:
    """Good rows with parsed columns, and the quarantine rows of everything else."""

    good: pa.Table
    quarantine: pa.Table


def _parse_timestamps(values: pa.ChunkedArray, unit: str, tz: str) -> tuple[np.ndarray, np.ndarray]:
    """Return UTC epoch microseconds (int64) and a mask of values that parsed."""
    if unit == "iso":
        # Mixed inputs are allowed: naive values are read in the spec's time zone, values with
        # an offset or a Z keep their own. Each value is parsed alone because pandas rejects a
        # whole column that mixes offsets.
        def to_utc(value: str | None) -> pd.Timestamp | None:
            if value is None:
                return None
            try:
                stamp = pd.Timestamp(datetime.fromisoformat(value))
                return stamp.tz_localize(tz) if stamp.tzinfo is None else stamp
            except ValueError:  # not ISO 8601, or a local time that DST makes ambiguous or nonexistent
                return None
        stamps = pd.Series([to_utc(v) for v in values.to_pylist()], dtype=object)
        ok = stamps.notna().to_numpy()
        micros = np.zeros(len(values), dtype=np.int64)
        if ok.any():
            utc = pd.to_datetime(stamps[ok], utc=True)
            micros[ok] = utc.astype("datetime64[us, UTC]").astype("int64").to_numpy()
        return micros, ok

    numeric = pc.fill_null(pc.match_substring_regex(values, _NUMBER), False).to_numpy(zero_copy_only=False)
    micros = np.zeros(len(values), dtype=np.int64)
    if numeric.any():
        as_float = pc.cast(pc.filter(values, pa.array(numeric)), pa.float64()).to_numpy(zero_copy_only=False)
        micros[numeric] = np.round(as_float * _UNIT_TO_NS[unit] / 1000).astype(np.int64)
    return micros, numeric


def validate_interactions(
    table: pa.Table,
    source_file: str,
    timestamp_unit: str,
    tz: str,
    has_weight: bool,
    now: datetime | None = None,
) -> ValidatedRows:
    """Validate canonical columns (``user_id``, ``item_id``, ``timestamp``, optional ``weight``).

    Returns the good rows with ``timestamp`` as ``timestamp[us, UTC]`` and ``weight`` as float64.
    """
    now = now or datetime.now(timezone.utc)
    n = table.num_rows
    reason = np.full(n, None, dtype=object)
    column = np.full(n, None, dtype=object)

    def flag(mask: np.ndarray, name: str, why: str) -> None:
        fresh = mask & (reason == None)  # noqa: E711 (element-wise comparison)
        reason[fresh] = why
        column[fresh] = name

    for name in ("user_id", "item_id"):
        flag(table.column(name).is_null().to_numpy(zero_copy_only=False), name, f"missing {name}")

    ts_raw = table.column("timestamp")
    micros, ok = _parse_timestamps(ts_raw, timestamp_unit, tz)
    missing_ts = ts_raw.is_null().to_numpy(zero_copy_only=False)
    flag(missing_ts, "timestamp", "missing timestamp")
    flag(~ok, "timestamp", f"unparsable timestamp (unit {timestamp_unit})")
    now_us = int(now.timestamp() * 1_000_000)
    flag(ok & (micros > now_us), "timestamp", "timestamp in the future")

    weights = None
    if has_weight:
        w_raw = table.column("weight")
        w_ok = pc.fill_null(pc.match_substring_regex(w_raw, _NUMBER), False).to_numpy(zero_copy_only=False)
        w_null = w_raw.is_null().to_numpy(zero_copy_only=False)
        flag(~w_ok & ~w_null, "weight", "unparsable weight")
        weights = np.full(n, np.nan)
        if w_ok.any():
            weights[w_ok] = pc.cast(pc.filter(w_raw, pa.array(w_ok)), pa.float64()).to_numpy(zero_copy_only=False)

    bad = reason != None  # noqa: E711
    lines = table.column(SOURCE_LINE).to_numpy()
    values = []
    for row in np.flatnonzero(bad):
        values.append(table.column(column[row])[int(row)].as_py())
    quarantine = pa.table({
        "source_file": pa.array([source_file] * int(bad.sum()), pa.string()),
        "source_line": pa.array(lines[bad], pa.int64()),
        "column": pa.array(column[bad].tolist(), pa.string()),
        "value": pa.array(values, pa.string()),
        "reason": pa.array(reason[bad].tolist(), pa.string()),
    }, schema=QUARANTINE_SCHEMA)

    keep = pa.array(~bad)
    good = pa.table({
        "user_id": pc.filter(table.column("user_id"), keep),
        "item_id": pc.filter(table.column("item_id"), keep),
        "timestamp": pa.array(micros[~bad], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "weight": pa.array(weights[~bad] if weights is not None else np.full(int((~bad).sum()), np.nan),
                           pa.float64(), from_pandas=True),
        "source_file": pa.array([source_file] * int((~bad).sum()), pa.string()),
        SOURCE_LINE: pa.array(lines[~bad], pa.int64()),
    })
    return ValidatedRows(good=good, quarantine=quarantine)
