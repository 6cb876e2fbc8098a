"""Tests by short name.

Each test module calls :func:`register` at import; importing
:mod:`monitor.engine.stats` imports them all, so ``get("ks")`` works anywhere.
"""

from __future__ import annotations

from monitor.engine.stats.base import StatTest

_REGISTRY: dict[str, StatTest] = {}


def register(test: StatTest) -> StatTest:
    if test.name in _REGISTRY:
        raise ValueError(f"stat test {test.name!r} is registered twice")
    _REGISTRY[test.name] = test
    return test


def get(name: str) -> StatTest:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"unknown stat test {name!r}; known tests: {known}") from None


def names() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def all_tests() -> tuple[StatTest, ...]:
    return tuple(_REGISTRY[n] for n in names())
