"""Ctrl-C: a message at once, exit code 130 within the grace period, child processes stopped."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

# A command that swallows KeyboardInterrupt and keeps a child process, as a flow whose
# engine retries its lost server would.
STUBBORN = textwrap.dedent("""
    import subprocess, sys, time
    from recsys_peft.cli import interrupt
    interrupt.install(grace_seconds=1.0)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    announced = False
    while True:
        try:
            # Announce from inside the try block: the test sends SIGINT as soon as it reads this.
            if not announced:
                print(child.pid, flush=True)
                announced = True
            while True:
                time.sleep(0.05)
        except KeyboardInterrupt:
            pass
""")


def start() -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    child = int(process.stdout.readline())
    return process, child


def test_interrupt_exits_130_after_grace_and_stops_children():
    process, child = start()
    started = time.monotonic()
    os.kill(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=30)

    assert process.returncode == 130
    assert time.monotonic() - started < 10
    assert "interrupted: stopping within 1 s" in stderr
    assert stderr.strip().endswith("error: interrupted")
    assert child_stopped(child)


def child_stopped(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.1)
    return False


def test_second_interrupt_stops_at_once():
    process, child = start()
    os.kill(process.pid, signal.SIGINT)
    time.sleep(0.3)
    os.kill(process.pid, signal.SIGINT)
    process.communicate(timeout=30)
    # The second KeyboardInterrupt can land just outside the stub's try block and end the
    # process, which then dies of SIGINT (-2): a shell reports that as 130 too.
    assert process.returncode in (130, -signal.SIGINT)
    assert child_stopped(child)


@pytest.mark.parametrize("debug", [False, True])
def test_usage_error_traceback_only_with_debug(tmp_path, debug):
    entry_point = Path(sys.executable).parent / "recsys-peft"
    command = [str(entry_point), "ingest", str(tmp_path / "missing"), "--store",
               str(tmp_path / "store")] + (["--debug"] if debug else [])
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert ("Traceback" in result.stderr) == debug
