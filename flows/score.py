"""The batch scoring job: an exported model and a set of users to top-K recommendations.

    plan -> score partition 0 .. N-1 (in parallel on the task runner) -> publish

Each task calls ``recsys_peft.scoring``. The task runner decides where partitions run: threads
of this process, a process pool on this machine, or a Dask cluster (a local one, or the
scheduler at ``dask_address``, whose workers must see the same export, store and output
folders). Progress is logged as partitions finish, and the run ends with one ``score`` summary
line. Run it with ``recsys-peft score`` or ``python -m flows.score``; ``--help`` lists the options.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.futures import as_completed  # noqa: E402
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner  # noqa: E402

from recsys_peft.progress import attached_to_terminal, progress  # noqa: E402
from recsys_peft.scoring.job import JobSummary, ProgressTracker, finish_job, worker_settings  # noqa: E402
from recsys_peft.scoring.partition import PartitionResult, score_partition  # noqa: E402
from recsys_peft.scoring.plan import JobPlan, plan_job  # noqa: E402
from recsys_peft.scoring.settings import ScoringSettings  # noqa: E402

RUNNERS = ("threads", "processes", "dask")
# At most one progress line per this many seconds, besides the line for the last partition.
PROGRESS_INTERVAL_SECONDS = 10.0


@task(cache_policy=NO_CACHE)
def plan(settings: ScoringSettings) -> JobPlan:
    job = plan_job(settings)
    counts = job.counts
    get_run_logger().info(
        "score plan users=%d partitions=%d reused=%s unknown_users=%d deleted_users=%d new_items=%d "
        "unavailable_items=%d fingerprint=%s staging=%s", counts.get("users", 0), job.partitions, job.reused,
        counts.get("unknown_users", 0), counts.get("deleted_users", 0), counts.get("new_items", 0),
        counts.get("unavailable_items", 0), job.fingerprint, job.staging)
    return job


@task(cache_policy=NO_CACHE, task_run_name="score-partition-{index}")
def score_one(job: JobPlan, index: int) -> PartitionResult:
    return score_partition(job, index)


@task(cache_policy=NO_CACHE)
def publish(job: JobPlan, results: list[PartitionResult], started_at: float) -> JobSummary:
    return finish_job(job, results, started_at)


@flow(name="recsys-peft-score", log_prints=False)
def score_flow(settings: ScoringSettings, workers: int = 1) -> dict:
    """Score the users of ``settings`` and return the run summary (``JobSummary.to_dict``)."""
    logger = get_run_logger()
    started_at = time.time()
    settings = worker_settings(settings, workers)
    logger.info("score start export=%s store=%s users=%s k=%d run_date=%s output=%s workers=%d torch_threads=%s",
                settings.export_dir, settings.store_dir, settings.users.describe(), settings.k, settings.run_date,
                settings.output_dir, workers, settings.torch_threads)
    job = plan(settings)
    futures = [score_one.submit(job, index) for index in range(job.partitions)]

    tracker = ProgressTracker(job, started_at)
    results: list[PartitionResult] = []
    last_logged = 0.0
    # In a terminal a bar counts users as partitions finish; the periodic lines are logged either way.
    bar = progress("score", tracker.users_total, "user") if attached_to_terminal() else nullcontext()
    with bar as users_bar:
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            done = tracker.update(result)
            if users_bar is not None:
                users_bar.advance(result.counts.users)
            now = time.time()
            if now - last_logged >= PROGRESS_INTERVAL_SECONDS or done.partitions_done == job.partitions:
                logger.info(done.log_line())
                last_logged = now

    summary = publish(job, results, started_at)
    logger.info(summary.log_line())
    return summary.to_dict()


def task_runner(runner: str, workers: int, dask_address: str | None = None) -> TaskRunner:
    """Build the task runner that spreads partitions: threads, processes or Dask workers."""
    if runner not in RUNNERS:
        raise ValueError(f"runner must be one of {list(RUNNERS)}, got {runner!r}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if runner == "threads":
        return ThreadPoolTaskRunner(max_workers=workers)
    if runner == "processes":
        return ProcessPoolTaskRunner(max_workers=workers)
    from prefect_dask import DaskTaskRunner

    if dask_address:
        return DaskTaskRunner(address=dask_address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})


def run_score_flow(settings: ScoringSettings, runner: str = "processes", workers: int = 1,
                   dask_address: str | None = None) -> dict:
    """Run ``score_flow`` on the chosen task runner and return its summary."""
    configured = score_flow.with_options(task_runner=task_runner(runner, workers, dask_address))
    return configured(settings, workers=workers)


def main(argv: list[str] | None = None) -> None:
    """Run the ``recsys-peft score`` command; it exits with its status code."""
    import typer

    from recsys_peft.cli.score import score

    app = typer.Typer(add_completion=False)
    app.command()(score)
    app(args=argv)


if __name__ == "__main__":
    main()
