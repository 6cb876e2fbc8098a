"""``driftline remediate``: the Alertmanager receiver (runs apart from the monitor)."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from monitor.cli.common import fail, listen


def remediate(
    config: Annotated[str, typer.Option("--config", help="driftline YAML config")],
    host: Annotated[str, typer.Option("--host", help="address the receiver listens on")] = "0.0.0.0",
    port: Annotated[int, typer.Option("--port", help="receiver port (/alerts, /actions, /metrics)",
                                      min=0, max=65535)] = 9095,
    no_cluster: Annotated[bool, typer.Option(
        "--no-cluster", help="no Kubernetes cluster: every decision that would act is recorded "
                             "as a dry run, nothing is called")] = False,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning")] = "info",
) -> None:
    """The Alertmanager receiver: turn driftline's alerts into a retraining Job or a
    rollback, safely (dedupe, cooldown, one retrain at a time, a rate limit, dry-run by
    default). Reads the cluster from the pod's ServiceAccount or KUBECONFIG. Needs a
    bearer token file: remediate.token_file or DRIFTLINE_REMEDIATE_TOKEN_FILE."""
    import uvicorn

    from alerts.audit import Audit
    from alerts.cluster import ActionFailed
    from alerts.metrics import ReceiverMetrics
    from alerts.monitor_api import MonitorLookup
    from alerts.receiver import TokenFile, create_app
    from alerts.remediator import Remediator, load_templates
    from monitor.config import load_config

    _logging(log_level)
    settings = load_config(config)
    token = TokenFile.resolve(settings.remediate.token_file.path
                              if settings.remediate.token_file is not None else None)
    templates = load_templates(settings)
    cluster = None
    if not no_cluster:
        from alerts.kube import KubeCluster

        try:
            cluster = KubeCluster.from_environment()
        except ActionFailed as exc:
            raise fail(f"no Kubernetes cluster: {exc.reason} (give --no-cluster to run without one)") \
                from None
    sock = listen(host, port)
    remediator = Remediator(settings, cluster, templates=templates,
                            audit=Audit(settings.remediate.audit_size),
                            metrics=ReceiverMetrics(tuple(settings.model_names())),
                            lookup=MonitorLookup(settings.links.monitor_url))
    dry = [m.name for m in settings.models if m.actions is not None and m.actions.dry_run]
    logging.getLogger("driftline.remediate").info(
        "listening on %s:%d; %s; dry run for %s", host, port,
        "no cluster: nothing is called" if cluster is None else "cluster from the environment",
        ", ".join(dry) or "no model")
    server = uvicorn.Server(uvicorn.Config(create_app(remediator, token), host=host, port=port,
                                           log_level="warning", access_log=False, lifespan="off"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


def _logging(level: str) -> None:
    """Plain lines on stderr; the audit logger writes its JSON object alone on a line."""
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    audit = logging.getLogger("driftline.remediate.audit")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    audit.addHandler(handler)
    audit.propagate = False
    audit.setLevel(logging.INFO)
