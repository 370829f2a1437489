"""The exceptions users see: the CLI prints the message on one line, without a traceback, and
exits with the kind's code, so a script or scheduler can tell a typo from a broken file.

| kind | exit | raised for |
|---|---|---|
| `ConfigError` | 2 | an option, recipe, protocol or config value that is wrong or does not fit the others |
| `DataError` | 3 | a source dataset that is missing, unreadable or not what was expected |
| `ArtifactError` | 4 | a file ladd wrote or reads back (artifact, checkpoint, cache entry, weights): missing, corrupt, in the way |
| `RunError` | 5 | the run itself: training diverged, the device is absent, a peer process died, a lock is held |

Typer's own refusals (unknown option, value out of range) also exit 2; Ctrl-C exits 130; an
unexpected exception exits 1 after one line (its traceback goes to the run's log file)."""


class LaddError(Exception):
    """Bad input or state, with a message that says what is wrong and how to fix it. Raise one of
    the four kinds below; a plugin's plain `LaddError` exits 1."""

    exit_code = 1

    def __str__(self) -> str:
        # always one line, even when it quotes a file name or a value holding line breaks
        return super().__str__().translate(_ONE_LINE)


class ConfigError(LaddError):
    """An option, recipe, protocol or config value is wrong, unknown or does not fit the others."""

    exit_code = 2


class DataError(LaddError):
    """A source dataset is missing, unreadable, malformed or not the data an artifact was made from."""

    exit_code = 3


class ArtifactError(LaddError):
    """A file ladd wrote or reads back (artifact, checkpoint, cache entry, weights, results) is
    missing, corrupt, of another format version, or already there."""

    exit_code = 4


class RunError(LaddError):
    """The run cannot go on: training diverged, the device is absent, a peer process died, a lock is held."""

    exit_code = 5


# every character str.splitlines() breaks at, written as its escape (\n, \x1e, \u2028, ...)
_ONE_LINE = str.maketrans({c: repr(c)[1:-1] for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"})


class Diverged(RunError):
    """Training's loss became NaN or infinite: a learning-rate search scores such a candidate as
    failed and goes on; anywhere else it stops the run like any LaddError."""
