"""Train, validation and test splits of an interaction log, by time.

Both protocols order each user's events by timestamp and then by ingest order, which is the
position of the event in the source file. ``InteractionLog`` stores every user's events in that
order, so "later" below always means a later log position, and two events with the same
timestamp keep the order in which they were ingested.

Leave-one-out (``leave_one_out``): for each user with at least three events, the last event is
the test target and the one before it the validation target. Every earlier event is training
data. Users with fewer events keep them all for training, have no target, and are counted.

Global temporal split (``temporal_split``): one cut-off time for all users. Events before the
cut-off are the only training data, and no training event is at or after it. Each user's first
event at or after the cut-off is that user's test target, and later events are not used. Each
user's last event before the cut-off is the validation target, for early stopping, when the user
has at least two events before the cut-off. See docs/evaluation.md for why.

In both protocols a target's history is every event of the same user before it. The test
history therefore includes the validation target: a model is evaluated as of the moment before
each user's test target, and never sees the test target or anything after it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from recsys_peft.dataset.log import InteractionLog

MIN_EVENTS_FOR_TARGETS = 3
# A validation target needs at least one training event of the same user before it.
MIN_EVENTS_BEFORE_CUTOFF_FOR_VALIDATION = 2


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


@dataclass(frozen=True)
class TemporalSplit:
    """A global temporal split, with the same target fields as ``LeaveOneOutSplit``.

    ``users_without_target`` is the number of users with events but no test target, which is
    ``users_without_later_event + users_without_history``. Users with no events at all are not
    counted anywhere.
    """

    cutoff: int                    # UTC microseconds, the timestamp unit of InteractionLog
    train_positions: np.ndarray    # log positions usable as training targets, all before cutoff
    valid: Targets
    test: Targets
    users_without_target: int
    users_without_later_event: int  # every event of the user is before the cut-off
    users_without_history: int      # every event of the user is at or after the cut-off


def _validate_time_order(log: InteractionLog) -> None:
    same_user = log.users[1:] == log.users[:-1]
    backwards = np.flatnonzero(same_user & (np.diff(log.timestamps) < 0))
    if backwards.size:
        position = int(backwards[0]) + 1
        raise ValueError(
            f"the log must list each user's events in time order, but user {int(log.users[position])} "
            f"has timestamp {int(log.timestamps[position])} at log position {position} after "
            f"{int(log.timestamps[position - 1])}. Build it with InteractionLog.from_arrays from events "
            "sorted by timestamp"
        )


def temporal_split(log: InteractionLog, cutoff: int) -> TemporalSplit:
    """Split the log at one cut-off time, in UTC microseconds, shared by all users.

    An event with a timestamp equal to the cut-off is after it, so it is never training data.
    The test target of a user is the first event at or after the cut-off, and only users with at
    least one event before the cut-off get one. The validation target is the last event before
    the cut-off of every user with at least two events before it.

    Raises:
        ValueError: when cutoff is not an integer, or the log does not list each user's events
            in time order.
    """
    if isinstance(cutoff, bool) or not isinstance(cutoff, (int, np.integer)):
        raise ValueError(f"cutoff must be an integer timestamp in UTC microseconds, got {cutoff!r}")
    _validate_time_order(log)

    before = log.timestamps < cutoff
    events_before = np.bincount(log.users[before], minlength=log.num_users)  # (U,)
    counts = log.user_counts()
    # Timestamps rise within each user, so the events before the cut-off come first.
    first_after = log.offsets[:-1] + events_before

    test_users = np.flatnonzero((counts > events_before) & (events_before > 0))
    valid_users = np.flatnonzero(events_before >= MIN_EVENTS_BEFORE_CUTOFF_FOR_VALIDATION)
    test_positions = first_after[test_users]
    valid_positions = first_after[valid_users] - 1

    training = before.copy()
    training[valid_positions] = False
    without_later = int(np.sum((counts > 0) & (counts == events_before)))
    without_history = int(np.sum((counts > 0) & (events_before == 0)))
    return TemporalSplit(
        cutoff=int(cutoff),
        train_positions=np.flatnonzero(training),
        valid=Targets(valid_users, log.items[valid_positions], valid_positions),
        test=Targets(test_users, log.items[test_positions], test_positions),
        users_without_target=without_later + without_history,
        users_without_later_event=without_later,
        users_without_history=without_history,
    )


def cutoff_for_fraction(log: InteractionLog, test_fraction: float) -> int:
    """Return the cut-off time that puts about ``test_fraction`` of all events at or after it.

    The cut-off is the timestamp of the event at that quantile, so events that share this
    timestamp all fall after it, and the fraction after it can exceed ``test_fraction``.

    Raises:
        ValueError: when test_fraction is not strictly between 0 and 1, or the log is empty.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be strictly between 0 and 1, got {test_fraction!r}")
    if len(log.timestamps) == 0:
        raise ValueError("the log has no events, so there is no time to cut it at")

    ordered = np.sort(log.timestamps)
    index = min(len(ordered) - 1, math.floor(len(ordered) * (1.0 - test_fraction)))
    return int(ordered[index])
