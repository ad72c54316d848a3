"""Loading an export without its whole user table, or without its user side at all."""

import numpy as np
import pytest
import torch

from recsys_peft.export.model import ExportedModel


def test_partial_user_table_same_vectors(export_dir, final_batch, adapted):
    _, slots = adapted
    batch = final_batch(slots)
    full = ExportedModel.load(export_dir)
    partial = ExportedModel.load(export_dir, user_table=False)
    users = np.array([5, 77, 3, 119, 5])
    rows = torch.from_numpy(users)

    local = partial.load_user_rows(users)

    assert partial.model.ebc.embedding_bags["t_user"].weight.shape[0] == 4
    assert local.tolist() == [1, 2, 0, 3, 1]
    subset = batch.select(rows)
    subset.users = torch.from_numpy(local)
    torch.testing.assert_close(partial.user_vectors(subset), full.user_vectors(batch.select(rows)), atol=0, rtol=0)


def test_full_user_table_ids_unchanged(export_dir):
    exported = ExportedModel.load(export_dir)

    assert exported.load_user_rows(np.array([4, 2])).tolist() == [4, 2]


def test_user_rows_out_of_range(export_dir):
    partial = ExportedModel.load(export_dir, user_table=False)

    with pytest.raises(IndexError, match=r"user rows must be in \[0, 120\) .*got 3\.\.120"):
        partial.load_user_rows(np.array([3, 120]))


def test_without_user_side(export_dir):
    exported = ExportedModel.load(export_dir, user_side=False)

    assert exported.model is None
    assert exported.family == "two_tower"
    assert exported.item_vectors.shape == (150, 16)
    with pytest.raises(RuntimeError, match=r"was loaded without its user side \(user_side=False\)"):
        exported.load_user_rows(np.array([1]))
