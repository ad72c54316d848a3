"""Id vocabulary: original ids (strings) to contiguous int64 indices, versioned and append-only.

Indices are assigned in order of first appearance and never reused or renumbered: a later run
may only append new ids, so every model trained on an earlier version still reads the same
rows. Deleting a user replaces its id with a tombstone (the empty string, which validation
never admits as an id) so that the index stays taken.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recsys_peft import atomic

TOMBSTONE = ""


@dataclass(frozen=True)
class Vocabulary:
    """Ids in index order: ``ids[i]`` is the original id of index ``i``, or ``TOMBSTONE``."""

    name: str
    ids: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def _array(self) -> pa.Array:
        return pa.array(self.ids, pa.string())

    def lookup(self, values: pa.Array | pa.ChunkedArray | list[str]) -> np.ndarray:
        """Return the indices of ``values`` (int64), -1 for ids not in the vocabulary."""
        if not isinstance(values, (pa.Array, pa.ChunkedArray)):
            values = pa.array(values, pa.string())
        found = pc.index_in(values, value_set=self._array)
        return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)

    def extended(self, values: pa.Array | pa.ChunkedArray | list[str]) -> "Vocabulary":
        """Return a vocabulary with unseen ``values`` appended in order of first appearance."""
        if not isinstance(values, (pa.Array, pa.ChunkedArray)):
            values = pa.array(values, pa.string())
        unique = pc.drop_null(pc.unique(values))
        unseen = pc.invert(pc.is_in(unique, value_set=self._array))
        new = pc.filter(unique, unseen).to_pylist()
        return Vocabulary(self.name, self.ids + tuple(value for value in new if value != TOMBSTONE))

    def with_tombstones(self, indices: list[int]) -> "Vocabulary":
        """Return a vocabulary whose ``indices`` are tombstones; the other ids keep their index."""
        ids = list(self.ids)
        for index in indices:
            ids[index] = TOMBSTONE
        return Vocabulary(self.name, tuple(ids))

    def digest(self) -> str:
        hasher = hashlib.sha256()
        for value in self.ids:
            hasher.update(value.encode("utf-8") + b"\0")
        return hasher.hexdigest()

    def to_table(self) -> pa.Table:
        """Return the vocabulary as written to disk: ``id``, ``index`` and ``deleted``."""
        return pa.table({"id": self._array,
                         "index": pa.array(np.arange(len(self.ids)), pa.int64()),
                         "deleted": pc.equal(self._array, TOMBSTONE)})

    def save(self, folder: Path) -> None:
        sink = pa.BufferOutputStream()
        pq.write_table(self.to_table(), sink)
        atomic.write_bytes(Path(folder) / f"{self.name}.parquet", sink.getvalue().to_pybytes())

    @classmethod
    def load(cls, folder: Path, name: str) -> "Vocabulary":
        table = pq.read_table(Path(folder) / f"{name}.parquet", columns=["id", "index"]).sort_by("index")
        return cls(name, tuple(table.column("id").to_pylist()))


def vocabulary_version(users: Vocabulary, items: Vocabulary) -> str:
    """Return a content version for the pair of vocabularies: sizes plus a short hash."""
    digest = hashlib.sha256((users.digest() + items.digest()).encode()).hexdigest()[:12]
    return f"u{len(users)}-i{len(items)}-{digest}"
