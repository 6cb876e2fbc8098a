"""``driftline init``: a first config from a reference file."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Annotated

import typer

from monitor.cli.common import fail


def init(
    reference: Annotated[str, typer.Option("--reference", "-r", metavar="FILE",
                                           help="the training data: CSV or Parquet (or a saved profile)")],
    model: Annotated[str, typer.Option("--model", metavar="NAME",
                                       help="the model's name (the collector's --model)")],
    prediction: Annotated[str | None, typer.Option(
        "--prediction", metavar="COLUMN",
        help="the model's output: a column of the reference, monitored as the prediction")] = None,
    target: Annotated[str | None, typer.Option(
        "--target", metavar="COLUMN", help="the label: a column of the reference; needs --task")] = None,
    task: Annotated[str | None, typer.Option(
        "--task", metavar="TASK",
        help="binary_classification, multiclass_classification or regression")] = None,
    kafka: Annotated[str | None, typer.Option(
        "--kafka", metavar="HOST:PORT", help="Kafka bootstrap servers (default: localhost:9092)")] = None,
    version: Annotated[str | None, typer.Option("--version", metavar="VERSION",
                                                help="the model's version")] = None,
    exclude: Annotated[str | None, typer.Option(
        "--exclude", metavar="COLUMNS", help="comma-separated columns that are no features")] = None,
    out: Annotated[str, typer.Option("--out", "-o", metavar="FILE",
                                     help="where to write the config")] = "driftline.yaml",
    force: Annotated[bool, typer.Option("--force", help="overwrite --out if it exists")] = False,
) -> None:
    """Write a config for one model from its reference data: the features and their types
    as check infers them (identifier-like columns are left out and named), less the
    prediction and the target. The file is validated before it is written."""
    from monitor.batch.check import infer_columns
    from monitor.batch.tabular import release_memory_eagerly
    from monitor.config import validate_text
    from monitor.config.starter import FLAGS, check_roles, starter_config, starter_yaml
    from monitor.runtime import write_atomically

    target_path = Path(out)
    if target_path.is_dir():
        raise fail(f"--out {out}: is a directory; give a file name, e.g. {target_path / 'driftline.yaml'}")
    if target_path.exists() and not force:
        raise fail(f"{out} exists; give --force to overwrite it, or another --out")
    directory = target_path.parent
    if not directory.is_dir():
        raise fail(f"--out {out}: directory {directory} does not exist")
    check_roles(prediction, target, task)  # before the data is read
    release_memory_eagerly()
    columns = infer_columns(reference)
    starter = starter_config(
        model=model, reference=_relative(reference, directory), types=columns.types,
        skipped=columns.skipped, columns=columns.columns, prediction=prediction, target=target,
        task=task, kafka=kafka, version=version,
        exclude=[n.strip() for n in (exclude or "").split(",") if n.strip()], source=reference)
    text = starter_yaml(starter, source=starter.config["models"][0]["reference"])
    issues = validate_text(text, target_path, check_paths=True)
    if issues:  # written from flags: name the flag, not the key
        first = issues[0]
        where = next((flag for key, flag in FLAGS.items() if first.path.startswith(key)), first.path)
        more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
        raise fail(f"{out} not written: {where}: {first.message}{more}")
    write_atomically(target_path, text)

    kinds: dict[str, int] = {}
    for kind in starter.features.values():
        kinds[kind] = kinds.get(kind, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    entry = starter.config["models"][0]
    roles = ""
    if "prediction" in entry:
        roles += f", prediction {entry['prediction']['name']} ({entry['prediction']['type']})"
    if "target" in entry:
        roles += f", target {entry['target']['name']} ({entry['target']['task']})"
    count = len(starter.features)
    typer.echo(f"wrote {out}: model {model}, {count} feature{'s' * (count != 1)} ({summary}){roles}")
    for name, why in starter.left_out.items():
        typer.echo(f"not monitored: {name} ({why})")
    sample = "RECENT" + (".csv" if Path(reference).suffix.lower() in (".csv", ".tsv", ".txt") else ".parquet")
    typer.echo(f"next: compare recent data with the reference: "
               f"driftline check -C {shlex.quote(out)} -c {sample}")


def _relative(path: str, directory: Path) -> str:
    """``path`` as the config in ``directory`` names it: relative to that directory."""
    try:
        return os.path.relpath(os.path.abspath(path), os.path.abspath(directory))
    except ValueError:  # another drive (Windows)
        return os.path.abspath(path)
