"""The one exception users see: the CLI prints its message on one line, without a traceback."""


class LaddError(Exception):
    """Bad input or state, with a message that says what is wrong and how to fix it."""
