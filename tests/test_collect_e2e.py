"""``driftline collect`` as a process, between a real model server (FastAPI under
uvicorn) and a real broker (Tansu): requests in every protocol arrive in Kafka as
the right events, and a broker outage never reaches the caller."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

from monitor.wire.decode import decode_predictions
from tests.counters import assert_identity
from tests.servers import Broker, Process, free_port, start_broker

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    with Process([sys.executable, "-m", "uvicorn", "tests.model_server:app", "--port", str(port),
                  "--log-level", "warning"], tmp_path_factory.mktemp("model"), name="model",
                 cwd=ROOT) as proc:
        url = f"http://127.0.0.1:{port}"
        proc.wait_http(f"{url}/docs", timeout=30)
        yield url


def collector(tmp_path: Path, model_url: str, bootstrap: str, topic: str, *extra: str,
              model: str | None = "m", version: str | None = "v3") -> tuple[Process, str, str]:
    port, metrics_port = free_port(), free_port()
    named = [*(["--model", model] if model else []), *(["--model-version", version] if version else [])]
    proc = Process([sys.executable, "-m", "monitor.cli.main", "collect", "--upstream", model_url, *named,
                    "--kafka", bootstrap, "--topic", topic, "--listen", f"127.0.0.1:{port}",
                    "--metrics-port", str(metrics_port), *extra],
                   tmp_path / "logs", name=f"collect-{port}", cwd=ROOT)
    proc.wait_http(f"http://127.0.0.1:{metrics_port}/healthz", timeout=30)
    return proc, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}"


def post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read()), response.headers


def consume(bootstrap: str, topic: str, events: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The events of every message until ``events`` came, each message keyed and named ``m``, ``v3``."""
    out: list[dict[str, Any]] = []
    for key, batch in records(bootstrap, topic, events, timeout):
        assert key == b"m"
        assert batch.model == "m" and batch.model_version == "v3"
        out.extend({"request_id": rid, "inputs": dict(i), "outputs": dict(o)}
                   for rid, i, o in zip(batch.request_ids, batch.inputs, batch.outputs, strict=True))
    return out


def scrape(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        return str(response.read().decode())


def metric(url: str, name: str, **labels: str) -> float:
    text = scrape(url)
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_requests_in_every_protocol_arrive_in_kafka_as_the_right_events(
        tmp_path: Path, broker: Broker, model_url: str) -> None:
    topic = f"pred-{uuid.uuid4().hex[:8]}"
    broker.create_topics([topic], partitions=4)
    proc, url, metrics_url = collector(tmp_path, model_url, broker.bootstrap, topic,
                                       "--hash-fields", "user", "--hash-salt", "s")
    with proc:
        v1 = post(f"{url}/v1/models/m:predict", {"instances": [{"age": 30, "user": "ann"},
                                                               {"age": 50, "user": "bob"}]},
                  {"X-Request-Id": "req-v1"})
        assert v1[0] == 200 and v1[1] == {"predictions": [15.0, 25.0]}
        assert v1[2]["X-Request-Id"] == "req-v1"
        v2 = post(f"{url}/v2/models/m/infer", {"id": "1", "inputs": [
            {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0]}]},
            {"X-Request-Id": "req-v2"})
        assert v2[0] == 200 and v2[1]["outputs"][0]["data"] == [1.0, 2.333333]
        ml = post(f"{url}/invocations", {"dataframe_split": {"columns": ["a", "b"],
                                                             "data": [[1.0, 1.0]]}},
                  {"X-Request-Id": "req-ml"})
        assert ml[0] == 200 and ml[1] == {"predictions": [0.666667]}
        got = {e["request_id"]: e for e in consume(broker.bootstrap, topic, 5)}
        import hashlib

        ann = hashlib.sha256(b"sann").hexdigest()[:16]
        assert got == {
            "req-v1/0": {"request_id": "req-v1/0", "inputs": {"age": 30, "user": ann},
                         "outputs": {"prediction": 15.0}},
            "req-v1/1": {"request_id": "req-v1/1",
                         "inputs": {"age": 50, "user": hashlib.sha256(b"sbob").hexdigest()[:16]},
                         "outputs": {"prediction": 25.0}},
            "req-v2/0": {"request_id": "req-v2/0", "inputs": {"x_0": 1.0, "x_1": 2.0},
                         "outputs": {"score": 1.0}},
            "req-v2/1": {"request_id": "req-v2/1", "inputs": {"x_0": 3.0, "x_1": 4.0},
                         "outputs": {"score": 2.333333}},
            "req-ml": {"request_id": "req-ml", "inputs": {"a": 1.0, "b": 1.0},
                       "outputs": {"prediction": 0.666667}},
        }
        deadline = time.monotonic() + 10
        while metric(metrics_url, "driftline_collector_events_sent_total", model="m") < 5:
            assert time.monotonic() < deadline, "sent counter did not reach 5"
            time.sleep(0.1)
        assert metric(metrics_url, "driftline_collector_events_captured_total", model="m") == 5
        assert assert_identity(scrape(metrics_url)).captured == 5


def records(bootstrap: str, topic: str, events: int, timeout: float = 30.0) -> list[tuple[bytes, Any]]:
    """(key, decoded batch) of every message until ``events`` events came."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=1000)
    out: list[tuple[bytes, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while sum(b.n for _, b in out) < events and time.monotonic() < deadline:
            out.extend((r.key, decode_predictions(r.value)) for r in consumer)
    finally:
        consumer.close()
    return out


def test_a_multi_model_server_keys_each_call_by_the_model_its_path_names(
        tmp_path: Path, broker: Broker, model_url: str) -> None:
    """Issue 15, defects 4, 5, 7, 9: no --model; the path names the model (and version),
    --model-map renames one, the OIP body id names a call without X-Request-Id, a call whose
    path names no model and an error answer are counted, and the counters add up."""
    topic = f"pred-{uuid.uuid4().hex[:8]}"
    broker.create_topics([topic], partitions=4)
    proc, url, metrics_url = collector(tmp_path, model_url, broker.bootstrap, topic,
                                       "--model-map", "multi=multi-cfg", model=None, version=None)
    with proc:
        assert post(f"{url}/v1/models/sum:predict", {"instances": [[1.0, 2.0], [3.0, 4.0]]},
                    {"X-Request-Id": "s1"})[0] == 200
        assert post(f"{url}/v2/models/sum/infer", {"id": "oip-9", "inputs": [
            {"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}]})[0] == 200
        assert post(f"{url}/v1/models/multi:predict", {"instances": [[5.0]]},
                    {"X-Request-Id": "m1"})[0] == 200
        assert post(f"{url}/invocations", {"dataframe_split": {"columns": ["a"], "data": [[1.0]]}})[0] == 200
        with pytest.raises(urllib.error.HTTPError) as missing:
            post(f"{url}/v1/models/nope", {"instances": [[1.0]]})
        assert missing.value.code in (404, 405)
        got = records(broker.bootstrap, topic, 4)
        deadline = time.monotonic() + 10
        while metric(metrics_url, "driftline_collector_events_sent_total") < 4:
            assert time.monotonic() < deadline, "sent counter did not reach 4"
            time.sleep(0.1)
        counts = assert_identity(scrape(metrics_url))
        assert_identity(scrape(metrics_url), "sum")
    events = {rid: (key, b.model, b.model_version, served)
              for key, b in got
              for rid, served in zip(b.request_ids, b.served_models, strict=True)}
    assert events == {"s1/0": (b"sum", "sum", None, None), "s1/1": (b"sum", "sum", None, None),
                      "oip-9": (b"sum", "sum", None, None),
                      "m1": (b"multi-cfg", "multi-cfg", None, "multi")}
    assert (counts.captured, counts.sent) == (4, 4)
    assert counts.unparsed["no_model"] == 1 and counts.uncaptured["4xx"] == 1
    assert "the model named by each request's path" in proc.stderr_path.read_text()


def test_a_home_grown_protocol_is_captured_with_the_configured_json_paths(
        tmp_path: Path, broker: Broker, model_url: str) -> None:
    topic = f"pred-{uuid.uuid4().hex[:8]}"
    broker.create_topics([topic], partitions=4)
    proc, url, _ = collector(tmp_path, model_url, broker.bootstrap, topic,
                             "--generic-instances", "$.data[*]", "--generic-inputs", "features",
                             "--generic-outputs", "$.result[*].score")
    with proc:
        status, answer, _ = post(f"{url}/score", {"data": [{"features": {"a": 2.0, "b": 4.0}},
                                                           {"features": {"a": 1.0, "b": 0.0}}]},
                                 {"X-Request-Id": "g"})
        assert status == 200 and answer == {"result": [{"score": 2.0}, {"score": 0.333333}]}
        got = sorted(consume(broker.bootstrap, topic, 2), key=lambda e: e["request_id"])
        assert got == [
            {"request_id": "g/0", "inputs": {"a": 2.0, "b": 4.0}, "outputs": {"score": 2.0}},
            {"request_id": "g/1", "inputs": {"a": 1.0, "b": 0.0}, "outputs": {"score": 0.333333}},
        ]


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_broker_outage_under_steady_traffic_never_reaches_the_caller_and_delivery_resumes(
        tmp_path: Path, model_url: str) -> None:
    broker = start_broker(tmp_path / "own-broker")
    topic = "pred-outage"
    broker.create_topics([topic], partitions=1)
    proc, url, metrics_url = collector(tmp_path, model_url, broker.bootstrap, topic,
                                       "--queue-events", "2000")
    body = {"instances": [[1.0, 2.0, 3.0]]}
    with proc:
        try:
            for _ in range(50):
                assert post(f"{url}/v1/models/m:predict", body)[1] == {"predictions": [1.5]}
            broker.kill()
            slowest, rss = 0.0, []
            for i in range(3000):  # queue of 2000 events: it overflows while the broker is down
                started = time.perf_counter()
                status, answer, _ = post(f"{url}/v1/models/m:predict", body)
                slowest = max(slowest, time.perf_counter() - started)
                assert (status, answer) == (200, {"predictions": [1.5]})
                if i % 500 == 0:
                    rss.append(_rss_mib(proc.pid))
            assert slowest < 1.0, f"a request took {slowest:.3f} s while the broker was down"
            def counts() -> dict[str, float]:
                found = {name: metric(metrics_url, f"driftline_collector_events_{name}_total", model="m")
                         for name in ("captured", "sent", "failed", "dropped")}
                return found | {"queued": metric(metrics_url, "driftline_collector_queue_depth", model="m")}

            # the sender gives up on what it holds after its delivery timeout (10 s); the queue
            # keeps the newest events for the broker's return
            deadline = time.monotonic() + 30
            while (c := counts())["captured"] != c["sent"] + c["failed"] + c["dropped"] + c["queued"]:
                assert time.monotonic() < deadline, f"losses not accounted for: {c}"
                time.sleep(0.5)
            assert c["captured"] == 3050 and c["failed"] + c["dropped"] + c["queued"] >= 3000 - 50
            assert c["queued"] <= 2000
            assert max(rss) - min(rss) < 50, f"RSS grew during the outage: {rss}"
            restarted = Broker(tmp_path / "own-broker-2", port=broker.port).start()
            try:
                restarted.create_topics([topic], partitions=1)
                before = metric(metrics_url, "driftline_collector_events_sent_total", model="m")
                for _ in range(20):
                    post(f"{url}/v1/models/m:predict", body)
                deadline = time.monotonic() + 30
                while metric(metrics_url, "driftline_collector_events_sent_total", model="m") <= before:
                    assert time.monotonic() < deadline, "delivery did not resume after the restart"
                    post(f"{url}/v1/models/m:predict", body)
                    time.sleep(0.2)
                assert consume(restarted.bootstrap, topic, 1)
            finally:
                restarted.stop()
        finally:
            broker.stop()
