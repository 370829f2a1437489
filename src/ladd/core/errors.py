"""The one exception users see: the CLI prints its message on one line, without a traceback."""


class LaddError(Exception):
    """Bad input or state, with a message that says what is wrong and how to fix it."""


class Diverged(LaddError):
    """Training's loss became NaN or infinite: a learning-rate search scores such a candidate as
    failed and goes on; anywhere else it stops the run like any LaddError."""
