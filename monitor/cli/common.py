"""What every command shares: exit codes, the one-line failure, small parsers."""

from __future__ import annotations

import errno
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import typer

EXIT_OK, EXIT_DRIFT, EXIT_ERROR = 0, 1, 2


def now() -> str:
    """The current time for reports (``evaluated_at``, ``created_at``)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def fail(message: str) -> typer.Exit:
    """Print ``driftline: error: <message>`` on stderr; raise the returned Exit (code 2)."""
    typer.echo(f"driftline: error: {message}", err=True)
    return typer.Exit(EXIT_ERROR)


@contextmanager
def reader_may_leave() -> Iterator[None]:
    """Output on stdout whose reader may stop reading early (``| head -1``): a closed pipe
    ends the output quietly and the command's exit code keeps its meaning.  The Python
    docs' recipe (signal module, "Note on SIGPIPE"): stdout becomes /dev/null, so the
    interpreter's own flush at exit does not fail either."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()


def silence_stdout() -> None:
    """Point the stdout file descriptor at /dev/null (its reader has gone)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def host_port(text: str, what: str) -> tuple[str, int]:
    """``HOST:PORT`` (an empty host is 0.0.0.0), or a one-line failure naming ``what``."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise fail(f"{what} must be HOST:PORT, e.g. 0.0.0.0:8081; got {text!r}")
    return host or "0.0.0.0", int(port)


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port`` for an HTTP server (serve's API, the receiver);
    PortInUse when it is taken, a one-line failure when it cannot be had."""
    from monitor.errors import PortInUse

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise fail(f"--host {host!r} cannot be resolved: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(host, port) from None
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock
