"""Exceptions shared by every stage.

:class:`InputError` is a problem with what the user gave us (file, option, parameter, volume); the
CLI turns it into one line on stderr and exit code 2. Anything else is a bug and keeps its traceback.
"""


class TomocellError(Exception):
    """Base class of all errors tomocell raises on purpose."""


class InputError(TomocellError, ValueError):
    """Bad input: unreadable file, wrong dtype, missing phase, bad parameter, ..."""


class NotPercolatingError(TomocellError):
    """A phase does not connect the two faces a transport property needs."""


class SolverError(TomocellError, RuntimeError):
    """A numerical solve failed in a way retries could not fix."""


class Interrupted(TomocellError):
    """The run was stopped by a signal (SIGINT, SIGTERM) after saving what it could; exit 128 + signum."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = int(signum)
