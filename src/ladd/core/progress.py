"""Progress bars for long loops (rich), quiet when output is not a terminal or when disabled."""

from __future__ import annotations

import contextlib
import os
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


def enabled() -> bool:
    return sys.stderr.isatty() and not os.environ.get("LADD_NO_PROGRESS")


@contextlib.contextmanager
def bar(description: str, total: int):
    """Yield `advance(n=1, **fields)`; a `status` field is shown after the counter (e.g. the loss)."""
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not enabled(),
    )
    with progress:
        task = progress.add_task(description, total=total, status="")

        def advance(n: int = 1, status: str = "") -> None:
            progress.update(task, advance=n, status=status)

        yield advance
