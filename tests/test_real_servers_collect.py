"""``driftline collect`` in front of the REAL model servers of issue 15, for every request format
that ``tests/test_real_servers.py`` checks against them directly (kserve 0.21's ModelServer with
``sum`` and ``multi``; ``mlflow models serve`` with ``sklearn`` and ``pyfunc``).

Each format is sent once straight to the server and once through one collector per server
(``--protocol auto``; no ``--model`` in front of kserve, so the model comes from the path;
``--model`` in front of each mlflow ``/invocations``), and:

* the answer through the collector is the server's own, byte for byte, status included;
* Kafka holds exactly the expected rows, under the expected key and ids, with exactly the
  expected inputs and outputs, Python types included (an FP32 ``41`` is ``41.0``; a JSON ``41``
  is ``41``; BYTES are ``str``);
* the collector's counters, once its queue drained, moved by exactly those rows and hold the
  identity ``captured == sent + failed + dropped`` (:func:`tests.counters.assert_identity`).

The expected rows come from the request this file built and from the server's direct answer,
parsed here (``numpy.frombuffer`` for binary tensors), never from driftline's extractors.
"""

from __future__ import annotations

import http.client
import json
import math
import struct
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka import KafkaConsumer

from monitor.wire.decode import decode_predictions, encoding
from tests.counters import Counts, assert_identity, counts
from tests.real_servers import RealServer, kserve_server, mlflow_server  # noqa: F401 (fixtures)
from tests.servers import Broker, Process, free_port
from tests.test_real_servers import ML_FORMATS, MULTI_REQUEST, ROWS, V1_FORMATS, Answer

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
KAFKA_WAIT_S = 20.0
SETTLE_S = 15.0


# --- HTTP ----------------------------------------------------------------------------------------


def post(base: str, path: str, raw: bytes, headers: dict[str, str]) -> Answer:
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    try:
        conn.request("POST", path, body=raw, headers=headers)
        response = conn.getresponse()
        return Answer(response.status, response.getheaders(), response.read())
    finally:
        conn.close()


def encoded(body: Any, headers: dict[str, str] | None = None) -> tuple[bytes, dict[str, str]]:
    """A request body as ``tests/test_real_servers.ask`` sends it: str and bytes as they are,
    anything else as JSON with ``Content-Type: application/json``."""
    if isinstance(body, str):
        return body.encode(), dict(headers or {})
    if isinstance(body, bytes):
        return body, dict(headers or {})
    return json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})}


# --- the tensors of the Open Inference Protocol, parsed here -------------------------------------

NUMPY_TYPES = {"FP16": "<f2", "FP32": "<f4", "FP64": "<f8", "INT8": "<i1", "INT16": "<i2", "INT32": "<i4",
               "INT64": "<i8", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "BOOL": "?"}


def as_python(datatype: str, value: Any) -> Any:
    """A tensor element as the README says a row holds it, by the declared datatype."""
    if datatype == "BYTES":
        return value.decode() if isinstance(value, bytes) else str(value)
    if datatype == "BOOL":
        return bool(value)
    if datatype.startswith(("FP", "BF")):
        return float(value)
    return int(value)


def flat(data: Any) -> list[Any]:
    return [v for item in data for v in flat(item)] if isinstance(data, list) else [data]


def tensors(header: dict[str, Any], raw: bytes, key: str) -> list[tuple[str, list[int], list[Any]]]:
    """(name, shape, values as Python) of each of ``header[key]``, JSON ``data`` or binary bytes."""
    out, at = [], 0
    for tensor in header[key]:
        datatype = tensor["datatype"]
        size = (tensor.get("parameters") or {}).get("binary_data_size")
        if size is None:
            values = flat(tensor["data"])
        elif datatype == "BYTES":
            chunk, values, pos = raw[at:at + size], [], 0
            while pos < len(chunk):
                (length,) = struct.unpack_from("<I", chunk, pos)
                values.append(chunk[pos + 4:pos + 4 + length])
                pos += 4 + length
        else:
            values = np.frombuffer(raw[at:at + size], dtype=NUMPY_TYPES[datatype]).tolist()
        at += size or 0
        assert len(values) == math.prod(tensor["shape"]), tensor
        out.append((tensor["name"], tensor["shape"], [as_python(datatype, v) for v in values]))
    assert at == len(raw), "bytes left over after the last binary tensor"
    return out


def split(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """The JSON header and the tensor bytes of an OIP body (all JSON without the length header)."""
    if header_length is None:
        return json.loads(body), b""
    return json.loads(body[:int(header_length)]), body[int(header_length):]


def rows_of(named: list[tuple[str, list[int], list[Any]]]) -> list[dict[str, Any]]:
    """One dict per row: ``[N]`` and ``[N, 1]`` tensors by their name, ``[N, k]`` as ``name_0``…"""
    n = named[0][1][0]
    rows: list[dict[str, Any]] = [{} for _ in range(n)]
    for name, shape, values in named:
        assert shape[0] == n and len(shape) <= 2, (name, shape)
        width = shape[1] if len(shape) == 2 else 1
        for i, row in enumerate(rows):
            for j in range(width):
                row[name if width == 1 else f"{name}_{j}"] = values[i * width + j]
    return rows


# --- one collector per server, its Kafka topic and its counters ----------------------------------

Row = tuple[str | None, bytes, str, str | None, str | None, Any, dict[str, Any], dict[str, Any]]


def typed(values: dict[str, Any]) -> dict[str, Any]:
    """Values with their types: ``41`` and ``41.0`` differ."""
    return {k: (type(v).__name__, v) for k, v in values.items()}


@dataclass
class Collector:
    url: str
    metrics_url: str
    proc: Process
    consumer: KafkaConsumer
    pending: list[Row] = field(default_factory=list)

    def scrape(self) -> str:
        with urllib.request.urlopen(f"{self.metrics_url}/metrics", timeout=5) as response:
            return str(response.read().decode())

    def at_rest(self, captured_at_least: float = 0) -> Counts:
        """The counters once every captured row has left the queue (at least ``captured_at_least``
        captured), with the identity asserted."""
        deadline = time.monotonic() + SETTLE_S
        while True:
            text = self.scrape()
            c = counts(text)
            drained = c.captured == c.sent + c.failed + c.dropped_total
            if (drained and c.captured >= captured_at_least) or time.monotonic() > deadline:
                return assert_identity(text)
            time.sleep(0.05)

    def take(self, request_id: str, n: int) -> list[Row]:
        """The rows of ``request_id`` (``id``, or ``id/0``…), waiting for ``n`` of them at most
        ``KAFKA_WAIT_S``; rows of other requests stay pending."""
        def mine(row: Row) -> bool:
            return row[0] == request_id or (row[0] or "").startswith(f"{request_id}/")

        deadline = time.monotonic() + KAFKA_WAIT_S
        while sum(map(mine, self.pending)) < n and time.monotonic() < deadline:
            for records in self.consumer.poll(timeout_ms=200).values():
                for record in records:
                    batch = decode_predictions(record.value, encoding=encoding(record.headers))
                    served = batch.served_models or (None,) * batch.n
                    columns = zip(batch.request_ids, served, batch.status, batch.inputs, batch.outputs,
                                  strict=True)
                    self.pending.extend((rid, record.key, batch.model, batch.model_version, srv, status,
                                         dict(inputs), dict(outputs))
                                        for rid, srv, status, inputs, outputs in columns)
        got = [row for row in self.pending if mine(row)]
        self.pending = [row for row in self.pending if not mine(row)]
        return sorted(got, key=lambda row: row[0] or "")


@pytest.fixture(scope="module")
def start_collector(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    started: list[Collector] = []
    logs = tmp_path_factory.mktemp("collect-logs")

    def start(upstream: str, *flags: str) -> Collector:
        topic = f"pred-{uuid.uuid4().hex[:8]}"
        broker.create_topics([topic], partitions=1)
        port, metrics_port = free_port(), free_port()
        proc = Process([sys.executable, "-m", "monitor.cli.main", "collect", "--upstream", upstream,
                        "--kafka", broker.bootstrap, "--topic", topic, "--listen", f"127.0.0.1:{port}",
                        "--metrics-port", str(metrics_port), "--protocol", "auto", *flags],
                       logs, name=f"collect-{port}", cwd=ROOT)
        consumer = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest")
        collector = Collector(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}", proc, consumer)
        started.append(collector)
        proc.wait_http(f"{collector.metrics_url}/healthz", timeout=30)
        return collector

    yield start
    for collector in started:
        collector.consumer.close()
        collector.proc.terminate()


@pytest.fixture(scope="module")
def kserve_collector(start_collector: Any, kserve_server: RealServer) -> Collector:  # noqa: F811
    return start_collector(kserve_server.url)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def mlflow_collectors(start_collector: Any, mlflow_server: RealServer) -> dict[str, Collector]:  # noqa: F811
    return {model: start_collector(url, "--model", model) for model, url in mlflow_server.models.items()}


def through(collector: Collector, direct_base: str, path: str, raw: bytes, headers: dict[str, str],
            ) -> tuple[Answer, str, Counts]:
    """The direct answer, after asserting the collector's is the same (status and bytes); the
    request id sent with both; the counters at rest before the call through the collector."""
    request_id = f"rq-{uuid.uuid4().hex[:10]}"
    headers = {**headers, "X-Request-Id": request_id}
    before = collector.at_rest()
    direct = post(direct_base, path, raw, headers)
    via = post(collector.url, path, raw, headers)
    assert (via.status, via.body) == (direct.status, direct.body)
    return direct, request_id, before


def unchanged(before: Counts, after: Counts, *names: str) -> bool:
    """The counters ``names`` did not move (a labelled counter that appeared at 0 did not)."""
    def value(c: Counts, name: str) -> Any:
        got = getattr(c, name)
        return {k: v for k, v in got.items() if v} if isinstance(got, dict) else got

    moved = {name: (value(before, name), value(after, name)) for name in names
             if value(before, name) != value(after, name)}
    assert not moved, f"counters moved (before, after): {moved}"
    return True


def assert_captured(collector: Collector, request_id: str, before: Counts, key: str,
                    inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> None:
    """Kafka holds exactly one row per expected row of ``request_id``, and the counters moved by
    exactly those rows."""
    assert len(inputs) == len(outputs)
    n = len(inputs)
    ids = [request_id] if n == 1 else [f"{request_id}/{i}" for i in range(n)]
    got = collector.take(request_id, n)
    after = collector.at_rest(before.captured + n)
    want = [(rid, key.encode(), key, None, None, 200, typed(i), typed(o))
            for rid, i, o in zip(ids, inputs, outputs, strict=True)]
    assert [(*row[:6], typed(row[6]), typed(row[7])) for row in got] == want
    assert (after.captured - before.captured, after.sent - before.sent) == (n, n)
    assert unchanged(before, after, "failed", "dropped", "unparsed", "uncaptured")


# --- kserve v1 (model "sum": kserve's own get_predict_input / get_predict_response) --------------

AGE_INCOME = [{"age": 41, "income": 52000.5}, {"age": 30, "income": 12000.0}]
POSITIONAL = [{"f0": a, "f1": b} for a, b in ROWS]
V1_INPUTS: dict[str, list[dict[str, Any]]] = {
    "v1-instances-lists": POSITIONAL,
    "v1-inputs-lists": POSITIONAL,
    "v1-instances-records-in-a-list": AGE_INCOME,
    "v1-instances-pandas-one-row": AGE_INCOME[:1],
    "v1-instances-pandas-two-rows-in-one-instance": AGE_INCOME,
    "v1-instances-pandas-two-instances": AGE_INCOME,
    "v1-inputs-dict-of-index": AGE_INCOME,
}


def test_every_v1_format_of_the_direct_tests_has_expected_rows_here() -> None:
    assert set(V1_INPUTS) == set(V1_FORMATS)


@pytest.mark.parametrize("case", list(V1_FORMATS))
def test_each_kserve_v1_format_answers_as_direct_and_puts_one_typed_row_per_row_into_kafka(
        kserve_collector: Collector, kserve_server: RealServer, case: str) -> None:  # noqa: F811
    body, _ = V1_FORMATS[case]
    raw, headers = encoded(body)
    direct, request_id, before = through(kserve_collector, kserve_server.url, "/v1/models/sum:predict",
                                         raw, headers)
    assert direct.status == 200
    predictions = json.loads(direct.body)["predictions"]
    assert_captured(kserve_collector, request_id, before, "sum", V1_INPUTS[case],
                    [{"prediction": p} for p in predictions])


@pytest.mark.parametrize(("path", "body", "status"), [
    # pd.DataFrame({"age": 41, ...}) needs an index: get_predict_input refuses flat records
    ("/v1/models/sum:predict", {"instances": [{"age": 41, "income": 52000.5},
                                              {"age": 30, "income": 12000.0}]}, 500),
    ("/v1/models/nope:predict", {"instances": ROWS}, 404),
], ids=["dicts-of-scalars-500", "unknown-model-404"])
def test_a_kserve_error_answer_passes_unchanged_captures_nothing_and_is_counted_uncaptured(
        kserve_collector: Collector, kserve_server: RealServer,  # noqa: F811
        path: str, body: Any, status: int) -> None:
    raw, headers = encoded(body)
    direct, request_id, before = through(kserve_collector, kserve_server.url, path, raw, headers)
    assert direct.status == status
    after = kserve_collector.at_rest(before.captured)
    assert kserve_collector.take(request_id, 0) == []
    klass = f"{status // 100}xx"
    assert after.uncaptured.get(klass, 0) == before.uncaptured.get(klass, 0) + 1
    assert sum(after.uncaptured.values()) == sum(before.uncaptured.values()) + 1
    assert unchanged(before, after, "captured", "sent", "failed", "dropped", "unparsed")


# --- kserve OIP v2 ("sum": one FP64 output; "multi": FP32, BYTES and FP64 [N, 2] outputs) --------

BINARY_X = struct.pack("<4f", 41, 52000.5, 3, 12)
BINARY_HEADER = json.dumps({"id": "req-b", "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32",
                                                       "parameters": {"binary_data_size": len(BINARY_X)}}]})
V2_FORMATS: dict[str, tuple[str, bytes, dict[str, str], bool]] = {
    # case: (model, body, headers, whether the answer uses the binary tensor extension)
    "sum-v2-json": ("sum", *encoded({"id": "req-1", "inputs": [{
        "name": "x", "shape": [2, 2], "datatype": "FP32", "data": [41, 52000.5, 30, 12000.0]}]}), False),
    "multi-v2-json": ("multi", *encoded(MULTI_REQUEST), False),
    "multi-v2-binary-data-output": (
        "multi", *encoded({**MULTI_REQUEST, "parameters": {"binary_data_output": True}}), True),
    "multi-v2-per-output-binary-data": ("multi", *encoded({
        **MULTI_REQUEST, "outputs": [{"name": "score", "parameters": {"binary_data": True}},
                                     {"name": "label"},
                                     {"name": "range", "parameters": {"binary_data": True}}]}), True),
    "multi-v2-binary-request": ("multi", BINARY_HEADER.encode() + BINARY_X,
                                {"Content-Type": "application/octet-stream",
                                 "Inference-Header-Content-Length": str(len(BINARY_HEADER))}, False),
}


@pytest.mark.parametrize("case", list(V2_FORMATS))
def test_each_kserve_oip_v2_format_answers_as_direct_and_puts_rows_typed_by_datatype_into_kafka(
        kserve_collector: Collector, kserve_server: RealServer, case: str) -> None:  # noqa: F811
    model, raw, headers, binary_answer = V2_FORMATS[case]
    direct, request_id, before = through(kserve_collector, kserve_server.url, f"/v2/models/{model}/infer",
                                         raw, headers)
    assert direct.status == 200
    length = direct.header("Inference-Header-Content-Length")
    assert (length is not None) == binary_answer  # the format is the one this case names
    inputs = rows_of(tensors(*split(raw, headers.get("Inference-Header-Content-Length")), "inputs"))
    outputs = rows_of(tensors(*split(direct.body, length), "outputs"))
    assert all(type(v) is float for row in inputs for v in row.values())  # FP32: 41 is 41.0
    assert_captured(kserve_collector, request_id, before, model, inputs, outputs)


# --- mlflow models serve ("sklearn": a prediction per row; "pyfunc": a DataFrame per row) --------


@pytest.mark.parametrize("model", ["sklearn", "pyfunc"])
@pytest.mark.parametrize("case", list(ML_FORMATS))
def test_each_mlflow_format_answers_as_direct_and_puts_one_typed_row_per_row_into_kafka(
        mlflow_collectors: dict[str, Collector], mlflow_server: RealServer,  # noqa: F811
        case: str, model: str) -> None:
    body, extra = ML_FORMATS[case]
    raw, headers = encoded(body, extra)
    direct, request_id, before = through(mlflow_collectors[model], mlflow_server.models[model],
                                         "/invocations", raw, headers)
    assert direct.status == 200, direct.body
    predictions = json.loads(direct.body)["predictions"]
    outputs = [p if isinstance(p, dict) else {"prediction": p} for p in predictions]
    assert_captured(mlflow_collectors[model], request_id, before, model, AGE_INCOME, outputs)
