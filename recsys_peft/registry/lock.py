"""A lock around promotion, so that two processes cannot replace ``CURRENT.json`` at once."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

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
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_seconds
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"promotion lock {path} was held by another process for more than "
                                      f"{timeout_seconds:.0f} s; retry, or check for a stuck promotion") from None
                time.sleep(poll_seconds)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        os.close(handle)
