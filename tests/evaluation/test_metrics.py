"""Ranking metrics checked against values worked out by hand on tiny score matrices."""

import math

import numpy as np
import pytest
import torch

from recsys_peft.evaluation.metrics import (
    catalogue_coverage,
    ranking_metrics,
    summarize,
    target_ranks,
    topk_items,
)

# Two users, five items. Row 0 has distinct scores, row 1 has ties at 0.5 and 0.2.
SCORES = torch.tensor(
    [
        [0.9, 0.1, 0.5, 0.7, 0.3],
        [0.2, 0.5, 0.5, 0.8, 0.2],
    ]
)


def test_target_ranks_plain():
    # Row 0, target 2 (0.5): items 0 (0.9) and 3 (0.7) score higher, so rank 2.
    # Row 1, target 3 (0.8): the highest score, so rank 0.
    ranks = target_ranks(SCORES, torch.tensor([2, 3]))

    assert ranks.tolist() == [2, 0]
    assert ranks.dtype == torch.int64


def test_target_ranks_tie_counts_against_model():
    # Row 1, target 1 (0.5): item 3 (0.8) is higher and item 2 ties at 0.5, so rank 2, not 1.
    # Row 1, target 0 (0.2): items 1, 2, 3 are higher and item 4 ties, so rank 4.
    scores = SCORES[[1, 1]]

    ranks = target_ranks(scores, torch.tensor([1, 0]))

    assert ranks.tolist() == [2, 4]


def test_target_ranks_all_equal_scores_worst():
    scores = torch.zeros(1, 5)

    ranks = target_ranks(scores, torch.tensor([3]))

    assert ranks.tolist() == [4]


def test_target_ranks_exclusion_changes_rank():
    # Excluding item 0 in row 0 removes one higher item: rank 2 -> 1.
    # Excluding the tied item 2 in row 1 removes the tie: rank 2 -> 1.
    exclude = torch.zeros(2, 5, dtype=torch.bool)
    exclude[0, 0] = True
    exclude[1, 2] = True

    ranks = target_ranks(SCORES, torch.tensor([2, 1]), exclude)

    assert ranks.tolist() == [1, 1]


def test_target_ranks_excluded_target_still_ranked():
    # The mask marks each target, and row 0 also excludes item 3 (0.7, higher).
    # Row 0, target 2: only item 0 remains higher, so rank 1.
    # Row 1, target 3: still the highest, so rank 0.
    exclude = torch.zeros(2, 5, dtype=torch.bool)
    exclude[0, 2] = True
    exclude[0, 3] = True
    exclude[1, 3] = True

    ranks = target_ranks(SCORES, torch.tensor([2, 3]), exclude)

    assert ranks.tolist() == [1, 0]


def test_target_ranks_rejects_bad_inputs():
    with pytest.raises(ValueError, match="targets must be item indices in"):
        target_ranks(SCORES, torch.tensor([2, 5]))
    with pytest.raises(ValueError, match="one entry per user"):
        target_ranks(SCORES, torch.tensor([2]))
    with pytest.raises(ValueError, match="same shape as scores"):
        target_ranks(SCORES, torch.tensor([2, 3]), torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="NaN"):
        target_ranks(torch.tensor([[0.1, float("nan")]]), torch.tensor([0]))


def test_ranking_metrics_hand_values():
    per_user = ranking_metrics(np.array([0, 2, 4, 9]), k=5)

    assert set(per_user) == {"hr@5", "ndcg@5", "mrr@5", "recall@5"}
    for values in per_user.values():
        assert values.dtype == np.float64

    assert per_user["hr@5"].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert per_user["recall@5"].tolist() == [1.0, 1.0, 1.0, 0.0]
    # rank 0 -> 1/log2(2) = 1, rank 2 -> 1/log2(4) = 0.5, rank 4 -> 1/log2(6).
    assert per_user["ndcg@5"] == pytest.approx([1.0, 0.5, 1.0 / math.log2(6), 0.0])
    assert per_user["mrr@5"] == pytest.approx([1.0, 1.0 / 3.0, 0.2, 0.0])


def test_ranking_metrics_rank_equal_to_k_misses():
    per_user = ranking_metrics(torch.tensor([3]), k=3)

    assert per_user["hr@3"].tolist() == [0.0]
    assert per_user["ndcg@3"].tolist() == [0.0]
    assert per_user["mrr@3"].tolist() == [0.0]


def test_ranking_metrics_k_larger_than_catalogue():
    # Five items means ranks 0..4, and with K = 10 every user is a hit.
    # Row 0, target 1 is the lowest (rank 4). Row 1, target 1 has item 3 above and item 2 tied
    # (rank 2).
    ranks = target_ranks(SCORES, torch.tensor([1, 1]))

    per_user = ranking_metrics(ranks, k=10)

    assert ranks.tolist() == [4, 2]
    assert per_user["hr@10"].tolist() == [1.0, 1.0]
    assert per_user["mrr@10"] == pytest.approx([0.2, 1.0 / 3.0])


def test_ranking_metrics_rejects_bad_k_and_ranks():
    with pytest.raises(ValueError, match="k must be a positive integer"):
        ranking_metrics(np.array([0]), k=0)
    with pytest.raises(ValueError, match="non-negative"):
        ranking_metrics(np.array([-1]), k=5)


def test_summarize_means_and_user_count():
    per_user = ranking_metrics(np.array([0, 2, 9, 9]), k=5)

    summary = summarize(per_user)

    assert summary["users"] == 4
    assert summary["hr@5"] == pytest.approx(0.5)
    assert summary["ndcg@5"] == pytest.approx(1.5 / 4)
    assert summary["mrr@5"] == pytest.approx((1.0 + 1.0 / 3.0) / 4)


def test_summarize_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="one value per user"):
        summarize({"hr@5": np.ones(3), "ndcg@5": np.ones(2)})


def test_topk_items_order_and_exclusion():
    exclude = torch.zeros(2, 5, dtype=torch.bool)
    exclude[0, 0] = True
    exclude[1, 3] = True

    top = topk_items(SCORES, 2, exclude)

    # Row 0 without item 0: 3 (0.7), 2 (0.5). Row 1 without item 3: items 1 and 2 tie at 0.5.
    assert top[0].tolist() == [3, 2]
    assert sorted(top[1].tolist()) == [1, 2]
    assert top.dtype == torch.int64


def test_topk_items_pads_when_k_exceeds_available():
    exclude = torch.zeros(2, 5, dtype=torch.bool)
    exclude[0, [0, 1, 2]] = True
    exclude[1, :] = True

    top = topk_items(SCORES, 4, exclude)

    # Row 0 has items 3 (0.7) and 4 (0.3) left. Row 1 has nothing left.
    assert top[0].tolist() == [3, 4, -1, -1]
    assert top[1].tolist() == [-1, -1, -1, -1]


def test_topk_items_k_larger_than_catalogue():
    top = topk_items(SCORES[:1], 7)

    assert top.tolist() == [[0, 3, 2, 4, 1, -1, -1]]


def test_topk_items_excluded_never_returned_with_inf_scores():
    # Available items scored -inf still come before excluded items.
    scores = torch.tensor([[float("-inf"), 1.0, float("-inf"), 0.0]])
    exclude = torch.tensor([[False, True, True, False]])

    top = topk_items(scores, 4, exclude)

    assert top.tolist() == [[3, 0, -1, -1]]


def test_catalogue_coverage_hand_value():
    # Items 0, 2, 3 and 7 appear, and -1 is padding: 4 of 10 items.
    top = np.array([[0, 2, 3], [3, 7, -1]])

    assert catalogue_coverage(top, num_items=10) == pytest.approx(0.4)


def test_catalogue_coverage_rejects_out_of_range_item():
    with pytest.raises(ValueError, match=r"in \[0, 5\)"):
        catalogue_coverage(np.array([[0, 5]]), num_items=5)
