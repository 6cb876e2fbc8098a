"""The in-process collector (``collectors.sdk``): what the model logs arrives in Kafka as the
sidecar's events, the ASGI middleware changes nothing the client sees, and a broker that is
down never slows the model, only costs counted events.

Kafka tests run against the session's real Tansu broker; the middleware runs in a real
FastAPI app served by uvicorn on a loopback port; the other tests use a small recording
sender (a real class, no mocks).
"""

from __future__ import annotations

import datetime
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from kafka import KafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from collectors.extractors import FieldPolicy
from collectors.sdk import Collector, DriftlineMiddleware
from monitor.wire.decode import PredictionBatch, decode_predictions
from tests.counters import assert_identity
from tests.counters import counts as counters
from tests.fakes import RecordingSender as BaseRecordingSender
from tests.servers import Broker, free_port

OnDone = Callable[[Exception | None], None]


# -- helpers -----------------------------------------------------------------------------------


class RecordingSender(BaseRecordingSender):
    def events(self) -> dict[str, dict[str, Any]]:
        return events_by_id(self.batches())


def events_by_id(batches: Any) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for b in batches:
        for i in range(b.n):
            out[b.request_ids[i] or ""] = {
                "model": b.model, "model_version": b.model_version, "inputs": dict(b.inputs[i]),
                "outputs": dict(b.outputs[i]), "status": b.status[i],
                "latency_ms": None if np.isnan(b.latency_ms[i]) else float(b.latency_ms[i])}
    return out


def metric(collector: Collector, name: str, **labels: str) -> float:
    """A series read back from the collector's exposition with Prometheus' own parser."""
    body, _ = collector.metrics.exposition()
    return sum(s.value for f in text_string_to_metric_families(body.decode()) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def dropped(collector: Collector, reason: str) -> float:
    return metric(collector, "driftline_collector_events_dropped_total", model=collector.model, reason=reason)


def unparsed(collector: Collector, reason: str) -> float:
    return metric(collector, "driftline_collector_requests_unparsed_total", reason=reason)


def counts(collector: Collector, *, closed: bool = True) -> dict[str, float]:
    """Rows by counter and drop reason, and requests left out unparsed (``unparsed_<reason>``);
    once the collector is closed, the identity captured = sent + failed + dropped is asserted."""
    body, _ = collector.metrics.exposition()
    got = assert_identity(body, collector.model) if closed else counters(body, collector.model)
    out = {"captured": got.captured, "sent": got.sent, "failed": got.failed}
    for reason in ("queue_full", "oversize", "shutdown", "skipped", "unparseable", "sampled_out"):
        out[reason] = got.dropped.get(reason, 0.0)
    for reason, n in got.unparsed.items():
        out[f"unparsed_{reason}"] = n
    for cls, n in got.uncaptured.items():
        out[f"uncaptured_{cls}"] = n
    return out


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.02)


def consume(bootstrap: str, topic: str, events: int, timeout: float = 20.0) -> list[PredictionBatch]:
    """The decoded messages of ``topic`` (every partition, from the start) once ``events`` arrived."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", request_timeout_ms=10_000)
    try:
        deadline = time.monotonic() + timeout
        while not (partitions := c.partitions_for_topic(topic)):
            assert time.monotonic() < deadline, f"no partitions for {topic}"
            time.sleep(0.1)
        c.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        batches: list[PredictionBatch] = []
        while sum(b.n for b in batches) < events:
            assert time.monotonic() < deadline, f"only {sum(b.n for b in batches)} of {events} events"
            for records in c.poll(timeout_ms=200).values():
                for r in records:
                    assert r.key == b"m"
                    batches.append(decode_predictions(r.value))
        return batches
    finally:
        c.close(autocommit=False, timeout_ms=5000)


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """``app`` under uvicorn on a free loopback port, in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off", ws="none"))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), 10, f"uvicorn on port {port}")
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def score(row: Any) -> float:
    values = list(row.values()) if isinstance(row, dict) else row
    numbers = [x for x in values if isinstance(x, int | float) and not isinstance(x, bool)]
    return round(sum(numbers) / (1 + len(numbers)), 6)


def model_app(collector: Collector | None = None, **options: Any) -> FastAPI:
    """A KServe v1 style model server, plus a text endpoint and a streaming one; with the
    middleware when a collector is given."""
    app = FastAPI()
    app.state.release = threading.Event()  # lets the streaming endpoint finish

    @app.post("/v1/models/{name}:predict")
    async def predict(name: str, request: Request) -> Any:
        body = await request.json()
        if "instances" not in body:
            return JSONResponse({"error": "no instances"}, status_code=400)
        return {"predictions": [score(r) for r in body["instances"]], "model_name": name}

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> Any:
        body = await request.json()
        [tensor] = body["inputs"]
        return {"model_name": name, "id": body.get("id", ""),
                "outputs": [{"name": "y", "shape": [tensor["shape"][0]], "datatype": "FP64",
                             "data": [2.0 * x for x in tensor["data"]]}]}

    @app.post("/echo")
    async def echo(request: Request) -> PlainTextResponse:
        return PlainTextResponse((await request.body()).decode("latin-1"))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/stream")
    async def stream(request: Request) -> StreamingResponse:
        rows = (await request.json())["instances"]

        async def chunks() -> Any:
            yield b'{"predictions": ['
            waited = 0.0
            while not app.state.release.is_set() and waited < 5.0:  # until the client saw the first chunk
                await _sleep(0.01)
                waited += 0.01
            if not app.state.release.is_set():
                yield b'"the first chunk was held back"'
            else:
                yield ", ".join(str(score(r)) for r in rows).encode()
            yield b"]}"

        return StreamingResponse(chunks(), media_type="application/json")

    if collector is not None:
        app.add_middleware(DriftlineMiddleware, collector=collector, **options)
    return app


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


def raw_headers(response: httpx.Response, *, without: tuple[bytes, ...] = ()) -> list[tuple[bytes, bytes]]:
    return [(k.lower(), v) for k, v in response.headers.raw if k.lower() not in (b"date", *without)]


# -- Collector.log_prediction ------------------------------------------------------------------


@pytest.mark.slow
def test_a_logged_row_and_a_logged_batch_arrive_in_kafka_with_their_request_ids_and_values(
        broker: Broker) -> None:
    topic = f"sdk-{uuid.uuid4().hex[:8]}"
    broker.create_topics([topic])
    with Collector("m", broker.bootstrap, topic=topic, model_version="v3") as collector:
        one = collector.log_prediction({"age": 41, "city": "Lyon", "tags": ["a", "b"], "x": np.float32(0.5)},
                                       {"score": 0.83}, request_id="req-one", latency_ms=3.5)
        batch = collector.log_prediction([{"age": 30, "member": True}, {"age": 50, "member": None}],
                                         np.array([0.1, 0.9]), latency_ms=7.0, status=201)
        assert one == "req-one"
        assert len(batch) == 32 and int(batch, 16) >= 0  # a generated uuid4 hex
        wait_until(lambda: metric(collector, "driftline_collector_events_sent_total", model="m") == 3, 20,
                   "3 events acknowledged by the broker")
    got = events_by_id(consume(broker.bootstrap, topic, 3))
    assert got == {
        "req-one": {"model": "m", "model_version": "v3",
                    "inputs": {"age": 41, "city": "Lyon", "tags": '["a","b"]', "x": 0.5},
                    "outputs": {"score": 0.83}, "status": 200, "latency_ms": 3.5},
        f"{batch}/0": {"model": "m", "model_version": "v3", "inputs": {"age": 30, "member": True},
                       "outputs": {"prediction": 0.1}, "status": 201, "latency_ms": 7.0},
        f"{batch}/1": {"model": "m", "model_version": "v3", "inputs": {"age": 50, "member": None},
                       "outputs": {"prediction": 0.9}, "status": 201, "latency_ms": 7.0},
    }
    c = counts(collector)
    assert c["captured"] == c["sent"] == 3 and c["failed"] == 0


def test_outputs_follow_the_extractor_rules_and_values_are_converted_like_the_sidecars() -> None:
    sender = RecordingSender()
    policy = FieldPolicy(drop=frozenset({"ssn"}), hash=frozenset({"user"}), salt=b"s")
    with Collector("m", sender=sender, policy=policy) as c:
        c.log_prediction({"a": 1, "ssn": "123", "user": "ann"}, [0.2, 0.8], request_id="probs")
        c.log_prediction({"a": np.int64(7), "b": np.array([1, 2]), "c": {"z": 1, "y": 2},
                          "d": datetime.date(2026, 1, 2), "e": pd.NA}, "cat", request_id="label")
        c.log_prediction([{"a": 1}, {"a": 2}], {"score": [0.1, 0.2], "label": ["x", "y"]}, request_id="cols")
        c.log_prediction(pd.DataFrame({"a": [1.5, 2.5], "b": ["u", "v"]}), pd.Series([1, 0]),
                         request_id="frame")
        c.log_prediction([{"a": 1}], None, request_id="no-outputs", status=None)
    events = sender.events()
    import hashlib

    assert {k: (v["inputs"], v["outputs"]) for k, v in events.items()} == {
        "probs": ({"a": 1, "user": hashlib.sha256(b"sann").hexdigest()[:16]},
                  {"prediction_0": 0.2, "prediction_1": 0.8}),
        "label": ({"a": 7, "b": "[1,2]", "c": '{"y":2,"z":1}', "d": "2026-01-02", "e": None},
                  {"prediction": "cat"}),
        "cols/0": ({"a": 1}, {"score": 0.1, "label": "x"}),
        "cols/1": ({"a": 2}, {"score": 0.2, "label": "y"}),
        "frame/0": ({"a": 1.5, "b": "u"}, {"prediction": 1}),
        "frame/1": ({"a": 2.5, "b": "v"}, {"prediction": 0}),
        "no-outputs": ({"a": 1}, {}),
    }
    assert events["no-outputs"]["status"] is None and events["probs"]["status"] == 200
    assert counts(c)["unparsed_unparseable"] == 0 and counts(c)["captured"] == 7


def test_calls_that_cannot_become_a_capture_never_raise_and_are_counted_as_unparseable() -> None:
    sender = RecordingSender()
    with Collector("m", sender=sender) as c:
        bad: list[tuple[Any, Any]] = [
            ("not a row", None),  # text is not a batch
            ([1.0, 2.0], None),  # rows must be mappings
            (42, None),
            ([{"a": 1}, {"a": 2}], [0.5]),  # one output for two rows
            ([{"a": 1}, {"a": 2}], 0.5),
            ({"a": object()}, None),  # no JSON text for it
            ({"a": 1}, {"b": object()}),
        ]
        ids = [c.log_prediction(inputs, outputs) for inputs, outputs in bad]
        assert all(len(rid) == 32 for rid in ids) and len(set(ids)) == len(ids)
        assert c.log_prediction({"a": 1}, latency_ms="slow", request_id="r") == "r"  # type: ignore[arg-type]
        c.log_prediction([], None)  # an empty batch: nothing to capture, nothing lost
    assert unparsed(c, "unparseable") == len(bad) + 1 and dropped(c, "unparseable") == 0
    assert counts(c)["captured"] == 0 and sender.messages == []


def delivery_threads(model: str) -> int:
    return sum(t.name == f"driftline-delivery-{model}" for t in threading.enumerate())


def test_a_new_collector_starts_no_thread_until_its_first_capture_and_sampled_out_rows_are_counted() -> None:
    c = Collector("fresh", f"127.0.0.1:{free_port()}")  # no broker: constructing it must not care
    assert delivery_threads("fresh") == 0
    c.close()
    sender = RecordingSender()
    c = Collector("fresh", sender=sender, sample_rate=0.0)
    c.log_prediction([{"a": 1}, {"a": 2}])
    c.log_prediction({"a": 1})
    # rows known: captured, then dropped (issue 15: the identity holds)
    assert dropped(c, "sampled_out") == 3 and counts(c)["captured"] == 3
    assert delivery_threads("fresh") == 0
    c = Collector("fresh", sender=sender)
    c.log_prediction({"a": 1}, request_id="first")  # starts the delivery thread
    assert delivery_threads("fresh") == 1
    wait_until(lambda: "first" in sender.events(), 5, "the first prediction sent")
    c.close()
    assert delivery_threads("fresh") == 0


def test_close_drains_the_queue_and_later_calls_are_counted_as_shutdown() -> None:
    sender = RecordingSender()
    c = Collector("m", sender=sender)
    c.log_prediction({"a": 1}, 1.0, request_id="before-close")
    c.close(timeout_s=5)
    c.close()  # idempotent
    assert sender.closed and "before-close" in sender.events()
    c.log_prediction({"a": 1}, 1.0)
    assert counts(c)["shutdown"] == 1 and counts(c)["sent"] == 1
    with pytest.raises(RuntimeError, match="closed"):
        c.start()


def test_many_threads_logging_at_once_lose_nothing() -> None:
    sender = RecordingSender()
    with Collector("m", sender=sender, max_queue_events=100_000) as c:
        def work(t: int) -> None:
            for i in range(500):
                c.log_prediction({"t": t, "i": i}, 0.5, request_id=f"{t}-{i}")

        workers = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    assert set(sender.events()) == {f"{t}-{i}" for t in range(8) for i in range(500)}
    assert counts(c)["captured"] == counts(c)["sent"] == 4000


@pytest.mark.slow
def test_a_collector_pointed_at_a_dead_broker_never_blocks_log_prediction_and_counts_every_loss() -> None:
    c = Collector("m", f"127.0.0.1:{free_port()}", topic="nowhere")  # nothing listens there
    try:
        started = time.perf_counter()
        for i in range(10_000):
            c.log_prediction({"i": i, "x": 0.5}, {"score": 0.1})
        took = time.perf_counter() - started
        assert took < 1.0, f"10k log_prediction calls took {took:.2f} s with the broker down"
    finally:
        c.close(timeout_s=5)
    got = counts(c)
    assert got["captured"] == 10_000 and got["sent"] == 0
    assert got["failed"] + got["queue_full"] + got["shutdown"] == 10_000, got


# -- DriftlineMiddleware -----------------------------------------------------------------------


@pytest.mark.slow
def test_the_middleware_answers_byte_for_byte_as_the_app_alone_and_its_calls_arrive_in_kafka(
        broker: Broker) -> None:
    topic = f"sdk-mw-{uuid.uuid4().hex[:8]}"
    broker.create_topics([topic])
    body = {"instances": [{"age": 30, "city": "Lyon"}, {"age": 50, "city": "Oslo"}]}
    with Collector("m", broker.bootstrap, topic=topic, model_version="v3") as collector, \
            serve(model_app()) as plain_url, serve(model_app(collector)) as url, \
            httpx.Client(timeout=10) as http:
        plain = http.post(f"{plain_url}/v1/models/m:predict", json=body, headers={"X-Request-Id": "req-1"})
        wrapped = http.post(f"{url}/v1/models/m:predict", json=body, headers={"X-Request-Id": "req-1"})
        assert plain.status_code == wrapped.status_code == 200
        assert wrapped.content == plain.content == b'{"predictions":[15.0,25.0],"model_name":"m"}'
        assert raw_headers(wrapped, without=(b"x-request-id",)) == raw_headers(plain)
        assert wrapped.headers["X-Request-Id"] == "req-1" and "x-request-id" not in plain.headers

        fresh = http.post(f"{url}/v1/models/m:predict", json={"instances": [[1.0, 2.0, 3.0]]})
        generated = fresh.headers["X-Request-Id"]
        assert fresh.json()["predictions"] == [1.5] and len(generated) == 32
        assert http.get(f"{url}/healthz").headers["X-Request-Id"]  # on every answer, captured or not
        wait_until(lambda: metric(collector, "driftline_collector_events_sent_total", model="m") == 3, 20,
                   "3 events acknowledged by the broker")
    got = events_by_id(consume(broker.bootstrap, topic, 3))
    assert {k: (v["inputs"], v["outputs"], v["status"], v["model_version"]) for k, v in got.items()} == {
        "req-1/0": ({"age": 30, "city": "Lyon"}, {"prediction": 15.0}, 200, "v3"),
        "req-1/1": ({"age": 50, "city": "Oslo"}, {"prediction": 25.0}, 200, "v3"),
        generated: ({"f0": 1.0, "f1": 2.0, "f2": 3.0}, {"prediction": 1.5}, 200, "v3"),
    }
    assert all(v["latency_ms"] is not None and v["latency_ms"] >= 0 for v in got.values())
    c = counts(collector)
    assert c["captured"] == c["sent"] == 3
    assert c["unparsed_unparseable"] == c["unparsed_skipped"] == c["unparsed_oversize"] == 0


def test_skipped_oversize_and_non_json_calls_are_counted_and_reach_the_app_unchanged() -> None:
    sender = RecordingSender()
    body = {"instances": [{"age": 30}]}
    with Collector("m", sender=sender) as collector, \
            serve(model_app(collector, max_payload_bytes=200)) as url, httpx.Client(timeout=10) as http:
        skipped = http.post(f"{url}/v1/models/m:predict", json=body, headers={"X-Driftline-Skip": "1"})
        assert skipped.json()["predictions"] == [15.0]
        text = http.post(f"{url}/echo", content=b"hello, not json")
        assert text.status_code == 200 and text.content == b"hello, not json"
        big = {"instances": [{"age": i} for i in range(50)]}  # over 200 bytes
        oversize = http.post(f"{url}/v1/models/m:predict", json=big)
        assert oversize.json()["predictions"] == [float(i) / 2 for i in range(50)]
        chunked = http.post(f"{url}/echo", content=iter([b"x" * 150, b"y" * 150, b"z"]))  # no length
        assert chunked.content == b"x" * 150 + b"y" * 150 + b"z"
        failed = http.post(f"{url}/v1/models/m:predict", json={"nothing": 1})  # errors: not captured
        assert failed.status_code == 400
        assert http.get(f"{url}/healthz").status_code == 200  # not a prediction call: not counted
        captured = http.post(f"{url}/v1/models/m:predict", json=body, headers={"X-Request-Id": "kept"})
        assert captured.headers["x-request-id"] == "kept"
    assert set(sender.events()) == {"kept"}
    c = counts(collector)
    assert (c["unparsed_skipped"], c["unparsed_unparseable"], c["unparsed_oversize"], c["captured"]) \
        == (1, 1, 2, 1)
    assert c["uncaptured_4xx"] == 1  # the 400: an answer left out is counted (issue 15, defect 9)


def test_a_streaming_response_still_streams_through_the_middleware_and_is_captured_whole() -> None:
    sender = RecordingSender()
    with Collector("m", sender=sender) as collector:
        app = model_app(collector)
        with serve(app) as url, httpx.Client(timeout=10) as http, \
                http.stream("POST", f"{url}/stream", json={"instances": [[1.0, 3.0], [2.0, 4.0]]},
                            headers={"X-Request-Id": "s"}) as response:
            assert response.headers["x-request-id"] == "s"
            chunks = response.iter_raw()
            first = next(chunks)  # arrives while the app still holds the rest back
            app.state.release.set()
            rest = b"".join(chunks)
        assert first == b'{"predictions": [' and rest == b"1.333333, 2.0]}"
        wait_until(lambda: len(sender.messages) == 1, 5, "the streamed call captured")
    assert {k: v["outputs"] for k, v in sender.events().items()} == {
        "s/0": {"prediction": 1.333333}, "s/1": {"prediction": 2.0}}


def test_the_middleware_passes_other_asgi_traffic_through_and_rejects_bad_options() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    collector = Collector("m", sender=RecordingSender())
    middleware = DriftlineMiddleware(app, collector=collector)

    async def nothing() -> Any:
        return {"type": "lifespan.startup"}

    async def ignore(message: Any) -> None:
        pass

    import asyncio

    asyncio.run(middleware({"type": "lifespan"}, nothing, ignore))
    assert seen == ["lifespan"]
    bad: list[dict[str, Any]] = [{"protocol": "soap"}, {"protocol": "generic"}, {"feature_names": "abc"}]
    for options in bad:
        with pytest.raises(ValueError):
            DriftlineMiddleware(app, collector=collector, **options)
    collector.close()


def test_the_middleware_names_an_oip_call_without_x_request_id_by_the_bodys_id() -> None:
    """Issue 15, defect 7: the request id of the events is X-Request-Id, else the OIP body's id."""
    sender = RecordingSender()
    body = {"id": "oip-5", "inputs": [{"name": "x", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]}]}
    with Collector("m", sender=sender) as collector, serve(model_app(collector)) as url, \
            httpx.Client(timeout=10) as http:
        plain = http.post(f"{url}/v2/models/m/infer", json=body)
        assert plain.status_code == 200 and len(plain.headers["x-request-id"]) == 32
        named = http.post(f"{url}/v2/models/m/infer", json=body, headers={"X-Request-Id": "hdr"})
        assert named.headers["x-request-id"] == "hdr"
    assert set(sender.events()) == {"oip-5/0", "oip-5/1", "hdr/0", "hdr/1"}
    counts(collector)  # the identity holds
