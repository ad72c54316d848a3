"""A hand-built interaction log shared by the split and view tests."""

import numpy as np
import pytest

from recsys_peft.dataset.log import InteractionLog


@pytest.fixture
def small_log() -> InteractionLog:
    """Four users: 0 has four events, 1 has two, 2 has one and 3 has none.

    Events are given in ingest order (timestamp, then position in the source). Items 7 and 9 of
    user 0 share timestamp 3, and 7 was ingested first. Grouped by user, the log positions are
    user 0: 0-3 (items 5, 7, 9, 4), user 1: 4-5 (items 1, 2), user 2: 6 (item 3).
    """
    users = np.array([0, 1, 0, 0, 1, 2, 0])
    items = np.array([5, 1, 7, 9, 2, 3, 4])
    timestamps = np.array([1, 2, 3, 3, 4, 5, 6])
    return InteractionLog.from_arrays(users, items, timestamps, num_users=4, num_items=10)
