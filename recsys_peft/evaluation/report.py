"""Test-set evaluation of the base and adapted models, overall and per segment."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from recsys_peft.dataset.features import user_batch
from recsys_peft.dataset.snapshot import DataSnapshot
from recsys_peft.dataset.split import Targets
from recsys_peft.dataset.views import seen_csr
from recsys_peft.evaluation.baselines import (
    popularity_scorer,
    rank_with,
    segment_popularity_scorer,
    top_items_with,
)
from recsys_peft.evaluation.bootstrap import bootstrap_ci, paired_bootstrap
from recsys_peft.evaluation.metrics import catalogue_coverage, ranking_metrics
from recsys_peft.evaluation.ranking import rank_targets
from recsys_peft.models.two_tower import TwoTowerModel
from recsys_peft.scoring.topk import chunked_topk

K = 10


@dataclass
class TestRanks:
    """Per-user test ranks of each model, in the order of ``snapshot.split.test.users``.

    ``top_items`` contains each model's (users, K) top-K lists in the same order, seen items
    excluded, for catalogue coverage. A model without lists is reported without coverage.
    """

    users: np.ndarray
    ranks: dict[str, np.ndarray]
    top_items: dict[str, np.ndarray] = field(default_factory=dict)


@torch.no_grad()
def _model_top_items(model: TwoTowerModel, snapshot: DataSnapshot, targets: Targets, item_vectors: torch.Tensor,
                     slots: np.ndarray | None, chunk: int = 2048) -> np.ndarray:
    """Select each test user's top-K items as of the target, seen items excluded, as (U, K) int64."""
    model.eval()
    log = snapshot.log
    offsets, seen = seen_csr(log, targets.users, targets.positions)
    lists = np.empty((len(targets.users), K), dtype=np.int64)
    for start in range(0, len(targets.users), chunk):
        stop = min(start + chunk, len(targets.users))
        batch = user_batch(log, snapshot.features, targets.users[start:stop], targets.positions[start:stop],
                           model.config.history_length, slots)
        chunk_offsets = offsets[start:stop + 1] - offsets[start]
        chunk_seen = seen[offsets[start]:offsets[stop]]
        _, items = chunked_topk(model.user_embeddings(batch), item_vectors, K, chunk_offsets, chunk_seen)
        lists[start:stop] = items.numpy()
    return lists


def baseline_ranks(snapshot: DataSnapshot) -> TestRanks:
    """Rank every test target with the most-popular baselines, overall and per segment."""
    log, split = snapshot.log, snapshot.split
    scorers = {
        "most_popular": popularity_scorer(log, split.train_positions),
        "most_popular_segment": segment_popularity_scorer(
            log, split.train_positions, snapshot.segments.user_segments, len(snapshot.segments.names)),
    }
    ranks = {name: rank_with(score, log, split.test) for name, score in scorers.items()}
    lists = {name: top_items_with(score, log, split.test, K) for name, score in scorers.items()}
    return TestRanks(split.test.users, ranks, lists)


def test_ranks(snapshot: DataSnapshot, models: dict[str, tuple[TwoTowerModel, np.ndarray | None]],
               baselines: bool = True) -> TestRanks:
    """Rank every test target with each named model (model, per-user adapter slots or None).

    With ``baselines``, the most-popular baselines of ``baseline_ranks`` are added under their
    own names, so that the report lists every model next to them.
    """
    targets = snapshot.split.test
    out, lists = {}, {}
    for name, (model, slots) in models.items():
        items = model.all_item_embeddings(snapshot.features.item_tags)
        out[name] = rank_targets(model, snapshot.log, snapshot.features, targets, items, slots)
        lists[name] = _model_top_items(model, snapshot, targets, items, slots)
    if baselines:
        extra = baseline_ranks(snapshot)
        out.update(extra.ranks)
        lists.update(extra.top_items)
    return TestRanks(targets.users, out, lists)


def _summary(per_user: dict[str, np.ndarray], seed: int) -> dict:
    summary: dict = {"users": int(len(next(iter(per_user.values()))))}
    for metric, values in per_user.items():
        mean, low, high = bootstrap_ci(values, seed=seed)
        summary[metric] = mean
        summary[f"{metric}_ci95"] = [low, high]
    return summary


def _add_coverage(summary: dict, top_items: np.ndarray | None, num_items: int) -> dict:
    if top_items is not None:
        summary[f"coverage@{K}"] = catalogue_coverage(top_items, num_items)
    return summary


def metrics_report(snapshot: DataSnapshot, ranks: TestRanks, baseline: str = "base",
                   candidate: str = "adapted", seed: int = 0) -> dict:
    """Metrics at K=10 for every model, with 95% bootstrap intervals, per segment and overall,
    and the paired bootstrap of candidate minus baseline NDCG@10 on the same users.

    Models with top-K lists in ``ranks.top_items`` also get ``coverage@10``: the fraction of
    the catalogue in at least one top-10 list of the users of that entry.
    """
    per_model = {name: ranking_metrics(r, K) for name, r in ranks.ranks.items()}
    segments = snapshot.segments.user_segments[ranks.users]
    num_items = snapshot.log.num_items

    report: dict = {"k": K, "protocol": "leave-one-out by time; full catalogue; seen items excluded; "
                    "ties count against the model", "overall": {}, "segments": {}, "catalogue_items": num_items}
    for name, per_user in per_model.items():
        report["overall"][name] = _add_coverage(_summary(per_user, seed), ranks.top_items.get(name), num_items)
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
            lists = ranks.top_items.get(name)
            entry[name] = _add_coverage(_summary({m: v[mask] for m, v in per_user.items()}, seed),
                                        None if lists is None else lists[mask], num_items)
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
