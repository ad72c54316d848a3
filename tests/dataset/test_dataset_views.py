"""Views: padded histories before a log position, and the items seen before it."""

import numpy as np

from recsys_peft.dataset.log import InteractionLog
from recsys_peft.dataset.views import PAD, history_before, seen_before, seen_csr


def test_history_docstring_example():
    log = InteractionLog.from_arrays(
        np.array([0, 0, 0]), np.array([5, 7, 9]), np.array([1, 2, 3]), num_users=1, num_items=10
    )

    history = history_before(log, np.array([0]), np.array([2]), length=4)

    assert history.tolist() == [[7, 5, PAD, PAD]]
    assert PAD == -1


def test_history_most_recent_first(small_log):
    # User 0 has items 5, 7, 9, 4 at positions 0-3; user 1 has 1, 2 at positions 4-5.
    history = history_before(small_log, np.array([0, 0, 1]), np.array([3, 1, 5]), length=3)

    assert history.tolist() == [[9, 7, 5], [5, PAD, PAD], [1, PAD, PAD]]
    assert history.dtype == np.int64


def test_history_truncated_to_length(small_log):
    history = history_before(small_log, np.array([0]), np.array([3]), length=2)

    assert history.tolist() == [[9, 7]]


def test_history_one_past_end(small_log):
    # offsets[u + 1] is one past the user's last event, so the whole history comes back.
    users = np.array([0, 1, 2, 3])
    ends = small_log.offsets[users + 1]

    history = history_before(small_log, users, ends, length=5)

    assert history.tolist() == [
        [4, 9, 7, 5, PAD],
        [2, 1, PAD, PAD, PAD],
        [3, PAD, PAD, PAD, PAD],
        [PAD, PAD, PAD, PAD, PAD],
    ]


def test_history_first_event_empty(small_log):
    # Position 4 is user 1's first event; user 0's events just before it must not leak in.
    history = history_before(small_log, np.array([1]), np.array([4]), length=3)

    assert history.tolist() == [[PAD, PAD, PAD]]


def test_seen_csr_items(small_log):
    users = np.array([0, 1, 3, 0])
    positions = np.array([3, 6, 7, 0])

    offsets, items = seen_csr(small_log, users, positions)

    assert offsets.tolist() == [0, 3, 5, 5, 5]
    assert items.tolist() == [5, 7, 9, 1, 2]


def test_seen_csr_no_users(small_log):
    offsets, items = seen_csr(small_log, np.array([], dtype=np.int64), np.array([], dtype=np.int64))

    assert offsets.tolist() == [0]
    assert items.tolist() == []


def test_seen_before_mask(small_log):
    mask = seen_before(small_log, np.array([0, 1]), np.array([2, 6]))

    assert mask.shape == (2, 10)
    assert np.flatnonzero(mask[0].numpy()).tolist() == [5, 7]
    assert np.flatnonzero(mask[1].numpy()).tolist() == [1, 2]
