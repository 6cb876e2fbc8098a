"""``driftline inject`` and ``driftline webhook``: attaching the collector on Kubernetes."""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from collectors import defaults  # constants only: the rest of the collector loads when a command runs
from monitor.cli.common import fail, host_port
from monitor.errors import InputError

if TYPE_CHECKING:  # the collector package loads only when a command runs
    from collectors.k8s.inject import InjectOptions

# The options that say how the collector is attached: declared once, shared by both
# commands (their defaults are InjectOptions' own; the collector's own settings become the
# DRIFTLINE_* variables of its container, as `driftline collect` reads them).
_COLLECTOR_OPTIONS: dict[str, tuple[Any, Any]] = {
    "image": (Annotated[str, typer.Option("--image", help="collector image")], defaults.IMAGE),
    "kafka": (Annotated[str, typer.Option("--kafka", help="Kafka bootstrap servers for the collector")],
              defaults.KAFKA_IN_CLUSTER),
    "model": (Annotated[str | None, typer.Option(
        "--model", help="model name (default: the pod's app.kubernetes.io/name label)")], None),
    "model_from_path": (Annotated[bool, typer.Option(
        "--model-from-path",
        help="no --model: the collector keys each call by the model (and version) its path names, "
             "for a server of several models (KServe's ModelServer, Triton)")], False),
    "model_map": (Annotated[str | None, typer.Option(
        "--model-map", metavar="SERVED=CONFIGURED,...",
        help="served models under the names the config uses (DRIFTLINE_MODEL_MAP)")], None),
    "model_port": (Annotated[int | None, typer.Option(
        "--model-port", help="the model's port (default: the first containerPort)", min=1, max=65535)],
        None),
    "collector_port": (Annotated[int, typer.Option("--collector-port", help="the collector's proxy port",
                                                   min=1, max=65535)], defaults.PROXY_PORT),
    "metrics_port": (Annotated[int, typer.Option("--metrics-port", help="the collector's /metrics port",
                                                 min=1, max=65535)], defaults.METRICS_PORT),
    "sample_rate": (Annotated[float | None, typer.Option("--sample-rate", help="share of requests captured",
                                                         min=0.0, max=1.0)], None),
    "output_names": (Annotated[str | None, typer.Option(
        "--output-names", metavar="NAMES",
        help="comma-separated names of the model's unnamed outputs, e.g. the config's prediction "
             "name (DRIFTLINE_OUTPUT_NAMES)")], None),
    "feature_names": (Annotated[str | None, typer.Option(
        "--feature-names", metavar="NAMES",
        help="comma-separated names of positional features, e.g. rows sent as bare lists "
             "(DRIFTLINE_FEATURE_NAMES)")], None),
    "protocol": (Annotated[str | None, typer.Option(
        "--protocol", metavar="PROTOCOL",
        help="auto (the collector's default), kserve_v1, oip_v2, mlflow or generic "
             "(DRIFTLINE_PROTOCOL)")], None),
    "generic_instances": (Annotated[str | None, typer.Option(
        "--generic-instances", metavar="JSONPATH",
        help="generic protocol: the request's instances (DRIFTLINE_GENERIC_INSTANCES)")], None),
    "generic_inputs": (Annotated[str | None, typer.Option(
        "--generic-inputs", metavar="JSONPATH",
        help="generic protocol: the features within an instance (DRIFTLINE_GENERIC_INPUTS)")], None),
    "generic_outputs": (Annotated[str | None, typer.Option(
        "--generic-outputs", metavar="JSONPATH",
        help="generic protocol: the response's outputs (DRIFTLINE_GENERIC_OUTPUTS)")], None),
    "native_sidecar": (Annotated[bool, typer.Option(
        "--native-sidecar", help="an initContainer with restartPolicy: Always (Kubernetes >= 1.29)")],
        False),
}
_NAME_LISTS = ("output_names", "feature_names")  # comma-separated on the command line
Command = Callable[..., None]


def _flag_words(message: str) -> str:
    """An :class:`InjectOptions` message with its field names as the flags that set them."""
    for name in sorted(_COLLECTOR_OPTIONS, key=len, reverse=True):
        message = re.sub(rf"(?<![\w-]){name}(?![\w-])", "--" + name.replace("_", "-"), message)
    return message


def with_collector_options(command: Command) -> Command:
    """``command(..., options: InjectOptions)`` as a CLI command that takes the collector
    options as flags (after its own) and receives them as one :class:`InjectOptions`."""
    # the command's own flags, their annotations evaluated here (`options` stays a name only
    # for type checkers: the collector package loads when the command runs)
    own = [p.replace(annotation=eval(p.annotation, command.__globals__))  # noqa: S307
           if isinstance(p.annotation, str) else p
           for name, p in inspect.signature(command).parameters.items() if name != "options"]
    shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind, default=default)
              for name, (kind, default) in _COLLECTOR_OPTIONS.items()]

    def run(**values: Any) -> None:
        from collectors.k8s.inject import InjectOptions

        given = {name: values.pop(name) for name in _COLLECTOR_OPTIONS}
        for name in _NAME_LISTS:  # "a, b" -> ("a", "b"); an empty list is refused below
            if given[name] is not None:
                raw, given[name] = given[name], tuple(n.strip() for n in given[name].split(",") if n.strip())
                if not given[name]:
                    raise fail(f"--{name.replace('_', '-')} needs comma-separated names; got {raw!r}")
        try:
            options = InjectOptions(**given)
        except InputError as exc:  # name the flag rather than the field
            raise fail(_flag_words(str(exc))) from None
        command(options=options, **values)

    run.__name__, run.__doc__ = command.__name__, command.__doc__
    run.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + shared)
    run.__annotations__ = {p.name: p.annotation for p in own + shared}
    return run


def inject(
    options: InjectOptions,
    file: Annotated[str, typer.Option("-f", "--filename", metavar="FILE",
                                      help="Deployment/Pod/... YAML, or - for stdin")],
) -> None:
    """Print the manifests with the collector sidecar attached; Services that point at the
    model's port are rewired through the collector."""
    from collectors.k8s.inject import inject_yaml

    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text()
    except OSError as exc:
        raise fail(f"{file}: cannot read: {exc.strerror or exc}") from None
    typer.echo(inject_yaml(text, options), nl=False)


def webhook(
    options: InjectOptions,
    tls_cert: Annotated[str, typer.Option("--tls-cert", metavar="FILE", help="PEM certificate")],
    tls_key: Annotated[str, typer.Option("--tls-key", metavar="FILE", help="PEM private key")],
    listen: Annotated[str, typer.Option("--listen", metavar="HOST:PORT",
                                        help="where the webhook listens")] = "0.0.0.0:8443",
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
) -> None:
    """Mutating admission webhook (TLS) that attaches the collector to pods annotated
    driftline.io/inject: "true" (manifests in k8s/webhook)."""
    import logging

    from collectors.k8s.webhook import run_webhook

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host_port(listen, "--listen")
    run_webhook(listen, tls_cert, tls_key, options)
