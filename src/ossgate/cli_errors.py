"""The CLI's one convention for user mistakes: an OssgateError is one line on stderr and exit code 1."""

from __future__ import annotations

from collections.abc import Callable

import typer
from rich.console import Console

from ossgate.errors import OssgateError

_stderr = Console(stderr=True, soft_wrap=True)  # soft wrap: an error stays one line


def run(fn: Callable[[], None]) -> None:
    """Run a command body; an OssgateError becomes `error: <message>` on stderr and exit 1, never a traceback."""
    try:
        fn()
    except OssgateError as e:
        _stderr.print(f"error: {e.message}", markup=False, highlight=False)
        raise typer.Exit(1) from None
