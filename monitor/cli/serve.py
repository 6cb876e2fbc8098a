"""``driftline serve``: the streaming monitor service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from monitor.cli.common import fail, listen


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
    runtime.without_tracebacks("kafka")  # a broker outage is reported by the service, in one line
    runtime.tune_allocator()
    service = Service.from_config(config)
    # the port first: a second serve on a taken port fails here, before it joins the
    # consumer group (which would take partitions from the running one)
    sock = listen(host, port)
    app_ = create_app(service, make_registry(service.status))
    server = uvicorn.Server(uvicorn.Config(app_, host=host, port=port, log_level="warning",
                                           access_log=False, lifespan="off"))
    try:
        service.start()
    except BaseException:
        sock.close()
        raise
    watchdog_stop = _watch(service, server)
    # uvicorn takes SIGTERM/SIGINT while it runs, shuts down, then raises the
    # signal again under the handlers it found: make those a no-op, so that the
    # consumer checkpoints and leaves the group below instead of dying mid-way
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        watchdog_stop()
        service.stop()
    if service.failure is not None:
        raise fail(f"the consumer stopped: {service.failure}")


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
