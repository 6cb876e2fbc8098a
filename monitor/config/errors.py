"""How a config problem is reported.

:class:`ConfigIssue` is one problem (file, key path, line, message),
:class:`ConfigError` carries every issue of a file, :func:`format_path` writes
a key path as ``models[0].features.region``.  The private helpers word the
messages every validator raises: a value described as the user wrote it
(:func:`_describe`), a "did you mean" hint (:func:`_did_you_mean`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from monitor.errors import PermanentError


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a config file.

    ``path`` is dotted with list indices, e.g. ``models[0].features.region.test``;
    it is empty for file-level problems.  ``line`` is 1-based, ``None`` when
    unknown (missing file, empty file).
    """

    file: str
    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.path:
            return f"{where}: {self.path}: {self.message}"
        return f"{where}: {self.message}"


class ConfigError(PermanentError):
    """A config file that cannot be used; ``issues`` lists every problem found."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues: list[ConfigIssue] = list(issues)
        count = len(self.issues)
        head = f"invalid config: {count} problem{'s' if count != 1 else ''}"
        super().__init__(f"{head}\n{format_issues(self.issues)}" if self.issues else head)


def format_issues(issues: Iterable[ConfigIssue]) -> str:
    """One issue per line, ``file:line: path: message``, in the order given."""
    return "\n".join(str(issue) for issue in issues)


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_\-]+")


def format_path(path: Sequence[object]) -> str:
    """``("models", 0, "features", "region")`` -> ``models[0].features.region``.

    Keys that are not plain words (dots, spaces, ...) are written ``['a.b']``.
    """
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif isinstance(part, str) and _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def _did_you_mean(value: str, choices: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(value, list(choices), n=1)
    return matches[0] if matches else None


def _raise(message: str) -> NoReturn:
    raise ValueError(message)


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__
