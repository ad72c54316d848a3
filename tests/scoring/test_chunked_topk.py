import numpy as np
import pytest
import torch

from recsys_peft.scoring.topk import NO_ITEM, chunked_topk

NUM_USERS, NUM_ITEMS, DIM = 7, 23, 4


def no_seen(users: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(users + 1, dtype=np.int64), np.empty(0, dtype=np.int64)


def random_case(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    users = torch.randn(NUM_USERS, DIM, generator=generator)
    items = torch.randn(NUM_ITEMS, DIM, generator=generator)
    rng = np.random.default_rng(seed)
    seen_rows = [np.sort(rng.choice(NUM_ITEMS, size=rng.integers(0, 6), replace=False)) for _ in range(NUM_USERS)]
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in seen_rows])]).astype(np.int64)
    return users, items, offsets, np.concatenate(seen_rows).astype(np.int64), seen_rows


def brute_force(users, items, seen_rows, k):
    """Rank unseen items by dense score (descending), breaking ties by item index (ascending)."""
    scores = (users @ items.T).numpy()
    expected_items, expected_scores = [], []
    for row, seen in enumerate(seen_rows):
        candidates = [i for i in range(len(items)) if i not in set(seen.tolist())]
        ranked = sorted(candidates, key=lambda i: (-scores[row, i], i))[:k]
        expected_items.append(ranked)
        expected_scores.append([scores[row, i] for i in ranked])
    return expected_items, expected_scores


@pytest.mark.parametrize("item_chunk", [1, 5, 8, NUM_ITEMS, 100])
def test_topk_equals_brute_force(item_chunk):
    users, items, offsets, seen, seen_rows = random_case()
    k = 6

    scores, top_items = chunked_topk(users, items, k, offsets, seen, item_chunk=item_chunk)

    expected_items, expected_scores = brute_force(users, items, seen_rows, k)
    assert top_items.tolist() == expected_items
    torch.testing.assert_close(scores, torch.tensor(expected_scores), atol=1e-6, rtol=0)


def test_topk_never_returns_seen():
    users, items, offsets, seen, seen_rows = random_case(seed=3)

    _, top_items = chunked_topk(users, items, NUM_ITEMS, offsets, seen, item_chunk=4)

    for row, seen_items in enumerate(seen_rows):
        returned = [i for i in top_items[row].tolist() if i != NO_ITEM]
        assert not set(returned) & set(seen_items.tolist())
        assert len(returned) == NUM_ITEMS - len(seen_items)


@pytest.mark.parametrize("item_chunk", [1, 2, 3, 4, 10])
def test_ties_lowest_index_first(item_chunk):
    users = torch.ones(1, 1)
    items = torch.ones(10, 1)
    offsets, seen = np.array([0, 2]), np.array([1, 4])

    scores, top_items = chunked_topk(users, items, 4, offsets, seen, item_chunk=item_chunk)

    assert top_items.tolist() == [[0, 2, 3, 5]]
    assert scores.tolist() == [[1.0, 1.0, 1.0, 1.0]]


def test_ties_within_score_levels():
    users = torch.ones(1, 1)
    items = torch.tensor([[1.0], [2.0], [2.0], [1.0], [2.0], [0.5]])

    _, top_items = chunked_topk(users, items, 5, *no_seen(1), item_chunk=2)

    assert top_items.tolist() == [[1, 2, 4, 0, 3]]


def test_short_catalogue_pads():
    users = torch.ones(1, 1)
    items = torch.tensor([[0.1], [0.5], [0.9], [0.3], [0.7]])
    offsets, seen = np.array([0, 1]), np.array([2])

    scores, top_items = chunked_topk(users, items, 8, offsets, seen, item_chunk=2)

    assert top_items.tolist() == [[4, 1, 3, 0, NO_ITEM, NO_ITEM, NO_ITEM, NO_ITEM]]
    torch.testing.assert_close(scores[0, :4], torch.tensor([0.7, 0.5, 0.3, 0.1]))
    assert torch.isneginf(scores[0, 4:]).all()


def test_all_seen_all_padding():
    users = torch.ones(2, 1)
    items = torch.ones(3, 1)
    offsets, seen = np.array([0, 3, 3]), np.array([0, 1, 2])

    _, top_items = chunked_topk(users, items, 2, offsets, seen, item_chunk=2)

    assert top_items.tolist() == [[NO_ITEM, NO_ITEM], [0, 1]]


def test_unavailable_items_skipped():
    users, items, *_ = random_case()
    unavailable = torch.zeros(NUM_ITEMS, dtype=torch.bool)
    unavailable[::3] = True

    _, top_items = chunked_topk(users, items, NUM_ITEMS, *no_seen(NUM_USERS), item_chunk=5, unavailable=unavailable)

    returned = top_items[top_items != NO_ITEM]
    assert not unavailable[returned].any()
    assert len(returned) == NUM_USERS * int((~unavailable).sum())


def test_topk_rejects_zero_k():
    with pytest.raises(ValueError, match=r"k must be at least 1, got 0"):
        chunked_topk(torch.ones(1, 1), torch.ones(2, 1), 0, *no_seen(1))
