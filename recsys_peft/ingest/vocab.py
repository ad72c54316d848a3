"""Id vocabulary: original ids (strings) to contiguous int64 indices, versioned and append-only.

Indices are assigned in order of first appearance and never reused: a later run may only append
new ids, so every model trained on an earlier version still reads the same rows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recsys_peft import atomic


@dataclass(frozen=True)
class Vocabulary:
    """Ids in index order: ``ids[i]`` is the original id of index ``i``."""

    name: str
    ids: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, values: pa.Array | list[str]) -> np.ndarray:
        """Indices of ``values`` (int64), -1 for ids not in the vocabulary."""
        table = pa.array(self.ids, pa.string())
        found = pa.compute.index_in(pa.array(values, pa.string()), value_set=table)
        return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)

    def extended(self, values: pa.Array | list[str]) -> "Vocabulary":
        """A vocabulary with unseen ``values`` appended in order of first appearance."""
        known = set(self.ids)
        new: list[str] = []
        for value in pa.array(values, pa.string()).unique().to_pylist():
            if value is not None and value not in known:
                known.add(value)
                new.append(value)
        return Vocabulary(self.name, self.ids + tuple(new))

    def digest(self) -> str:
        hasher = hashlib.sha256()
        for value in self.ids:
            hasher.update(value.encode("utf-8") + b"\0")
        return hasher.hexdigest()

    def save(self, folder: Path) -> None:
        table = pa.table({"id": pa.array(self.ids, pa.string()),
                          "index": pa.array(np.arange(len(self.ids)), pa.int64())})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        atomic.write_bytes(Path(folder) / f"{self.name}.parquet", sink.getvalue().to_pybytes())

    @classmethod
    def load(cls, folder: Path, name: str) -> "Vocabulary":
        table = pq.read_table(Path(folder) / f"{name}.parquet").sort_by("index")
        return cls(name, tuple(table.column("id").to_pylist()))


def vocabulary_version(users: Vocabulary, items: Vocabulary) -> str:
    """A content version for the pair of vocabularies: sizes plus a short hash."""
    digest = hashlib.sha256((users.digest() + items.digest()).encode()).hexdigest()[:12]
    return f"u{len(users)}-i{len(items)}-{digest}"
