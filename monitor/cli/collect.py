"""``driftline collect``: the sidecar collector in front of a model server."""

from __future__ import annotations

from typing import Annotated

import typer

from collectors import defaults  # constants only: the rest of the collector loads when the command runs
from monitor.cli.common import fail, host_port


def _env(name: str) -> str:
    return f"DRIFTLINE_{name}"


def _names(text: str | None) -> tuple[str, ...]:
    """The names of a comma-separated flag, in order, blanks around them and empty ones left out."""
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


def collect(
    upstream: Annotated[str, typer.Option(help="the model server, e.g. http://127.0.0.1:8080",
                                          envvar=_env("UPSTREAM"))],
    kafka: Annotated[str, typer.Option(help="Kafka bootstrap servers", envvar=_env("KAFKA"))],
    model: Annotated[str | None, typer.Option(
        help="model name (the Kafka key) of every request; without it, the name in each request's path "
             "(/v1/models/<name>, /v2/models/<name>[/versions/<v>]), and a request whose path names "
             "none is counted, not captured", envvar=_env("MODEL"))] = None,
    model_map: Annotated[str | None, typer.Option(
        help="served=configured,...: events of the model a path names go under the configured name "
             "(before --model)", envvar=_env("MODEL_MAP"))] = None,
    listen: Annotated[str, typer.Option(help="HOST:PORT the proxy listens on",
                                        envvar=_env("LISTEN"))] = defaults.LISTEN,
    metrics_port: Annotated[int, typer.Option(help="port of /metrics and /healthz", min=0, max=65535,
                                              envvar=_env("METRICS_PORT"))] = defaults.METRICS_PORT,
    topic: Annotated[str, typer.Option(help="predictions topic",
                                       envvar=_env("TOPIC"))] = defaults.TOPIC,
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
    output_names: Annotated[str | None, typer.Option(
        help="comma-separated names for positional predictions (default: prediction, or "
             "prediction_0, prediction_1, ...)", envvar=_env("OUTPUT_NAMES"))] = None,
    sample_rate: Annotated[float, typer.Option(help="share of requests captured, 0 to 1", min=0.0, max=1.0,
                                               envvar=_env("SAMPLE_RATE"))] = 1.0,
    max_payload_bytes: Annotated[int, typer.Option(
        help="larger bodies are proxied, not captured", min=0,
        envvar=_env("MAX_PAYLOAD_BYTES"))] = defaults.MAX_PAYLOAD_BYTES,
    drop_fields: Annotated[str | None, typer.Option(help="comma-separated fields never captured (PII)",
                                                    envvar=_env("DROP_FIELDS"))] = None,
    hash_fields: Annotated[str | None, typer.Option(help="comma-separated fields captured as salted hashes",
                                                    envvar=_env("HASH_FIELDS"))] = None,
    hash_salt: Annotated[str, typer.Option(help="salt of --hash-fields", envvar=_env("HASH_SALT"))] = "",
    capture_errors: Annotated[bool, typer.Option(help="also capture non-2xx answers",
                                                 envvar=_env("CAPTURE_ERRORS"))] = False,
    queue_events: Annotated[int, typer.Option(help="events held at most while Kafka is slow or down",
                                              min=1, envvar=_env("QUEUE_EVENTS"))] = defaults.QUEUE_EVENTS,
    drop_policy: Annotated[str, typer.Option(help="when the queue is full, drop the newest or oldest",
                                             envvar=_env("DROP_POLICY"))] = "oldest",
    batch_events: Annotated[int, typer.Option(help="events per Kafka message at most", min=1,
                                              envvar=_env("BATCH_EVENTS"))] = defaults.BATCH_EVENTS,
    linger: Annotated[float, typer.Option(help="seconds a message waits to fill before it is sent",
                                          min=0.0, envvar=_env("LINGER"))] = defaults.LINGER_S,
    upstream_timeout: Annotated[float, typer.Option(
        help="seconds to wait for the model", min=0.001,
        envvar=_env("UPSTREAM_TIMEOUT"))] = defaults.UPSTREAM_TIMEOUT_S,
    shed_overload: Annotated[bool, typer.Option(
        help="over --max-cpu, skip captures (counted in requests_unparsed, reason overload) rather than "
             "slow the model's callers", envvar=_env("SHED_OVERLOAD"))] = True,
    max_cpu: Annotated[float, typer.Option(
        help="cores the collector may use (smoothed) before it sheds captures; keep it under the "
             "container's CPU limit", min=0.05, envvar=_env("MAX_CPU"))] = defaults.MAX_CPU,
    switch_interval: Annotated[float, typer.Option(
        help="seconds the collector's background threads may hold Python's interpreter lock while "
             "the proxy waits for it (sys.setswitchinterval)", min=0.00001, max=1.0,
        envvar=_env("SWITCH_INTERVAL"))] = defaults.SWITCH_INTERVAL_S,
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
) -> None:
    """The sidecar: proxy every request to the model, capture predictions into Kafka.
    Every flag can also be set by the environment variable named in its help."""
    import logging

    from collectors.extractors import PROTOCOLS, ExtractError, FieldPolicy, GenericSpec, compile_spec
    from collectors.proxy.server import ProxySettings
    from collectors.routing import parse_model_map
    from collectors.sidecar import SidecarSettings, run

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # the delivery logs outages itself
    host, port = host_port(listen, "--listen")
    if not upstream.startswith(("http://", "https://")):
        raise fail(f"--upstream must be an http:// or https:// URL; got {upstream!r}")
    if protocol not in ("auto", *PROTOCOLS):
        raise fail(f"--protocol must be auto or one of {', '.join(PROTOCOLS)}; got {protocol!r}")
    if model is not None and not model.strip():
        raise fail("--model must not be empty; leave it out to take each request's model from its path")
    try:
        renames = parse_model_map(model_map)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if drop_policy not in ("newest", "oldest"):
        raise fail(f"--drop-policy must be newest or oldest; got {drop_policy!r}")
    generic = None
    if generic_instances or generic_outputs:
        if not (generic_instances and generic_outputs):
            raise fail("the generic protocol needs both --generic-instances and --generic-outputs")
        generic = GenericSpec(instances=generic_instances, inputs=generic_inputs, outputs=generic_outputs)
        try:
            compile_spec(generic)
        except ExtractError as exc:
            raise fail(f"generic protocol: {exc}") from None
    elif protocol == "generic":
        raise fail("--protocol generic needs --generic-instances and --generic-outputs")
    drop, hashed = frozenset(_names(drop_fields)), frozenset(_names(hash_fields))
    policy = FieldPolicy(drop=drop, hash=hashed, salt=hash_salt.encode()) if drop or hashed else None
    names, outputs = _names(feature_names) or None, _names(output_names) or None
    settings = SidecarSettings(
        proxy=ProxySettings(upstream=upstream, model=model.strip() if model else None,
                            model_version=model_version, model_map=renames or None,
                            sample_rate=sample_rate, max_payload_bytes=max_payload_bytes,
                            capture_errors=capture_errors, protocol=protocol, generic=generic,
                            feature_names=names, output_names=outputs, policy=policy,
                            upstream_timeout_s=upstream_timeout,
                            shed_overload=shed_overload, max_cpu=max_cpu),
        listen_host=host, listen_port=port, metrics_port=metrics_port, kafka=kafka, topic=topic,
        queue_events=queue_events, drop=drop_policy,  # type: ignore[arg-type]
        batch_events=batch_events, linger_s=linger, switch_interval_s=switch_interval,
    )
    run(settings)
