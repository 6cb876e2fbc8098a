"""The config's field types.

Annotated scalars (durations, probabilities, positive counts), the closed
choices (feature types, tasks, corrections, severities) with "did you mean"
hints, names checked against the Prometheus/Kubernetes/Kafka rules, test
names checked against the :mod:`monitor.engine.stats` registry, and
:class:`ResolvedPath`, a path resolved against the config file's directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    Strict,
    ValidationInfo,
    model_serializer,
    model_validator,
)

from monitor.config.durations import _coerce_duration, _coerce_slide
from monitor.config.errors import _describe, _did_you_mean, _raise
from monitor.config.strict import _Strict
from monitor.engine import stats


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
