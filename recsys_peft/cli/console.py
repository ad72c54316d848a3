"""Prefect's console logging for the commands: its own format, and no repeated failure records."""

from __future__ import annotations

import logging


class _DropTracebacks(logging.Filter):
    """Strip tracebacks from records, and drop Prefect's failure records, which repeat the error line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(("prefect.flow_runs", "prefect.task_runs")) and (
                record.levelno >= logging.ERROR or record.getMessage().startswith("Finished in state Failed")):
            return False
        record.exc_info = None
        record.exc_text = None
        return True


def _is_implicit_handler(handler: logging.Handler) -> bool:
    """Tell whether ``handler`` is the one ``logging.basicConfig`` adds when a library logs before setup."""
    formatter = handler.formatter
    return (type(handler) is logging.StreamHandler and formatter is not None
            and formatter._fmt == logging.BASIC_FORMAT)


def _plain_text(handler: logging.Handler) -> None:
    """Stop a Rich console handler from turning ``:name:`` in messages into emoji (segment ``X:99``)."""
    console = getattr(handler, "console", None)
    # Rich reads this attribute when print() gets no emoji argument, and it has no public setter.
    if console is not None and hasattr(console, "_emoji"):
        console._emoji = False


def setup_console(debug: bool) -> None:
    """Route Prefect's run logs to its console handler; without ``debug``, keep failures to one line.

    fbgemm_gpu logs through the root logger when torchrec imports it, which installs a bare
    ``basicConfig`` handler, and Prefect then leaves the root logger alone. Removing that
    handler first gives Prefect's usual ``time | level | run - message`` lines.
    """
    from prefect.logging.configuration import setup_logging

    root = logging.getLogger()
    for handler in [h for h in root.handlers if _is_implicit_handler(h)]:
        root.removeHandler(handler)
    setup_logging(incremental=False)
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            _plain_text(handler)
    if debug:
        return
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, _DropTracebacks) for f in handler.filters):
                handler.addFilter(_DropTracebacks())
