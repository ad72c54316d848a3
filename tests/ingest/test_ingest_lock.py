"""One writer per store: a second ingest waits for the lock, or fails when it cannot get it."""

import subprocess
import sys
import textwrap
import time

import pytest

from recsys_peft.ingest.ingest import ingest_source
from recsys_peft.ingest.lock import StoreLocked, store_lock
from recsys_peft.ingest.store import read_interactions

# Holds the store's lock in another process until its stdin closes.
HOLDER = textwrap.dedent("""
    import sys
    from recsys_peft.ingest.lock import store_lock
    with store_lock(sys.argv[1]):
        print("locked", flush=True)
        sys.stdin.read()
""")


@pytest.fixture
def held_lock(tmp_path):
    store = tmp_path / "store"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(store)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    yield store, holder
    if holder.poll() is None:
        holder.stdin.close()
        holder.wait(timeout=10)


def test_lock_times_out_with_reason(held_lock, raw_dir, make_spec, now):
    store, _ = held_lock
    (raw_dir / "events.csv").write_text("user,item,ts,rating\nu1,a,100,1\n", encoding="utf-8")

    with pytest.raises(StoreLocked, match=r"store .*store is locked by another ingest or deletion"):
        ingest_source(make_spec(), raw_dir, store, now=now, lock_timeout=0.3)

    assert not (store / "manifest.json").exists()


def test_second_ingest_waits_then_runs(held_lock, raw_dir, make_spec, now):
    store, holder = held_lock
    (raw_dir / "events.csv").write_text("user,item,ts,rating\nu1,a,100,1\n", encoding="utf-8")
    started = time.monotonic()
    holder.stdin.write("release")
    holder.stdin.close()

    summary = ingest_source(make_spec(), raw_dir, store, now=now, lock_timeout=30)

    assert summary.rows_written == 1
    assert read_interactions(store).num_rows == 1
    assert time.monotonic() - started < 30


def test_lock_released_after_error(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with store_lock(tmp_path / "store"):
            1 / 0

    with store_lock(tmp_path / "store", timeout=0):
        pass
