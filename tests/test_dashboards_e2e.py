"""Every panel query of the generated dashboards returns data from a real Prometheus that
scraped real driftline processes.

No Grafana server can run here (its server is AGPL and not packaged for this machine).  What
this proves instead: each panel's PromQL, with the dashboard's variables substituted as Grafana
would, is valid and returns series from Prometheus 2.42 scraping

* ``driftline serve`` fed by Tansu with clean rows, then July's drift, with labels,
* ``driftline collect`` in front of a small model server, with traffic (one call opted out),
* ``driftline remediate`` acting on the alerts (a Job on the fake Kubernetes API),

and the drifted feature's series shows the drift against its threshold."""

from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dashboards.generator import annotation_queries, generate, panel_queries
from dashboards.preview import render
from monitor.config import load_config
from tests.k8s_fake import FakeKube
from tests.remediate_loop import MODEL, Loop, get_json, july_rows, no_drift_rows, seed_cluster, wait_until
from tests.servers import Broker, Process, free_port

pytestmark = pytest.mark.slow  # bounded: every wait has its own timeout (about 3 minutes at most)
ROOT = Path(__file__).resolve().parent.parent
COLLECTED = "scored"


def substitute(expr: str, model: str) -> str:
    """The dashboard's variables as Grafana fills them: one model, every feature."""
    return (expr.replace("$model", model).replace("$feature", ".*")
            .replace("$__rate_interval", "1m").replace("$__range", "5m").replace("$__interval", "15s"))


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube() as fake:
        seed_cluster(fake)
        yield fake


@pytest.fixture
def loop(tmp_path: Path, broker: Broker, kube: FakeKube) -> Iterator[Loop]:
    rng = np.random.default_rng(5)
    pd.DataFrame({"a": np.round(rng.normal(0, 1, 2000), 3), "b": np.round(rng.normal(0, 1, 2000), 3)}
                 ).to_parquet(tmp_path / "scored.parquet")
    started = Loop(tmp_path, broker, kube, window=200, extra_models=[{
        "name": COLLECTED, "reference": str(tmp_path / "scored.parquet"),
        "window": {"size": 100},
        "features": {"a": {"type": "numerical"}, "b": {"type": "numerical"}}}])
    procs: list[Process] = []
    try:
        model_port, listen, metrics_port = free_port(), free_port(), free_port()
        model = Process([sys.executable, "-m", "uvicorn", "tests.model_server:app", "--port", str(model_port),
                         "--log-level", "warning"], tmp_path / "logs", name="model", cwd=ROOT)
        procs.append(model)
        model.wait_http(f"http://127.0.0.1:{model_port}/docs", timeout=30)
        collect = Process([sys.executable, "-m", "monitor.cli", "collect", "--upstream",
                           f"http://127.0.0.1:{model_port}", "--model", COLLECTED,
                           "--kafka", broker.bootstrap, "--topic", started.topics["predictions"],
                           "--listen", f"127.0.0.1:{listen}", "--metrics-port", str(metrics_port)],
                          tmp_path / "logs", name="collect", cwd=ROOT)
        procs.append(collect)
        collect.wait_http(f"http://127.0.0.1:{metrics_port}/healthz", timeout=30)
        started.collector_url = f"http://127.0.0.1:{listen}"  # type: ignore[attr-defined]
        yield started.start(extra_targets=(f"127.0.0.1:{metrics_port}",))
    finally:
        started.stop()
        for proc in procs:
            proc.terminate()


def call_model(url: str, n: int, rng: np.random.Generator, skip: bool = False) -> None:
    for _ in range(n):
        body = json.dumps({"instances": [{"a": float(rng.normal()), "b": float(rng.normal())}]}).encode()
        headers = {"Content-Type": "application/json", **({"X-Driftline-Skip": "1"} if skip else {})}
        request = urllib.request.Request(f"{url}/v1/models/{COLLECTED}:predict", data=body, method="POST",
                                         headers=headers)
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
            answer.read()


def test_every_panel_query_of_every_dashboard_returns_series_from_the_real_processes(
        loop: Loop, tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    collector_url: str = loop.collector_url  # type: ignore[attr-defined]
    call_model(collector_url, 250, rng)
    call_model(collector_url, 3, rng, skip=True)
    began = time.time()
    clean, july = no_drift_rows(1200), july_rows(1200)
    for lo in range(0, 1200, 200):  # a window every 1.5 s: clean ones, then July's
        loop.send(clean.iloc[lo:lo + 200])
        time.sleep(1.5)
    for lo in range(0, 1200, 200):
        loop.send(july.iloc[lo:lo + 200])
        time.sleep(1.5)
    wait_until("the retraining Job", lambda: len(loop.jobs()) == 1, 90, loop)
    call_model(collector_url, 50, rng)
    prometheus = loop.prometheus
    assert prometheus is not None
    # everything scraped at least twice after the action, so that rates have two samples
    acted = f'driftline_action_last_timestamp_seconds{{model="{MODEL}"}}'
    sent = f'driftline_collector_events_sent_total{{model="{COLLECTED}"}}'
    prometheus.wait_for(f"count_over_time({acted}[1m]) >= 2", timeout=30)
    prometheus.wait_for(f"count_over_time({sent}[1m]) >= 3", timeout=30)

    config = load_config(loop.config)
    dashboards = generate(config)
    empty: list[str] = []
    checked = 0
    for name, board in dashboards.items():
        model = COLLECTED if "collector" in name else MODEL
        for title, ref, expr in panel_queries(board):
            promql = substitute(expr, model)
            assert "$" not in promql.replace("$__", ""), promql
            checked += 1
            if not prometheus.query(promql):
                empty.append(f"{name} / {title} / {ref}: {promql}")
        for title, expr in annotation_queries(board):
            promql = substitute(expr, model)
            if "changed" in title.lower():
                continue  # a change within the last minute: true only right after it
            checked += 1
            if not prometheus.query(promql):
                empty.append(f"{name} / annotation {title}: {promql}")
    # panels that show something only when it happens, and it did not happen here
    allowed = [r"Shed for overload", r"annotation Receiver acted", r"annotation Dry-run decision",
               r"Dropped by reason"]
    unexpected = [e for e in empty if not any(re.search(a, e) for a in allowed)]
    assert checked > 50 and unexpected == [], "\n".join(unexpected)

    # the drifted feature's series shows the drift against its threshold, as serve's report says
    report = get_json(f"{loop.serve_url}/models/{MODEL}/drift")
    drifted = sorted(f for f, r in report["features"].items() if r["drift"])
    assert "dep_delay" in drifted
    model_board = dashboards["driftline-model.json"]
    queries = {(t, r): substitute(e, MODEL) for t, r, e in panel_queries(model_board)}
    p_values = _by_feature(prometheus.query(queries[("p-values (log scale)", "A")]))
    thresholds = _by_feature(prometheus.query(queries[("p-values (log scale)", "B")]))
    for feature in drifted:
        if feature in p_values and report["features"][feature]["kind"] == "p_value":
            # the raw p-value is at most the adjusted one, which fell below the threshold
            assert thresholds[feature] == pytest.approx(report["features"][feature]["threshold"])
            assert p_values[feature] < thresholds[feature], feature
    flagged = _by_feature(prometheus.query(queries[("Drifted features, latest window", "A")]))
    assert sorted(flagged) == drifted

    # the README's preview, drawn from the same panel definitions and this run's series;
    # DRIFTLINE_WRITE_PREVIEW=dashboards/preview-model.png rewrites the committed picture
    out = Path(os.environ.get("DRIFTLINE_WRITE_PREVIEW") or tmp_path / "preview.png")
    titles = render(prometheus=prometheus.url, model=MODEL, out=out, config=config,
                    range_s=time.time() - began + 5, step_s=1)
    panel_titles = [t for t, _, _ in panel_queries(model_board)]
    assert titles and all(t in panel_titles for t in titles)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _by_feature(result: list[dict[str, Any]]) -> dict[str, float]:
    return {r["metric"]["feature"]: float(r["value"][1]) for r in result}
