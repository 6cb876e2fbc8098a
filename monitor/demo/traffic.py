"""The production stream, replayed through the collector as HTTP requests.

Requests alternate between the two protocols the sample model server speaks
(KServe v1 ``:predict`` with named instances, and Open Inference Protocol v2
``/infer`` with one tensor per feature), carry an ``X-Request-Id``, and go to
the collector, which forwards them to the model and captures them into Kafka.
Labels follow ``label_lag`` rows later, posted to ``driftline serve``'s
``POST /labels`` with the request ids the collector gave each row
(``<request id>/<row>`` for a request of several rows).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from monitor.demo.client import Client, Unreachable
from monitor.demo.scenario import CATEGORICAL, FEATURES, MODEL, NUMERICAL, TARGET, Scenario
from monitor.errors import InputError

WORKERS = 4


def load_stream(sample: Path, scenario: Scenario) -> pd.DataFrame:
    """The rows to replay, in order, with a ``phase`` column (normal, drift)."""
    flights = sample / "flights"
    try:
        normal = pd.read_parquet(flights / "current_nodrift.parquet")
        july = pd.read_parquet(flights / "current.parquet")
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the sample flights in {flights}: {exc}") from None
    if len(normal) < scenario.normal_rows or len(july) < scenario.drift_rows:
        raise InputError(f"the sample flights hold {len(normal)} normal and {len(july)} July rows; "
                         f"the scenario needs {scenario.normal_rows} and {scenario.drift_rows}")
    july = july.iloc[:scenario.drift_rows].copy()
    if scenario.inject == "unit-bug":
        july["dep_delay"] = july["dep_delay"] / 60.0
    stream = pd.concat([normal.iloc[:scenario.normal_rows].assign(phase="normal"),
                        july.assign(phase="drift")], ignore_index=True)
    return stream[[*FEATURES, TARGET, "phase"]]


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: missing values as None, numbers as Python numbers."""
    return [{str(key): _plain(value) for key, value in row.items()} for row in frame.to_dict("records")]


def kserve_v1(rows: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    return f"/v1/models/{MODEL}:predict", {"instances": [{f: row[f] for f in FEATURES} for row in rows]}


def oip_v2(rows: list[dict[str, Any]], request_id: str) -> tuple[str, dict[str, Any]]:
    inputs = [{"name": f, "shape": [len(rows)], "datatype": "FP32", "data": [row[f] for row in rows]}
              for f in NUMERICAL]
    inputs += [{"name": f, "shape": [len(rows)], "datatype": "BYTES", "data": [row[f] for row in rows]}
               for f in CATEGORICAL]
    return f"/v2/models/{MODEL}/infer", {"id": request_id, "inputs": inputs}


def row_ids(request_id: str, n: int) -> list[str]:
    """The event ids the collector gives the rows of one request."""
    return [request_id] if n == 1 else [f"{request_id}/{i}" for i in range(n)]


@dataclass
class Counters:
    """What the replay did so far; read by the live view while it runs."""

    rows_total: int = 0
    requests: int = 0
    rows_sent: int = 0
    failed: int = 0
    last_error: str = ""
    by_protocol: dict[str, int] = field(default_factory=lambda: {"kserve-v1": 0, "oip-v2": 0})
    labels_sent: int = 0
    labels_unknown: int = 0  # cancelled or diverted flights: no arrival, no label
    phase: str = "starting"
    done: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class Replay:
    """Sends ``stream`` through the collector at the scenario's pace, in a thread."""

    def __init__(self, stream: pd.DataFrame, scenario: Scenario, collector_url: str, serve_url: str,
                 *, tag: str, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.rows = records(stream)
        self.scenario, self.collector_url, self.serve_url = scenario, collector_url, serve_url
        self.tag, self.clock, self.sleep = tag, clock, sleep
        self.counters = Counters(rows_total=len(self.rows))
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._labels_due: list[tuple[int, str, Any]] = []  # (row, id, target) in row order
        self._thread = threading.Thread(target=self._run, name="demo-replay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _chunks(self) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        step = self.scenario.rows_per_request
        for lo in range(0, len(self.rows), step):
            yield lo, self.rows[lo:lo + step]

    def _run(self) -> None:
        try:
            proxy, serve = Client(self.collector_url), Client(self.serve_url)
            with ThreadPoolExecutor(WORKERS, thread_name_prefix="demo-send") as pool:
                started = self.clock()
                pending: list[Any] = []
                for number, (lo, rows) in enumerate(self._chunks()):
                    if self.stop.is_set():
                        return
                    self._pace(started, lo)
                    with self.counters.lock:
                        self.counters.phase = self.scenario.phase(lo)
                    pending.append(pool.submit(self._send, proxy, number, lo, rows))
                    if len(pending) >= 2 * WORKERS:
                        pending.pop(0).result()
                    self._post_labels(serve, upto=lo - self.scenario.label_lag)
                for future in pending:
                    future.result()
                self._post_labels(serve, upto=len(self.rows))
            proxy.close()
            serve.close()
        except BaseException as exc:  # reported by the demo, which stops everything
            self.error = exc
        finally:
            with self.counters.lock:
                self.counters.done = True

    def _pace(self, started: float, row: int) -> None:
        rate = self.scenario.rows_per_second
        if rate <= 0:
            return
        wait = started + row / rate - self.clock()
        if wait > 0:
            self.stop.wait(wait)

    def _send(self, proxy: Client, number: int, lo: int, rows: list[dict[str, Any]]) -> None:
        request_id = f"{self.tag}-{number}"
        protocol = "kserve-v1" if number % 2 == 0 else "oip-v2"
        path, body = kserve_v1(rows) if protocol == "kserve-v1" else oip_v2(rows, request_id)
        try:
            answer = proxy.post(path, body, headers={"X-Request-Id": request_id})
            ok = answer.ok
            error = "" if ok else f"HTTP {answer.status}: {answer.text[:200]}"
        except Unreachable as exc:
            ok, error = False, str(exc)
        ids = row_ids(request_id, len(rows))
        with self.counters.lock:
            self.counters.requests += 1
            if ok:
                self.counters.rows_sent += len(rows)
                self.counters.by_protocol[protocol] += 1
                self._labels_due.extend((lo + i, ids[i], rows[i][TARGET]) for i in range(len(rows)))
            else:
                self.counters.failed += 1
                self.counters.last_error = error

    def _post_labels(self, serve: Client, upto: int) -> None:
        with self.counters.lock:
            due = [item for item in self._labels_due if item[0] < upto]
            if not due:
                return
            self._labels_due = [item for item in self._labels_due if item[0] >= upto]
        known = [(rid, int(target)) for _, rid, target in due if target is not None]
        now_ms = int(time.time() * 1000)
        for lo in range(0, len(known), 500):
            batch = [{"request_id": rid, "ts": now_ms, "target": target}
                     for rid, target in known[lo:lo + 500]]
            answer = serve.post("/labels", {"schema": 1, "model": MODEL, "labels": batch})
            if not answer.ok:
                raise InputError(f"POST /labels answered HTTP {answer.status}: {answer.text[:200]}")
        with self.counters.lock:
            self.counters.labels_sent += len(known)
            self.counters.labels_unknown += len(due) - len(known)
