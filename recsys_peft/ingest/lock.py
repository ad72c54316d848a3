"""One writer per store: ingest runs and deletions on the same store take turns.

The lock is an advisory ``flock`` on ``.<store name>.lock`` beside the store (outside it, so a
failed first run leaves no store folder behind). It holds between processes on one machine and
is released when the holder exits, even by a crash. NOTE: ``flock`` is not
reliable on every network file system; a store shared between machines needs Prefect's
concurrency limits (or one scheduled writer) instead.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DEFAULT_TIMEOUT_SECONDS = 600.0
POLL_SECONDS = 0.1


class StoreLocked(RuntimeError):
    """Another ingest or deletion held the store's lock for longer than the timeout."""


def lock_path(store_dir: str | Path) -> Path:
    """Return the lock file of the store at ``store_dir``."""
    store_dir = Path(store_dir).absolute()
    return store_dir.parent / f".{store_dir.name}.lock"


@contextmanager
def store_lock(store_dir: str | Path, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> Iterator[None]:
    """Hold the store's write lock inside the block, waiting up to ``timeout`` seconds for it."""
    store_dir = Path(store_dir).absolute()
    store_dir.parent.mkdir(parents=True, exist_ok=True)
    path = lock_path(store_dir)
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreLocked(f"store {store_dir} is locked by another ingest or deletion "
                                      f"(lock file {path}); waited {timeout:g} s, try again when it ends") from None
                time.sleep(POLL_SECONDS)
        yield
    finally:
        os.close(handle)  # closing the descriptor releases the lock
