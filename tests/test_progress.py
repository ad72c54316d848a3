import io

import pytest
from rich.console import Console

from recsys_peft import progress as progress_module
from recsys_peft.progress import Progress, progress


@pytest.fixture
def clock(monkeypatch):
    """A fake ``time.perf_counter`` that the test advances by hand."""
    now = [100.0]
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: now[0])
    return now


def test_plain_lines_every_interval(clock):
    lines: list[str] = []
    tracker = Progress("finetune", 4, "segment", lines.append, interval=10.0, terminal=False)

    clock[0] += 4.0
    tracker.advance()
    clock[0] += 8.0
    tracker.advance()
    clock[0] += 1.0
    tracker.advance()
    clock[0] += 3.0
    tracker.advance()

    assert lines == [
        "progress step=finetune done=2/4 rate=0.17/s eta=12s",
        "progress step=finetune done=4/4 rate=0.25/s eta=0s",
    ]


def test_eta_unknown_before_first_step(clock):
    tracker = Progress("pretrain", 40, "epoch", lambda line: None, terminal=False)

    assert tracker.eta_seconds() is None
    assert tracker.line() == "progress step=pretrain done=0/40 rate=0.00/s eta=?"


def test_terminal_bar_logs_no_lines(monkeypatch):
    output = io.StringIO()
    monkeypatch.setattr(Progress, "_console", lambda self: Console(file=output, force_terminal=True, width=100))
    lines: list[str] = []

    with progress("score", 3, "partition", lines.append, terminal=True) as tracker:
        assert tracker._bar is not None
        for _ in range(3):
            tracker.advance()

    assert lines == []
    assert tracker.done == 3
    assert "score" in output.getvalue()
