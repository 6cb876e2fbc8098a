"""The error tree.  Everything driftline raises on purpose derives from
:class:`DriftlineError` and carries a one-line message fit for a user.

::

    DriftlineError
    ├── PermanentError          retrying will not help: fix the input
    │   ├── InputError          a data file is missing, unreadable, empty or wrong
    │   ├── ProfileError        a saved profile is malformed or of another version
    │   ├── UsageError          flags or arguments that do not fit together
    │   │   └── PortInUse       a port to listen on is taken by another process
    │   └── UnknownModel        no model of that name in the config (HTTP 404)
    ├── NotOwnedHere            another monitor replica consumes the model (HTTP 404, owner named)
    └── TemporaryError          may succeed later (broker down, timeouts); has delay_s
        ├── NotReady            this process is still starting (HTTP 503 with Retry-After)
        └── CheckpointNotWritten  a stop could not write the last checkpoint in time

ConfigError (monitor.config) is a PermanentError that carries every issue.  Each
edge maps the tree once: the HTTP API in exception handlers, the CLI in ``main``.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence


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


class PortInUse(UsageError):
    """A port this process must listen on is taken: nothing was started."""

    def __init__(self, host: str, port: int, what: str = "") -> None:
        super().__init__(f"port {port} on {host} is in use{f' ({what})' if what else ''}: another "
                         "process listens there; stop it or choose another port")
        self.host = host
        self.port = port


class UnknownModel(PermanentError):
    """No model of this name is configured; the message names the configured ones."""

    def __init__(self, model: str, known: Sequence[str] = ()) -> None:
        listed = ", ".join(repr(name) for name in known) or "none"
        message = f"unknown model {_short(model)}; configured models: {listed}"
        close = difflib.get_close_matches(model, list(known), n=1)
        super().__init__(message + (f"; did you mean {close[0]!r}?" if close else ""))
        self.model = model
        self.known = tuple(known)


class NotOwnedHere(DriftlineError):
    """The model is configured, but another replica of the consumer group owns its partition."""

    def __init__(self, model: str, owner: str) -> None:
        super().__init__(f"model {_short(model)} is owned by another monitor replica ({owner}); ask "
                         "that replica, or read the model's Prometheus metrics")
        self.model = model
        self.owner = owner


class NotReady(TemporaryError):
    """This process cannot answer yet (e.g. not connected to Kafka); retry after ``delay_s``."""


class CheckpointNotWritten(TemporaryError):
    """The service stopped without writing its last checkpoint (Kafka did not take it within
    the shutdown grace); the message says what a restart replays."""


def one_line(exc: BaseException) -> str:
    """The error's message on one line: every issue of a ConfigError joined by "; ", else
    the message with whitespace (newlines included) collapsed, or the class name."""
    issues = getattr(exc, "issues", None)
    if issues:
        return "; ".join(str(issue) for issue in issues)
    return " ".join(str(exc).split()) or type(exc).__name__


def named(exc: BaseException) -> str:
    """``Name: message`` of any exception, on one line, the name said once (kafka-python's
    errors already start their ``str`` with their class name; most exceptions do not)."""
    name, text = type(exc).__name__, " ".join(str(exc).split())
    if not text:
        return name
    return text if text == name or text.startswith(f"{name}:") else f"{name}: {text}"


def _short(value: str, limit: int = 80) -> str:
    """A caller-given name for a message: quoted, escaped, shortened."""
    return repr(value if len(value) <= limit else value[:limit] + "...")
