"""The popularity fallback: order, ties, seen and unavailable items."""

import numpy as np
import torch

from recsys_peft.scoring.fallback import PopularityRanking
from recsys_peft.scoring.topk import NO_ITEM

OVERALL = torch.tensor([5.0, 9.0, 9.0, 1.0, 7.0, 0.0])
BY_SEGMENT = torch.tensor([[0.0, 0.0, 3.0, 3.0, 0.0, 1.0],
                           [2.0, 2.0, 2.0, 2.0, 2.0, 2.0]])


def csr(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    return offsets, np.array([i for r in rows for i in r], dtype=np.int64)


def test_order_by_segment_then_overall():
    ranking = PopularityRanking(OVERALL, BY_SEGMENT)

    scores, items = ranking.topk(np.array([0, 1, -1]), *csr([[], [], []]), k=4)

    # Segment 0: items 2 and 3 (3 each, overall 9 before 1), then 5, then 1 (overall 9, lower index than 2).
    assert items[0].tolist() == [2, 3, 5, 1]
    assert scores[0].tolist() == [3.0, 3.0, 1.0, 0.0]
    # Segment 1 ties everywhere: overall count decides, then the lower index.
    assert items[1].tolist() == [1, 2, 4, 0]
    assert items[2].tolist() == [1, 2, 4, 0]
    assert scores[2].tolist() == [9.0, 9.0, 7.0, 5.0]


def test_skips_seen_items():
    ranking = PopularityRanking(OVERALL, BY_SEGMENT)

    _, items = ranking.topk(np.array([-1, -1]), *csr([[1, 4], [2]]), k=3)

    assert items.tolist() == [[2, 0, 3], [1, 4, 0]]


def test_skips_unavailable_items():
    unavailable = np.array([False, True, False, False, False, False])
    ranking = PopularityRanking(OVERALL, BY_SEGMENT, unavailable)

    _, items = ranking.topk(np.array([-1, 0]), *csr([[], []]), k=3)

    assert items.tolist() == [[2, 4, 0], [2, 3, 5]]


def test_pads_short_rows():
    ranking = PopularityRanking(OVERALL, None)

    scores, items = ranking.topk(np.array([3]), *csr([[0, 1, 2, 3]]), k=4)

    assert items.tolist() == [[4, 5, NO_ITEM, NO_ITEM]]
    assert np.isneginf(scores[0, 2:]).all()
