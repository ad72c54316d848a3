"""Leave-one-out split by time.

For each user with at least three events, the last event (by timestamp, then ingest order) is
the test target and the one before it the validation target; every earlier event is training
data. Users with fewer events keep them all for training and have no target; they are counted.

A target's history is every event of the same user before it, so the test history includes the
validation target: the model is evaluated as of the moment before each user's test target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys_peft.dataset.log import InteractionLog

MIN_EVENTS_FOR_TARGETS = 3


@dataclass(frozen=True)
class Targets:
    """One held-out event per user: ``items[k]`` of ``users[k]`` at log position ``positions[k]``."""

    users: np.ndarray
    items: np.ndarray
    positions: np.ndarray


@dataclass(frozen=True)
class LeaveOneOutSplit:
    train_positions: np.ndarray  # log positions usable as training targets
    valid: Targets
    test: Targets
    users_without_target: int


def leave_one_out(log: InteractionLog) -> LeaveOneOutSplit:
    counts = log.user_counts()
    eligible = np.flatnonzero(counts >= MIN_EVENTS_FOR_TARGETS)
    test_pos = log.offsets[eligible + 1] - 1
    valid_pos = test_pos - 1

    held_out = np.zeros(len(log.items), dtype=bool)
    held_out[test_pos] = True
    held_out[valid_pos] = True
    return LeaveOneOutSplit(
        train_positions=np.flatnonzero(~held_out),
        valid=Targets(eligible, log.items[valid_pos], valid_pos),
        test=Targets(eligible, log.items[test_pos], test_pos),
        users_without_target=int(np.sum((counts > 0) & (counts < MIN_EVENTS_FOR_TARGETS))),
    )
