"""An exclusive, advisory ``flock`` on a file, with a timeout: one writer at a time on one machine.

The kernel releases the lock when its process exits, even by a crash, so a failed run never
leaves a lock behind. NOTE: ``flock`` is not reliable on every network file system.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive_lock(path: str | Path, timeout_seconds: float, on_timeout: Callable[[], Exception],
                   poll_seconds: float = 0.05) -> Iterator[None]:
    """Hold the lock on ``path`` for the body of the ``with``, creating the file when missing.

    Waits up to ``timeout_seconds`` for another holder to finish, then raises ``on_timeout()``.
    """
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_seconds
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise on_timeout() from None
                time.sleep(poll_seconds)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        os.close(handle)
