"""Ctrl-C for the commands: print a message at once, stop within seconds, keep what was written.

Every write of the pipeline is atomic (a temporary file or folder, then a rename), so stopping
a process at any point leaves finished stages and files whole, and the same command resumes.
The first Ctrl-C raises ``KeyboardInterrupt`` as usual. Prefect can take minutes to give up on
its local server, which got the same signal, so after ``grace_seconds`` the process stops its
child processes and exits with code 130. A second Ctrl-C does the same at once.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
import time

import psutil

EXIT_INTERRUPTED = 130
GRACE_SECONDS = 10.0

_interrupted = threading.Event()
_stopping = threading.Lock()


def _say(line: str) -> None:
    # os.write takes no lock: a handler may run while the main thread is inside a print to stderr.
    os.write(2, (line + "\n").encode())


def install(grace_seconds: float = GRACE_SECONDS) -> None:
    """Handle SIGINT in this process as described above; call it from the main thread."""

    def on_interrupt(signum: int, frame: object) -> None:
        if _interrupted.is_set():
            _stop_now()             # returns only when the grace timer is already stopping the process
            raise KeyboardInterrupt
        _interrupted.set()
        _say(f"interrupted: stopping within {grace_seconds:g} s. Files already written stay whole; "
             "run the same command again to go on. Ctrl-C again stops at once.")
        threading.Thread(target=_stop_after, args=(grace_seconds,), daemon=True).start()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_interrupt)
    # When the interrupt ends the process the usual way instead (an exception, sys.exit),
    # still stop the children on the way out.
    atexit.register(lambda: _stop_children() if _interrupted.is_set() else None)


def interrupted() -> bool:
    """Tell whether this process got a Ctrl-C."""
    return _interrupted.is_set()


def _stop_after(seconds: float) -> None:
    time.sleep(seconds)
    _stop_now()


def _stop_now() -> None:
    """Terminate the child processes (Prefect's local server, Dask workers), then exit with 130.

    Only the first caller does it; a second one (the grace timer and a second Ctrl-C) returns
    and the process exits a moment later.
    """
    if not _stopping.acquire(blocking=False):
        return
    _stop_children()
    _say("error: interrupted")
    os._exit(EXIT_INTERRUPTED)


def _stop_children() -> None:
    try:
        children = psutil.Process().children(recursive=True)
        for child in children:
            child.terminate()
        psutil.wait_procs(children, timeout=3)
    except Exception:  # noqa: BLE001 - exiting matters more than tidying up
        pass
