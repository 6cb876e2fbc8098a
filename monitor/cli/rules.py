"""``driftline rules``: Prometheus alert rules (or a PrometheusRule) from the config."""

from __future__ import annotations

import os
import sys
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from monitor.cli.common import fail, reader_may_leave


class RulesFormat(StrEnum):
    rules = "rules"
    prometheusrule = "prometheusrule"


def rules(
    config: Annotated[str, typer.Option("--config", "-C", metavar="FILE", help="driftline YAML config")],
    fmt: Annotated[RulesFormat, typer.Option(
        "--format", help="rules: a Prometheus rules file (rule_files:); prometheusrule: a "
                         "prometheus-operator PrometheusRule manifest")] = RulesFormat.rules,
    out: Annotated[str | None, typer.Option(
        "--out", "-o", metavar="FILE", help="write here (atomically) instead of stdout")] = None,
) -> None:
    """Prometheus alert rules generated from the config's thresholds: sustained dataset and
    feature drift, performance bounds, stale evaluation (or no series at all), collector
    drops and consumer lag, with for, severity and links from each model's alerts section."""
    from alerts import rules as generator
    from monitor.config import load_config

    if not Path(config).is_file():
        raise fail(f"{config}: no such config file")
    loaded = load_config(config)
    text = generator.to_yaml(generator.generate(loaded, fmt.value))
    if out is None:
        with reader_may_leave():
            sys.stdout.write(text)
        return
    _write_atomically(Path(out), text)


def _write_atomically(path: Path, text: str) -> None:
    """``text`` to ``path`` via a temporary file in the same directory and a rename, so a
    reader (Prometheus reloading its rules) never sees half a file."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise fail(f"{path}: directory {directory} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise fail(f"{path}: cannot write: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise fail(f"{path}: cannot write: {exc.strerror or exc}") from None
