"""Items at scoring time: which export rows store items map to, and which items are unavailable.

Items are matched by original id, never by index, so an item added after the export can never
take another item's row. Such items have no vector: they are left out of scoring and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

AVAILABLE_COLUMN = "available"


def vocabulary_ids(folder: Path, name: str) -> pa.Array:
    """Return the ids of ``folder/vocab/{name}.parquet`` in index order."""
    path = Path(folder) / "vocab" / f"{name}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"vocabulary not found: {path}")
    table = pq.read_table(path, columns=["id", "index"]).sort_by("index")
    indices = table.column("index").to_numpy()
    if not np.array_equal(indices, np.arange(len(indices))):
        raise ValueError(f"{path}: indices must run from 0 to {len(indices) - 1} without gaps")
    return table.column("id").combine_chunks()


def index_in(values: pa.Array | pa.ChunkedArray, vocabulary: pa.Array) -> np.ndarray:
    """Return the position of each value in ``vocabulary`` (int64), -1 where it is absent or null."""
    found = pc.index_in(values, value_set=vocabulary)
    return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


@dataclass(frozen=True)
class CatalogueView:
    """The export's items as one scoring job uses them: availability and the map from store rows."""

    unavailable: np.ndarray       # (I,) bool over export rows
    store_to_export: np.ndarray   # (store items,) int64 export row of each store item, -1 for new items
    new_items: int                # ids in the store or the catalogue file that are not in the export

    @property
    def unavailable_items(self) -> int:
        return int(self.unavailable.sum())


def read_catalogue(path: Path) -> tuple[pa.Array, np.ndarray]:
    """Read a catalogue file: item ids and a bool ``available`` flag (null counts as available)."""
    schema = pq.read_schema(path)
    missing = [c for c in ("item_id", AVAILABLE_COLUMN) if c not in schema.names]
    if missing:
        raise ValueError(f"catalogue {path} lacks columns {missing}; expected item_id and a bool "
                         f"'{AVAILABLE_COLUMN}', found {schema.names}")
    table = pq.read_table(path, columns=["item_id", AVAILABLE_COLUMN])
    available = table.column(AVAILABLE_COLUMN)
    if not pa.types.is_boolean(available.type):
        raise ValueError(f"catalogue {path}: column '{AVAILABLE_COLUMN}' must be bool, got {available.type}")
    flags = available.combine_chunks().fill_null(True).to_numpy(zero_copy_only=False)
    return table.column("item_id").combine_chunks().cast(pa.string()), flags


def catalogue_view(export_dir: Path, store_dir: Path | None, catalogue: Path | None) -> CatalogueView:
    """Map store items to export rows and mark unavailable items.

    Availability comes from the ``catalogue`` file when given, else from an ``available``
    column of the store's ``items.parquet`` when it has one; other items are available.
    """
    export_ids = vocabulary_ids(export_dir, "items")
    unavailable = np.zeros(len(export_ids), dtype=bool)
    new_ids: set[str] = set()

    store_to_export = np.zeros(0, dtype=np.int64)
    if store_dir is not None:
        store_ids = vocabulary_ids(store_dir, "items")
        store_to_export = index_in(store_ids, export_ids)
        new_ids.update(pc.filter(store_ids, pa.array(store_to_export < 0)).to_pylist())
        items_path = Path(store_dir) / "items.parquet"
        if catalogue is None and items_path.is_file() and AVAILABLE_COLUMN in pq.read_schema(items_path).names:
            catalogue = items_path

    if catalogue is not None:
        ids, flags = read_catalogue(Path(catalogue))
        rows = index_in(ids, export_ids)
        unavailable[rows[(rows >= 0) & ~flags]] = True
        new_ids.update(pc.filter(ids, pa.array(rows < 0)).to_pylist())
    new_ids.discard("")
    return CatalogueView(unavailable, store_to_export, len(new_ids))
