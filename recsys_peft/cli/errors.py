"""Exit codes and one-line failure messages for every command.

    0  success
    1  the work failed (a stage raised, a parity check failed, a file was corrupt)
    2  bad usage or bad config, found before any work started
    130  interrupted with Ctrl-C (see ``interrupt``)

Without ``--debug`` a failure prints one ``error: ...`` line on stderr and no traceback. With
``--debug`` the traceback is printed too.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

import click
import typer

from recsys_peft.cli.interrupt import EXIT_INTERRUPTED, interrupted
from recsys_peft.config_file import ConfigError

EXIT_FAILED = 1
EXIT_USAGE = 2


def fail(message: str, code: int, debug: bool = False) -> None:
    """Print ``error: message`` and exit with ``code``; with ``debug``, print the exception being handled first."""
    if debug and sys.exc_info()[0] is not None:
        traceback.print_exc()
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def reported_failures(debug: bool) -> Iterator[None]:
    """Turn an exception into exit code 2 (config or usage) or 1 (work), with one line on stderr."""
    try:
        yield
    except (typer.Exit, click.exceptions.Exit, click.exceptions.Abort):
        raise
    except click.UsageError as error:
        fail(error.format_message(), EXIT_USAGE)
    except ConfigError as error:
        if debug:
            traceback.print_exc()
        fail(str(error), EXIT_USAGE)
    except KeyboardInterrupt:
        fail("interrupted", EXIT_INTERRUPTED)
    except Exception as error:  # noqa: BLE001 - every other failure is a failure of the work: exit 1
        if interrupted():  # a failure caused by Ctrl-C, such as Prefect's server gone
            fail("interrupted", EXIT_INTERRUPTED, debug)
        if debug:
            traceback.print_exc()
        message = str(error) or type(error).__name__
        # File and value errors carry a full sentence; name the type of anything else.
        if not isinstance(error, (OSError, ValueError)):
            message = f"{type(error).__name__}: {message}"
        fail(message, EXIT_FAILED)
