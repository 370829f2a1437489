"""The run log: every line ladd reports goes through the standard `logging` logger "ladd".

One handler prints plain lines on stderr (through rich's console, so they do not tear a live
progress bar); `setup` sets its level from `--quiet` (warnings and errors) / `--verbose` (debug
lines). `to_file` adds a timestamped copy at debug level in the run's folder, where the error that
ended a command is written too, with its traceback when it was not a `LaddError`. Scripts using
`ladd.api` get the same stderr lines; `logging.getLogger("ladd")` configures them like any library's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import sys
from pathlib import Path

from rich.console import Console

# piped or logged to a file, rich would fit tables into 80 columns and cut their cells short; a
# terminal (or $COLUMNS) keeps its own width
console = Console(stderr=True, width=None if sys.stderr.isatty() or "COLUMNS" in os.environ else 160)
logger = logging.getLogger("ladd")
LEVELS = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}
FILE_FORMAT = "%(asctime)s %(levelname)-7s %(message)s"

# the log file of the command that ran last (`to_file`): an unexpected error's line names it
current: Path | None = None


class _Stderr(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if record.levelno >= logging.WARNING:
                text = f"{record.levelname.lower()}: {text}"
            console.print(text, markup=False, highlight=False, soft_wrap=True)
        except Exception:  # noqa: BLE001 - logging's contract: a handler never raises
            self.handleError(record)


_stderr = _Stderr(logging.INFO)
logger.addHandler(_stderr)
logger.setLevel(logging.DEBUG)  # each handler filters by its own level
logger.propagate = False


def setup(verbosity: int = 0) -> None:
    """Stderr's level: -1 quiet (warnings, errors), 0 normal (info), 1 verbose (debug).
    Python warnings (`warnings.warn`) are logged too."""
    _stderr.setLevel(LEVELS[verbosity])
    logging.captureWarnings(True)
    warned = logging.getLogger("py.warnings")
    if _stderr not in warned.handlers:
        warned.addHandler(_stderr)
        warned.propagate = False


def level() -> int:
    """The stderr handler's level (progress is shown only at info or below)."""
    return _stderr.level


@contextlib.contextmanager
def to_file(path: Path):
    """Also log to `path` (appended, timestamped, debug level) while the block runs: the command
    line first, then every line, then the error that ended the block, if one did. Under torchrun
    rank 0 writes it (other ranks' errors reach stderr)."""
    global current
    from ladd.core import dist
    from ladd.core.errors import LaddError

    if dist.rank() > 0:
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    logger.addHandler(handler)
    current = path
    logger.debug("ladd %s", shlex.join(sys.argv[1:]))
    try:
        yield
    except BaseException as e:
        if isinstance(e, LaddError):
            message, trace = f"error: {e}", None
        elif isinstance(e, KeyboardInterrupt):
            message, trace = "interrupted", None
        else:
            message, trace = f"unexpected {type(e).__name__}: {e}", (type(e), e, e.__traceback__)
        handler.handle(logger.makeRecord(logger.name, logging.ERROR, __file__, 0, message, None, trace))
        raise
    finally:
        logger.removeHandler(handler)
        handler.close()
