"""``driftline``: the one console script.

Exit codes for ``check``: 0 no dataset drift, 1 dataset drift, 2 bad input or
usage (one line on stderr, never a traceback; set DRIFTLINE_DEBUG=1 for one).
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from monitor.errors import DriftlineError

app = typer.Typer(
    name="driftline",
    help="Drift and performance monitoring for ML models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_OK, EXIT_DRIFT, EXIT_ERROR = 0, 1, 2


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"driftline: error: {message}", err=True)
    return typer.Exit(EXIT_ERROR)


class _Steps:
    """A progress bar on stderr (only for a terminal): one tick per step or feature."""

    def __init__(self, enabled: bool, total: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskID,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._total = total
        if enabled:
            self._progress = Progress(TextColumn("{task.description:<24}"), BarColumn(),
                                      MofNCompleteColumn(), TimeElapsedColumn(),
                                      console=Console(stderr=True), transient=True)

    def __enter__(self) -> _Steps:
        if self._progress is not None:
            self._progress.start()
            self._task = self._progress.add_task("starting", total=self._total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, description: str) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=description[:24], advance=1)


def _large(*paths: str) -> bool:
    """Inputs big enough to deserve a progress bar (20 MB; DRIFTLINE_PROGRESS_MIN_BYTES)."""
    threshold = os.environ.get("DRIFTLINE_PROGRESS_MIN_BYTES", "")
    limit = int(threshold) if threshold.isdigit() else 20 << 20
    total = 0
    for p in paths:
        try:
            total += Path(p).stat().st_size
        except OSError:
            pass
    return total >= limit


@app.command()
def check(
    current: Annotated[str, typer.Option("--current", "-c", help="CSV or Parquet")],
    reference: Annotated[str | None, typer.Option(
        "--reference", "-r",
        help="CSV, Parquet or saved profile (default: the model's reference in --config)")] = None,
    config: Annotated[str | None, typer.Option("--config", help="driftline YAML config")] = None,
    model: Annotated[str | None, typer.Option("--model", help="model in the config")] = None,
    fmt: Annotated[OutputFormat | None, typer.Option(
        "--format", help="table (default on a terminal) or json (default otherwise)")] = None,
) -> None:
    """Batch drift check of CURRENT against REFERENCE. Exit 0 no drift, 1 drift, 2 error."""
    import threading

    from monitor.batch import check as batch
    from monitor.batch import render, tabular
    from monitor.engine.stats import ks

    # a one-shot process: return freed memory rather than keep it for reuse
    # (runtime.tune_allocator is for the long-running service)
    tabular.release_memory_eagerly()
    # scipy.stats loads while the files are read and profiled
    threading.Thread(target=ks.preload, name="preload-scipy", daemon=True).start()
    if model is not None and config is None:
        raise _fail("--model needs --config")
    plan = batch.plan_from_config(config, model) if config else batch.ModelPlan("", None)
    reference = reference or plan.reference
    if reference is None:
        raise _fail("--reference is required (or a --config whose model names a reference)")
    out_format = fmt or (OutputFormat.table if sys.stdout.isatty() else OutputFormat.json)
    width = len(plan.features) if plan.features else 20
    with _Steps(sys.stderr.isatty() and _large(reference, current), 2 * width + 5) as step:
        result = batch.run_check(reference, current, plan, step=step, evaluated_at=_now())
    report = result.report
    if out_format is OutputFormat.json:
        extra: dict[str, object] = {"inferred_types": bool(result.inferred)}
        if result.skipped:
            extra["skipped_columns"] = result.skipped
        if result.performance is not None:
            extra["performance"] = result.performance.to_dict()
        elif result.performance_note:
            extra["performance"] = {"note": result.performance_note}
        typer.echo(render.report_json(report, extra))
    else:
        notes = []
        if result.inferred:
            notes.append("feature types inferred from the reference: " + ", ".join(
                f"{f.name}={f.type}" for f in report.features))
        for column, why in result.skipped.items():
            notes.append(f"not monitored: {column} ({why})")
        notes.extend(render.performance_lines(result.performance, result.performance_note))
        render.print_table(report, sys.stdout, notes)
    raise typer.Exit(EXIT_DRIFT if report.drift_detected else EXIT_OK)


@app.command()
def profile(
    reference: Annotated[str, typer.Option("--reference", "-r", help="CSV or Parquet")],
    out: Annotated[str, typer.Option("--out", "-o", help="where to write the profile")],
    config: Annotated[str | None, typer.Option("--config", help="driftline YAML config")] = None,
    model: Annotated[str | None, typer.Option("--model", help="model in the config")] = None,
) -> None:
    """Build and save a reference profile."""
    from monitor.batch import check as batch
    from monitor.batch import tabular

    tabular.release_memory_eagerly()
    if model is not None and config is None:
        raise _fail("--model needs --config")
    plan = batch.plan_from_config(config, model) if config else batch.ModelPlan("", None)
    width = len(plan.features) if plan.features else 20
    with _Steps(sys.stderr.isatty() and _large(reference), width + 3) as step:
        built = batch.build_profile(reference, plan, out, created_at=_now(), step=step)
    kinds: dict[str, int] = {}
    for f in built.features.values():
        kinds[f.type] = kinds.get(f.type, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    typer.echo(f"wrote {out}: {built.rows} rows, {len(built.features)} features ({summary}), "
               f"{Path(out).stat().st_size} bytes")


@app.command("validate-config")
def validate_config(
    path: Annotated[str, typer.Argument(help="driftline YAML config")],
) -> None:
    """Report every error in a config file, with file, key and line. Exit 0 or 2."""
    from monitor.config import format_issues, validate_file

    issues = validate_file(path)
    if issues:
        typer.echo(format_issues(issues), err=True)
        raise typer.Exit(EXIT_ERROR)
    typer.echo(f"{path}: ok")


@app.command()
def serve(
    config: Annotated[str, typer.Option("--config", help="driftline YAML config")],
    host: Annotated[str, typer.Option("--host", help="address the API listens on")] = "0.0.0.0",
    port: Annotated[int, typer.Option("--port", help="API port (/metrics, /healthz, ...)",
                                      min=0, max=65535)] = 8000,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning")] = "info",
) -> None:
    """The streaming monitor: consume predictions and labels from Kafka, evaluate
    windows, serve the API and /metrics. Stops cleanly on SIGTERM or Ctrl-C."""
    import logging
    import signal

    import uvicorn

    from monitor import runtime
    from monitor.service.api import create_app
    from monitor.service.app import Service
    from monitor.service.export import make_registry

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    runtime.tune_allocator()
    service = Service(config)
    app_ = create_app(service, make_registry(service.status))
    server = uvicorn.Server(uvicorn.Config(app_, host=host, port=port, log_level="warning",
                                           access_log=False, lifespan="off"))
    service.start()
    watchdog_stop = _watch(service, server)
    # uvicorn takes SIGTERM/SIGINT while it runs, shuts down, then raises the
    # signal again under the handlers it found: make those a no-op, so that the
    # consumer checkpoints and leaves the group below instead of dying mid-way
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        server.run()
    finally:
        watchdog_stop()
        service.stop()
    if service.failure is not None:
        raise _fail(f"the consumer stopped: {service.failure}")


def _watch(service: object, server: object) -> Callable[[], None]:
    """Stop the API when the consumer thread dies, so the pod restarts."""
    import threading

    done = threading.Event()

    def run() -> None:
        while not done.wait(0.5):
            if not getattr(service, "alive", True):
                server.should_exit = True  # type: ignore[attr-defined]
                return

    threading.Thread(target=run, name="driftline-watchdog", daemon=True).start()
    return done.set


def _env(name: str) -> str:
    return f"DRIFTLINE_{name}"


def _host_port(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise _fail(f"{what} must be HOST:PORT, e.g. 0.0.0.0:8081; got {text!r}")
    return host or "0.0.0.0", int(port)


def _names(text: str | None) -> frozenset[str]:
    return frozenset(n.strip() for n in (text or "").split(",") if n.strip())


@app.command()
def collect(
    upstream: Annotated[str, typer.Option(help="the model server, e.g. http://127.0.0.1:8080",
                                          envvar=_env("UPSTREAM"))],
    model: Annotated[str, typer.Option(help="model name (the Kafka key)", envvar=_env("MODEL"))],
    kafka: Annotated[str, typer.Option(help="Kafka bootstrap servers", envvar=_env("KAFKA"))],
    listen: Annotated[str, typer.Option(help="HOST:PORT the proxy listens on",
                                        envvar=_env("LISTEN"))] = "0.0.0.0:8081",
    metrics_port: Annotated[int, typer.Option(help="port of /metrics and /healthz", min=0, max=65535,
                                              envvar=_env("METRICS_PORT"))] = 9091,
    topic: Annotated[str, typer.Option(help="predictions topic",
                                       envvar=_env("TOPIC"))] = "driftline.predictions",
    model_version: Annotated[str | None, typer.Option(help="model version (e.g. from the downward API)",
                                                      envvar=_env("MODEL_VERSION"))] = None,
    protocol: Annotated[str, typer.Option(help="auto, kserve_v1, oip_v2, mlflow or generic",
                                          envvar=_env("PROTOCOL"))] = "auto",
    generic_instances: Annotated[str | None, typer.Option(
        help="generic protocol: JSONPath of the request's instances",
        envvar=_env("GENERIC_INSTANCES"))] = None,
    generic_inputs: Annotated[str | None, typer.Option(
        help="generic protocol: JSONPath of the features within an instance",
        envvar=_env("GENERIC_INPUTS"))] = None,
    generic_outputs: Annotated[str | None, typer.Option(
        help="generic protocol: JSONPath of the response's outputs", envvar=_env("GENERIC_OUTPUTS"))] = None,
    feature_names: Annotated[str | None, typer.Option(
        help="comma-separated names for positional features", envvar=_env("FEATURE_NAMES"))] = None,
    sample_rate: Annotated[float, typer.Option(help="share of requests captured, 0 to 1", min=0.0, max=1.0,
                                               envvar=_env("SAMPLE_RATE"))] = 1.0,
    max_payload_bytes: Annotated[int, typer.Option(help="larger bodies are proxied, not captured", min=0,
                                                   envvar=_env("MAX_PAYLOAD_BYTES"))] = 1024 * 1024,
    drop_fields: Annotated[str | None, typer.Option(help="comma-separated fields never captured (PII)",
                                                    envvar=_env("DROP_FIELDS"))] = None,
    hash_fields: Annotated[str | None, typer.Option(help="comma-separated fields captured as salted hashes",
                                                    envvar=_env("HASH_FIELDS"))] = None,
    hash_salt: Annotated[str, typer.Option(help="salt of --hash-fields", envvar=_env("HASH_SALT"))] = "",
    capture_errors: Annotated[bool, typer.Option(help="also capture non-2xx answers",
                                                 envvar=_env("CAPTURE_ERRORS"))] = False,
    queue_events: Annotated[int, typer.Option(help="events held at most while Kafka is slow or down",
                                              min=1, envvar=_env("QUEUE_EVENTS"))] = 10_000,
    drop_policy: Annotated[str, typer.Option(help="when the queue is full, drop the newest or oldest",
                                             envvar=_env("DROP_POLICY"))] = "oldest",
    batch_events: Annotated[int, typer.Option(help="events per Kafka message at most", min=1,
                                              envvar=_env("BATCH_EVENTS"))] = 500,
    linger: Annotated[float, typer.Option(help="seconds a message waits to fill before it is sent",
                                          min=0.0, envvar=_env("LINGER"))] = 0.05,
    upstream_timeout: Annotated[float, typer.Option(help="seconds to wait for the model", min=0.001,
                                                    envvar=_env("UPSTREAM_TIMEOUT"))] = 300.0,
    shed_overload: Annotated[bool, typer.Option(
        help="over --max-cpu, skip captures (counted as dropped, reason overload) rather than "
             "slow the model's callers", envvar=_env("SHED_OVERLOAD"))] = True,
    max_cpu: Annotated[float, typer.Option(
        help="cores the collector may use (smoothed) before it sheds captures; keep it under the "
             "container's CPU limit", min=0.05, envvar=_env("MAX_CPU"))] = 0.8,
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
) -> None:
    """The sidecar: proxy every request to the model, capture predictions into Kafka.
    Every flag can also be set by the environment variable named in its help."""
    import logging

    from collectors.extractors import PROTOCOLS, ExtractError, FieldPolicy, GenericSpec, compile_spec
    from collectors.proxy.server import ProxySettings
    from collectors.sidecar import SidecarSettings, run

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # the delivery logs outages itself
    host, port = _host_port(listen, "--listen")
    if not upstream.startswith(("http://", "https://")):
        raise _fail(f"--upstream must be an http:// or https:// URL; got {upstream!r}")
    if protocol not in ("auto", *PROTOCOLS):
        raise _fail(f"--protocol must be auto or one of {', '.join(PROTOCOLS)}; got {protocol!r}")
    if drop_policy not in ("newest", "oldest"):
        raise _fail(f"--drop-policy must be newest or oldest; got {drop_policy!r}")
    generic = None
    if generic_instances or generic_outputs:
        if not (generic_instances and generic_outputs):
            raise _fail("the generic protocol needs both --generic-instances and --generic-outputs")
        generic = GenericSpec(instances=generic_instances, inputs=generic_inputs, outputs=generic_outputs)
        try:
            compile_spec(generic)
        except ExtractError as exc:
            raise _fail(f"generic protocol: {exc}") from None
    elif protocol == "generic":
        raise _fail("--protocol generic needs --generic-instances and --generic-outputs")
    drop, hashed = _names(drop_fields), _names(hash_fields)
    policy = FieldPolicy(drop=drop, hash=hashed, salt=hash_salt.encode()) if drop or hashed else None
    names = tuple(n.strip() for n in (feature_names or "").split(",") if n.strip()) or None
    settings = SidecarSettings(
        proxy=ProxySettings(upstream=upstream, model=model, model_version=model_version,
                            sample_rate=sample_rate, max_payload_bytes=max_payload_bytes,
                            capture_errors=capture_errors, protocol=protocol, generic=generic,
                            feature_names=names, policy=policy, upstream_timeout_s=upstream_timeout,
                            shed_overload=shed_overload, max_cpu=max_cpu),
        listen_host=host, listen_port=port, metrics_port=metrics_port, kafka=kafka, topic=topic,
        queue_events=queue_events, drop=drop_policy,  # type: ignore[arg-type]
        batch_events=batch_events, linger_s=linger,
    )
    run(settings)


ImageOpt = Annotated[str, typer.Option("--image", help="collector image")]
KafkaOpt = Annotated[str, typer.Option("--kafka", help="Kafka bootstrap servers for the collector")]
ModelOpt = Annotated[str | None, typer.Option(
    "--model", help="model name (default: the pod's app.kubernetes.io/name label)")]
ModelPortOpt = Annotated[int | None, typer.Option(
    "--model-port", help="the model's port (default: the first containerPort)", min=1, max=65535)]
CollectorPortOpt = Annotated[int, typer.Option("--collector-port", help="the collector's proxy port",
                                               min=1, max=65535)]
MetricsPortOpt = Annotated[int, typer.Option("--metrics-port", help="the collector's /metrics port",
                                             min=1, max=65535)]
SampleOpt = Annotated[float | None, typer.Option("--sample-rate", help="share of requests captured",
                                                 min=0.0, max=1.0)]
NativeOpt = Annotated[bool, typer.Option(
    "--native-sidecar", help="an initContainer with restartPolicy: Always (Kubernetes >= 1.29)")]


def _inject_options(image: str, kafka: str, model: str | None, model_port: int | None,
                    collector_port: int, metrics_port: int, sample_rate: float | None,
                    native_sidecar: bool) -> object:
    from collectors.k8s.inject import InjectOptions

    return InjectOptions(image=image, kafka=kafka, model=model, model_port=model_port,
                         collector_port=collector_port, metrics_port=metrics_port,
                         sample_rate=sample_rate, native_sidecar=native_sidecar)


@app.command()
def inject(
    file: Annotated[str, typer.Option("-f", "--filename", help="Deployment/Pod/... YAML, or - for stdin")],
    image: ImageOpt = "ghcr.io/example/driftline:latest",
    kafka: KafkaOpt = "kafka.kafka.svc:9092",
    model: ModelOpt = None,
    model_port: ModelPortOpt = None,
    collector_port: CollectorPortOpt = 8081,
    metrics_port: MetricsPortOpt = 9091,
    sample_rate: SampleOpt = None,
    native_sidecar: NativeOpt = False,
) -> None:
    """Print the manifests with the collector sidecar attached; Services that point at the
    model's port are rewired through the collector."""
    from collectors.k8s.inject import inject_yaml

    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text()
    except OSError as exc:
        raise _fail(f"{file}: cannot read: {exc.strerror or exc}") from None
    options = _inject_options(image, kafka, model, model_port, collector_port, metrics_port,
                              sample_rate, native_sidecar)
    typer.echo(inject_yaml(text, options), nl=False)  # type: ignore[arg-type]


@app.command()
def webhook(
    tls_cert: Annotated[str, typer.Option("--tls-cert", help="PEM certificate")],
    tls_key: Annotated[str, typer.Option("--tls-key", help="PEM private key")],
    listen: Annotated[str, typer.Option("--listen", help="HOST:PORT")] = "0.0.0.0:8443",
    image: ImageOpt = "ghcr.io/example/driftline:latest",
    kafka: KafkaOpt = "kafka.kafka.svc:9092",
    model: ModelOpt = None,
    model_port: ModelPortOpt = None,
    collector_port: CollectorPortOpt = 8081,
    metrics_port: MetricsPortOpt = 9091,
    sample_rate: SampleOpt = None,
    native_sidecar: NativeOpt = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
) -> None:
    """Mutating admission webhook (TLS) that attaches the collector to pods annotated
    driftline.io/inject: "true" (manifests in k8s/webhook)."""
    import logging

    from collectors.k8s.webhook import run_webhook

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _host_port(listen, "--listen")
    options = _inject_options(image, kafka, model, model_port, collector_port, metrics_port,
                              sample_rate, native_sidecar)
    run_webhook(listen, tls_cert, tls_key, options)  # type: ignore[arg-type]


@app.command()
def demo() -> None:
    """Drift check of the bundled sample data (the full streaming loop comes later)."""
    from monitor.batch import check as batch
    from monitor.batch import render

    root = Path(__file__).resolve().parent.parent / "sample_data"
    cur = root / "flights" / "current.parquet"
    cfg = root / "driftline.yaml"
    if not cur.exists():
        raise _fail(f"sample data not found at {root}; run the demo from a source checkout")
    typer.echo("driftline demo: New York flights of July 2013 against January-March 2013\n"
               f"  config:    {cfg}\n  current:   {cur}\n")
    plan = batch.plan_from_config(str(cfg), None)
    assert plan.reference is not None
    result = batch.run_check(plan.reference, str(cur), plan, evaluated_at=_now())
    render.print_table(result.report, sys.stdout,
                       render.performance_lines(result.performance, result.performance_note))
    verdict = "drift" if result.report.drift_detected else "no drift"
    typer.echo(f"\n`driftline check` would exit {EXIT_DRIFT if result.report.drift_detected else 0}"
               f" ({verdict}). Try: driftline check --config {cfg} --current {cur} --format json")


def main(argv: list[str] | None = None) -> int:
    """Entry point: every failure becomes one line on stderr and exit 2."""
    try:
        code = app(args=argv, standalone_mode=False, prog_name="driftline")
        # in this mode click returns typer.Exit's code instead of raising it
        return int(code) if isinstance(code, int) else EXIT_OK
    except DriftlineError as exc:
        typer.echo(f"driftline: error: {_one_line(exc)}", err=True)
        return EXIT_ERROR
    except KeyboardInterrupt:
        typer.echo("driftline: interrupted", err=True)
        return 130
    except Exception as exc:  # never a traceback for the user
        return _click_failure(exc)


def _click_failure(exc: Exception) -> int:
    """Exit, Abort and usage errors of typer's click (bundled or not), else a bug."""
    kind = type(exc).__name__
    if kind == "Exit":
        return int(getattr(exc, "exit_code", EXIT_OK))
    if kind == "Abort":
        typer.echo("driftline: aborted", err=True)
        return EXIT_ERROR
    format_message = getattr(exc, "format_message", None)
    if callable(format_message):  # UsageError, NoSuchOption, BadParameter, ...
        if not str(format_message()).strip():  # no arguments at all: help was shown
            return EXIT_ERROR
        ctx = getattr(exc, "ctx", None)
        name = getattr(ctx, "info_name", None)
        where = f"driftline {name}" if name and name != "driftline" else "driftline"
        typer.echo(f"driftline: error: {format_message()} (see '{where} --help')", err=True)
        return EXIT_ERROR
    if os.environ.get("DRIFTLINE_DEBUG"):
        traceback.print_exc()
    typer.echo(f"driftline: internal error: {kind}: {_one_line(exc)} "
               "(set DRIFTLINE_DEBUG=1 for a traceback)", err=True)
    return EXIT_ERROR


def _one_line(exc: BaseException) -> str:
    issues = getattr(exc, "issues", None)
    if issues:
        return "; ".join(str(i) for i in issues)
    return " ".join(str(exc).split())


if __name__ == "__main__":
    sys.exit(main())
