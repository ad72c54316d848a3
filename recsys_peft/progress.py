"""Progress of long steps: a Rich progress bar in a terminal, periodic log lines elsewhere.

A bar (with rate and time left) is drawn only when stderr is a terminal. In CI, under a
Prefect worker or when output is piped, the same progress becomes one plain log line at most
every ``interval`` seconds, plus one for the last step:

    progress step=finetune done=6/14 rate=0.42/s eta=19s
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

LOG_INTERVAL_SECONDS = 10.0
_logger = logging.getLogger("recsys_peft.progress")


def attached_to_terminal() -> bool:
    return sys.stderr.isatty()


class Progress:
    """Count steps of one named piece of work; call ``advance`` after each step."""

    def __init__(self, step: str, total: int, unit: str = "step", log: Callable[[str], None] | None = None,
                 interval: float = LOG_INTERVAL_SECONDS, terminal: bool | None = None) -> None:
        self.step, self.total, self.unit = step, max(int(total), 0), unit
        self.done = 0
        self.log = log or _logger.info
        self.interval = interval
        self.started = time.perf_counter()
        self._last_logged = self.started
        self._bar = None
        if terminal is None:
            terminal = attached_to_terminal()
        if terminal:
            self._bar = self._start_bar()

    def _console(self):
        from rich.console import Console

        return Console(stderr=True)

    def _start_bar(self):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress, TaskProgressColumn,
                                   TextColumn, TimeElapsedColumn, TimeRemainingColumn)

        bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TaskProgressColumn(), TextColumn("{task.fields[rate]}"),
                           TimeElapsedColumn(), TimeRemainingColumn(), console=self._console(), transient=True)
        bar.start()
        self._task = bar.add_task(self.step, total=self.total, rate="")
        return bar

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta_seconds(self) -> float | None:
        rate = self.rate
        return (self.total - self.done) / rate if rate > 0 else None

    def line(self) -> str:
        eta = self.eta_seconds()
        return (f"progress step={self.step} done={self.done}/{self.total} rate={self.rate:.2f}/s "
                f"eta={'?' if eta is None else f'{eta:.0f}s'}")

    def advance(self, steps: int = 1) -> None:
        self.done += steps
        if self._bar is not None:
            self._bar.update(self._task, advance=steps, rate=f"{self.rate:.2f} {self.unit}/s")
            return
        now = time.perf_counter()
        if now - self._last_logged >= self.interval or self.done >= self.total:
            self.log(self.line())
            self._last_logged = now

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


@contextmanager
def progress(step: str, total: int, unit: str = "step", log: Callable[[str], None] | None = None,
             interval: float = LOG_INTERVAL_SECONDS, terminal: bool | None = None) -> Iterator[Progress]:
    """Track ``total`` steps of ``step``; the bar is removed when the block ends."""
    tracker = Progress(step, total, unit, log, interval, terminal)
    try:
        yield tracker
    finally:
        tracker.close()
