"""A first config from a reference's inferred column types (``driftline init``).

Pure: the columns and their types in, the config as a dict and as YAML text out.  Reading
the reference (:func:`monitor.batch.check.infer_columns`), validating the text
(:func:`monitor.config.validate_text`) and writing the file are the caller's.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from monitor.config.fields import TASKS
from monitor.errors import UsageError

#: where a key of the starter config comes from on ``driftline init``'s command line
FLAGS = {
    "models[0].name": "--model",
    "models[0].version": "--version",
    "models[0].prediction": "--prediction",
    "models[0].target": "--target",
    "kafka.bootstrap_servers": "--kafka",
}


@dataclass(frozen=True)
class Starter:
    """The config, and what it left out of the reference's columns (column -> why)."""

    config: dict[str, Any]
    left_out: dict[str, str]

    @property
    def features(self) -> dict[str, str]:
        """feature -> type."""
        model = self.config["models"][0]
        return {name: spec["type"] for name, spec in model["features"].items()}


def check_roles(prediction: str | None, target: str | None, task: str | None) -> None:
    """What the flags say without the data: a target comes with a task, a known one, and
    the prediction is not the target.  A :class:`UsageError` otherwise."""
    if target is not None and task is None:
        raise UsageError(f"--target needs --task ({', '.join(TASKS)})")
    if task is not None and target is None:
        raise UsageError("--task needs --target (the label column)")
    if task is not None and task not in TASKS:
        raise UsageError(f"--task must be one of {', '.join(TASKS)}; got {task!r}")
    if prediction is not None and prediction == target:
        raise UsageError(f"--prediction and --target are both {prediction!r}")


def starter_config(
    *,
    model: str,
    reference: str,
    types: Mapping[str, str],
    skipped: Mapping[str, str],
    columns: Sequence[str],
    prediction: str | None = None,
    target: str | None = None,
    task: str | None = None,
    kafka: str | None = None,
    version: str | None = None,
    exclude: Sequence[str] = (),
    source: str | None = None,
) -> Starter:
    """The config of one model whose features are the reference's monitorable columns
    (``types``, as ``check`` infers them; ``skipped`` are those it leaves out), less the
    prediction, the target and ``exclude``.  A name that is not a column, or a target
    without its task, is a :class:`UsageError`; messages name the reference as ``source``
    (default: ``reference``, the path as the config holds it)."""
    source = source or reference
    for flag, name in (("--prediction", prediction), ("--target", target),
                       *(("--exclude", n) for n in exclude)):
        if name is not None and name not in columns:
            close = difflib.get_close_matches(name, list(columns), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UsageError(f"{flag} {name!r} is not a column of {source}{hint}")
    check_roles(prediction, target, task)

    roles: dict[str | None, str] = {name: "left out with --exclude" for name in exclude}
    roles.update({prediction: "the prediction", target: "the target"})
    features = {name: {"type": kind} for name, kind in types.items() if name not in roles}
    left_out = {name: why for name, why in skipped.items() if name not in roles}
    left_out.update({name: why for name, why in roles.items()
                     if name is not None and why.startswith("left out")})
    if not features:
        raise UsageError(f"{source}: no column is left to monitor as a feature")

    entry: dict[str, Any] = {"name": model}
    if version is not None:
        entry["version"] = version
    entry["reference"] = reference
    entry["features"] = features
    if prediction is not None:
        kind = types.get(prediction)
        if kind is None:  # a column check leaves out (no values, timestamps, identifiers)
            why = skipped.get(prediction, "the reference holds no values of it")
            raise UsageError(f"--prediction {prediction!r} cannot be monitored: {why}")
        # a prediction is numerical (scores, regression) or categorical (classes, 0/1 too)
        entry["prediction"] = {"name": prediction,
                               "type": "numerical" if kind == "numerical" else "categorical"}
    if target is not None:
        entry["target"] = {"name": target, "task": task}
    config: dict[str, Any] = {}
    if kafka is not None:
        config["kafka"] = {"bootstrap_servers": kafka}
    config["models"] = [entry]
    return Starter(config, left_out)


def starter_yaml(starter: Starter, *, source: str) -> str:
    """The config as YAML, with a header comment that says where it came from; the model's
    keys come last, so that lines appended to the file at two spaces extend the model."""
    config = starter.config
    header = [
        f"# driftline config, written by `driftline init` from {source}.",
        "# The feature types were inferred from the reference as `driftline check` infers them:",
        "# check them, and delete the features the model does not take as input.",
        *(f"# not monitored: {name} ({why})" for name, why in starter.left_out.items()),
        "# Every key is in README.md, \"Configuration reference\"; `driftline validate-config`",
        "# checks the file.",
    ]
    parts = ["\n".join(header) + "\n"]
    if "kafka" in config:
        parts.append(yaml.safe_dump({"kafka": config["kafka"]}, sort_keys=False))
    parts.append("# Base URLs put into alert annotations (default: localhost), e.g. in a cluster:\n"
                 "# links: {monitor_url: http://driftline-monitor.driftline.svc:8000, "
                 "grafana_url: http://grafana.monitoring.svc}\n")
    parts.append(_dump({"models": config["models"]}))
    return "\n".join(parts)


def _dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, allow_unicode=True, width=100)
