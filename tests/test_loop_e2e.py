"""The path a user runs, end to end with real parts: a model server (FastAPI under uvicorn)
behind ``driftline collect``, a real broker (Tansu), and ``driftline serve`` with a configured
prediction and labels.  Nothing is faked between the model's answer and the service's report.

The expected values come from outside driftline: the prediction values are the model
server's own answers, the drift statistic and p-value are ``scipy.stats.ks_2samp`` on
those answers against the reference, and the performance is sklearn's ``roc_auc_score``.
"""

from __future__ import annotations

import json
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from tests.servers import Broker, Process, free_port
from tests.test_serve_e2e import get_json, metrics, wait_until

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
MODEL = "flights"
WINDOW = 200


def model_score(a: float, b: float) -> float:
    """What tests/model_server.py answers for one {"a", "b"} instance (read from its code)."""
    return round((a + b) / 3, 6)


@pytest.fixture
def model_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    with Process([sys.executable, "-m", "uvicorn", "tests.model_server:app", "--port", str(port),
                  "--log-level", "warning"], tmp_path / "logs", name="model", cwd=ROOT) as proc:
        url = f"http://127.0.0.1:{port}"
        proc.wait_http(f"{url}/docs", timeout=30)
        yield url


def write_config(tmp_path: Path, broker: Broker, topics: dict[str, str], rng: np.random.Generator) -> Path:
    a, b = np.round(rng.normal(0, 1, 3000), 3), np.round(rng.normal(0, 1, 3000), 3)
    score = np.array([model_score(x, y) for x, y in zip(a.tolist(), b.tolist(), strict=True)])
    late = (rng.random(3000) < 1 / (1 + np.exp(-3 * score))).astype(int)
    pd.DataFrame({"a": a, "b": b, "delay_score": score, "arrived_late": late}).to_parquet(
        tmp_path / "reference.parquet")
    config = tmp_path / "driftline.yaml"
    config.write_text("\n".join([
        f"kafka: {{bootstrap_servers: '{broker.bootstrap}', group_id: g-{uuid.uuid4().hex[:8]},",
        f"        topics: {json.dumps(topics)}}}",
        f"defaults: {{window: {{size: {WINDOW}}}}}",
        "service: {checkpoint_interval: 1s}",
        "models:",
        f"  - name: {MODEL}",
        "    reference: reference.parquet",
        "    features: {a: {type: numerical}, b: {type: numerical}}",
        "    prediction: {name: delay_score, type: numerical, test: ks}",
        "    target: {name: arrived_late, task: binary_classification}",
        "    performance: {roc_auc: {min: 0.6}}",
    ]) + "\n")
    return config


def collect(tmp_path: Path, model_url: str, broker: Broker, topic: str, *extra: str) -> tuple[Process, str]:
    port, metrics_port = free_port(), free_port()
    proc = Process([sys.executable, "-m", "monitor.cli", "collect", "--upstream", model_url, "--model", MODEL,
                    "--kafka", broker.bootstrap, "--topic", topic, "--listen", f"127.0.0.1:{port}",
                    "--metrics-port", str(metrics_port), *extra],
                   tmp_path / "logs", name=f"collect-{port}", cwd=ROOT)
    proc.wait_http(f"http://127.0.0.1:{metrics_port}/healthz", timeout=30)
    return proc, f"http://127.0.0.1:{port}"


def predict(url: str, request_id: str, a: float, b: float) -> float:
    request = urllib.request.Request(f"{url}/v1/models/{MODEL}:predict", method="POST",
                                     data=json.dumps({"instances": [{"a": a, "b": b}]}).encode(),
                                     headers={"Content-Type": "application/json", "X-Request-Id": request_id})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["X-Request-Id"] == request_id
        answer: dict[str, Any] = json.loads(response.read())
    [score] = answer["predictions"]
    return float(score)


def post_labels(url: str, labels: list[dict[str, Any]]) -> None:
    body = json.dumps({"schema": 1, "model": MODEL, "labels": labels}).encode()
    request = urllib.request.Request(f"{url}/labels", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.loads(response.read()) == {"accepted": len(labels)}


def test_predictions_through_the_collector_are_monitored_with_their_configured_name_and_labels(
        tmp_path: Path, broker: Broker, model_url: str) -> None:
    rng = np.random.default_rng(2013)
    tag = uuid.uuid4().hex[:8]
    topics = {"predictions": f"p-{tag}", "labels": f"l-{tag}", "dlq": f"d-{tag}", "state": f"s-{tag}"}
    broker.create_topics(list(topics.values()), partitions=4)
    config = write_config(tmp_path, broker, topics, rng)
    reference = pd.read_parquet(tmp_path / "reference.parquet")["delay_score"].to_numpy()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    collector, proxy = collect(tmp_path, model_url, broker, topics["predictions"],
                               "--output-names", "delay_score")
    serving = Process([sys.executable, "-m", "monitor.cli", "serve", "--config", str(config), "--host",
                       "127.0.0.1", "--port", str(port)], tmp_path / "logs", name="serve", cwd=ROOT)
    with collector, serving as serve:
        serve.wait_http(f"{url}/readyz", timeout=60)
        # a calm window, then one where `a` (and so the model's score) has shifted
        scores: list[float] = []
        for i in range(2 * WINDOW):
            shift = 1.5 if i >= WINDOW else 0.0
            a, b = round(float(rng.normal(shift, 1)), 3), round(float(rng.normal(0, 1)), 3)
            scores.append(predict(proxy, f"r{i}", a, b))
            assert scores[-1] == model_score(a, b)
        wait_until("two windows", lambda: len(get_json(f"{url}/models/{MODEL}/history")) == 2, 60, serve)
        history = get_json(f"{url}/models/{MODEL}/history")
        for window, expect_drift in zip(history, (False, True), strict=True):
            lo = window["window"]["start"]
            window_scores = scores[lo:lo + WINDOW]
            expected = stats.ks_2samp(reference, window_scores)
            result = window["features"]["delay_score"]
            assert result["test"] == "ks"
            assert result["statistic"] == pytest.approx(expected.statistic, abs=1e-12)
            assert result["p_value"] == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
            assert result["drift"] is expect_drift
            assert window["unknown_fields"] == {}  # the output arrived under the configured name

        # labels come later, over HTTP; the owner joins them by request id
        y = [int(rng.random() < 1 / (1 + np.exp(-3 * s))) for s in scores]
        post_labels(url, [{"request_id": f"r{i}", "ts": 1_700_000_000_000 + i, "target": y[i]}
                          for i in range(2 * WINDOW)])
        key = ("driftline_model_performance", (("metric", "roc_auc"), ("model", MODEL)))
        wait_until("the performance of the second labelled window",
                   lambda: metrics(url).get(key) == pytest.approx(roc_auc_score(y[WINDOW:], scores[WINDOW:])),
                   60, serve)

        # the same model behind a collector that was not told the prediction's name: the events
        # carry `prediction`, which the service reports instead of a drifted delay_score
        unnamed, unnamed_proxy = collect(tmp_path, model_url, broker, topics["predictions"])
        with unnamed:
            for i in range(2 * WINDOW, 3 * WINDOW):
                predict(unnamed_proxy, f"r{i}", round(float(rng.normal(0, 1)), 3), 0.0)
        wait_until("a third window", lambda: len(get_json(f"{url}/models/{MODEL}/history")) == 3, 60, serve)
        third = get_json(f"{url}/models/{MODEL}/drift")
        assert "delay_score" not in third["features"]
        assert {"feature": "delay_score", "issue": "prediction_absent", "value": float(WINDOW),
                "detail": "prediction field 'delay_score' absent; events carry outputs: prediction"} \
            in third["quality"]
        assert third["unknown_fields"] == {"outputs.prediction": WINDOW}
        drifted = ("driftline_feature_drifted", (("feature", "delay_score"), ("model", MODEL)))
        assert metrics(url).get(drifted) != 1.0
