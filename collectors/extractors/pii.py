"""Field policy for personal data: drop fields, or replace them by a salted hash, before anything leaves.

A :class:`FieldPolicy` names fields (inputs and outputs alike, by exact name)
to ``drop`` and to ``hash``; a field in both is dropped.  A hashed value
becomes ``sha256(salt + text).hexdigest()[:16]``, where ``text`` is the
value's UTF-8 text: a string as it is, any other scalar as its JSON text
(``41``, ``1.5``, ``true``).  The same value and salt always give the same
hash, so a hashed category is still a category the monitor can compare
across windows; a missing value (``None``) stays ``None`` so the missing
share is still measured.  Keep the salt secret and fixed per model: it is
what stops anyone from hashing a dictionary of likely values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import msgspec

from collectors.events import Instance, Scalar

HASH_CHARS = 16


@dataclass(frozen=True)
class FieldPolicy:
    """Fields to drop and fields to hash (with ``salt``), applied to inputs and outputs."""

    drop: frozenset[str] = frozenset()
    hash: frozenset[str] = frozenset()
    salt: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.salt, bytes):
            raise TypeError(f"FieldPolicy.salt must be bytes, not {type(self.salt).__name__}")
        for name in ("drop", "hash"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise TypeError(f"FieldPolicy.{name} must be a set of field names, not one string")
            object.__setattr__(self, name, frozenset(value))

    @property
    def empty(self) -> bool:
        return not self.drop and not self.hash


def hash_value(value: Scalar, salt: bytes) -> str | None:
    """The salted, truncated sha256 of one value's text; ``None`` stays ``None``."""
    if value is None:
        return None
    text = value.encode() if isinstance(value, str) else msgspec.json.encode(value)
    return hashlib.sha256(salt + text).hexdigest()[:HASH_CHARS]


def _clean(fields: Mapping[str, Scalar], policy: FieldPolicy) -> dict[str, Scalar]:
    return {name: hash_value(value, policy.salt) if name in policy.hash else value
            for name, value in fields.items() if name not in policy.drop}


def apply(instances: Iterable[Instance], policy: FieldPolicy) -> tuple[Instance, ...]:
    """The instances with the policy's fields dropped or hashed, in inputs and outputs."""
    if policy.empty:
        return tuple(instances)
    return tuple(Instance(inputs=_clean(x.inputs, policy), outputs=_clean(x.outputs, policy))
                 for x in instances)
