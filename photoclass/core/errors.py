"""The one exception type users see: a message naming the value and the fix."""


class PhotoclassError(ValueError):
    """Bad input or options; the CLI prints the message on one line, without a traceback."""


class UnusedOptionWarning(UserWarning):
    """An option given on purpose that has no effect on this run; the CLI prints it as a NOTE."""
