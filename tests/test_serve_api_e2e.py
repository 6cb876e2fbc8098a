"""The service's write paths end to end, against the real broker: labels over HTTP,
a new reference, a config reload, the DLQ and the Evidently report."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka import KafkaConsumer
from sklearn.metrics import roc_auc_score

from monitor.batch import tabular
from monitor.engine import profile_codec
from tests.conftest import make_frame
from tests.servers import Broker, Process
from tests.test_serve_e2e import FEATURES, Setup, metrics, serve, wait_until

pytestmark = pytest.mark.slow


def _post(url: str, body: bytes, content_type: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _with_target(config: Path) -> None:
    text = config.read_text()
    text = text.replace("      is_member: {type: boolean}\n",
                        "      is_member: {type: boolean}\n"
                        "    prediction: {name: score, type: numerical}\n"
                        "    target: {name: churned, task: binary_classification}\n"
                        "    performance: {roc_auc: {min: 0.6}}\n")
    config.write_text(text)


def _produce_scored(setup: Setup, model: str, rng: np.random.Generator, start: int, n: int,
                    *, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    from kafka import KafkaProducer

    from monitor.wire.decode import encode_predictions

    frame = make_frame(rng, n, shift=shift)
    y = (rng.random(n) < 0.4).astype(int)
    score = np.clip(0.35 * y + 0.65 * rng.random(n), 0, 1)
    producer = KafkaProducer(bootstrap_servers=setup.broker.bootstrap, linger_ms=5)
    try:
        for lo in range(0, n, 50):
            events = [{"request_id": f"r{start + i}", "ts": 1_700_000_000_000 + start + i,
                       "inputs": {k: (bool(v) if isinstance(v, np.bool_) else v)
                                  for k, v in frame.iloc[i][list(FEATURES)].items()},
                       "outputs": {"score": float(score[i])}} for i in range(lo, min(lo + 50, n))]
            producer.send(setup.topics["predictions"], key=model.encode(),
                          value=encode_predictions(model, events))
        producer.flush(30)
    finally:
        producer.close()
    return y, score


def test_labels_references_reloads_the_dlq_and_the_report_work_through_the_running_service(
        tmp_path: Path, broker: Broker) -> None:
    setup = Setup(tmp_path, broker, ["churn"], size=200)
    config = setup.config()
    _with_target(config)
    proc, url = serve(tmp_path, config, "serve")
    with proc:
        _run(setup, config, proc, url)


def _run(setup: Setup, config: Path, proc: Process, url: str) -> None:
    rng = np.random.default_rng(11)
    y, score = _produce_scored(setup, "churn", rng, 0, 400)
    wait_until("two windows", lambda: metrics(url).get(
        ("driftline_events_total", (("model", "churn"),))) == 400, 60, proc)

    # labels over HTTP: validated, written to the labels topic, joined by the owner
    labels = [{"request_id": f"r{i}", "ts": 1_700_000_000_100 + i, "target": int(y[i])}
              for i in range(400)]
    body = json.dumps({"schema": 1, "model": "churn", "labels": labels}).encode()
    assert _post(f"{url}/labels", body, "application/json") == (200, {"accepted": 400})
    key = ("driftline_model_performance", (("metric", "roc_auc"), ("model", "churn")))
    wait_until("performance of the second labelled window",
               lambda: metrics(url).get(key) == pytest.approx(roc_auc_score(y[200:], score[200:])),
               60, proc)
    assert _post(f"{url}/labels", b'{"schema": 1, "model": "nope", "labels": []}',
                 "application/json")[0] == 404
    status, error = _post(f"{url}/labels", b"{oops", "application/json")
    assert status == 400 and error["detail"].startswith("bad_json")

    # a new reference, from data shifted like the next windows: they stop drifting against it
    shifted = make_frame(np.random.default_rng(12), 3000, shift=0.6)[list(FEATURES)]
    profile = tabular.profile_frame(shifted, FEATURES)
    status, answer = _post(f"{url}/models/churn/reference", profile_codec.dumps(profile),
                           "application/octet-stream")
    assert status == 200 and answer["owned_here"] is True
    _produce_scored(setup, "churn", rng, 400, 200, shift=0.6)
    wait_until("a window against the new reference", lambda: json.loads(urllib.request.urlopen(
        f"{url}/models/churn/drift", timeout=5).read())["window"]["end"] == 600, 60, proc)
    latest = json.loads(urllib.request.urlopen(f"{url}/models/churn/drift", timeout=5).read())
    assert latest["rows_reference"] == 3000
    assert not latest["features"]["income"]["drift"]
    assert _post(f"{url}/models/churn/reference", b"not a profile", "application/octet-stream")[0] == 400

    # an invalid config is refused with every error and the old one stays
    good = config.read_text()
    config.write_text(good.replace("defaults: {", "defaults: {alpah: 0.01, "))
    status, refused = _post(f"{url}/config/reload", b"", "application/json")
    assert status == 422 and any("did you mean 'alpha'" in e for e in refused["errors"])
    config.write_text(good.replace("defaults: {", "defaults: {alpha: 0.01, "))
    status, reloaded = _post(f"{url}/config/reload", b"", "application/json")
    assert status == 200 and reloaded["changes"] == ["model churn settings updated, window kept"]

    # a broken message goes to the DLQ unchanged, with its reason
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=setup.broker.bootstrap)
    producer.send(setup.topics["predictions"], key=b"churn", value=b"\xff garbage")
    producer.flush(10)
    producer.close()
    consumer = KafkaConsumer(setup.topics["dlq"], bootstrap_servers=setup.broker.bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=20_000)
    try:
        record = next(iter(consumer))
    finally:
        consumer.close()
    headers = dict(record.headers)
    assert record.value == b"\xff garbage" and headers["driftline-reason"] == b"bad_json"
    assert headers["driftline-origin"].startswith(setup.topics["predictions"].encode())
    wait_until("the invalid counter", lambda: metrics(url).get(
        ("driftline_events_invalid_total", (("model", ""), ("reason", "bad_json")))) == 1, 20, proc)

    # the Evidently report of the latest window
    started = time.monotonic()
    with urllib.request.urlopen(f"{url}/models/churn/report", timeout=120) as response:
        html = response.read().decode()
        assert response.headers["content-type"].startswith("text/html")
    assert time.monotonic() - started < 120
    assert "<html" in html.lower() and all(f in html for f in FEATURES)
