"""``driftline dashboards``: Grafana dashboards from the config; ``push`` and ``preview``.

``driftline dashboards --config C --out DIR`` writes the dashboards (built with
grafana-foundation-sdk, :mod:`dashboards.generator`) and Grafana provisioning files;
``push`` uploads them with grafana-client (:mod:`dashboards.push`), ``preview`` draws the
drill-down's main panels from a real Prometheus (:mod:`dashboards.preview`).  Both are
imported only when their command runs.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from monitor.cli.common import fail
from monitor.runtime import write_atomically

if TYPE_CHECKING:
    from monitor.config import Config

#: Where the token comes from when ``--token-file`` is not given.
TOKEN_ENV = "GRAFANA_TOKEN"

app = typer.Typer(
    name="dashboards",
    help="Grafana dashboards generated from the config (fleet overview, model drill-down, "
         "collectors) and provisioning files; push them to Grafana, or preview the drill-down.",
    add_completion=False,
    rich_markup_mode=None,
)

ConfigOption = Annotated[str | None, typer.Option("--config", "-C", metavar="FILE",
                                                  help="driftline YAML config")]
DatasourceUid = Annotated[str, typer.Option(
    "--datasource-uid", metavar="UID",
    help="uid of the Prometheus data source the dashboards select by default (the provisioned one's uid)")]


@app.callback(invoke_without_command=True)
def dashboards(
    ctx: typer.Context,
    config: ConfigOption = None,
    out: Annotated[str | None, typer.Option(
        "--out", "-o", metavar="DIR",
        help="write the dashboard JSON files here, and provisioning/ (data source, dashboards "
             "provider)")] = None,
    datasource_uid: DatasourceUid = "driftline-prometheus",
    prometheus_url: Annotated[str, typer.Option(
        "--prometheus-url", metavar="URL", help="the Prometheus the provisioned data source points at")]
        = "http://localhost:9090",
) -> None:
    """Write the Grafana dashboards generated from the config into DIR: the fleet overview, the
    model drill-down (uid driftline-model, the alerts' dashboard link) and the collectors, plus
    provisioning files (a Prometheus data source and a dashboards provider pointing at DIR). A
    dashboard whose content changed gets its version + 1; an unchanged one keeps its version."""
    if ctx.invoked_subcommand is not None:
        return
    if config is None or out is None:
        raise fail("dashboards needs --config FILE and --out DIR (or a command: push, preview; "
                   "see 'driftline dashboards --help')")
    from dashboards import generator, provisioning

    loaded = _load(config)
    directory = _directory(Path(out))
    boards = generator.with_versions(generator.generate(loaded, datasource_uid=datasource_uid),
                                     _existing(directory))
    for name, board in boards.items():
        write_atomically(directory / name, generator.to_json(board))
        typer.echo(f"{directory / name}: uid {board['uid']}, version {board['version']}")
    files = {
        provisioning.DATASOURCE_FILE: provisioning.datasource(datasource_uid, prometheus_url),
        provisioning.PROVIDER_FILE: provisioning.dashboard_provider(str(directory.resolve())),
    }
    for relative, document in files.items():
        path = directory / relative
        _directory(path.parent)
        write_atomically(path, provisioning.to_yaml(document))
        typer.echo(f"{path}")


@app.command()
def push(
    config: ConfigOption = None,
    url: Annotated[str | None, typer.Option("--url", metavar="URL", help="Grafana's base URL")] = None,
    token_file: Annotated[str | None, typer.Option(
        "--token-file", metavar="FILE",
        help=f"file holding a Grafana service-account token (else the {TOKEN_ENV} environment variable)")]
        = None,
    folder: Annotated[str, typer.Option("--folder", metavar="NAME", help="Grafana folder")] = "driftline",
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="replace dashboards that were changed in Grafana since the last push")] = False,
    datasource_uid: DatasourceUid = "driftline-prometheus",
) -> None:
    """Upload the generated dashboards into a Grafana folder (created if missing), replacing them by
    uid; a dashboard changed by hand in Grafana is kept unless --overwrite is given. One line per
    dashboard says what happened."""
    if config is None or url is None:
        raise fail("push needs --config FILE and --url URL")
    token = _token(token_file)
    from dashboards import generator

    boards = list(generator.generate(_load(config), datasource_uid=datasource_uid).values())
    pusher = _optional("dashboards.push", "push")
    for line in pusher.push(boards, url, token, folder, overwrite):
        typer.echo(line)


@app.command()
def preview(
    prometheus: Annotated[str | None, typer.Option(
        "--prometheus", metavar="URL", help="the Prometheus to query (range queries)")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", metavar="NAME",
                                              help="the model to draw")] = None,
    out: Annotated[str | None, typer.Option("--out", "-o", metavar="PNG",
                                            help="the picture to write")] = None,
    config: ConfigOption = None,
) -> None:
    """Draw the model drill-down's main panels (titles, queries and thresholds as in the dashboard)
    from a real Prometheus's range queries into a PNG: a preview, not a Grafana screenshot."""
    if prometheus is None or model is None or out is None:
        raise fail("preview needs --prometheus URL, --model NAME and --out PNG")
    previewer = _optional("dashboards.preview", "preview")
    loaded = _load(config) if config is not None else None
    previewer.render(prometheus=prometheus, model=model, out=Path(out), config=loaded)


def _optional(module: str, what: str) -> ModuleType:
    """``module``, imported only now (it pulls in its client library), or a one-line failure
    naming the extra to install when that library is missing."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        extra = "preview" if module.endswith("preview") else ""
        hint = f"pip install 'driftline[{extra}]'" if extra else "pip install driftline"
        raise fail(f"{what} needs the Python package {exc.name!r}: {hint}") from None


def _load(config: str) -> Config:
    from monitor.config import load_config

    if not Path(config).is_file():
        raise fail(f"{config}: no such config file")
    return load_config(config)  # a ConfigError is one line, exit 2 (main)


def _directory(path: Path) -> Path:
    """``path`` as a directory, created if missing; one line and exit 2 when it cannot be."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise fail(f"{path}: not a directory") from None
    except OSError as exc:
        raise fail(f"{path}: cannot create the directory: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise fail(f"{path}: cannot write: permission denied")
    return path


def _existing(directory: Path) -> list[dict[str, Any]]:
    """The dashboards already in ``directory`` (for their versions); unreadable files are skipped,
    they are about to be replaced."""
    found: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(data, dict):
            found.append(data)
    return found


def _token(token_file: str | None) -> str:
    if token_file is not None:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise fail(f"{token_file}: cannot read the token: {exc.strerror or exc}") from None
        if not token:
            raise fail(f"{token_file}: the token file is empty")
        return token
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise fail(f"push needs a Grafana token: --token-file FILE or {TOKEN_ENV}")
    return token
