"""Evaluation report: coverage and baselines added, existing keys kept."""

import numpy as np
import pytest

from recsys_peft.evaluation import report as evaluation_report
from recsys_peft.evaluation.metrics import catalogue_coverage


@pytest.fixture(scope="module")
def report_inputs(snapshot, pretrained, adapted):
    model, slots = adapted
    # Called through the module: pytest would collect a function named test_ranks imported here.
    ranks = evaluation_report.test_ranks(snapshot, {"base": (pretrained.model, None), "adapted": (model, slots)})
    return ranks, evaluation_report.metrics_report(snapshot, ranks, seed=0)


def test_report_keeps_existing_keys(report_inputs):
    _, report = report_inputs

    assert report["k"] == 10
    for model in ("base", "adapted"):
        for key in ("users", "ndcg@10", "ndcg@10_ci95", "hr@10", "mrr@10", "recall@10"):
            assert key in report["overall"][model], (model, key)
    assert set(report["overall"]["paired_ndcg@10"]) == {"mean_diff", "low", "high", "p_b_not_better"}
    assert "users_without_target" in report
    assert report["segments"]


def test_report_coverage_matches_lists(report_inputs, snapshot):
    ranks, report = report_inputs

    for model in ("base", "adapted", "most_popular", "most_popular_segment"):
        lists = ranks.top_items[model]
        assert lists.shape == (len(ranks.users), 10)
        expected = catalogue_coverage(lists, snapshot.log.num_items)
        assert report["overall"][model]["coverage@10"] == pytest.approx(expected), model
        assert 0.0 < expected <= 1.0
    for entry in report["segments"].values():
        assert 0.0 < entry["base"]["coverage@10"] <= report["overall"]["base"]["coverage@10"]


def test_report_lists_agree_with_ranks(report_inputs, snapshot):
    ranks, _ = report_inputs
    targets = snapshot.split.test

    for model in ("base", "adapted", "most_popular"):
        lists = ranks.top_items[model]
        in_list = (lists == targets.items[:, None]).any(axis=1)
        hit = ranks.ranks[model] < 10
        # A rank below 10 means fewer than 10 other items score at least as high as the target,
        # so the target is in the top 10 whatever the order among ties.
        assert np.all(in_list[hit]), model
        for row, (user, position) in enumerate(zip(targets.users, targets.positions)):
            seen = set(snapshot.log.items[snapshot.log.offsets[user]:position].tolist())
            assert not seen & set(lists[row].tolist()), (model, user)
