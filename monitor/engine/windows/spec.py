"""What a window is: :class:`WindowSpec` (count or time, tumbling or
sliding, checked on construction) and :class:`ClosedWindow`, the profile of
one window that closed.

Slides must divide the window (``size % slide == 0``, and the same in whole
milliseconds for time windows), so that a window is the merge of the last
:attr:`WindowSpec.panes` panes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from monitor.engine.profiles import Profile
from monitor.errors import PermanentError

WindowKind = Literal["count", "time"]


class WindowSpecError(PermanentError, ValueError):
    """A window spec (or a batch given to a windower) that cannot work."""


def _whole_ms(seconds: float, what: str) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise WindowSpecError(f"{what} must be a number of seconds, not {seconds!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise WindowSpecError(f"{what} must be a positive number of seconds, not {seconds!r}")
    ms = round(seconds * 1000)
    if ms < 1 or abs(seconds * 1000 - ms) > 1e-6 * max(1.0, float(ms)):
        raise WindowSpecError(f"{what} must be a whole number of milliseconds, not {seconds!r}")
    return int(ms)


@dataclass(frozen=True)
class WindowSpec:
    """Count windows (``size`` rows) or time windows (``duration_s`` seconds).

    ``slide`` is in rows (count) or seconds (time); ``None`` means tumbling.
    It must be positive, smaller than the window and divide it.
    """

    size: int | None = None
    duration_s: float | None = None
    slide: float | None = None

    def __post_init__(self) -> None:
        if (self.size is None) == (self.duration_s is None):
            raise WindowSpecError("a window needs exactly one of size (rows) or duration_s")
        if self.size is not None:
            if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
                raise WindowSpecError(f"window size must be a positive whole number of rows, "
                                      f"not {self.size!r}")
            if self.slide is not None:
                slide = self.slide
                if isinstance(slide, bool) or not isinstance(slide, int) or slide < 1:
                    raise WindowSpecError(f"slide must be a positive whole number of rows, "
                                          f"not {slide!r}")
                if slide >= self.size:
                    raise WindowSpecError(f"slide ({slide} rows) must be smaller than the "
                                          f"window ({self.size} rows); omit it for tumbling")
                if self.size % slide:
                    raise WindowSpecError(f"slide ({slide} rows) must divide the window "
                                          f"({self.size} rows)")
        else:
            assert self.duration_s is not None
            duration = _whole_ms(self.duration_s, "window duration_s")
            if self.slide is not None:
                slide_ms = _whole_ms(self.slide, "slide")
                if slide_ms >= duration:
                    raise WindowSpecError(f"slide ({self.slide} s) must be shorter than the "
                                          f"window ({self.duration_s} s); omit it for tumbling")
                if duration % slide_ms:
                    raise WindowSpecError(f"slide ({self.slide} s) must divide the window "
                                          f"({self.duration_s} s)")

    @property
    def kind(self) -> WindowKind:
        return "count" if self.size is not None else "time"

    @property
    def length(self) -> int:
        """The window's length: rows (count) or milliseconds (time)."""
        if self.size is not None:
            return self.size
        assert self.duration_s is not None
        return _whole_ms(self.duration_s, "window duration_s")

    @property
    def pane(self) -> int:
        """A pane's length: the slide, or the whole window when tumbling (rows or ms)."""
        if self.slide is None:
            return self.length
        if self.size is not None:
            return int(self.slide)
        return _whole_ms(self.slide, "slide")

    @property
    def panes(self) -> int:
        """Panes per window (1 when tumbling)."""
        return self.length // self.pane

    def as_dict(self) -> dict[str, Any]:
        return {"size": self.size, "duration_s": self.duration_s, "slide": self.slide}


@dataclass(frozen=True, eq=False)
class ClosedWindow:
    """One closed window: ``[start, end)`` in row numbers (count) or epoch ms (time)."""

    kind: WindowKind
    start: int
    end: int
    rows: int
    profile: Profile
    unknown_fields: Mapping[str, int] = field(default_factory=dict)
