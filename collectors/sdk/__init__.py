"""The in-process collector: for Python model servers that log their predictions themselves.

Same events, same bounded non-blocking delivery and same metrics as the sidecar
(:mod:`collectors.sidecar`), without a proxy in front of the model.  Two ways in:

* :class:`Collector` and its :meth:`~Collector.log_prediction`, called by the model code
  (:mod:`collectors.sdk.collector`);
* :class:`DriftlineMiddleware`, a plain ASGI middleware (FastAPI, Starlette, any ASGI app)
  that captures every prediction call as the sidecar would, from the request and
  response bodies (:mod:`collectors.sdk.asgi`).

Both go through the sidecar's capture pipeline (:mod:`collectors.capture`).

Usage, logging explicitly (one row, or a batch)::

    from collectors.sdk import Collector

    collector = Collector("fraud", "kafka:9092", model_version="v7")
    rid = collector.log_prediction({"age": 41, "income": 52_000.0}, {"score": 0.83}, latency_ms=3.2)
    collector.log_prediction([{"age": 41}, {"age": 19}], [0.83, 0.12], request_id="req-17")
    ...
    collector.close()  # at shutdown: delivers what is queued (5 s at most)

or capturing a KServe v1 / OIP v2 / MLflow endpoint of a FastAPI app as the sidecar would::

    from contextlib import asynccontextmanager
    from fastapi import FastAPI, Request, Response
    from collectors.sdk import Collector, DriftlineMiddleware

    collector = Collector("fraud", "kafka:9092", model_version="v7")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        with collector:  # starts the delivery thread; drains the queue on the way out
            yield

    app = FastAPI(lifespan=lifespan)
    app.add_middleware(DriftlineMiddleware, collector=collector)

    @app.get("/metrics")  # the collector's own series, for Prometheus
    def metrics(request: Request) -> Response:
        body, content_type = collector.metrics.exposition(request.headers.get("accept"))
        return Response(body, media_type=content_type)

What it promises (see :mod:`collectors.delivery.queue` for the details):

* **Never in the model's way.**  :meth:`Collector.log_prediction` converts the values,
  encodes its events (a few microseconds a row), appends them to a bounded in-memory queue
  and returns: no I/O, no waiting on Kafka, and
  it never raises on what it is given.  A background thread (started by
  :meth:`~Collector.start`, or by the first capture) ships the events; the Kafka producer
  is built lazily on that thread, so constructing a :class:`Collector` never touches the
  network, and a broker that is down only costs events, each one counted.
* **Same events.**  One event per row, request ids ``<id>`` for one row and ``<id>/<i>``
  within a batch (:meth:`collectors.events.Capture.events`).  Values follow the
  extractors' rules (:func:`collectors.extractors.base.scalar`): JSON scalars are kept;
  NumPy scalars become Python ones, dates and times their ISO 8601 text, pandas'
  ``NA``/``NaT`` null; anything else (lists, dicts, arrays) becomes its compact key-sorted
  JSON text.  A :class:`~collectors.extractors.FieldPolicy` drops or hashes personal fields
  before anything is queued.
* **Same metrics** (:class:`~collectors.delivery.metrics.CollectorMetrics`, on its own registry:
  expose ``collector.metrics.exposition()``).  A logged prediction left out by sampling is
  counted as rows, captured and then dropped (``sampled_out``); a call left out before its rows
  are known counts one request in ``requests_unparsed``: ``unparseable`` (values that cannot
  become a capture; logged at debug), and for the middleware ``skipped``
  (``X-Driftline-Skip: 1``), ``sampled_out`` and ``oversize`` (a body over ``max_payload_bytes``).
* **Thread-safe**: call it from any number of threads (and from async code).

Fork-based servers (gunicorn ``--preload``): threads do not survive ``fork``, so start
the collector in each worker; a collector that was only constructed before the fork
starts its thread on the first call in the worker.
"""

from collectors.sdk.asgi import DriftlineMiddleware
from collectors.sdk.collector import Collector, instances

__all__ = ["Collector", "DriftlineMiddleware", "instances"]
