"""Process plumbing shared by every driftline process (CLI, service, sidecar).

* :func:`tune_allocator`: keep large freed blocks for reuse (the service);
* :func:`quiet_logger`: silence a chatty third-party logger for a block;
* :func:`without_tracebacks`: third-party log records on one line, for good;
* :func:`exposition`: a Prometheus scrape body for a registry and an Accept header.

The collector may import this module (and ``monitor.wire``, ``monitor.errors``):
it loads nothing heavier than the standard library until a function is called.

On the allocator:
glibc returns freed blocks above 128 KiB straight to the kernel, so every
large numpy temporary costs fresh page faults; on the 100k-row arrays the
drift engine works on that doubles the cost of a sort.  Raising the mmap and
trim thresholds keeps those pages in the heap for reuse.  Measured in
benchmarks/README.md.  A no-op where glibc is not the allocator.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
_done = False


def tune_allocator(mmap_threshold: int = 256 << 20, trim_threshold: int = 512 << 20) -> bool:
    """Keep large freed blocks for reuse; True when applied."""
    global _done
    if _done or os.environ.get("DRIFTLINE_NO_MALLOPT"):
        return _done
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        ok = bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(
            libc.mallopt(M_TRIM_THRESHOLD, trim_threshold))
    except (OSError, AttributeError):
        return False
    _done = ok
    return ok


@contextlib.contextmanager
def quiet_logger(*names: str) -> Iterator[None]:
    """Raise the named loggers to CRITICAL for the block, then restore their levels.

    kafka-python logs expected events (a refused connection during an outage, a socket
    its own reader finds just closed) at ERROR with tracebacks; callers that already
    report those conditions in one line use this around the calls that log them.
    """
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class _OneLine(logging.Filter):
    """Drops the traceback of records from the given loggers (and their children)."""

    def __init__(self, names: tuple[str, ...]) -> None:
        super().__init__()
        self.names = frozenset(names)
        self.children = tuple(f"{name}." for name in names)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and (record.name in self.names or record.name.startswith(self.children)):
            record.exc_info, record.exc_text = None, None
        return True


def without_tracebacks(*loggers: str) -> None:
    """Log records of ``loggers`` (and their children) keep their one-line message but lose
    their traceback, on every handler of the root logger (call after logging is configured).

    kafka-python logs a traceback at ERROR when a broker resets a connection; during an
    outage that is expected, and the service and the collector report the outage themselves,
    in one line.  driftline's own records keep their tracebacks (a bug must show one).
    """
    for handler in logging.getLogger().handlers:
        handler.addFilter(_OneLine(loggers))


def exposition(registry: Any, accept: str | None = None) -> tuple[bytes, str]:
    """Render a prometheus_client ``registry`` for a scrape: the body and its content type.

    ``accept`` is the request's Accept header: OpenMetrics when the scraper asks for
    ``application/openmetrics-text``, else the Prometheus text format (also when the
    header is malformed, rather than failing the scrape).
    """
    from prometheus_client.exposition import (
        CONTENT_TYPE_PLAIN_0_0_4,
        choose_encoder,
        generate_latest,
    )

    try:
        encoder, content_type = choose_encoder(accept or "")
    except (TypeError, ValueError):  # e.g. "version=abc": prometheus_client compares str with int
        return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4
    return encoder(registry), content_type


def write_atomically(path: Path, data: str | bytes) -> None:
    """``data`` to ``path`` via a temporary file in the same directory and a rename, so a
    reader (Prometheus reloading its rules, Grafana its dashboards) never sees half a file.
    A missing or unwritable directory is a one-line :class:`~monitor.errors.UsageError`."""
    from monitor.errors import UsageError

    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise UsageError(f"{path}: directory {directory} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise UsageError(f"{path}: cannot write: {exc.strerror or exc}") from None
