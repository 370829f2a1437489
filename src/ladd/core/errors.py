"""The one exception users see: the CLI prints its message on one line, without a traceback."""


class LaddError(Exception):
    """Bad input or state, with a message that says what is wrong and how to fix it."""

    def __str__(self) -> str:
        # always one line, even when it quotes a file name or a value holding line breaks
        return super().__str__().translate(_ONE_LINE)


# every character str.splitlines() breaks at, written as its escape (\n, \x1e, \u2028, ...)
_ONE_LINE = str.maketrans({c: repr(c)[1:-1] for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"})


class Diverged(LaddError):
    """Training's loss became NaN or infinite: a learning-rate search scores such a candidate as
    failed and goes on; anywhere else it stops the run like any LaddError."""
