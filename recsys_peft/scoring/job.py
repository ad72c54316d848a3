"""Run a scoring job on this machine: plan, score partitions in worker processes, publish.

The Prefect flow (``flows/score.py``) runs the same three steps as tasks, so that Prefect's task
runners (threads, processes, Dask) spread the partitions. ``run_job`` is the same job without
an orchestrator, for scripts and benchmarks.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from recsys_peft.scoring.output import publish_run
from recsys_peft.scoring.partition import PartitionResult, peak_rss_bytes, score_partition
from recsys_peft.scoring.plan import JobPlan, plan_job
from recsys_peft.scoring.recommend import PartitionCounts
from recsys_peft.scoring.settings import ScoringSettings


@dataclass(frozen=True)
class Progress:
    """How far a job is; ``users_per_second`` counts only users scored by this run."""

    users_done: int
    users_total: int
    partitions_done: int
    partitions_total: int
    users_scored: int
    elapsed_seconds: float

    @property
    def users_per_second(self) -> float:
        return self.users_scored / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    @property
    def seconds_left(self) -> float | None:
        rate = self.users_per_second
        return (self.users_total - self.users_done) / rate if rate > 0 else None

    def log_line(self) -> str:
        left = self.seconds_left
        return (f"score progress users={self.users_done}/{self.users_total} "
                f"partitions={self.partitions_done}/{self.partitions_total} "
                f"users_per_s={self.users_per_second:.0f} eta_s={'unknown' if left is None else f'{left:.0f}'}")


class ProgressTracker:
    """Turn finished partitions into ``Progress`` values."""

    def __init__(self, plan: JobPlan, started_at: float) -> None:
        self.users_total = int(plan.counts.get("users", 0))
        self.partitions_total = plan.partitions
        self.started_at = started_at
        self.users_done = self.users_scored = self.partitions_done = 0

    def update(self, result: PartitionResult) -> Progress:
        self.partitions_done += 1
        self.users_done += result.counts.users
        if not result.reused:
            self.users_scored += result.counts.users
        return Progress(self.users_done, self.users_total, self.partitions_done, self.partitions_total,
                        self.users_scored, time.time() - self.started_at)


@dataclass
class JobSummary:
    """The result of a job, as written to ``_SUCCESS.json`` and logged."""

    run_date: str
    model_version: str
    path: str
    counts: PartitionCounts
    partitions: int
    partitions_reused: int
    wall_seconds: float
    partition_seconds: float = 0.0    # summed over partitions scored by this run, in their workers
    plan_counts: dict = field(default_factory=dict)
    peak_rss_bytes_by_process: dict = field(default_factory=dict)
    completed_at: str = ""

    @property
    def users_per_second(self) -> float:
        return self.counts.users / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(users=self.counts.users, rows=self.counts.rows, users_per_second=self.users_per_second)
        return data

    def log_line(self) -> str:
        c, p = self.counts, self.plan_counts
        return (f"score users={c.users} rows={c.rows} model_users={c.model_users} fallback_users={c.fallback_users} "
                f"unknown_users={c.unknown_users} no_history_users={c.no_history_users} "
                f"short_of_k={c.users_short_of_k} new_items={p.get('new_items', 0)} "
                f"new_item_events={c.new_item_events} unavailable_items={p.get('unavailable_items', 0)} "
                f"deleted_users={p.get('deleted_users', 0)} partitions={self.partitions} "
                f"partitions_reused={self.partitions_reused} wall_s={self.wall_seconds:.1f} "
                f"users_per_s={self.users_per_second:.0f} model_version={self.model_version} "
                f"run_date={self.run_date} path={self.path}")


def worker_settings(settings: ScoringSettings, workers: int) -> ScoringSettings:
    """Give each of ``workers`` processes an equal share of this machine's cores, unless set."""
    if settings.torch_threads is not None or workers <= 1:
        return settings
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return replace(settings, torch_threads=max(1, cores // workers))


def remove_staging(staging: Path) -> None:
    """Remove a job's staging folder, and its parents up to ``.staging`` once they are empty."""
    shutil.rmtree(staging, ignore_errors=True)
    for parent in (staging.parent, staging.parent.parent):
        try:
            parent.rmdir()
        except OSError:
            break


def finish_job(plan: JobPlan, results: list[PartitionResult], started_at: float) -> JobSummary:
    """Check that every partition finished, publish the run folder and remove the staging folder.

    ``started_at`` is the job's start as ``time.time()``, so that it may come from another process.
    """
    done = sorted(r.index for r in results)
    if done != list(range(plan.partitions)):
        missing = sorted(set(range(plan.partitions)) - set(done))
        raise RuntimeError(f"scoring job {plan.staging} is missing partitions {missing[:10]}; rerun to finish it")
    total = PartitionCounts()
    peaks: dict[str, int] = {}
    for result in results:
        total.add(result.counts)
        peaks[str(result.pid)] = max(peaks.get(str(result.pid), 0), result.peak_rss_bytes)
    peaks[str(os.getpid())] = max(peaks.get(str(os.getpid()), 0), peak_rss_bytes())
    summary = JobSummary(
        run_date=plan.settings.run_date, model_version=plan.model_version,
        path=str(plan.target), counts=total, partitions=plan.partitions,
        partitions_reused=sum(r.reused for r in results), wall_seconds=time.time() - started_at,
        partition_seconds=sum(r.seconds for r in results if not r.reused),
        plan_counts=dict(plan.counts), peak_rss_bytes_by_process=peaks,
        completed_at=datetime.now(timezone.utc).isoformat(),
    )
    publish_run([plan.part_file(i) for i in range(plan.partitions)], plan.target,
                {**summary.to_dict(), "fingerprint": plan.fingerprint, "settings": plan.settings.to_dict()})
    remove_staging(plan.staging)
    summary.wall_seconds = time.time() - started_at
    return summary


def run_job(
    settings: ScoringSettings,
    workers: int = 1,
    on_progress: Callable[[Progress], None] | None = None,
) -> JobSummary:
    """Plan, score every partition (in ``workers`` processes when more than one) and publish."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    started_at = time.time()
    plan = plan_job(worker_settings(settings, workers))
    tracker = ProgressTracker(plan, started_at)
    results: list[PartitionResult] = []

    def collect(result: PartitionResult) -> None:
        results.append(result)
        progress = tracker.update(result)
        if on_progress is not None:
            on_progress(progress)

    if workers == 1 or plan.partitions <= 1:
        for index in range(plan.partitions):
            collect(score_partition(plan, index))
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [pool.submit(score_partition, plan, index) for index in range(plan.partitions)]
            for future in as_completed(futures):
                collect(future.result())
    return finish_job(plan, results, started_at)
