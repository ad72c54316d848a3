"""Test-set evaluation of the base and adapted models, overall and per segment."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys_peft.dataset.snapshot import DataSnapshot
from recsys_peft.evaluation.bootstrap import bootstrap_ci, paired_bootstrap
from recsys_peft.evaluation.metrics import ranking_metrics
from recsys_peft.evaluation.ranking import rank_targets
from recsys_peft.models.two_tower import TwoTowerModel

K = 10


@dataclass
class TestRanks:
    """Per-user test ranks of each model, in the order of ``snapshot.split.test.users``."""

    users: np.ndarray
    ranks: dict[str, np.ndarray]


def test_ranks(snapshot: DataSnapshot, models: dict[str, tuple[TwoTowerModel, np.ndarray | None]]) -> TestRanks:
    """Rank every test target with each named model (model, per-user adapter slots or None)."""
    targets = snapshot.split.test
    out = {}
    for name, (model, slots) in models.items():
        items = model.all_item_embeddings(snapshot.features.item_tags)
        out[name] = rank_targets(model, snapshot.log, snapshot.features, targets, items, slots)
    return TestRanks(targets.users, out)


def _summary(per_user: dict[str, np.ndarray], seed: int) -> dict:
    summary: dict = {"users": int(len(next(iter(per_user.values()))))}
    for metric, values in per_user.items():
        mean, low, high = bootstrap_ci(values, seed=seed)
        summary[metric] = mean
        summary[f"{metric}_ci95"] = [low, high]
    return summary


def metrics_report(snapshot: DataSnapshot, ranks: TestRanks, baseline: str = "base",
                   candidate: str = "adapted", seed: int = 0) -> dict:
    """Metrics at K=10 for every model, with 95% bootstrap intervals, per segment and overall,
    and the paired bootstrap of candidate minus baseline NDCG@10 on the same users."""
    per_model = {name: ranking_metrics(r, K) for name, r in ranks.ranks.items()}
    segments = snapshot.segments.user_segments[ranks.users]

    report: dict = {"k": K, "protocol": "leave-one-out by time; full catalogue; seen items excluded; "
                    "ties count against the model", "overall": {}, "segments": {}}
    for name, per_user in per_model.items():
        report["overall"][name] = _summary(per_user, seed)
    if baseline in per_model and candidate in per_model:
        report["overall"]["paired_ndcg@10"] = paired_bootstrap(
            per_model[baseline][f"ndcg@{K}"], per_model[candidate][f"ndcg@{K}"], seed=seed)

    names = list(snapshot.segments.names) + ["<no segment>"]
    for index, segment in enumerate(names):
        mask = segments == (index if index < len(snapshot.segments.names) else -1)
        if not mask.any():
            continue
        entry: dict = {}
        for name, per_user in per_model.items():
            entry[name] = _summary({m: v[mask] for m, v in per_user.items()}, seed)
        if baseline in per_model and candidate in per_model:
            entry["paired_ndcg@10"] = paired_bootstrap(
                per_model[baseline][f"ndcg@{K}"][mask], per_model[candidate][f"ndcg@{K}"][mask], seed=seed)
        report["segments"][segment] = entry
    report["users_without_target"] = snapshot.split.users_without_target
    return report


def format_table(report: dict, models: tuple[str, ...] = ("base", "adapted")) -> str:
    """A compact fixed-width table of NDCG@10 and HR@10 per segment and overall."""
    header = f"{'segment':<14}{'users':>6}" + "".join(
        f"{m + ' ndcg@10':>18}{m + ' hr@10':>16}" for m in models) + f"{'diff [95% CI]':>28}"
    lines = [header, "-" * len(header)]

    def row(label: str, entry: dict) -> str:
        first = entry[models[0]]
        cells = "".join(f"{entry[m]['ndcg@10']:>18.4f}{entry[m]['hr@10']:>16.4f}" for m in models if m in entry)
        paired = entry.get("paired_ndcg@10")
        diff = f"{paired['mean_diff']:+.4f} [{paired['low']:+.4f}, {paired['high']:+.4f}]" if paired else ""
        return f"{label:<14}{first['users']:>6}{cells}{diff:>28}"

    for segment, entry in report["segments"].items():
        lines.append(row(segment, entry))
    lines.append("-" * len(header))
    lines.append(row("overall", report["overall"]))
    return "\n".join(lines)
