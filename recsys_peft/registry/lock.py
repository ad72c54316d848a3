"""A lock around promotion, so that two processes cannot replace ``CURRENT.json`` at once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from recsys_peft.file_lock import exclusive_lock

LOCK_FILE = ".promotion.lock"


class LockTimeout(TimeoutError):
    """Another process held the promotion lock for longer than the timeout."""


@contextlib.contextmanager
def file_lock(folder: str | Path, timeout_seconds: float = 60.0, poll_seconds: float = 0.05) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``folder/.promotion.lock`` for the body of the ``with``.

    The kernel releases the lock when its process dies, so a crashed run never leaves the
    registry locked. Raises ``LockTimeout`` when the lock is not free within ``timeout_seconds``.
    """
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = Path(folder) / LOCK_FILE

    def timed_out() -> Exception:
        return LockTimeout(f"promotion lock {path} was held by another process for more than "
                           f"{timeout_seconds:.0f} s; retry, or check for a stuck promotion")

    with exclusive_lock(path, timeout_seconds, timed_out, poll_seconds):
        yield
