"""Progress on stderr (rich). On a terminal, long loops show a live bar; elsewhere (a log file, a
batch scheduler) they log an occasional plain line instead, so a killed run's log says how far it
got. `LADD_NO_PROGRESS` or `--quiet` silences both. `log` lines (checkpoints written, runs
resumed) go to the run log (`ladd.core.logs`), terminal or not. Under torchrun rank 0 prints
them, and another rank prints those of the units it trains alone (a student, a recover unit:
rank 0 cannot see their progress) prefixed with its rank, all as plain lines; errors come from every
rank, prefixed with it. `sitting` sums a resumable job's wall time over the sittings it took (a
killed one counts up to its last minute)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ladd.core import dist
from ladd.core.io import read_json, write_json
from ladd.core.logs import console, logger, level

# without a terminal: a line each time another 1/LINE_STEPS of the loop is done, but none sooner
# than LINE_MIN_S after the last one (short loops stay silent), and one at least every LINE_EVERY_S
LINE_STEPS = 10
LINE_MIN_S = 5.0
LINE_EVERY_S = 30.0


def quiet() -> bool:
    return bool(os.environ.get("LADD_NO_PROGRESS")) or not _speaks() or level() > logging.INFO


def _first_rank() -> bool:
    return dist.process_rank() == 0


def _speaks() -> bool:
    """Rank 0, or another rank while it works alone on a unit of its own."""
    return _first_rank() or dist.own_work()


def enabled() -> bool:
    """Whether a live bar is shown: a terminal, progress not silenced, one process (torchrun's ranks
    share one terminal, where one rank's lines would cut through another's bar: they print lines)."""
    return sys.stderr.isatty() and not quiet() and not dist.launched()


def log(message: str) -> None:
    """One info line of the run log: stderr (plain, no wrapping: paths stay intact) and the log file.
    Another rank's own units' lines reach stderr only, prefixed with the rank (its console is silenced)."""
    if _first_rank():
        logger.info(message)
    elif dist.own_work() and level() <= logging.INFO:
        print(f"{dist.where()}{message}", file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def approx(seconds: float) -> str:
    """A duration as a person says it: 40 s, 12 min, 3.5 h."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    return f"{round(seconds / 60)} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"


@contextlib.contextmanager
def bar(description: str, total: int):
    """Yield `advance(n=1, status="")`; `status` is shown after the counter (e.g. the loss)."""
    if not enabled():
        with _lines(description, total) as advance:
            yield advance
        return
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    with progress:
        task = progress.add_task(description, total=total, status="")

        def advance(n: int = 1, status: str = "") -> None:
            progress.update(task, advance=n, status=status)

        yield advance


@contextlib.contextmanager
def _lines(description: str, total: int):
    """`bar` without a terminal: occasional `description: done/total (pct) status · elapsed, ~left` lines."""
    silent = quiet()
    created = last = time.monotonic()
    done, first, first_at, shown = 0, None, created, 0

    def advance(n: int = 1, status: str = "") -> None:
        nonlocal done, first, first_at, last, shown
        now = time.monotonic()
        done += n
        if first is None:  # the first call may skip what a resumed run had done: the rate counts from it
            first, first_at = done, now
        if silent or total <= 0 or n == 0:
            return
        step = min(done, total) * LINE_STEPS // total  # whole steps done (integers: exact)
        if not ((step > shown and now - last >= LINE_MIN_S) or now - last >= LINE_EVERY_S):
            return
        shown, last = step, now
        fresh = done - first
        left = f", ~{_duration((now - first_at) / fresh * (total - done))} left" if fresh > 0 and done < total else ""
        log(
            f"{description}: {done}/{total} ({100 * min(done / total, 1):.0f}%){' · ' + status if status else ''} · "
            f"{_duration(now - created)} elapsed{left}"
        )

    yield advance


@contextlib.contextmanager
def sitting(path: Path, every: float = 60.0) -> Iterator[dict]:
    """Add this sitting's wall time to the sum in `path` ({"wall_s", "sittings"}), rewriting it
    every `every` seconds while the sitting runs and once at its end; yields that sum, up to date
    once the sitting is over."""
    unread = {"wall_s": 0.0, "sittings": 0}
    before = read_json(path, "delete it to count this job's wall time afresh") if path.is_file() else unread
    t0, stop, clock = time.perf_counter(), threading.Event(), {}

    def save() -> None:
        clock.update(wall_s=before["wall_s"] + time.perf_counter() - t0, sittings=before["sittings"] + 1)
        write_json(path, clock)

    def beat() -> None:
        while not stop.wait(every):
            save()

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield clock
    finally:
        stop.set()
        thread.join()
        save()
