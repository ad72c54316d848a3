import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from recsys_peft.dataset.views import seen_before
from recsys_peft.export.model import ExportedModel
from recsys_peft.scoring.batch import score_users
from recsys_peft.scoring.job import run_job
from recsys_peft.scoring.output import LATEST_FILE, PARTITIONING, SUCCESS_FILE, read_latest, read_latest_run

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = ["user_id", "item_id", "rank", "score", "segment", "model_version", "run_date"]

# Score in a fresh interpreter and kill it (SIGKILL, so nothing is cleaned up) right after its
# second partition is written.
KILLED_RUN_SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    from recsys_peft.scoring.job import run_job
    from recsys_peft.scoring.settings import ScoringSettings

    settings = ScoringSettings(**json.loads(sys.argv[1]))

    def kill_after_two(progress):
        if progress.partitions_done == 2:
            os.kill(os.getpid(), signal.SIGKILL)

    run_job(settings, on_progress=kill_after_two)
""")


def read_run(folder: Path) -> pa.Table:
    return pq.read_table(folder).sort_by([("user_id", "ascending"), ("rank", "ascending")])


def without_scores(table: pa.Table) -> pa.Table:
    return table.drop_columns(["score"])


def test_job_layout_and_pointer(job_settings, snapshot):
    settings = job_settings()

    summary = run_job(settings)

    output = Path(settings.output_dir)
    run = output / "run_date=2026-11-01" / f"model_version={summary.model_version}"
    assert sorted(p.name for p in run.iterdir()) == [SUCCESS_FILE] + [f"part-{i:05d}.parquet" for i in range(5)]
    assert sorted(p.name for p in output.iterdir()) == [LATEST_FILE, "run_date=2026-11-01"]
    assert read_latest(output)["path"] == f"run_date=2026-11-01/model_version={summary.model_version}"
    table = read_run(run)
    assert table.column_names == COLUMNS
    assert table.num_rows == snapshot.log.num_users * 5
    assert set(table.column("run_date").to_pylist()) == {"2026-11-01"}
    marker = json.loads((run / SUCCESS_FILE).read_text())
    assert marker["users"] == snapshot.log.num_users
    assert marker["rows"] == table.num_rows
    assert summary.partitions == 5


def test_whole_output_reads_with_partitioning(job_settings):
    settings = job_settings()
    run_job(settings)

    table = pq.read_table(settings.output_dir, partitioning=PARTITIONING)

    assert table.num_rows == 120 * 5
    assert table.schema.field("run_date").type == pa.string()
    assert read_latest_run(settings.output_dir).num_rows == 120 * 5


def test_job_matches_in_memory_scoring(job_settings, export_dir, snapshot):
    settings = job_settings()
    log = snapshot.log
    users = np.arange(log.num_users)
    expected, _ = score_users(ExportedModel.load(export_dir), log, snapshot.users, users, log.offsets[users + 1], k=5)

    summary = run_job(settings)

    actual = read_run(Path(summary.path))
    expected = expected.sort_by([("user_id", "ascending"), ("rank", "ascending")])
    for column in ("user_id", "item_id", "rank", "segment", "model_version"):
        assert actual.column(column).to_pylist() == expected.column(column).to_pylist(), column
    np.testing.assert_allclose(actual.column("score").to_numpy(), expected.column("score").to_numpy(), atol=1e-6)
    assert summary.counts.model_users == log.num_users
    assert summary.counts.fallback_users == 0


def test_job_never_recommends_seen(job_settings, snapshot):
    summary = run_job(job_settings(k=20))

    table = read_run(Path(summary.path))
    log = snapshot.log
    users = np.arange(log.num_users)
    seen = seen_before(log, users, log.offsets[users + 1])
    row_of = {u: i for i, u in enumerate(snapshot.user_ids)}
    item_of = {item: i for i, item in enumerate(snapshot.item_ids)}
    rows = [row_of[u] for u in table.column("user_id").to_pylist()]
    items = [item_of[i] for i in table.column("item_id").to_pylist()]
    assert not seen.numpy()[rows, items].any()


def test_job_top_k_order(job_settings):
    summary = run_job(job_settings(k=8))

    frame = read_run(Path(summary.path)).to_pandas()
    for user, rows in frame.groupby("user_id"):
        assert rows["rank"].tolist() == list(range(1, 9)), user
        assert rows["score"].is_monotonic_decreasing, user
        assert rows["item_id"].is_unique, user


def test_chunk_sizes_same_output(job_settings, tmp_path):
    # 150 items: 64 per chunk gives three chunks, 1,000 gives one.
    small = run_job(job_settings(item_chunk=64, user_chunk=7))
    large = run_job(job_settings(output_dir=str(tmp_path / "other"), item_chunk=1000, user_chunk=1000))

    small_table, large_table = read_run(Path(small.path)), read_run(Path(large.path))
    assert without_scores(small_table).equals(without_scores(large_table))
    np.testing.assert_allclose(small_table.column("score").to_numpy(), large_table.column("score").to_numpy(),
                               atol=1e-6)


def test_rerun_replaces_output(job_settings):
    settings = job_settings()
    first = run_job(settings)
    first_table = read_run(Path(first.path))

    second = run_job(settings)

    assert second.path == first.path
    assert read_run(Path(second.path)).equals(first_table)
    output = Path(settings.output_dir)
    assert sorted(p.name for p in output.iterdir()) == [LATEST_FILE, "run_date=2026-11-01"]
    assert len(list((output / "run_date=2026-11-01").iterdir())) == 1
    assert second.partitions_reused == 0


def test_rerun_other_users_replaces(job_settings, snapshot):
    settings = job_settings()
    run_job(settings)
    segment = snapshot.segments.names[int(snapshot.segments.user_segments[0])]

    summary = run_job(job_settings(users=type(settings.users)("segment", segment)))

    table = read_run(Path(summary.path))
    members = int(np.sum(snapshot.segments.user_segments == snapshot.segments.user_segments[0]))
    assert set(table.column("segment").to_pylist()) == {segment}
    assert table.num_rows == members * 5


@pytest.mark.slow
def test_killed_run_resumes(job_settings, tmp_path):
    # One thread everywhere: matrix products split over other thread counts round differently.
    settings = job_settings(torch_threads=1)
    arguments = {k: v for k, v in settings.to_dict().items() if k != "users"}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    killed = subprocess.run([sys.executable, "-c", KILLED_RUN_SCRIPT, json.dumps(arguments)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)

    assert killed.returncode == -9, killed.stderr
    output = Path(settings.output_dir)
    staging = next((output / ".staging" / "run_date=2026-11-01").iterdir())
    assert sorted(p.name for p in (staging / "parts").glob("*.parquet")) == ["part-00000.parquet",
                                                                           "part-00001.parquet"]
    assert not (output / "run_date=2026-11-01").exists()
    assert not (output / LATEST_FILE).exists()

    resumed = run_job(settings)
    clean = run_job(job_settings(output_dir=str(tmp_path / "clean"), torch_threads=1))

    assert resumed.partitions_reused == 2
    assert read_run(Path(resumed.path)).equals(read_run(Path(clean.path)))
    assert resumed.counts == clean.counts
    assert not (output / ".staging" / "run_date=2026-11-01" / staging.name).exists()


def test_restart_ignores_finished_parts(job_settings):
    settings = job_settings()
    with pytest.raises(RuntimeError, match="stop after one partition"):
        run_job(settings, on_progress=_stop_after_one)

    summary = run_job(job_settings(resume=False))

    assert summary.partitions_reused == 0
    assert summary.counts.users == 120


def _stop_after_one(progress):
    raise RuntimeError("stop after one partition")


def test_progress_reports_rate(job_settings):
    seen = []

    run_job(job_settings(), on_progress=seen.append)

    assert [p.partitions_done for p in seen] == [1, 2, 3, 4, 5]
    assert [p.users_done for p in seen] == [25, 50, 75, 100, 120]
    assert seen[-1].users_total == 120
    assert seen[-1].users_per_second > 0
    assert seen[-1].seconds_left == 0
    assert seen[0].log_line().startswith("score progress users=25/120 partitions=1/5 users_per_s=")


def test_summary_line_fields(job_settings):
    summary = run_job(job_settings())

    fields = dict(part.split("=", 1) for part in summary.log_line().split()[1:])

    assert summary.log_line().startswith("score users=120 rows=600 ")
    assert fields["fallback_users"] == "0"
    assert float(fields["wall_s"]) > 0
    for key in ("unknown_users", "no_history_users", "new_items", "new_item_events", "unavailable_items",
                "short_of_k", "partitions", "users_per_s", "model_version", "run_date", "path"):
        assert key in fields, key


def test_latest_pointer_keeps_newest_date(job_settings):
    run_job(job_settings(run_date="2026-11-02"))

    run_job(job_settings(run_date="2026-11-01"))

    latest = read_latest(job_settings().output_dir)
    assert latest["run_date"] == "2026-11-02"
    assert latest["path"].startswith("run_date=2026-11-02/")


def test_unknown_segment_rejected(job_settings):
    settings = job_settings()

    with pytest.raises(ValueError, match=r"segment 'X:99' is not in the export at .*; its segments are \["):
        run_job(job_settings(users=type(settings.users)("segment", "X:99")))


def test_user_list_with_unknown_ids(job_settings, tmp_path, snapshot, export_dir):
    listed = ["u5", "nobody", "u5", "u7", "ghost"]
    pq.write_table(pa.table({"user_id": listed}), tmp_path / "users.parquet")
    settings = job_settings(users=type(job_settings().users)("list", str(tmp_path / "users.parquet")))

    summary = run_job(settings)

    table = read_run(Path(summary.path))
    assert sorted(set(table.column("user_id").to_pylist())) == ["ghost", "nobody", "u5", "u7"]
    assert summary.counts.users == 4
    assert summary.counts.unknown_users == 2
    assert summary.counts.fallback_users == 2
    assert summary.plan_counts["duplicate_ids"] == 1
    assert summary.plan_counts["ids_not_in_store"] == 2
    exported = ExportedModel.load(export_dir)
    overall = exported.item_popularity.numpy()
    order = np.lexsort((np.arange(len(overall)), -overall))[:5]
    ghost = table.filter(pc.equal(table.column("user_id"), "ghost"))
    assert ghost.column("item_id").to_pylist() == [snapshot.item_ids[i] for i in order]
    assert ghost.column("segment").null_count == 5


def test_user_list_needs_user_id(job_settings, tmp_path):
    pq.write_table(pa.table({"id": ["u1"]}), tmp_path / "users.parquet")
    settings = job_settings(users=type(job_settings().users)("list", str(tmp_path / "users.parquet")))

    with pytest.raises(ValueError, match=r"user list .*users\.parquet needs a user_id column, found \['id'\]"):
        run_job(settings)


def test_unavailable_items_never_recommended(job_settings, tmp_path, snapshot):
    before = read_run(Path(run_job(job_settings(output_dir=str(tmp_path / "before"))).path))
    popular = pc.value_counts(before.column("item_id")).to_pylist()
    blocked = sorted(popular, key=lambda c: -c["counts"])[:5]
    blocked_ids = [c["values"] for c in blocked]
    pq.write_table(pa.table({"item_id": blocked_ids + ["i100", "brand-new"],
                             "available": [False] * 5 + [True, False]}), tmp_path / "catalogue.parquet")

    summary = run_job(job_settings(catalogue=str(tmp_path / "catalogue.parquet")))

    table = read_run(Path(summary.path))
    assert not set(table.column("item_id").to_pylist()) & set(blocked_ids)
    assert table.num_rows == 120 * 5
    assert summary.plan_counts["unavailable_items"] == 5
    assert summary.plan_counts["new_items"] == 1


def test_catalogue_needs_available(job_settings, tmp_path):
    pq.write_table(pa.table({"item_id": ["i1"]}), tmp_path / "catalogue.parquet")

    with pytest.raises(ValueError, match=r"catalogue .* lacks columns \['available'\]"):
        run_job(job_settings(catalogue=str(tmp_path / "catalogue.parquet")))


@pytest.mark.slow
def test_processes_same_output(job_settings, tmp_path):
    single = run_job(job_settings())

    parallel = run_job(job_settings(output_dir=str(tmp_path / "parallel")), workers=2)

    assert read_run(Path(parallel.path)).equals(read_run(Path(single.path)))
    assert len(parallel.peak_rss_bytes_by_process) == 3
    assert parallel.counts == single.counts
