"""driftline's configuration: one YAML file, validated in one pass.

:func:`load_config` reads the file, :func:`validate_file` reports every problem
in it at once, each as a :class:`ConfigIssue` with the file, the key path
(``models[0].features.region.test``) and the line number::

    driftline.yaml:12: models[0].features.region.test: unknown test 'pssi'; did you mean 'psi'?

How it works: the YAML is composed into a node tree by a ``SafeLoader`` whose
nodes carry ``start_mark``; walking that tree records the line of every mapping
key and sequence item (and any duplicate key, which PyYAML would otherwise
silently collapse).  The constructed data is then validated by the pydantic
models below.  Every model shares a *wrap* validator that (a) turns "extra
inputs are not permitted" into "unknown key 'x'; did you mean 'y'?", and (b)
runs the model's cross-field checks on the raw input even when some other part
of it fails, so that one run reports every error.  Each pydantic error ``loc``
is finally mapped back to a line through the recorded positions.

Durations are Prometheus-style strings (``30s``, ``5m``, ``1h30m``, ``1d``) or
plain numbers of seconds; they are stored as float seconds.  Relative paths
(``reference``, ``job_template``) resolve against the config file's directory.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, Self, TypeGuard, TypeVar, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    Strict,
    ValidationError,
    ValidationInfo,
    model_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from monitor import stats
from monitor.stats import TestKind

__all__ = [
    "ActionSet",
    "ActionsConfig",
    "AlertsConfig",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "DatasetDriftRule",
    "DefaultsConfig",
    "EffectiveModelSettings",
    "FeatureSpec",
    "KafkaConfig",
    "KafkaTopics",
    "Materiality",
    "MetricBounds",
    "ModelConfig",
    "PerformanceSpec",
    "PredictionSpec",
    "ProfileSettings",
    "ResolvedPath",
    "RetrainAction",
    "RollbackAction",
    "TargetSpec",
    "WindowSpec",
    "format_duration",
    "format_issues",
    "format_path",
    "load_config",
    "parse_duration",
    "validate_file",
]

# --------------------------------------------------------------------------
# issues


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


class ConfigError(Exception):
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


# --------------------------------------------------------------------------
# durations

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


def _raise(message: str) -> NoReturn:
    raise ValueError(message)


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


# --------------------------------------------------------------------------
# field types


def _choice(choices: tuple[str, ...], what: str) -> BeforeValidator:
    def check(value: object) -> object:
        if isinstance(value, str) and value in choices:
            return value
        message = f"invalid {what} {_describe(value)}; expected one of {', '.join(choices)}"
        if isinstance(value, str) and (close := _did_you_mean(value, choices)):
            message += f"; did you mean {close!r}?"
        return _raise(message)

    return BeforeValidator(check)


def _check_test_name(name: str) -> str:
    known = stats.names()
    if name in known:
        return name
    close = _did_you_mean(name, known)
    if close:
        return _raise(f"unknown test {name!r}; did you mean {close!r}?")
    return _raise(f"unknown test {name!r}; known tests: {', '.join(known)}")


_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9_.]*[a-z0-9])?")
_DNS_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_TOPIC_RE = re.compile(r"[A-Za-z0-9._\-]{1,249}")


def _pattern(regex: re.Pattern[str], max_len: int, what: str) -> AfterValidator:
    def check(value: str) -> str:
        if len(value) <= max_len and regex.fullmatch(value):
            return value
        return _raise(f"invalid {what} {value!r}: {_PATTERN_HELP[what]}")

    return AfterValidator(check)


_PATTERN_HELP = {
    "model name": "use lowercase letters, digits, '-', '_' or '.', starting and ending with a "
    "letter or digit, at most 63 characters (it becomes a Prometheus/Kubernetes label value)",
    "namespace": "a Kubernetes namespace is lowercase letters, digits and '-', at most 63 "
    "characters",
    "deployment name": "a Kubernetes name is lowercase letters, digits, '-' and '.', at most 253 "
    "characters",
    "topic": "Kafka topic names use letters, digits, '.', '_' and '-', at most 249 characters",
}


def _check_bootstrap(value: str) -> str:
    for server in value.split(","):
        host, sep, port = server.strip().rpartition(":")
        if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
            return _raise(
                f"invalid bootstrap server {server.strip()!r}: expected host:port "
                "(comma-separate several)"
            )
    return value


def _version_to_str(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return _raise(
            f"write the version as a quoted string: YAML reads {value!r} as a number, "
            "which may not be what you typed (1.10 becomes 1.1)"
        )
    return value


NonEmptyStr = Annotated[str, Field(min_length=1)]
StrictFloat = Annotated[float, Strict(), Field(allow_inf_nan=False)]
StrictBool = Annotated[bool, Strict()]
PositiveInt = Annotated[int, Strict(), Field(ge=1)]
Duration = Annotated[float, BeforeValidator(_coerce_duration), Field(ge=0, allow_inf_nan=False)]
PositiveDuration = Annotated[
    float, BeforeValidator(_coerce_duration), Field(gt=0, allow_inf_nan=False)
]
Slide = Annotated[int | float, BeforeValidator(_coerce_slide)]
Probability = Annotated[float, Strict(), Field(ge=0, le=1)]
Alpha = Annotated[float, Strict(), Field(gt=0, lt=1)]

FeatureType = Literal["numerical", "categorical", "boolean"]
PredictionType = Literal["numerical", "categorical"]
Correction = Literal["none", "bonferroni", "bh"]
Task = Literal["binary_classification", "multiclass_classification", "regression"]
Severity = Literal["info", "warning", "critical"]

FEATURE_TYPES: tuple[str, ...] = get_args(FeatureType)
PREDICTION_TYPES: tuple[str, ...] = get_args(PredictionType)
CORRECTIONS: tuple[str, ...] = get_args(Correction)
TASKS: tuple[str, ...] = get_args(Task)
SEVERITIES: tuple[str, ...] = get_args(Severity)

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS = ("mae", "rmse", "mape", "r2")
_UNIT_INTERVAL_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
_NON_NEGATIVE_METRICS = ("log_loss", "mae", "rmse", "mape")

FeatureTypeField = Annotated[FeatureType, _choice(FEATURE_TYPES, "feature type")]
PredictionTypeField = Annotated[PredictionType, _choice(PREDICTION_TYPES, "prediction type")]
CorrectionField = Annotated[Correction, _choice(CORRECTIONS, "correction")]
TaskField = Annotated[Task, _choice(TASKS, "task")]
SeverityField = Annotated[Severity, _choice(SEVERITIES, "severity")]
TestName = Annotated[str, AfterValidator(_check_test_name)]
ModelName = Annotated[str, _pattern(_LABEL_RE, 63, "model name")]
Namespace = Annotated[str, _pattern(_DNS_LABEL_RE, 63, "namespace")]
DeploymentName = Annotated[str, _pattern(_DNS_SUBDOMAIN_RE, 253, "deployment name")]
Topic = Annotated[str, _pattern(_TOPIC_RE, 249, "topic")]
Version = Annotated[str, BeforeValidator(_version_to_str), Field(min_length=1)]

# --------------------------------------------------------------------------
# the shared base: unknown-key hints and cross-field checks on raw input

Loc = tuple[str | int, ...]
_MESSAGE_KEY = "driftline_message"


def _custom(error_type: str, loc: Loc, message: str, value: object) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError(error_type, "{" + _MESSAGE_KEY + "}", {_MESSAGE_KEY: message}),
        loc=loc,
        input=value,
    )


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


# --------------------------------------------------------------------------
# models: building blocks


class ResolvedPath(_Strict):
    """A path as written in the config (``raw``) and resolved against the
    config file's directory (``path``; absolute when the config was loaded
    from a file).  Dumps back to the raw string."""

    raw: str
    path: Path

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, ResolvedPath):
            return data
        if not isinstance(data, str):
            return _raise(f"expected a file path, got {_describe(data)}")
        if not data.strip():
            return _raise("path must not be empty")
        path = Path(data).expanduser()
        context = info.context
        base = context.get("base_dir") if isinstance(context, Mapping) else None
        if base is not None and not path.is_absolute():
            path = Path(os.path.normpath(Path(base) / path))
        return {"raw": data, "path": path}

    @model_serializer
    def _dump(self) -> str:
        return self.raw


class WindowSpec(_Strict):
    """A count window (``size`` events) or a time window (``duration``
    seconds); sliding every ``slide`` events/seconds, tumbling without it."""

    size: PositiveInt | None = None
    duration: PositiveDuration | None = None
    slide: Slide | None = None

    @classmethod
    def _cross_checks(cls, raw: Mapping[str, Any]) -> Iterator[tuple[Loc, str]]:
        size, duration, slide = raw.get("size"), raw.get("duration"), raw.get("slide")
        if size is not None and duration is not None:
            yield (), "give either 'size' (a count window) or 'duration' (a time window), not both"
            return
        if size is None and duration is None:
            yield (), "give one of 'size' (events per window) or 'duration' (e.g. '5m')"
            return
        if slide is None:
            return
        if size is not None:
            if isinstance(slide, str | float):
                yield (
                    ("slide",),
                    (
                        f"a count window slides by a number of events, not a duration; got "
                        f"{_describe(slide)}"
                    ),
                )
            elif _is_number(slide) and _is_number(size) and slide >= size >= 1:
                yield (
                    ("slide",),
                    (
                        f"slide ({slide}) must be smaller than size ({size}); "
                        "omit slide for a tumbling window"
                    ),
                )
        else:
            window_s, slide_s = _try_seconds(duration), _try_seconds(slide)
            if window_s is not None and slide_s is not None and slide_s >= window_s > 0:
                yield (
                    ("slide",),
                    (
                        f"slide ({format_duration(slide_s)}) must be shorter than duration "
                        f"({format_duration(window_s)}); omit slide for a tumbling window"
                    ),
                )

    @property
    def kind(self) -> Literal["count", "time"]:
        return "count" if self.size is not None else "time"

    @property
    def tumbling(self) -> bool:
        return self.slide is None

    @property
    def slide_events(self) -> int | None:
        """Events between window starts for a sliding count window."""
        return int(self.slide) if self.kind == "count" and self.slide is not None else None

    @property
    def slide_seconds(self) -> float | None:
        """Seconds between window starts for a sliding time window."""
        return float(self.slide) if self.kind == "time" and self.slide is not None else None


class DatasetDriftRule(_Strict):
    """When a dataset counts as drifted: ``any`` drifted feature (``share`` is
    None), or at least ``share`` of the features.  YAML: ``any`` or
    ``{share: 0.3}``."""

    share: Annotated[float, Strict(), Field(gt=0, le=1)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_any(cls, data: Any) -> Any:
        if data == "any":
            return {}
        if isinstance(data, Mapping | DatasetDriftRule):
            return data
        return _raise(f"expected 'any' or a mapping like {{share: 0.3}}; got {_describe(data)}")

    @property
    def mode(self) -> Literal["any", "share"]:
        return "any" if self.share is None else "share"

    def decide(self, drifted: int, total: int) -> bool:
        """Whether ``drifted`` of ``total`` features drifting is dataset drift."""
        if total <= 0 or drifted <= 0:
            return False
        return self.share is None or drifted / total >= self.share

    @model_serializer
    def _dump(self) -> str | dict[str, float]:
        return "any" if self.share is None else {"share": self.share}


class Materiality(_Strict):
    """Effect-size floors below which a statistically significant change is
    not reported as drift: normed Wasserstein distance (numerical), total
    variation distance (categorical) and absolute change in missing share."""

    numerical: Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)] = 0.1
    categorical: Probability = 0.05
    missing_share: Probability = 0.01


class ProfileSettings(_Strict):
    """How reference and window profiles are built: keep values exactly up to
    ``exact_cap`` then switch to a KLL sketch of parameter ``sketch_k``; keep
    at most ``max_categories`` categories per feature (the rest pool as other)."""

    exact_cap: Annotated[int, Strict(), Field(ge=0)] = 100_000
    sketch_k: Annotated[int, Strict(), Field(ge=8, le=65535)] = 1024
    max_categories: PositiveInt = 200


def _test_checks(raw: Mapping[str, Any]) -> Iterator[tuple[Loc, str]]:
    """Checks shared by features and predictions: test vs type, threshold range."""
    kind, test, threshold = raw.get("type"), raw.get("test"), raw.get("threshold")
    stat = stats.get(test) if isinstance(test, str) and test in stats.names() else None
    if stat is not None and kind in FEATURE_TYPES:
        numerical = kind == "numerical"
        if not (stat.supports_numerical if numerical else stat.supports_categorical):
            fits = [
                name
                for name in stats.names()
                if (
                    stats.get(name).supports_numerical
                    if numerical
                    else stats.get(name).supports_categorical
                )
            ]
            yield (
                ("test",),
                (
                    f"test {test!r} does not support {kind} data; "
                    f"tests that do: {', '.join(fits) or 'none registered'}"
                ),
            )
    if threshold is not None and test is None:
        yield (
            ("threshold",),
            (
                "threshold needs an explicit 'test': the automatically chosen test, and so what "
                "the threshold means, depends on the data"
            ),
        )
    if stat is not None and _is_number(threshold):
        if stat.kind is TestKind.P_VALUE and not 0 < threshold < 1:
            yield (
                ("threshold",),
                (
                    f"{test!r} is a p-value test: threshold must be between 0 and 1 (exclusive); "
                    f"got {threshold}"
                ),
            )
        elif stat.kind is TestKind.DISTANCE and not threshold > 0:
            yield (
                ("threshold",),
                (f"{test!r} is a distance test: threshold must be positive; got {threshold}"),
            )


class FeatureSpec(_Strict):
    """One monitored input feature.  ``test`` is chosen automatically when
    omitted; ``threshold`` then needs an explicit test.  ``boolean`` features
    are tested as categorical."""

    type: FeatureTypeField
    test: TestName | None = None
    threshold: StrictFloat | None = None
    max_categories: PositiveInt | None = None

    @classmethod
    def _cross_checks(cls, raw: Mapping[str, Any]) -> Iterator[tuple[Loc, str]]:
        yield from _test_checks(raw)
        if raw.get("max_categories") is not None and raw.get("type") in ("numerical", "boolean"):
            yield ("max_categories",), "max_categories applies to categorical features only"

    @property
    def categorical(self) -> bool:
        return self.type != "numerical"


class PredictionSpec(_Strict):
    """The model's output column, monitored for drift like a feature."""

    name: NonEmptyStr
    type: PredictionTypeField
    test: TestName | None = None
    threshold: StrictFloat | None = None

    @classmethod
    def _cross_checks(cls, raw: Mapping[str, Any]) -> Iterator[tuple[Loc, str]]:
        yield from _test_checks(raw)

    @property
    def categorical(self) -> bool:
        return self.type != "numerical"


class TargetSpec(_Strict):
    """The ground-truth label column (arriving on the labels topic) and the task."""

    name: NonEmptyStr
    task: TaskField

    @property
    def classification(self) -> bool:
        return self.task != "regression"


class MetricBounds(_Strict):
    """A performance metric's acceptable range; at least one of min / max."""

    min: StrictFloat | None = None
    max: StrictFloat | None = None

    @classmethod
    def _cross_checks(cls, raw: Mapping[str, Any]) -> Iterator[tuple[Loc, str]]:
        low, high = raw.get("min"), raw.get("max")
        if low is None and high is None:
            yield (), "give 'min' and/or 'max'"
        elif _is_number(low) and _is_number(high) and low > high:
            yield ("max",), f"max ({high}) is below min ({low})"

    def violated(self, value: float) -> bool:
        return (self.min is not None and value < self.min) or (
            self.max is not None and value > self.max
        )


class PerformanceSpec(_Strict):
    """Performance thresholds by metric name."""

    accuracy: MetricBounds | None = None
    precision: MetricBounds | None = None
    recall: MetricBounds | None = None
    f1: MetricBounds | None = None
    roc_auc: MetricBounds | None = None
    log_loss: MetricBounds | None = None
    mae: MetricBounds | None = None
    rmse: MetricBounds | None = None
    mape: MetricBounds | None = None
    r2: MetricBounds | None = None

    @classmethod
    def _cross_checks(cls, raw: Mapping[str, Any]) -> Iterator[tuple[Loc, str]]:
        if not raw:
            yield (), "give at least one metric: " + ", ".join(cls.allowed_keys())
        for metric, bounds in raw.items():
            if not isinstance(bounds, Mapping):
                continue
            for side in ("min", "max"):
                value = bounds.get(side)
                if not _is_number(value):
                    continue
                if metric in _UNIT_INTERVAL_METRICS and not 0 <= value <= 1:
                    yield (metric, side), f"{metric} lies between 0 and 1; got {value}"
                elif metric in _NON_NEGATIVE_METRICS and value < 0:
                    yield (metric, side), f"{metric} is never negative; got {value}"
                elif metric == "r2" and value > 1:
                    yield (metric, side), f"r2 is at most 1; got {value}"

    def metrics(self) -> dict[str, MetricBounds]:
        """The configured metrics, in declaration order."""
        return {
            name: bounds
            for name in type(self).model_fields
            if (bounds := getattr(self, name)) is not None
        }


class AlertsConfig(_Strict):
    """Prometheus alerting: ``for`` how long a condition must hold before firing."""

    for_: Duration = Field(default=0.0, alias="for")
    severity: SeverityField = "warning"


class RetrainAction(_Strict):
    """Create a Kubernetes Job from ``job_template`` (a Job manifest)."""

    job_template: ResolvedPath
    namespace: Namespace | None = None


class RollbackAction(_Strict):
    """Roll ``deployment`` back to its previous revision."""

    deployment: DeploymentName
    namespace: Namespace | None = None


class ActionSet(_Strict):
    retrain: RetrainAction | None = None
    rollback: RollbackAction | None = None

    @classmethod
    def _cross_checks(cls, raw: Mapping[str, Any]) -> Iterator[tuple[Loc, str]]:
        if all(raw.get(key) is None for key in cls.allowed_keys()):
            yield (), f"give at least one action: {', '.join(cls.allowed_keys())}"


class ActionsConfig(_Strict):
    """Automated remediation.  ``dry_run`` (the default) only logs what would be
    done; ``cooldown`` is the least time between two actions for one model."""

    on_drift: ActionSet | None = None
    on_performance_drop: ActionSet | None = None
    cooldown: Duration = 3600.0
    dry_run: StrictBool = True


class KafkaTopics(_Strict):
    predictions: Topic = "driftline.predictions"
    labels: Topic = "driftline.labels"
    dlq: Topic = "driftline.dlq"
    state: Topic = "driftline.state"


class KafkaConfig(_Strict):
    bootstrap_servers: Annotated[str, AfterValidator(_check_bootstrap)] = "localhost:9092"
    topics: KafkaTopics = KafkaTopics()
    group_id: NonEmptyStr = "driftline"


# --------------------------------------------------------------------------
# models: the config


class DefaultsConfig(_Strict):
    """Settings every model inherits unless it overrides them."""

    window: WindowSpec = WindowSpec(size=1000)
    alpha: Alpha = 0.05
    correction: CorrectionField = "bh"
    dataset_drift: DatasetDriftRule = DatasetDriftRule()
    materiality: Materiality = Materiality()
    profile: ProfileSettings = ProfileSettings()


class EffectiveModelSettings(_Strict):
    """A model's settings with the defaults applied (see :meth:`Config.effective`).

    ``window`` and ``dataset_drift`` come whole from the model when it sets
    them; ``materiality`` and ``profile`` merge key by key.
    """

    window: WindowSpec
    alpha: float
    correction: Correction
    dataset_drift: DatasetDriftRule
    materiality: Materiality
    profile: ProfileSettings

    def max_categories(self, feature: FeatureSpec) -> int:
        """Categories kept for ``feature``: its own cap, else the profile's."""
        if feature.max_categories is not None:
            return feature.max_categories
        return self.profile.max_categories


class ModelConfig(_Strict):
    """One monitored model.  ``window`` ... ``profile`` are optional overrides
    of ``defaults``; read the merged values from :meth:`Config.effective`."""

    name: ModelName
    version: Version | None = None
    reference: ResolvedPath
    window: WindowSpec | None = None
    alpha: Alpha | None = None
    correction: CorrectionField | None = None
    dataset_drift: DatasetDriftRule | None = None
    materiality: Materiality | None = None
    profile: ProfileSettings | None = None
    features: Annotated[dict[NonEmptyStr, FeatureSpec], Field(min_length=1)]
    prediction: PredictionSpec | None = None
    target: TargetSpec | None = None
    performance: PerformanceSpec | None = None
    alerts: AlertsConfig = AlertsConfig()
    actions: ActionsConfig | None = None

    @classmethod
    def _cross_checks(cls, raw: Mapping[str, Any]) -> Iterator[tuple[Loc, str]]:
        features = raw.get("features")
        feature_names = set(features) if isinstance(features, Mapping) else set()
        prediction_name = _get(raw, "prediction", "name")
        target_name = _get(raw, "target", "name")
        if isinstance(prediction_name, str) and prediction_name in feature_names:
            yield (
                ("prediction", "name"),
                (f"prediction {prediction_name!r} is also a feature name; give it another name"),
            )
        if isinstance(target_name, str) and target_name in feature_names:
            yield (
                ("target", "name"),
                (f"target {target_name!r} is also a feature name (that would leak the label)"),
            )
        elif isinstance(target_name, str) and target_name == prediction_name:
            yield ("target", "name"), f"target {target_name!r} has the prediction's name"

        task = _get(raw, "target", "task")
        prediction_type = _get(raw, "prediction", "type")
        if task == "regression" and prediction_type == "categorical":
            yield ("prediction", "type"), "a regression model's prediction must be numerical"

        performance = raw.get("performance")
        if isinstance(performance, Mapping) and performance:
            if raw.get("target") is None:
                yield ("performance",), "performance thresholds need a 'target' (name and task)"
            if raw.get("prediction") is None:
                yield ("performance",), "performance thresholds need a 'prediction'"
            if task in TASKS:
                fitting = REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS
                for metric in performance:
                    if metric in CLASSIFICATION_METRICS + REGRESSION_METRICS and (
                        metric not in fitting
                    ):
                        yield (
                            ("performance", metric),
                            (
                                f"metric {metric!r} does not fit task {task!r}; "
                                f"metrics for it: {', '.join(fitting)}"
                            ),
                        )
        if _get(raw, "actions", "on_performance_drop") is not None and not performance:
            yield (
                ("actions", "on_performance_drop"),
                ("on_performance_drop needs 'performance' thresholds to detect a drop"),
            )


class Config(_Strict):
    """driftline's whole configuration file."""

    kafka: KafkaConfig = KafkaConfig()
    defaults: DefaultsConfig = DefaultsConfig()
    models: Annotated[list[ModelConfig], Field(min_length=1)]

    _source: Path | None = PrivateAttr(default=None)

    @classmethod
    def _cross_checks(cls, raw: Mapping[str, Any]) -> Iterator[tuple[Loc, str]]:
        models = raw.get("models")
        if not isinstance(models, list):
            return
        first: dict[str, int] = {}
        for index, model in enumerate(models):
            name = _get(model, "name")
            if not isinstance(name, str):
                continue
            if name in first:
                yield (
                    ("models", index, "name"),
                    (f"duplicate model name {name!r}; models[{first[name]}] has it already"),
                )
            else:
                first[name] = index

    @property
    def source(self) -> Path | None:
        """The file this config was loaded from (absolute), if any."""
        return self._source

    @property
    def base_dir(self) -> Path | None:
        """The directory relative paths resolve against, if loaded from a file."""
        return None if self._source is None else self._source.parent

    def model_names(self) -> list[str]:
        return [model.name for model in self.models]

    def model(self, name: str) -> ModelConfig:
        """The model called ``name``; ``KeyError`` naming the known models otherwise."""
        for model in self.models:
            if model.name == name:
                return model
        message = f"no model named {name!r} in the config; models: {', '.join(self.model_names())}"
        close = _did_you_mean(name, self.model_names())
        raise KeyError(message + (f"; did you mean {close!r}?" if close else ""))

    def effective(self, model_name: str) -> EffectiveModelSettings:
        """``defaults`` with the model's overrides applied."""
        model, defaults = self.model(model_name), self.defaults
        return EffectiveModelSettings(
            window=model.window if model.window is not None else defaults.window,
            alpha=model.alpha if model.alpha is not None else defaults.alpha,
            correction=model.correction if model.correction is not None else defaults.correction,
            dataset_drift=(
                model.dataset_drift if model.dataset_drift is not None else defaults.dataset_drift
            ),
            materiality=_merge(defaults.materiality, model.materiality),
            profile=_merge(defaults.profile, model.profile),
        )


_M = TypeVar("_M", bound=BaseModel)


def _merge(base: _M, override: _M | None) -> _M:
    """``base`` with the fields ``override`` set explicitly."""
    if override is None:
        return base
    return base.model_copy(
        update={name: getattr(override, name) for name in override.model_fields_set}
    )


# --------------------------------------------------------------------------
# YAML with positions


_MERGE_TAG = "tag:yaml.org,2002:merge"
Position = tuple[object, ...]


class _PositionLoader(yaml.SafeLoader):
    """A SafeLoader that records, before construction, the 1-based line of
    every mapping key and sequence item by path, and every duplicate key."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.positions: dict[Position, int] = {}
        self.duplicates: dict[int, tuple[Position, int]] = {}  # line -> (path, first line)
        self._open: set[int] = set()

    def walk(self, node: yaml.Node, path: Position = (), explicit: bool = True) -> None:
        if id(node) in self._open:  # a recursive alias
            return
        self._open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                self._walk_mapping(node, path, explicit)
            elif isinstance(node, yaml.SequenceNode):
                for i, item in enumerate(node.value):
                    self._record(path + (i,), item.start_mark.line + 1, explicit)
                    self.walk(item, path + (i,), explicit)
        finally:
            self._open.discard(id(node))

    def _walk_mapping(self, node: yaml.MappingNode, path: Position, explicit: bool) -> None:
        seen: dict[object, int] = {}
        merged: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.extend(
                    value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                )
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # unhashable key: construction reports it
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                self.duplicates.setdefault(line, (path + (key,), seen[key]))
            else:
                seen[key] = line
            self._record(path + (key,), line, explicit)
            self.walk(value_node, path + (key,), explicit)
        for source in merged:  # `<<: *anchor`: explicit keys win, as in construction
            self.walk(source, path, explicit=False)

    def _record(self, path: Position, line: int, explicit: bool) -> None:
        if explicit:
            self.positions[path] = line
        else:
            self.positions.setdefault(path, line)


def _yaml_issue(file: str, exc: yaml.YAMLError, text: str) -> ConfigIssue:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "could not parse"
        line = None if mark is None else mark.line + 1
        context = ""
        if exc.context:
            context_mark = exc.context_mark
            started = context_mark.line + 1 if context_mark is not None else None
            at = f" on line {started}" if started is not None and started != line else ""
            context = f" ({exc.context}{at})"
        return ConfigIssue(file, "", line, f"invalid YAML: {problem}{context}")
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        return ConfigIssue(file, "", line, f"invalid YAML: {exc.reason}")
    return ConfigIssue(file, "", None, f"invalid YAML: {exc}")


def _locate(
    loc: Sequence[object], positions: Mapping[Position, int]
) -> tuple[Position, int | None]:
    """Map a pydantic error ``loc`` to (data path, line of the deepest known key)."""
    path: list[object] = []
    line = positions.get(())
    known = True
    for part in loc:
        if part == "[key]":  # the error is about a mapping key itself
            continue
        path.append(part)
        if known and tuple(path) in positions:
            line = positions[tuple(path)]
        else:
            known = False
    return tuple(path), line


# --------------------------------------------------------------------------
# loading


def _read(path: Path, file: str) -> tuple[Config | None, list[ConfigIssue]]:
    def fail(message: str, line: int | None = None) -> tuple[None, list[ConfigIssue]]:
        return None, [ConfigIssue(file, "", line, message)]

    try:
        data_bytes = path.read_bytes()
    except FileNotFoundError:
        return fail("config file not found")
    except IsADirectoryError:
        return fail("is a directory, not a config file")
    except PermissionError:
        return fail("cannot read config file: permission denied")
    except OSError as exc:
        return fail(f"cannot read config file: {exc.strerror or exc}")
    try:
        text = data_bytes.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return fail("config file is not UTF-8 text", data_bytes.count(b"\n", 0, exc.start) + 1)

    loader = _PositionLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            loader.walk(node)
        data = None if node is None else loader.construct_document(node)
    except yaml.YAMLError as exc:
        return None, [_yaml_issue(file, exc, text)]
    finally:
        loader.dispose()

    issues = [
        ConfigIssue(
            file,
            format_path(dup_path),
            line,
            f"duplicate key {dup_path[-1]!r} (first on line {first}); YAML would keep only "
            "the last value",
        )
        for line, (dup_path, first) in loader.duplicates.items()
    ]
    if data is None:
        return fail("config file is empty; expected a mapping with a 'models' list")
    if not isinstance(data, dict):
        return fail(
            f"the top level must be a mapping (kafka, defaults, models); got {_describe(data)}",
            loader.positions.get((), 1),
        )
    loader.positions.setdefault((), 1)

    config: Config | None = None
    try:
        config = Config.model_validate(data, context={"base_dir": path.absolute().parent})
    except ValidationError as exc:
        for error in exc.errors():
            error_path, line = _locate(error["loc"], loader.positions)
            ctx = error.get("ctx") or {}
            message = ctx.get(_MESSAGE_KEY, error["msg"])
            issues.append(ConfigIssue(file, format_path(error_path), line, str(message)))
    if config is not None:
        config._source = path.absolute()
    issues.sort(key=lambda issue: (issue.line is not None, issue.line or 0))
    return (None if issues else config), issues


def validate_file(path: str | Path) -> list[ConfigIssue]:
    """Every problem in the config file at ``path``, by line; empty when valid."""
    return _read(Path(path), str(path))[1]


def load_config(path: str | Path) -> Config:
    """The validated config at ``path``; :class:`ConfigError` listing every problem otherwise."""
    config, issues = _read(Path(path), str(path))
    if config is None:
        raise ConfigError(issues)
    return config
