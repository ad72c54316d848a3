"""Scoring a store that grew after the export: new users and new items, matched by id."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recsys_peft.export.model import ExportedModel
from recsys_peft.scoring.job import run_job

NEW_ITEMS = {"i900", "i901"}
K = 5


def read_run(folder: Path) -> pa.Table:
    return pq.read_table(folder).sort_by([("user_id", "ascending"), ("rank", "ascending")])


def rows_of(table: pa.Table, user: str) -> pa.Table:
    return table.filter(pc.equal(table.column("user_id"), user))


def fallback_items(exported: ExportedModel, item_ids: list[str], seen: set[str], segment: int = -1) -> list[str]:
    """Rank items as the fallback does: segment count, then overall count, then index."""
    overall = exported.item_popularity.numpy()
    first_key = exported.segment_popularity[segment].numpy() if segment >= 0 else overall
    order = np.lexsort((np.arange(len(overall)), -overall, -first_key))
    return [item_ids[i] for i in order if item_ids[i] not in seen][:K]


def test_new_items_left_out(job_settings, newer_store):
    summary = run_job(job_settings(store_dir=str(newer_store)))

    table = read_run(Path(summary.path))
    assert not set(table.column("item_id").to_pylist()) & NEW_ITEMS
    assert summary.plan_counts["new_items"] == 2
    # u900 -> i900, u0 -> i900, u1 -> i901, u901 -> i901
    assert summary.counts.new_item_events == 4
    assert summary.counts.users == 122


def test_new_users_get_fallback(job_settings, newer_store, export_dir, snapshot):
    summary = run_job(job_settings(store_dir=str(newer_store)))

    table = read_run(Path(summary.path))
    exported = ExportedModel.load(export_dir)
    assert summary.counts.unknown_users == 2
    assert summary.counts.fallback_users == 2
    assert summary.counts.no_history_users == 1
    assert summary.counts.model_users == 120
    u900 = rows_of(table, "u900")
    assert u900.column("item_id").to_pylist() == fallback_items(exported, snapshot.item_ids, {"i3", "i7"})
    assert u900.column("segment").null_count == K
    assert rows_of(table, "u901").column("item_id").to_pylist() == fallback_items(exported, snapshot.item_ids, set())


def test_existing_users_unchanged(job_settings, newer_store, tmp_path):
    before = read_run(Path(run_job(job_settings(output_dir=str(tmp_path / "before"))).path))

    after = read_run(Path(run_job(job_settings(store_dir=str(newer_store))).path))

    old_users = pa.array([f"u{u}" for u in range(120)])
    after = after.filter(pc.is_in(after.column("user_id"), old_users))
    for column in ("user_id", "item_id", "rank", "segment"):
        assert after.column(column).equals(before.column(column)), column
    np.testing.assert_allclose(after.column("score").to_numpy(), before.column("score").to_numpy(), atol=1e-6)


def test_new_users_segment_from_spec(job_settings, newer_store, spec_export, snapshot):
    exported = ExportedModel.load(spec_export)

    summary = run_job(job_settings(store_dir=str(newer_store), export_dir=str(spec_export)))

    table = read_run(Path(summary.path))
    segment = list(exported.segment_names).index("F:25-34")
    u900 = rows_of(table, "u900")
    assert set(u900.column("segment").to_pylist()) == {"F:25-34"}
    assert u900.column("item_id").to_pylist() == fallback_items(exported, snapshot.item_ids, {"i3", "i7"}, segment)
    assert set(rows_of(table, "u901").column("segment").to_pylist()) == {"M:25-34"}


def test_segment_selection_includes_new_users(job_settings, newer_store, spec_export):
    selection = type(job_settings().users)("segment", "F:25-34")

    summary = run_job(job_settings(store_dir=str(newer_store), export_dir=str(spec_export), users=selection))

    table = read_run(Path(summary.path))
    assert "u900" in set(table.column("user_id").to_pylist())
    assert set(table.column("segment").to_pylist()) == {"F:25-34"}
