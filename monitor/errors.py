"""The error tree.  Everything driftline raises on purpose derives from
:class:`DriftlineError` and carries a one-line message fit for a user.

::

    DriftlineError
    ├── PermanentError          retrying will not help: fix the input
    │   ├── InputError          a data file is missing, unreadable, empty or wrong
    │   ├── ProfileError        a saved profile is malformed or of another version
    │   └── UsageError          flags or arguments that do not fit together
    └── TemporaryError          may succeed later (broker down, timeouts); has delay_s

ConfigError (monitor.config) is a PermanentError that carries every issue.
"""

from __future__ import annotations


class DriftlineError(Exception):
    """Base of every deliberate driftline error."""


class PermanentError(DriftlineError):
    """Retrying will not help."""


class TemporaryError(DriftlineError):
    """May succeed if retried after ``delay_s`` seconds."""

    def __init__(self, message: str, delay_s: float = 1.0) -> None:
        super().__init__(message)
        self.delay_s = delay_s


class InputError(PermanentError):
    """A data file is missing, unreadable, empty or holds values of the wrong kind."""


class ProfileError(PermanentError):
    """A saved profile is malformed or of an unsupported version."""


class UsageError(PermanentError):
    """Command-line arguments that do not fit together."""
