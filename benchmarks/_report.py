"""What every benchmark prints: lines kept for the results file, the summary table,
and a SIGTERM that unwinds like Ctrl-C so every context manager stops what it started."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator, Sequence

#: every line said so far, for the results file
lines: list[str] = []


def say(text: str = "") -> None:
    """Print and keep the line for the results file."""
    print(text, flush=True)
    lines.append(text)


def summary_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """The ``== summary ==`` table: one row per measure, columns padded to fit."""
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    say("== summary ==")
    for row in [head, *rows]:
        say("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@contextlib.contextmanager
def terminated_cleanly() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so every context manager stops what it started."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
