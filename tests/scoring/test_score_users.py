import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from recsys_peft.dataset.features import user_batch
from recsys_peft.dataset.log import InteractionLog
from recsys_peft.dataset.views import seen_before
from recsys_peft.export.model import ExportedModel
from recsys_peft.scoring.batch import score_users, write_recommendations

K = 10


@pytest.fixture(scope="module")
def exported(export_dir) -> ExportedModel:
    return ExportedModel.load(export_dir)


def scoring_positions(snapshot) -> tuple[np.ndarray, np.ndarray]:
    """Return every user index and its scoring position: its test target, or the end of its events."""
    log = snapshot.log
    users = np.arange(log.num_users)
    positions = log.offsets[users + 1].copy()
    positions[snapshot.split.test.users] = snapshot.split.test.positions
    return users, positions


@pytest.fixture(scope="module")
def scored(exported, snapshot):
    users, positions = scoring_positions(snapshot)
    return score_users(exported, snapshot.log, snapshot.users, users, positions, k=K, item_chunk=32)


def recommendations_by_user(table: pa.Table) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for row in table.sort_by([("user_id", "ascending"), ("rank", "ascending")]).to_pylist():
        grouped.setdefault(row["user_id"], []).append(row["item_id"])
    return grouped


def test_k_rows_per_user(scored, snapshot):
    table, summary = scored
    counts = pc.value_counts(table.column("user_id")).to_pylist()

    assert table.num_rows == snapshot.log.num_users * K
    assert sorted(c["values"] for c in counts) == sorted(snapshot.user_ids)
    assert {c["counts"] for c in counts} == {K}
    assert summary.users == snapshot.log.num_users
    assert summary.rows == table.num_rows
    assert summary.fallback_users == 0
    assert summary.users_short_of_k == 0


def test_ranks_one_to_k(scored):
    table, _ = scored

    for user, rows in table.to_pandas().groupby("user_id"):
        assert rows["rank"].tolist() == list(range(1, K + 1)), user
        assert rows["score"].is_monotonic_decreasing, user


def test_no_item_seen_before(scored, snapshot):
    table, _ = scored
    users, positions = scoring_positions(snapshot)
    seen = seen_before(snapshot.log, users, positions)
    user_index = {u: i for i, u in enumerate(snapshot.user_ids)}
    item_index = {item: i for i, item in enumerate(snapshot.item_ids)}

    rows = [user_index[u] for u in table.column("user_id").to_pylist()]
    items = [item_index[i] for i in table.column("item_id").to_pylist()]

    assert not seen[torch.tensor(rows), torch.tensor(items)].any()


def test_scores_match_dense_ranking(scored, exported, snapshot):
    table, _ = scored
    users, positions = scoring_positions(snapshot)
    batch = user_batch(snapshot.log, snapshot.features, users, positions, exported.model.config.history_length,
                       exported.user_slots)
    dense = exported.user_vectors(batch) @ exported.item_vectors.T
    dense[seen_before(snapshot.log, users, positions)] = float("-inf")
    expected_scores = torch.sort(dense, dim=1, descending=True).values[:, :K]

    # Compared by score, because items whose scores differ by float32 rounding may swap places.
    ordered = table.sort_by([("user_id", "ascending"), ("rank", "ascending")])
    row_of = {u: i for i, u in enumerate(snapshot.user_ids)}
    item_of = {item: i for i, item in enumerate(snapshot.item_ids)}
    rows = torch.tensor([row_of[u] for u in ordered.column("user_id").to_pylist()])
    items = torch.tensor([item_of[i] for i in ordered.column("item_id").to_pylist()])
    returned = torch.tensor(ordered.column("score").to_numpy())
    ranks = torch.from_numpy(ordered.column("rank").to_numpy().astype(np.int64)) - 1
    torch.testing.assert_close(returned, dense[rows, items], atol=1e-6, rtol=0)
    torch.testing.assert_close(returned, expected_scores[rows, ranks], atol=1e-6, rtol=0)


def test_chunk_sizes_same_table(scored, exported, snapshot):
    users, positions = scoring_positions(snapshot)

    table, _ = score_users(exported, snapshot.log, snapshot.users, users, positions, k=K,
                           user_chunk=7, item_chunk=11)

    # Matrix products of other shapes round differently, so scores agree only to float32 precision.
    for column in ("user_id", "item_id", "rank", "segment", "model_version"):
        assert table.column(column).equals(scored[0].column(column)), column
    np.testing.assert_allclose(table.column("score").to_numpy(), scored[0].column("score").to_numpy(), atol=1e-6)


def test_segment_and_version_columns(scored, exported, snapshot):
    table, _ = scored
    segment_of = dict(zip(snapshot.user_ids, exported.segment_of_user))

    for row in table.slice(0, 50).to_pylist():
        assert row["segment"] == segment_of[row["user_id"]]
    assert set(table.column("model_version").to_pylist()) == {exported.model_version}


def extended_log(snapshot, new_user_items: list[list[int]]) -> tuple[InteractionLog, pa.Table]:
    """Build the session log plus new users, unknown to the model, with the given item events."""
    log = snapshot.log
    first_new = log.num_users
    new_users = np.concatenate([[first_new + n] * len(items) for n, items in enumerate(new_user_items)])
    new_items = np.concatenate(new_user_items)
    last_time = int(log.timestamps.max())
    extended = InteractionLog.from_arrays(
        np.concatenate([log.users, new_users]).astype(np.int64),
        np.concatenate([log.items, new_items]).astype(np.int64),
        np.concatenate([log.timestamps, last_time + 1 + np.arange(len(new_items))]).astype(np.int64),
        num_users=first_new + len(new_user_items), num_items=log.num_items,
    )
    extra = snapshot.users.slice(0, len(new_user_items))
    extra = extra.set_column(0, "user_id", pa.array([f"new{n}" for n in range(len(new_user_items))]))
    extra = extra.set_column(1, "user_idx", pa.array(first_new + np.arange(len(new_user_items)), pa.int64()))
    return extended, pa.concat_tables([snapshot.users, extra])


def popularity_ranking(exported: ExportedModel, seen: set[int], segment: int = -1) -> list[int]:
    """Rank items as the fallback does: segment count, then overall count, then index."""
    overall = exported.item_popularity.numpy()
    first_key = exported.segment_popularity[segment].numpy() if segment >= 0 else overall
    order = np.lexsort((np.arange(len(overall)), -overall, -first_key))
    return [int(i) for i in order if int(i) not in seen][:K]


def test_unknown_users_get_popular(exported, snapshot, scored):
    log, users_table = extended_log(snapshot, [[0, 1, 2], [5]])
    known = 3
    no_history = 7
    users = np.array([known, 120, 121, no_history])
    positions = np.array([log.offsets[known + 1], log.offsets[121], log.offsets[122], log.offsets[no_history]])

    table, summary = score_users(exported, log, users_table, users, positions, k=K, item_chunk=32)

    by_user = recommendations_by_user(table)
    item_ids = snapshot.item_ids
    assert summary.fallback_users == 3
    assert by_user["new0"] == [item_ids[i] for i in popularity_ranking(exported, {0, 1, 2})]
    assert by_user["new1"] == [item_ids[i] for i in popularity_ranking(exported, {5})]
    segment = int(snapshot.segments.user_segments[no_history])
    assert segment >= 0
    assert by_user[snapshot.user_ids[no_history]] == [item_ids[i] for i in popularity_ranking(exported, set(), segment)]
    assert summary.unknown_users == 2
    assert summary.no_history_users == 1
    new_rows = table.filter(pc.is_in(table.column("user_id"), pa.array(["new0", "new1"])))
    assert new_rows.column("segment").null_count == new_rows.num_rows


def test_write_twice_one_file_set(scored, tmp_path):
    table, summary = scored
    out_dir = tmp_path / "recommendations"

    write_recommendations(table, out_dir, summary)
    write_recommendations(table, out_dir, summary)

    assert sorted(p.name for p in out_dir.iterdir()) == ["_SUCCESS.json", "part-0.parquet"]
    assert pq.read_table(out_dir).num_rows == table.num_rows
    assert json.loads((out_dir / "_SUCCESS.json").read_text())["rows"] == table.num_rows
    assert [p.name for p in tmp_path.iterdir()] == ["recommendations"]


def test_write_replaces_content(scored, tmp_path):
    table, summary = scored
    out_dir = tmp_path / "recommendations"
    write_recommendations(table, out_dir, summary)

    write_recommendations(table.slice(0, K), out_dir, summary)

    assert pq.read_table(out_dir).num_rows == K
