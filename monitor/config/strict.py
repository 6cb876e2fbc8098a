"""The base of every config model: :class:`_Strict`.

Frozen, no unknown keys, and every error of a mapping reported in one run.
Its *wrap* validator (a) turns "extra inputs are not permitted" into "unknown
key 'x'; did you mean 'y'?" and rewrites pydantic's other messages in plain
words, and (b) runs the model's cross-field checks (``_cross_checks``) on the
raw input even when some other part of it fails.  The final wording of each
message travels in the error context under ``_MESSAGE_KEY``, where the loader
picks it up.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    ModelWrapValidatorHandler,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from monitor.config.errors import _describe, _did_you_mean

Loc = tuple[str | int, ...]
_MESSAGE_KEY = "driftline_message"


def _custom(error_type: str, loc: Loc, message: str, value: object) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError(error_type, "{" + _MESSAGE_KEY + "}", {_MESSAGE_KEY: message}),
        loc=loc,
        input=value,
    )


_TYPE_MESSAGES = {
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "dict_type": "expected a mapping",
    "list_type": "expected a list",
    "string_type": "expected a string",
    "int_type": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
    "finite_number": "expected a finite number",
}


class _Strict(BaseModel):
    """Frozen, no unknown keys, and every error of a mapping reported at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def _cross_checks(cls, raw: Mapping[str, Any]) -> Iterator[tuple[Loc, str]]:
        """Checks spanning several keys, run on the raw mapping (so they run
        even when another key fails).  Yield ``(loc, message)``; each check must
        only fire when the values it reads are themselves well formed."""
        return iter(())

    @classmethod
    def allowed_keys(cls) -> list[str]:
        return [field.alias or name for name, field in cls.model_fields.items()]

    @model_validator(mode="wrap")
    @classmethod
    def _validate_everything(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        errors: list[InitErrorDetails] = []
        if isinstance(data, Mapping):
            errors.extend(
                _custom("driftline", loc, message, data) for loc, message in cls._cross_checks(data)
            )
        try:
            result = handler(data)
        except ValidationError as exc:
            errors[:0] = [cls._rewrite(error) for error in exc.errors()]
            raise ValidationError.from_exception_data(cls.__name__, errors) from None
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return result

    @classmethod
    def _rewrite(cls, error: Any) -> InitErrorDetails:
        loc: Loc = tuple(error["loc"])
        kind: str = error["type"]
        ctx: dict[str, Any] = error.get("ctx") or {}
        value = error.get("input")
        if _MESSAGE_KEY in ctx:  # already ours, from a nested model
            return _custom(kind, loc, ctx[_MESSAGE_KEY], value)
        message: str = error["msg"]
        if kind == "extra_forbidden" and len(loc) == 1:
            allowed = cls.allowed_keys()
            message = f"unknown key {loc[0]!r}"
            close = _did_you_mean(str(loc[0]), allowed)
            message += (
                f"; did you mean {close!r}?" if close else f"; allowed keys: {', '.join(allowed)}"
            )
        elif kind == "extra_forbidden":
            message = f"unknown key {loc[-1]!r}"
        elif kind == "missing":
            message = f"missing required key {loc[-1]!r}" if loc else "missing value"
        elif kind in ("value_error", "assertion_error") and "error" in ctx:
            message = str(ctx["error"])
        elif loc and loc[-1] == "[key]" and kind == "string_type":
            message = (
                f"keys must be strings; YAML read this key as {_describe(value)} "
                "(quote keys like 1, on, off, yes, no, null)"
            )
        elif kind in _TYPE_MESSAGES:
            message = f"{_TYPE_MESSAGES[kind]}, got {_describe(value)}"
        elif kind in ("too_short",) and ctx.get("actual_length") == 0:
            message = "must not be empty"
        elif kind == "string_too_short" and value == "":
            message = "must not be empty"
        else:
            message = re.sub(r"^Input should be ", "must be ", message)
            if isinstance(value, str | int | float | bool) or value is None:
                message += f" (got {_describe(value)})"
        return _custom(kind, loc, message, value)


def _get(raw: object, *keys: str) -> object:
    """``raw[k1][k2]...`` or None when any step is missing or not a mapping."""
    for key in keys:
        if not isinstance(raw, Mapping):
            return None
        raw = raw.get(key)
    return raw
