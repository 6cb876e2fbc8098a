"""``driftline collect``: the composition root of the sidecar.

Two listeners in one event loop (uvloop's, libuv under asyncio: it halves
the loop's own cost per request against the standard selector loop): the proxy on ``--listen`` (what the
Service's targetPort points at) and the collector's own ``/metrics`` and
``/healthz`` on ``--metrics-port``, so the model's port never serves them.
Captures go from the proxy to a bounded :class:`~collectors.delivery.queue.Delivery`
whose thread ships them with a :class:`~collectors.delivery.kafka.KafkaSender`.

The process runs with a short interpreter switch interval
(``defaults.SWITCH_INTERVAL_S``, 0.5 ms; ``--switch-interval``): the delivery thread and
kafka-python's I/O thread hold the interpreter lock for up to that long while the event loop
has a request to pass on (Python's default, 5 ms, showed in the proxy's p99).

SIGTERM and SIGINT stop the listeners, then give the delivery
``drain_timeout_s`` to send what is queued (the rest is counted as dropped,
reason ``shutdown``).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvloop
from aiohttp import web

from collectors import defaults
from collectors.delivery.kafka import KafkaSender
from collectors.delivery.metrics import CollectorMetrics
from collectors.delivery.queue import Delivery, DropPolicy
from collectors.proxy.server import Proxy, ProxySettings
from monitor.errors import PortInUse

log = logging.getLogger("driftline.collector")


@dataclass(frozen=True)
class SidecarSettings:
    proxy: ProxySettings
    listen_host: str
    listen_port: int
    metrics_port: int
    kafka: str
    topic: str = defaults.TOPIC
    queue_events: int = defaults.QUEUE_EVENTS
    drop: DropPolicy = "oldest"
    batch_events: int = defaults.BATCH_EVENTS
    linger_s: float = defaults.LINGER_S
    drain_timeout_s: float = 5.0
    switch_interval_s: float = defaults.SWITCH_INTERVAL_S


def metrics_app(metrics: CollectorMetrics, delivery: Delivery) -> web.Application:
    async def exposition(request: web.Request) -> web.Response:
        body, content_type = metrics.exposition(request.headers.get("Accept"))
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "queued_events": delivery.queued_events})

    app = web.Application()
    app.router.add_get("/metrics", exposition)
    app.router.add_get("/healthz", healthz)
    return app


async def serve(settings: SidecarSettings) -> None:
    metrics = CollectorMetrics()
    model = settings.proxy.model
    sender = KafkaSender(settings.kafka, client_id=f"driftline-collector-{model or 'multi-model'}")
    delivery = Delivery(sender, settings.topic, model or "", settings.proxy.model_version,
                        max_queue_events=settings.queue_events, drop=settings.drop,
                        batch_events=settings.batch_events, linger_s=settings.linger_s,
                        metrics=metrics).start()
    proxy = Proxy(settings.proxy, delivery, metrics.of_model(model))
    runner = web.AppRunner(metrics_app(metrics, delivery), access_log=None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runner.setup()
        with _port(settings.listen_host, settings.listen_port, "--listen"):
            await proxy.start(settings.listen_host, settings.listen_port)
        with _port(settings.listen_host, settings.metrics_port, "--metrics-port"):
            await web.TCPSite(runner, settings.listen_host, settings.metrics_port).start()
        log.info("proxying %s:%d -> %s for %s; metrics on :%d; Kafka %s topic %s",
                 settings.listen_host, settings.listen_port, settings.proxy.upstream,
                 naming(settings.proxy), settings.metrics_port, settings.kafka, settings.topic)
        await stop.wait()
        log.info("stopping: no new requests; draining the queue for up to %.0f s",
                 settings.drain_timeout_s)
    finally:
        await proxy.close()
        await runner.cleanup()
        await asyncio.to_thread(delivery.stop, settings.drain_timeout_s)  # closes the sender


def naming(proxy: ProxySettings) -> str:
    """How the events' model is chosen, in a few words for the startup line."""
    mapped = (f"; renamed by --model-map {','.join(f'{k}={v}' for k, v in proxy.model_map.items())}"
              if proxy.model_map else "")
    if proxy.model:
        return f"model {proxy.model}{mapped}"
    return ("the model named by each request's path (/v1/models/<name>, /v2/models/<name>); "
            f"requests whose path names none are counted as requests_unparsed{{reason=no_model}}{mapped}")


@contextmanager
def _port(host: str, port: int, what: str) -> Iterator[None]:
    """A taken port is one line (PortInUse), not a traceback of the loop's bind."""
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(host, port, what) from None
        raise


def run(settings: SidecarSettings) -> None:
    # the delivery thread encodes and kafka-python's thread sends while the event loop proxies:
    # a short switch interval bounds how long a proxied request waits for the interpreter
    sys.setswitchinterval(settings.switch_interval_s)
    uvloop.run(serve(settings))
