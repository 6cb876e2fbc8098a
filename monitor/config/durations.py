"""Durations: Prometheus-style strings or plain numbers of seconds.

``30s``, ``5m``, ``1h30m``, ``1d`` (:func:`parse_duration`, and back with
:func:`format_duration`); the config stores them as float seconds.  The
private coercers run before pydantic's own checks on duration and window
slide fields.
"""

from __future__ import annotations

import math
import re
from typing import TypeGuard

from monitor.config.errors import _describe, _raise

_DURATION_UNITS: dict[str, float] = {
    "y": 365 * 86400.0,
    "w": 7 * 86400.0,
    "d": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 0.001,
}
_DURATION_RE = re.compile(
    r"(?:(?P<y>\d+)y)?(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?"
    r"(?:(?P<m>\d+)m(?!s))?(?:(?P<s>\d+)s)?(?:(?P<ms>\d+)ms)?"
)


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration string: ``"30s"`` -> 30.0, ``"1h30m"`` -> 5400.0.

    Units: ``ms``, ``s``, ``m``, ``h``, ``d``, ``w``, ``y`` (365d), largest
    first, whole numbers only; ``"0"`` is zero.  Raises ``ValueError``.
    """
    cleaned = text.strip()
    if cleaned == "0":
        return 0.0
    match = _DURATION_RE.fullmatch(cleaned)
    if cleaned and match is not None and any(match.groupdict().values()):
        return sum(
            int(count) * _DURATION_UNITS[unit]
            for unit, count in match.groupdict().items()
            if count is not None
        )
    hint = "e.g. '30s', '5m', '1h', '1d' or '1h30m'"
    if re.fullmatch(r"\d+(\.\d+)?", cleaned):
        hint = f"add a unit, e.g. '{cleaned}s', or write a plain number of seconds"
    elif re.fullmatch(r"\d*\.\d+[a-z]+", cleaned):
        hint = "use whole numbers of a unit, e.g. '90m' rather than '1.5h'"
    return _raise(f"invalid duration {text!r}: {hint}")


def format_duration(seconds: float) -> str:
    """The Prometheus string for a number of seconds: 300 -> ``"5m"``, 0 -> ``"0s"``."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot format {seconds!r} as a duration")
    millis = round(seconds * 1000)
    parts: list[str] = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    if millis:
        parts.append(f"{millis}ms")
    return "".join(parts) or "0s"


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _coerce_duration(value: object) -> object:
    if _is_number(value):
        return value
    if isinstance(value, str):
        return parse_duration(value)
    return _raise(
        f"expected a duration such as '30s', '5m' or '1h', or a number of seconds; "
        f"got {_describe(value)}"
    )


def _try_seconds(value: object) -> float | None:
    """The seconds a raw duration value stands for, or None when it is not one."""
    if _is_number(value):
        return float(value)
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError:
            return None
    return None


def _coerce_slide(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 1 else _raise(f"slide must be at least 1; got {value}")
    if isinstance(value, float):
        return value if value > 0 else _raise(f"slide must be positive; got {value}")
    if isinstance(value, str):
        seconds = parse_duration(value)
        return seconds if seconds > 0 else _raise(f"slide must be positive; got {value!r}")
    return _raise(f"expected a number of events or a duration such as '1m'; got {_describe(value)}")
