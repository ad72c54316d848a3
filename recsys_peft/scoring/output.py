"""Recommendation tables and where a scoring job puts them.

Layout under the output folder::

    run_date=YYYY-MM-DD/model_version=VERSION/part-00000.parquet ...
    run_date=YYYY-MM-DD/model_version=VERSION/_SUCCESS.json     the run summary, present only when complete
    _LATEST.json                                                the newest complete run
    .staging/run_date=.../model_version=.../                    a run in progress (plan, inputs, parts)

A run folder appears whole: its parts are linked into a temporary sibling that replaces the
folder with renames (``atomic.replace_dir``), so readers see the previous run or this one.
Files also carry ``run_date`` and ``model_version`` as columns. Readers of the whole output
folder should declare both partition keys as strings (``PARTITIONING``), because pyarrow would
otherwise infer a dictionary type that clashes with the string columns in the files.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from recsys_peft import atomic
from recsys_peft.scoring.inputs import PartitionInput
from recsys_peft.scoring.topk import NO_ITEM

RECOMMENDATION_SCHEMA = pa.schema([
    pa.field("user_id", pa.string(), nullable=False),
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("rank", pa.int32(), nullable=False),
    pa.field("score", pa.float32(), nullable=False),
    pa.field("segment", pa.string()),
    pa.field("model_version", pa.string(), nullable=False),
])
RUN_SCHEMA = RECOMMENDATION_SCHEMA.append(pa.field("run_date", pa.string(), nullable=False))
PARTITIONING = ds.partitioning(pa.schema([("run_date", pa.string()), ("model_version", pa.string())]),
                               flavor="hive")
SUCCESS_FILE = "_SUCCESS.json"
LATEST_FILE = "_LATEST.json"
STAGING_FOLDER = ".staging"
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9._-]+$")


def recommendations_table(
    data: PartitionInput,
    scores: np.ndarray,
    items: np.ndarray,
    item_ids: pa.Array,
    segment_names: tuple[str, ...],
    model_version: str,
    run_date: str | None = None,
) -> pa.Table:
    """Build one row per (user, recommended item), ordered by user then rank.

    String columns are dictionary arrays, which parquet writes without decoding them; readers
    get plain strings because the job writes without the Arrow schema. Without ``run_date``
    the table has ``RECOMMENDATION_SCHEMA``'s columns.
    """
    row, rank = np.nonzero(items != NO_ITEM)
    count = len(row)
    segments = data.segments[row]
    constant = pa.array(np.zeros(count, dtype=np.int32))
    columns = {
        "user_id": pa.DictionaryArray.from_arrays(pa.array(row.astype(np.int32)), data.user_ids),
        "item_id": pa.DictionaryArray.from_arrays(pa.array(items[row, rank].astype(np.int32)), item_ids),
        "rank": pa.array((rank + 1).astype(np.int32)),
        "score": pa.array(scores[row, rank].astype(np.float32)),
        "segment": pa.DictionaryArray.from_arrays(pa.array(segments.astype(np.int32), mask=segments < 0),
                                                  pa.array(list(segment_names), pa.string())),
        "model_version": pa.DictionaryArray.from_arrays(constant, pa.array([model_version])),
    }
    if run_date is not None:
        columns["run_date"] = pa.DictionaryArray.from_arrays(constant, pa.array([run_date]))
    return pa.table(columns)


def decoded(table: pa.Table) -> pa.Table:
    """Return ``table`` with dictionary columns cast to plain strings and the schema's nullability."""
    schema = RUN_SCHEMA if "run_date" in table.column_names else RECOMMENDATION_SCHEMA
    return pa.table([table.column(f.name).cast(f.type) for f in schema], schema=schema)


def write_part(table: pa.Table, path: Path) -> None:
    """Write one part file atomically: a temporary sibling renamed into place."""
    temporary = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, temporary, store_schema=False)
    os.replace(temporary, path)


def check_path_value(name: str, value: str) -> str:
    if not _SAFE_VALUE.match(value):
        raise ValueError(f"{name} {value!r} cannot name a folder: use letters, digits, '.', '_' and '-' only")
    return value


def run_folder(output_dir: Path, run_date: str, model_version: str) -> Path:
    return (Path(output_dir) / f"run_date={check_path_value('run_date', run_date)}"
            / f"model_version={check_path_value('model_version', model_version)}")


def staging_folder(output_dir: Path, run_date: str, model_version: str) -> Path:
    return (Path(output_dir) / STAGING_FOLDER / f"run_date={check_path_value('run_date', run_date)}"
            / f"model_version={check_path_value('model_version', model_version)}")


def publish_run(parts: list[Path], target: Path, summary: dict) -> None:
    """Replace ``target`` with the ``parts`` (hard-linked, or copied) and ``_SUCCESS.json``.

    ``summary`` must contain ``run_date``; the output folder's ``_LATEST.json`` then points at
    ``target`` unless it already points at a later run date.
    """
    for stale in target.parent.glob(f".{target.name}.*.staging"):
        shutil.rmtree(stale, ignore_errors=True)
    with atomic.replace_dir(target) as temporary:
        for part in parts:
            try:
                os.link(part, temporary / part.name)
            except OSError:
                shutil.copyfile(part, temporary / part.name)
        atomic.write_json(temporary / SUCCESS_FILE, summary)

    output_dir = target.parent.parent
    latest = read_latest(output_dir)
    if latest is None or str(latest["run_date"]) <= str(summary["run_date"]):
        atomic.write_json(output_dir / LATEST_FILE, {
            "path": str(target.relative_to(output_dir)),
            "run_date": summary["run_date"],
            "model_version": summary["model_version"],
            "completed_at": summary.get("completed_at"),
            "users": summary.get("users"),
            "rows": summary.get("rows"),
        })


def read_latest(output_dir: str | Path) -> dict | None:
    """Return the ``_LATEST.json`` pointer of an output folder, or None when no run completed."""
    path = Path(output_dir) / LATEST_FILE
    return atomic.read_json(path) if path.is_file() else None


def read_latest_run(output_dir: str | Path) -> pa.Table:
    """Read the recommendations of the newest complete run of an output folder."""
    latest = read_latest(output_dir)
    if latest is None:
        raise FileNotFoundError(f"no complete scoring run in {output_dir}: {LATEST_FILE} is missing")
    return pq.read_table(Path(output_dir) / latest["path"])
