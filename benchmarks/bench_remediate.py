"""How fast the loop acts, and how much the receiver takes (issue 12).

1. **Drift onset to Job.**  The whole loop on real parts (tests/remediate_loop.py: Tansu,
   ``driftline serve``, Prometheus with the generated rules, Alertmanager,
   ``driftline remediate``, the fake Kubernetes API).  July rows follow clean ones; the
   time from the first July event produced to the retraining Job on the API is split into:
   window fill and evaluation; scrape; rule evaluation plus ``for``; Alertmanager's
   ``group_wait``; the receiver.  Target: the overhead beyond the window and the configured
   ``for``, ``group_wait`` and scrape interval is at most 2 s.
2. **Receiver throughput.**  ``driftline remediate`` (a process, against the fake API)
   takes webhooks from 16 concurrent senders: re-sent groups (one acted alert and nine
   feature alerts, all deduplicated), then new episodes of the same model's alert (each
   held by the cooldown, each with a Kubernetes Event on the fake).  Alerts/s and p99
   latency per webhook.  Target: at least 500 alerts/s.  For scale, the same client's
   rate against the receiver's ``/healthz`` (no work at all) is printed too: the HTTP
   floor on this machine, client and server sharing its 2 cores.

Run: ``python benchmarks/bench_remediate.py [--seconds 10]``; writes
benchmarks/results/remediate-<date>.txt.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from benchmarks._report import lines, say, summary_table, terminated_cleanly  # noqa: E402
from tests.k8s_fake import FakeKube  # noqa: E402
from tests.remediate_loop import MODEL, TOKEN, Loop, get_json, july_rows, no_drift_rows, seed_cluster  # noqa: E402
from tests.servers import start_broker  # noqa: E402

WINDOW, CONSECUTIVE = 1000, 3
SCRAPE_S, FOR_S, GROUP_WAIT_S = 1.0, 1.0, 1.0


def _epoch(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def loop_latency(tmp: Path) -> dict[str, float]:
    with start_broker(tmp / "tansu") as broker, FakeKube() as kube:
        seed_cluster(kube)
        loop = Loop(tmp, broker, kube, window=WINDOW, consecutive=CONSECUTIVE, for_="1s",
                    group_wait="1s", repeat_interval="1h", interval="1s")
        try:
            loop.start()
            assert loop.prometheus is not None
            loop.send(no_drift_rows(2000), labels=False)
            _wait(lambda: len(get_json(f"{loop.serve_url}/models/{MODEL}/history")) >= 2, 60)
            time.sleep(3)  # a few clean scrapes first
            onset = loop.send(july_rows(CONSECUTIVE * WINDOW), labels=False)
            job_seen = _wait(lambda: bool(loop.jobs()), 120, every=0.01)
            history = get_json(f"{loop.serve_url}/models/{MODEL}/history")
            streak = 0
            evaluated = 0.0
            for report in history:
                streak = streak + 1 if report["drift_detected"] else 0
                if streak == CONSECUTIVE:
                    evaluated = _epoch(report["evaluated_at"])
                    break
            samples = loop.prometheus.query(f'driftline_dataset_drift_streak{{model="{MODEL}"}}[10m]')
            scraped = min(float(ts) for ts, value in samples[0]["values"] if float(value) >= CONSECUTIVE)
            alerts = loop.prometheus.query(
                f'ALERTS{{alertname="DriftlineDatasetDrift",alertstate="firing",model="{MODEL}"}}[10m]')
            fired = min(float(ts) for ts, _ in alerts[0]["values"])
            acted = [a for a in loop.actions() if a["action"] == "retrain" and a["outcome"] == "acted"]
            received = _epoch(acted[0]["at"])
        finally:
            loop.stop()
    return {"window fill and evaluation": evaluated - onset, "scrape": scraped - evaluated,
            "rule evaluation + for": fired - scraped, "alertmanager group_wait": received - fired,
            "receiver (decide, claim, create)": job_seen - received, "total": job_seen - onset}


def _wait(check: Any, timeout: float, every: float = 0.2) -> float:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout} s")
        time.sleep(every)
    return time.time()


def _alert(name: str, starts: str, fingerprint: str, **labels: str) -> dict[str, Any]:
    labels = {"alertname": name, "model": MODEL, "severity": "warning", **labels}
    return {"status": "firing", "labels": labels,
            "annotations": {}, "startsAt": starts, "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "", "fingerprint": fingerprint}


def _payload(alerts: list[dict[str, Any]]) -> bytes:
    return json.dumps({"version": "4", "groupKey": "g", "status": "firing", "receiver": "r",
                       "alerts": alerts}).encode()


async def _blast(url: str, bodies: list[bytes], senders: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    async def sender(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            t = time.perf_counter()
            answer = await client.post(url, content=body, headers=headers)
            latencies.append(time.perf_counter() - t)
            if answer.status_code != 200:
                raise SystemExit(f"HTTP {answer.status_code}: {answer.text[:200]}")

    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=senders)) as client:
        started = time.perf_counter()
        await asyncio.gather(*(sender(client) for _ in range(senders)))
        return time.perf_counter() - started, latencies


def receiver_throughput(tmp: Path, seconds: float) -> list[tuple[str, float, float, float]]:
    results = []
    with start_broker(tmp / "tansu") as broker, FakeKube() as kube:
        seed_cluster(kube)
        loop = Loop(tmp, broker, kube)
        try:
            loop.start_remediate()
            url = f"{loop.remediate_url}/alerts"
            group = [_alert("DriftlineDatasetDrift", "2026-12-07T00:00:00Z", "f000000000000000")] + [
                _alert("DriftlineFeatureDrift", "2026-12-07T00:00:00Z", f"f{i:015x}", feature=f"x{i}")
                for i in range(1, 10)]
            asyncio.run(_blast(url, [_payload(group)], 1))  # acts once: the Job
            assert len(loop.jobs()) == 1
            for label, make in (
                    ("re-sent group of 10 (dedupe from memory)", lambda i: _payload(group)),
                    ("new episode of 1 (cooldown; an Event each)", lambda i: _payload([_alert(
                        "DriftlineDatasetDrift", f"2026-12-07T01:{i // 60 % 60:02d}:{i % 60:02d}.{i:06d}Z",
                        "f000000000000000")]))):
                per = 10 if label.startswith("re-sent") else 1
                # size the run to about `seconds` from a short probe
                probe_s, _ = asyncio.run(_blast(url, [make(i) for i in range(200)], 16))
                n = max(200, int(200 * seconds / max(probe_s, 1e-3)))
                elapsed, latencies = asyncio.run(_blast(url, [make(i + 200) for i in range(n)], 16))
                latencies.sort()
                p99 = latencies[int(0.99 * (len(latencies) - 1))]
                results.append((label, n * per / elapsed, statistics.median(latencies) * 1000, p99 * 1000))
            assert len(loop.jobs()) == 1, "a re-send or a new episode in the cooldown created a Job"
            health = f"{loop.remediate_url}/healthz"

            async def floor(n: int) -> tuple[float, list[float]]:
                latencies: list[float] = []
                async with httpx.AsyncClient(timeout=30) as client:
                    async def one() -> None:
                        for _ in range(n // 16):
                            t = time.perf_counter()
                            await client.get(health)
                            latencies.append(time.perf_counter() - t)
                    started = time.perf_counter()
                    await asyncio.gather(*(one() for _ in range(16)))
                    return time.perf_counter() - started, latencies

            elapsed, latencies = asyncio.run(floor(3200))
            latencies.sort()
            p99 = latencies[int(0.99 * (len(latencies) - 1))]
            results.append(("GET /healthz, for scale (requests/s)", len(latencies) / elapsed,
                            statistics.median(latencies) * 1000, p99 * 1000))
        finally:
            loop.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each throughput run")
    args = parser.parse_args()
    with terminated_cleanly(), tempfile.TemporaryDirectory(prefix="bench-remediate-") as tmp:
        say(f"# bench_remediate {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; window {WINDOW} rows, "
            f"{CONSECUTIVE} windows in a row, scrape and evaluation {SCRAPE_S:g} s, for {FOR_S:g} s, "
            f"group_wait {GROUP_WAIT_S:g} s")
        parts = loop_latency(Path(tmp) / "loop")
        configured = SCRAPE_S + FOR_S + GROUP_WAIT_S
        after_window = parts["total"] - parts["window fill and evaluation"]
        overhead = after_window - configured
        say("== drift onset to Job ==")
        for name, seconds in parts.items():
            say(f"  {name:36s} {seconds:7.2f} s")
        say(f"  after the window: {after_window:.2f} s; configured scrape + for + group_wait "
            f"{configured:.2f} s; "
            f"overhead {overhead:.2f} s (target <= 2 s; the 1 s rule evaluation interval is in it)")
        rows = receiver_throughput(Path(tmp) / "throughput", args.seconds)
        say("== receiver ==")
        floor = next(rate for label, rate, _, _ in rows if "healthz" in label)
        for label, rate, p50, p99 in rows:
            if "healthz" in label:
                say(f"  {label:44s} {rate:8.0f} req/s     p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  "
                    "(the HTTP floor: no work at all)")
                continue
            say(f"  {label:44s} {rate:8.0f} alerts/s  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  "
                f"({rate / 500:.1f}x the 500 alerts/s target; {rate / floor:.2f}x the HTTP floor)")
        summary_table(["measure", "figure", "target", "met"], [
            ["overhead beyond window, scrape, for, group_wait", f"{overhead:.2f} s", "<= 2 s",
             "yes" if overhead <= 2 else "NO"],
            *[[f"receiver: {label}", f"{rate:.0f} alerts/s, p99 {p99:.1f} ms", ">= 500 alerts/s",
               "yes" if rate >= 500 else "NO"] for label, rate, _, p99 in rows if "healthz" not in label]])
    out = ROOT / "benchmarks" / "results" / f"remediate-{dt.date.today():%Y-%m-%d}.txt"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
