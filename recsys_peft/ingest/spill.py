"""Validated rows of a run, set aside on disk by UTC date until they are merged into the store.

Reading a large file produces rows of many dates. Keeping them all in memory would make memory
grow with the file, so every ``rows_per_file`` rows are written to an uncompressed Arrow IPC
file, with an index of where each date's rows are. Rows mostly in time order are written as
they are. Other rows are first sorted by date, stably, so rows of one date keep their input
order. A later ``read_days`` memory-maps those files and gathers the rows of a few dates.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa

from recsys_peft.ingest.store import MICROS_PER_DAY

SPILL_SCHEMA = pa.schema([
    pa.field("user_id", pa.string()),
    pa.field("item_id", pa.string()),
    pa.field("timestamp", pa.int64()),     # UTC microseconds
    pa.field("event_type", pa.string()),
    pa.field("weight", pa.float64()),
    pa.field("file_index", pa.int32()),    # index into the run's list of input files
    pa.field("source_line", pa.int64()),
    pa.field("ingest_order", pa.int64()),
])


def _run_starts(days: np.ndarray) -> np.ndarray:
    """Return the positions where a run of equal days starts."""
    return np.flatnonzero(np.concatenate([[True], days[1:] != days[:-1]]))


class Spill:
    """Rows grouped by UTC date (days since 1970-01-01) in IPC files under ``folder``."""

    def __init__(self, folder: Path, rows_per_file: int = 1_000_000) -> None:
        self.folder = folder
        self.rows_per_file = rows_per_file
        self._buffer: list[pa.Table] = []
        self._buffered_rows = 0
        self._files: list[Path] = []
        # day -> [(file number, first row, row count)], in file order
        self._slices: dict[int, list[tuple[int, int, int]]] = defaultdict(list)

    def add(self, table: pa.Table) -> None:
        """Buffer ``table`` (``SPILL_SCHEMA`` columns) and write the buffer out when it is full."""
        if table.num_rows == 0:
            return
        self._buffer.append(table.select(SPILL_SCHEMA.names).cast(SPILL_SCHEMA))
        self._buffered_rows += table.num_rows
        if self._buffered_rows >= self.rows_per_file:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows to a new IPC file and index where each day's rows are."""
        if not self._buffer:
            return
        table = pa.concat_tables(self._buffer)
        self._buffer, self._buffered_rows = [], 0
        days = np.floor_divide(table.column("timestamp").to_numpy(), MICROS_PER_DAY)
        starts = _run_starts(days)
        if len(starts) > max(1, len(days) // 1000):
            # Many runs of one day (rows out of time order): sort so that each day is one run.
            order = np.argsort(days, kind="stable")
            table, days = table.take(pa.array(order)), days[order]
            starts = _run_starts(days)
        number = len(self._files)
        path = self.folder / f"spill-{number:06d}.arrow"
        self.folder.mkdir(parents=True, exist_ok=True)
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, SPILL_SCHEMA) as writer:
            writer.write_table(table)
        self._files.append(path)
        ends = np.concatenate([starts[1:], [len(days)]])
        for start, end in zip(starts.tolist(), ends.tolist()):
            self._slices[int(days[start])].append((number, start, end - start))

    def day_counts(self) -> dict[int, int]:
        """Return the number of rows of each day, in date order. Call ``flush`` first."""
        return {day: sum(count for _, _, count in self._slices[day]) for day in sorted(self._slices)}

    def read_days(self, days: list[int]) -> pa.Table:
        """Return the rows of ``days``, grouped by day in the given order, each in input order."""
        opened: dict[int, pa.Table] = {}
        parts = []
        for day in days:
            for number, start, count in self._slices.get(day, []):
                if number not in opened:
                    source = pa.memory_map(str(self._files[number]), "r")
                    opened[number] = pa.ipc.open_file(source).read_all()
                parts.append(opened[number].slice(start, count))
        if not parts:
            return SPILL_SCHEMA.empty_table()
        return pa.concat_tables(parts).combine_chunks()
