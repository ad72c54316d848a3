"""Jobs on inputs that carry their own user vectors, and the input file format."""


import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from recsys_peft.export.model import ExportedModel
from recsys_peft.scoring.inputs import PartitionInput, read_input_file, write_input_file
from recsys_peft.scoring.job import run_job
from recsys_peft.scoring.plan import prepare_precomputed
from recsys_peft.scoring.settings import ScoringSettings

K = 6


def generated_input(first_user: int, rows: int, dim: int, seed: int) -> PartitionInput:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 5, size=rows)
    lengths[0] = 0
    return PartitionInput(
        user_ids=pa.array([f"p{first_user + i}" for i in range(rows)]),
        export_users=np.arange(first_user, first_user + rows), segments=rng.integers(-1, 14, size=rows),
        slots=np.full(rows, -1), attributes=np.zeros((rows, 0), dtype=np.int64),
        history_offsets=np.concatenate([[0], np.cumsum(lengths)]),
        history_items=rng.integers(0, 150, size=int(lengths.sum())),
        vectors=rng.standard_normal((rows, dim)).astype(np.float32),
    )


def test_input_file_round_trip(tmp_path):
    data = generated_input(0, 9, 4, seed=1)

    write_input_file(tmp_path / "part.parquet", data)
    loaded = read_input_file(tmp_path / "part.parquet")

    assert loaded.user_ids.equals(data.user_ids)
    for name in ("export_users", "segments", "slots", "history_offsets", "history_items", "vectors"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(data, name), err_msg=name)


def test_input_rejects_short_column():
    with pytest.raises(ValueError, match=r"PartitionInput.segments has 2 rows, expected 3"):
        PartitionInput(pa.array(["a", "b", "c"]), np.zeros(3), np.zeros(2), np.zeros(3), np.zeros((3, 0)),
                       np.zeros(4, dtype=np.int64), np.zeros(0, dtype=np.int64))


def test_precomputed_job_uses_vectors(export_dir, tmp_path):
    settings = ScoringSettings(export_dir=str(export_dir), output_dir=str(tmp_path / "out"), k=K,
                               run_date="2026-11-01", item_chunk=40)
    parts = [generated_input(0, 10, 16, seed=2), generated_input(10, 7, 16, seed=3)]
    unavailable = np.zeros(150, dtype=bool)
    unavailable[[3, 50, 149]] = True
    prepare_precomputed(settings, iter(parts), unavailable)

    summary = run_job(settings)

    table = pq.read_table(summary.path).sort_by([("user_id", "ascending"), ("rank", "ascending")])
    items = torch.from_numpy(ExportedModel.load(export_dir).item_vectors.numpy())
    assert summary.counts.users == 17
    assert summary.counts.fallback_users == sum(int((p.history_lengths == 0).sum()) for p in parts)
    assert summary.plan_counts["unavailable_items"] == 3
    for data in parts:
        for row in np.flatnonzero(data.history_lengths > 0):
            scores = torch.from_numpy(data.vectors[row]) @ items.T
            seen = data.history_items[data.history_offsets[row]:data.history_offsets[row + 1]]
            scores[seen] = float("-inf")
            scores[torch.from_numpy(unavailable)] = float("-inf")
            user = data.user_ids[row].as_py()
            returned = table.filter(pa.compute.equal(table.column("user_id"), user))
            expected = torch.topk(scores, K).values.numpy()
            np.testing.assert_allclose(returned.column("score").to_numpy(), expected, atol=1e-5, err_msg=user)


def test_job_without_store_or_inputs(export_dir, tmp_path):
    settings = ScoringSettings(export_dir=str(export_dir), output_dir=str(tmp_path / "out"), k=K)

    with pytest.raises(FileNotFoundError, match=r"no store_dir given and no prepared inputs with fingerprint"):
        run_job(settings)


def test_precomputed_rejects_store(export_dir, store, tmp_path):
    settings = ScoringSettings(export_dir=str(export_dir), output_dir=str(tmp_path), store_dir=str(store.store_dir))

    with pytest.raises(ValueError, match=r"prepare_precomputed needs settings without a store_dir"):
        prepare_precomputed(settings, iter([]))
