"""Score one partition of a planned job and write its part file: the unit of work of every runner.

``score_partition`` takes only the plan and the partition index, so a thread, a process pool or
a Dask worker can run it. Each thread keeps the ``ScoringContext`` of the last export it used. A partition
whose part file and summary already exist (from an interrupted run of the same plan) is not
scored again.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from recsys_peft import atomic
from recsys_peft.export.model import ExportedModel
from recsys_peft.scoring.inputs import PartitionInput, input_from_users, read_input_file
from recsys_peft.scoring.output import recommendations_table, write_part
from recsys_peft.scoring.plan import JobPlan
from recsys_peft.scoring.recommend import PartitionCounts, ScoringContext, recommend

# One context per thread: loading a partition's user rows replaces the model's user table, so
# threads that share a model would score with each other's rows.
_LOCAL = threading.local()


@dataclass
class PartitionResult:
    """The outcome of one partition, as the runner collects it."""

    index: int
    counts: PartitionCounts
    seconds: float
    reused: bool
    pid: int
    peak_rss_bytes: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PartitionResult":
        return cls(**{**data, "counts": PartitionCounts(**data["counts"])})


def peak_rss_bytes() -> int:
    """Return this process's peak resident memory so far, in bytes.

    Linux's VmHWM starts afresh when a process starts a new program. ru_maxrss, the fallback
    elsewhere, does not: a spawned worker would report its parent's size as its own.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # the line reads "VmHWM:  123456 kB"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def scoring_context(plan: JobPlan) -> ScoringContext:
    """Return this thread's context for the plan's export, loading it on first use."""
    key = (str(Path(plan.settings.export_dir).resolve()), plan.model_version, str(plan.staging))
    if getattr(_LOCAL, "key", None) != key:
        exported = ExportedModel.load(plan.settings.export_dir, user_table=False,
                                      user_side=plan.input_kind != "precomputed")
        _LOCAL.context = ScoringContext.build(exported, plan.unavailable())
        _LOCAL.key = key
    return _LOCAL.context


def read_partition_input(plan: JobPlan, index: int) -> PartitionInput:
    """Read a partition's users with their histories, from prepared inputs or the staged store events."""
    if plan.input_kind == "precomputed":
        return read_input_file(plan.input_file(index))
    users = pq.read_table(plan.users_file(index))
    store_users = users.column("store_user").to_numpy()

    offsets = np.zeros(users.num_rows + 1, dtype=np.int64)
    history = np.zeros(0, dtype=np.int64)
    new_item_events = 0
    events_dir = plan.events_dir(index)
    if events_dir.is_dir():
        events = pq.read_table(events_dir, columns=["user", "item", "timestamp", "ingest_order"])
        user, item = events.column("user").to_numpy(), events.column("item").to_numpy()
        # The log's order: by user, then time, then position in the ingested input.
        order = np.lexsort((events.column("ingest_order").to_numpy(), events.column("timestamp").to_numpy(), user))
        user, item = user[order], item[order]
        known_item = item >= 0
        new_item_events = int((~known_item).sum())
        # Users found in the store come first, in ascending store row order.
        in_store = int((store_users >= 0).sum())
        row = np.searchsorted(store_users[:in_store], user[known_item])
        counts = np.bincount(row, minlength=users.num_rows)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        history = item[known_item]
    return input_from_users(users, offsets, history, new_item_events)


def score_partition(plan: JobPlan, index: int) -> PartitionResult:
    """Score partition ``index`` of ``plan`` and write its part file and summary atomically."""
    started = time.perf_counter()
    summary_path = plan.part_summary_file(index)
    if summary_path.is_file() and plan.part_file(index).is_file():
        saved = PartitionResult.from_dict(atomic.read_json(summary_path))
        return PartitionResult(index, saved.counts, saved.seconds, True, os.getpid(), peak_rss_bytes())

    settings = plan.settings
    if settings.torch_threads is not None:
        torch.set_num_threads(settings.torch_threads)
    context = scoring_context(plan)
    data = read_partition_input(plan, index)
    scores, items, counts = recommend(context, data, settings.k, settings.user_chunk, settings.item_chunk)
    table = recommendations_table(data, scores, items, context.item_ids, context.exported.segment_names,
                                  plan.model_version, settings.run_date)
    del scores, items
    plan.part_file(index).parent.mkdir(parents=True, exist_ok=True)
    write_part(table, plan.part_file(index))
    result = PartitionResult(index, counts, time.perf_counter() - started, False, os.getpid(), peak_rss_bytes())
    atomic.write_json(summary_path, result.to_dict())
    return result
