"""``driftline collect`` in front of a real multi-model ``kserve.ModelServer`` (models ``sum`` and
``multi``, ``tests/fixtures/kserve_models.py``) and a real broker (issue 15, defects 4, 5, 7, 9).

Each call's answer through the collector is the server's own (status and body); in Kafka, each
model's rows arrive under the model its path names (or ``--model``, with the path's name kept as
``served_model``), a call without ``X-Request-Id`` is named by the OIP body's ``id``, an unknown
model's 404 moves ``responses_uncaptured``, and the counters add up.
"""

from __future__ import annotations

import http.client
import json
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.wire.decode import PredictionBatch
from tests.counters import Counts, assert_identity
from tests.real_servers import RealServer, kserve_server  # noqa: F401 (fixture)
from tests.servers import Broker, Process, free_port
from tests.test_collect_e2e import records

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
V2 = {"id": "oip-77", "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32",
                                   "data": [10.0, 20.0, 30.0, 40.0]}]}


@pytest.fixture
def collector_of(tmp_path: Path, kserve_server: RealServer, broker: Broker  # noqa: F811
                 ) -> Iterator[Any]:
    procs: list[Process] = []

    def start(topic: str, *flags: str) -> tuple[str, str, Process]:
        port, metrics_port = free_port(), free_port()
        proc = Process([sys.executable, "-m", "monitor.cli.main", "collect", "--upstream", kserve_server.url,
                        "--kafka", broker.bootstrap, "--topic", topic, "--listen", f"127.0.0.1:{port}",
                        "--metrics-port", str(metrics_port), *flags],
                       tmp_path / "logs", name=f"collect-{port}", cwd=ROOT)
        procs.append(proc.__enter__())
        proc.wait_http(f"http://127.0.0.1:{metrics_port}/healthz", timeout=30)
        return f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}", proc

    yield start
    for proc in procs:
        proc.__exit__(None, None, None)


def post(base: str, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    try:
        conn.request("POST", path, body=json.dumps(body).encode(),
                     headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def same_answer(via: str, direct: str, path: str, body: Any, headers: dict[str, str] | None = None) -> int:
    """POST through the collector and straight to the server: the same status and body."""
    got, want = post(via, path, body, headers), post(direct, path, body, headers)
    if path.startswith("/v2/") and got[0] == 200:  # kserve makes up no id when one is given: equal
        assert json.loads(got[1]) == json.loads(want[1])
    else:
        assert got == want
    return got[0]




def settled(metrics_url: str, sent: int) -> Counts:
    deadline = time.monotonic() + 15
    while True:
        with urllib.request.urlopen(f"{metrics_url}/metrics", timeout=5) as response:
            text = response.read().decode()
        counts = assert_identity(text)
        if counts.sent >= sent or time.monotonic() > deadline:
            return counts
        time.sleep(0.1)


Row = tuple[bytes, str, str | None, dict[str, Any]]  # key, model, served model, outputs


def rows(got: list[tuple[bytes, PredictionBatch]]) -> dict[str, Row]:
    return {rid: (key, b.model, served, dict(outputs))
            for key, b in got
            for rid, served, outputs in zip(b.request_ids, b.served_models, b.outputs, strict=True)}


def test_without_model_each_call_goes_under_the_model_its_path_names(
        collector_of: Any, kserve_server: RealServer, broker: Broker) -> None:  # noqa: F811
    topic = f"pred-{uuid.uuid4().hex[:8]}"
    broker.create_topics([topic], partitions=2)
    via, metrics_url, proc = collector_of(topic)
    direct = kserve_server.url
    assert same_answer(via, direct, "/v1/models/sum:predict", {"instances": [[1.0, 2.0], [3.0, 4.0]]},
                       {"X-Request-Id": "s1"}) == 200
    assert same_answer(via, direct, "/v2/models/multi/infer", V2) == 200  # no X-Request-Id: the body's id
    assert same_answer(via, direct, "/v1/models/nope:predict", {"instances": [[1.0]]}) == 404
    got = rows(records(broker.bootstrap, topic, 4))
    assert {rid: (key, model, served) for rid, (key, model, served, _) in got.items()} == {
        "s1/0": (b"sum", "sum", None), "s1/1": (b"sum", "sum", None),
        "oip-77/0": (b"multi", "multi", None), "oip-77/1": (b"multi", "multi", None)}
    assert got["s1/1"][3] == {"prediction": 7.0}
    assert got["oip-77/0"][3] == {"score": 30.0, "label": "low", "range_0": 10.0, "range_1": 20.0}
    counts = settled(metrics_url, 4)
    assert (counts.captured, counts.sent) == (4, 4)
    assert counts.uncaptured["4xx"] == 1 and sum(counts.unparsed.values()) == 0
    assert "the model named by each request's path" in proc.stderr_path.read_text()


def test_a_configured_model_keys_every_call_and_the_served_model_is_kept(
        collector_of: Any, kserve_server: RealServer, broker: Broker) -> None:  # noqa: F811
    topic = f"pred-{uuid.uuid4().hex[:8]}"
    broker.create_topics([topic], partitions=2)
    via, metrics_url, _ = collector_of(topic, "--model", "credit", "--model-map", "multi=multi-cfg")
    direct = kserve_server.url
    assert same_answer(via, direct, "/v1/models/sum:predict", {"instances": [[1.0, 2.0]]},
                       {"X-Request-Id": "s"}) == 200
    assert same_answer(via, direct, "/v2/models/multi/infer", V2, {"X-Request-Id": "m"}) == 200
    got = rows(records(broker.bootstrap, topic, 3))
    assert {rid: (key, model, served) for rid, (key, model, served, _) in got.items()} == {
        "s": (b"credit", "credit", "sum"),
        "m/0": (b"multi-cfg", "multi-cfg", "multi"), "m/1": (b"multi-cfg", "multi-cfg", "multi")}
    counts = settled(metrics_url, 3)
    assert (counts.captured, counts.sent) == (3, 3)
