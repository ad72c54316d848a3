"""One writer per store: ingest runs and deletions on the same store take turns.

The lock is an advisory ``flock`` (``recsys_peft.file_lock``) on ``.<store name>.lock`` beside
the store, outside it, so a failed first run leaves no store folder behind. It works between
processes on one machine; a store shared between machines needs Prefect's concurrency limits
(or one scheduled writer) instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from recsys_peft.file_lock import exclusive_lock

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
    path = lock_path(store_dir)
    path.parent.mkdir(parents=True, exist_ok=True)

    def timed_out() -> Exception:
        return StoreLocked(f"store {Path(store_dir).absolute()} is locked by another ingest or deletion "
                           f"(lock file {path}); waited {timeout:g} s, try again when it ends")

    with exclusive_lock(path, timeout, timed_out, POLL_SECONDS):
        yield
