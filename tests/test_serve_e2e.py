"""``driftline serve`` end to end against the real broker (Tansu) and a real Prometheus.

Each test writes its own config with topics unique to it, starts the service
as a subprocess (``python -m monitor.cli.main serve``) and produces real Kafka
messages in the wire format.  Expected windows come from an in-process
:class:`~monitor.streaming.model_state.ModelMonitor` fed the same events, or from a
run of the service without a crash.  Every wait is bounded.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from kafka import KafkaProducer
from kafka.partitioner.default import murmur2
from prometheus_client.parser import text_string_to_metric_families

from monitor.wire.decode import encode_predictions
from tests.conftest import make_frame
from tests.servers import Broker, Process, free_port, start_broker

pytestmark = pytest.mark.slow

FEATURES = {"income": "numerical", "age": "numerical", "region": "categorical",
            "is_member": "boolean"}
BATCH = 50


def _partition(model: str, partitions: int = 4) -> int:
    return (murmur2(model.encode()) & 0x7FFFFFFF) % partitions


def _models_on_distinct_partitions(count: int) -> list[str]:
    names: dict[int, str] = {}
    i = 0
    while len(names) < count:
        name = f"model-{i}"
        names.setdefault(_partition(name), name)
        i += 1
    return [names[p] for p in sorted(names)]


class Setup:
    """Topics, a config file and a reference for one test."""

    def __init__(self, tmp_path: Path, broker: Broker, models: list[str], *, size: int,
                 checkpoint: str = "1s", group: str | None = None) -> None:
        self.tmp = tmp_path
        self.broker = broker
        tag = uuid.uuid4().hex[:8]
        self.topics = {"predictions": f"p-{tag}", "labels": f"l-{tag}", "dlq": f"d-{tag}",
                       "state": f"s-{tag}"}
        broker.create_topics(list(self.topics.values()), partitions=4)
        reference = tmp_path / "reference.parquet"
        make_frame(np.random.default_rng(7), 4000)[list(FEATURES)].to_parquet(reference)
        self.models = models
        self.size = size
        self.group = group or f"g-{tag}"
        self.checkpoint = checkpoint

    def config(self, name: str = "driftline.yaml", *, group: str | None = None,
               state: str | None = None) -> Path:
        topics = dict(self.topics)
        if state:
            topics["state"] = state
        lines = [
            f"kafka: {{bootstrap_servers: '{self.broker.bootstrap}', group_id: {group or self.group},",
            f"        topics: {json.dumps(topics)}}}",
            f"defaults: {{window: {{size: {self.size}}}}}",
            f"service: {{checkpoint_interval: {self.checkpoint}, history: 100}}",
            "models:",
        ]
        for model in self.models:
            lines += [f"  - name: {model}", "    reference: reference.parquet", "    features:"]
            lines += [f"      {f}: {{type: {t}}}" for f, t in FEATURES.items()]
        path = self.tmp / name
        path.write_text("\n".join(lines) + "\n")
        return path

    def produce(self, model: str, frame: pd.DataFrame, start: int) -> None:
        producer = KafkaProducer(bootstrap_servers=self.broker.bootstrap, linger_ms=5)
        try:
            for lo in range(0, len(frame), BATCH):
                chunk = frame.iloc[lo:lo + BATCH]
                producer.send(self.topics["predictions"], key=model.encode(),
                              value=encode_predictions(model, events(chunk, start + lo)))
            producer.flush(30)
        finally:
            producer.close()


def events(frame: pd.DataFrame, start: int) -> list[dict[str, Any]]:
    return [{"request_id": f"r{start + i}", "ts": 1_700_000_000_000 + start + i,
             "inputs": {k: (bool(v) if isinstance(v, np.bool_) else v) for k, v in row.items()}}
            for i, row in enumerate(frame[list(FEATURES)].to_dict("records"))]


def serve(tmp_path: Path, config: Path, name: str) -> tuple[Process, str]:
    port = free_port()
    proc = Process([sys.executable, "-m", "monitor.cli.main", "serve", "--config", str(config),
                    "--host", "127.0.0.1", "--port", str(port)], tmp_path / "logs", name=name)
    url = f"http://127.0.0.1:{port}"
    proc.wait_http(f"{url}/readyz", timeout=60)
    return proc, url


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def wait_until(what: str, check: Callable[[], bool], timeout: float, proc: Process | None = None
               ) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc is not None:
            proc.check_alive(what)
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}"
                                 + (f"\n{proc.log_tail()}" if proc else ""))
        time.sleep(0.2)


def history(url: str, model: str) -> list[dict[str, Any]]:
    """The model's reports on this replica ([] while another replica owns it)."""
    try:
        body: list[dict[str, Any]] = get_json(f"{url}/models/{model}/history")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise
    return body


def windows(url: str, model: str) -> list[tuple[int, int, int, dict[str, Any]]]:
    return [(h["window"]["start"], h["window"]["end"], h["window"]["rows"],
             {f: (v["statistic"], v["p_value"], v["drift"]) for f, v in h["features"].items()})
            for h in history(url, model)]


def expected_windows(model: str, frame: pd.DataFrame, size: int, config: Path
                     ) -> list[tuple[int, int, int, dict[str, Any]]]:
    """The same events fed in process, straight into a ModelMonitor."""
    from monitor.config import load_config
    from monitor.streaming.model_state import ModelMonitor
    from monitor.streaming.setups import model_setup
    from monitor.wire.decode import decode_predictions

    setup = model_setup(load_config(config), model, created_at="")
    monitor = ModelMonitor(setup)
    for lo in range(0, len(frame), BATCH):
        monitor.add(decode_predictions(encode_predictions(model, events(frame.iloc[lo:lo + BATCH], lo))))
    return [(r.window_start, r.window_end, r.rows,
             {f: (v["statistic"], v["p_value"], v["drift"]) for f, v in r.body["features"].items()})
            for r in monitor.history]


def _stream(rng: np.random.Generator, n: int, shift_at: int | None = None) -> pd.DataFrame:
    frame = make_frame(rng, n)
    if shift_at is not None:
        # only income moves: the other features keep their distribution
        frame.loc[shift_at:, "income"] = frame.loc[shift_at:, "income"] * 1.6
    return frame


@pytest.fixture
def stopper() -> Iterator[list[Process]]:
    procs: list[Process] = []
    yield procs
    for proc in procs:
        proc.terminate()


def test_a_shift_midway_sets_driftline_feature_drifted_for_exactly_the_shifted_feature(
        tmp_path: Path, broker: Broker, stopper: list[Process]) -> None:
    setup = Setup(tmp_path, broker, ["churn"], size=500)
    config = setup.config()
    proc, url = serve(tmp_path, config, "serve")
    stopper.append(proc)
    frame = _stream(np.random.default_rng(1), 2000, shift_at=1000)
    setup.produce("churn", frame, 0)
    wait_until("four windows", lambda: len(history(url, "churn")) == 4, 60, proc)
    drifted = {labels: value for (name, labels), value in metrics(url).items()
               if name == "driftline_feature_drifted"}
    assert {dict(k)["feature"]: v for k, v in drifted.items()} == {
        "income": 1.0, "age": 0.0, "region": 0.0, "is_member": 0.0}
    assert [h["drift_detected"] for h in history(url, "churn")] == [False, False, True, True]
    assert windows(url, "churn") == expected_windows("churn", frame, 500, config)
    m = metrics(url)
    assert m[("driftline_events_total", (("model", "churn"),))] == 2000
    assert m[("driftline_dataset_drift", (("model", "churn"),))] == 1.0


def test_a_real_prometheus_scraping_the_service_gets_the_drift_series(
        tmp_path: Path, broker: Broker, stopper: list[Process],
        prometheus_factory: Callable[..., Any]) -> None:
    setup = Setup(tmp_path, broker, ["fraud"], size=500)
    proc, url = serve(tmp_path, setup.config(), "serve")
    stopper.append(proc)
    prometheus = prometheus_factory([url.removeprefix("http://")], scrape_interval="1s")
    setup.produce("fraud", _stream(np.random.default_rng(2), 1500, shift_at=1000), 0)
    result = prometheus.wait_for('driftline_feature_drifted{model="fraud"} == 1',
                                 lambda r: len(r) >= 1, timeout=60)
    assert [r["metric"]["feature"] for r in result] == ["income"]
    assert result[0]["metric"]["test"] == "ks"
    share = prometheus.wait_for('driftline_dataset_drifted_share{model="fraud"}',
                                lambda r: bool(r) and float(r[0]["value"][1]) > 0, timeout=30)
    assert float(share[0]["value"][1]) == pytest.approx(0.25)
    events = prometheus.wait_for('driftline_events_total{model="fraud"}',
                                 lambda r: bool(r) and float(r[0]["value"][1]) == 1500, timeout=30)
    assert events[0]["metric"]["job"] == "driftline"


def test_kill_9_mid_stream_then_restart_gives_the_windows_of_a_run_without_the_crash(
        tmp_path: Path, broker: Broker, stopper: list[Process]) -> None:
    models = ["ads", "search"]
    setup = Setup(tmp_path, broker, models, size=300, checkpoint="2s")
    config = setup.config()
    rng = np.random.default_rng(3)
    frames = {m: _stream(rng, 3000, shift_at=1500) for m in models}
    for m in models:
        setup.produce(m, frames[m].iloc[:1500], 0)
    first, url = serve(tmp_path, config, "first")
    stopper.append(first)
    wait_until("the first half consumed",
               lambda: all(len(history(url, m)) == 5 for m in models), 60, first)
    consumed = time.monotonic()
    wait_until("a checkpoint after that",
               lambda: metrics(url).get(("driftline_checkpoint_age_seconds", ()), 1e9)
               < time.monotonic() - consumed - 0.2, 30, first)
    for m in models:
        setup.produce(m, frames[m].iloc[1500:], 1500)
    wait_until("some of the second half consumed",
               lambda: any(len(history(url, m)) > 5 for m in models), 60, first)
    first.kill9()

    second, url = serve(tmp_path, config, "second")
    stopper.append(second)
    wait_until("every window after the restart",
               lambda: all(len(history(url, m)) >= 10 for m in models), 90, second)
    # the same events in a group of their own, never crashed
    clean, clean_url = serve(tmp_path, setup.config("clean.yaml", group=f"{setup.group}-clean",
                                                    state=f"{setup.topics['state']}-clean"), "clean")
    stopper.append(clean)
    wait_until("every window of the clean run",
               lambda: all(len(history(clean_url, m)) >= 10 for m in models), 90, clean)
    for m in models:
        got = windows(url, m)
        assert [(s, e, r) for s, e, r, _ in got] == [(i * 300, (i + 1) * 300, 300) for i in range(10)]
        assert got == windows(clean_url, m)
        assert got == expected_windows(m, frames[m], 300, config)
    restored = second.stderr_path.read_text()
    assert "restored from its checkpoint" in restored


def test_two_replicas_split_the_partitions_and_a_stopped_one_hands_its_models_over(
        tmp_path: Path, broker: Broker, stopper: list[Process]) -> None:
    models = _models_on_distinct_partitions(4)
    setup = Setup(tmp_path, broker, models, size=200, checkpoint="2s")
    config = setup.config()
    rng = np.random.default_rng(4)
    frames = {m: _stream(rng, 1600) for m in models}
    a, url_a = serve(tmp_path, config, "replica-a")
    stopper.append(a)
    b, url_b = serve(tmp_path, config, "replica-b")
    stopper.append(b)

    def owned(url: str) -> set[str]:
        return {m["name"] for m in get_json(f"{url}/models")["models"] if m["owned"]}

    for m in models:
        setup.produce(m, frames[m].iloc[:800], 0)
    wait_until("both replicas own models",
               lambda: bool(owned(url_a)) and bool(owned(url_b))
               and owned(url_a) | owned(url_b) == set(models), 60, b)
    assert not owned(url_a) & owned(url_b)
    owned_by_b = owned(url_b)
    wait_until("the first half evaluated",
               lambda: sum(len(history(u, m)) for u in (url_a, url_b) for m in models) == 16, 60, b)
    b.terminate()  # SIGTERM: checkpoint, leave the group
    assert "stopped cleanly: state checkpointed" in b.stderr_path.read_text()
    for m in models:
        setup.produce(m, frames[m].iloc[800:], 800)
    wait_until("replica a owns every model and has every window",
               lambda: owned(url_a) == set(models)
               and all(len(history(url_a, m)) == 8 for m in models), 90, a)
    final = metrics(url_a)
    for m in models:
        got = windows(url_a, m)
        assert [(s, e, r) for s, e, r, _ in got] == [(i * 200, (i + 1) * 200, 200) for i in range(8)]
        assert got == expected_windows(m, frames[m], 200, config)
        assert final[("driftline_window_rows", (("model", m),))] == 0
    # b's models came to a from b's checkpoint, not by replaying from the start
    handed = [m for m in models if m in owned_by_b]
    log_a = a.stderr_path.read_text()
    assert handed and all(f"model {m} restored from its checkpoint" in log_a for m in handed)


def test_sigterm_with_the_broker_down_ends_within_the_grace_without_a_traceback_and_exits_2(
        tmp_path: Path, stopper: list[Process]) -> None:
    own = start_broker(tmp_path / "tansu")  # this test kills its broker
    try:
        models = _models_on_distinct_partitions(1)
        setup = Setup(tmp_path, own, models, size=200, checkpoint="1h")
        config = setup.config()
        config.write_text(config.read_text().replace(
            "service: {checkpoint_interval: 1h,", "service: {checkpoint_interval: 1h, shutdown_grace: 5s,"))
        proc, url = serve(tmp_path, config, "graced")
        stopper.append(proc)
        setup.produce(models[0], _stream(np.random.default_rng(5), 400), 0)
        wait_until("a window evaluated", lambda: len(history(url, models[0])) == 2, 60, proc)
    finally:
        own.kill()

    started = time.monotonic()
    code = proc.terminate(grace=30)
    took = time.monotonic() - started
    stderr = proc.stderr_path.read_text()
    assert code == 2, stderr
    assert took < 5 + 3, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("driftline: error: the last checkpoint "), stderr
    assert "a restart replays" in last
