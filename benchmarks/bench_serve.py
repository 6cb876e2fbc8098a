"""``driftline serve`` against the four targets of issue 3, each next to its baseline.

One run, side by side (select phases with ``--phase 1,2,3,4``):

1. in-process throughput on ONE core: pre-encoded batch messages (100 events x
   20 features: 16 numerical, 4 categorical) through ``StreamEngine.process``
   (decode, window, evaluate each closed 1000-row tumbling count window) for
   one model, in a child pinned to one CPU with ``DRIFTLINE_THREADS=1``.
   Target >= 200k feature-rows/s (events x 20 / s).  Baseline: decoding the
   same messages alone (``codec.decode_predictions``); printed split: decode,
   windowing, evaluation;
2. through a real broker (Tansu): M messages produced to the predictions topic
   before anyone consumes, then a bare kafka-python consumer reads them all,
   then ``python -m monitor.cli.main serve`` reads them in another group.
   Target: serve's events/s >= 50% of the bare consumer's;
3. RSS of 10 models in a child fed pre-encoded messages round-robin through
   ``StreamEngine.process``, after 1M and after 10M events.  Target: growth
   <= 10%.  Baseline: the RSS after 1M events;
4. drift latency: serve idle and caught up, a window of shifted events
   produced; time from the producer's flush of the last message to
   ``driftline_feature_drifted{feature=...} == 1`` on /metrics, 5 times.
   Target <= 1 s.  Baseline: when a bare consumer already polling the same
   partition receives that last message.

Every wait has a deadline; every process started here is stopped on exit.
Output goes to the terminal and to benchmarks/results/serve-<date>.txt/.json.

Usage: python benchmarks/bench_serve.py [--phase 1,2,3,4] [--events-large 10000000] ...
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._metrics import scrape  # noqa: E402  (after the path is set)
from benchmarks._report import lines, say, summary_table, terminated_cleanly  # noqa: E402

N_NUM, N_CAT = 16, 4
NUM = [f"num{i:02d}" for i in range(N_NUM)]
CAT = [f"cat{j}" for j in range(N_CAT)]
CARDINALITY = [3, 10, 30, 100]
FEATURES = N_NUM + N_CAT
BATCH = 100  # events per message
WINDOW = 1000
SHIFTED = "num00"  # the feature phase 4 shifts
TS0 = 1_700_000_000_000
POOL = 200  # distinct pre-encoded messages reused by phases 1 and 3
TARGET_ROWS_S = 200_000
TARGET_SERVE_SHARE = 0.5
TARGET_RSS_GROWTH = 0.10
TARGET_LATENCY_S = 1.0



# ---- the workload (shared by parent and children; numpy imported lazily so a child pins first)


def inputs(n: int, rng: Any, shift: bool = False) -> list[dict[str, Any]]:
    """``n`` events' inputs: 16 numerical columns of four shapes, 4 categorical ones."""
    import numpy as np

    from benchmarks._data import numeric_shape

    cols: dict[str, list[Any]] = {}
    for i, name in enumerate(NUM):
        x = numeric_shape(rng, i, n)
        if shift and name == SHIFTED:
            x = x + 1.0  # one reference standard deviation
        cols[name] = np.round(x, 4).tolist()
    for j, name in enumerate(CAT):
        labels = np.array([f"c{j}_{v}" for v in range(CARDINALITY[j])])
        cols[name] = labels[rng.integers(0, CARDINALITY[j], n)].tolist()
    names = list(cols)
    return [dict(zip(names, row, strict=True)) for row in zip(*cols.values(), strict=True)]


def message(model: str, rng: Any, start: int, *, shift: bool = False, encoding: str = "json") -> bytes:
    from monitor.wire.decode import JSON, MSGPACK, encode_predictions

    events = [{"request_id": f"r{start + i}", "ts": TS0 + start + i, "inputs": row}
              for i, row in enumerate(inputs(BATCH, rng, shift))]
    return encode_predictions(model, events, encoding=MSGPACK if encoding == "msgpack" else JSON)


def headers(encoding: str) -> tuple[tuple[str, bytes], ...]:
    from monitor.wire.decode import CONTENT_TYPE_HEADER, MSGPACK

    return ((CONTENT_TYPE_HEADER, MSGPACK.encode()),) if encoding == "msgpack" else ()


def write_workdir(workdir: Path, models: Sequence[str], reference_rows: int, *,
                  kafka: dict[str, Any] | None = None, name: str = "driftline.yaml") -> Path:
    """A reference (Parquet, seeded) and a config: count windows of 1000, no prediction or
    target (so the label join holds nothing), every model on the same reference."""
    import numpy as np
    import pandas as pd

    workdir.mkdir(parents=True, exist_ok=True)
    reference = workdir / "reference.parquet"
    if not reference.exists():
        pd.DataFrame(inputs(reference_rows, np.random.default_rng(1))).to_parquet(reference)
    lines = []
    if kafka is not None:
        lines.append(f"kafka: {json.dumps(kafka)}")
    lines += [f"defaults: {{window: {{size: {WINDOW}}}}}", "models:"]
    for model in models:
        lines += [f"  - name: {model}", "    reference: reference.parquet", "    features:"]
        lines += [f"      {f}: {{type: numerical}}" for f in NUM]
        lines += [f"      {f}: {{type: categorical}}" for f in CAT]
    path = workdir / name
    path.write_text("\n".join(lines) + "\n")
    return path


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# ---- children (run as `bench_serve.py --child ...`)


def _engine(config: Path, models: Sequence[str], on_report: Callable[[Any], None] | None = None
            ) -> Any:
    from monitor.config import load_config
    from monitor.streaming.engine import StreamEngine, Topics
    from monitor.streaming.setups import model_setup

    cfg = load_config(str(config))
    setups = {m: model_setup(cfg, m, created_at="") for m in models}
    engine = StreamEngine(setups, Topics("p", "l"), max_bytes=cfg.service.max_message_bytes,
                          on_report=on_report)
    engine.assign([("p", 0)], {})
    return engine


def child_throughput(args: argparse.Namespace) -> dict[str, Any]:
    """Phase 1, in a child pinned to one CPU (DRIFTLINE_THREADS=1 set by the parent)."""
    os.sched_setaffinity(0, {args.cpu})
    import numpy as np

    from monitor.runtime import tune_allocator
    from monitor.wire.decode import decode_predictions, encoding
    from monitor.wire.records import Record

    tune_allocator()  # as `driftline serve` does
    rng = np.random.default_rng(2)
    pool = [message("m0", rng, i * BATCH, encoding=args.encoding) for i in range(POOL)]
    hdr = headers(args.encoding)
    records = [Record("p", 0, o, b"m0", pool[o % POOL], hdr) for o in range(args.messages)]
    kind = encoding(hdr)

    def decode_all() -> None:
        for r in records:
            assert r.value is not None
            decode_predictions(r.value, encoding=kind)

    decode_s = []
    for _ in range(4):
        t0 = time.perf_counter()
        decode_all()
        decode_s.append(time.perf_counter() - t0)
    runs = []
    for i in range(args.repeat + 1):  # the first run warms up (first window, caches)
        evals: list[float] = []
        engine = _engine(Path(args.config), ["m0"], lambda r, e=evals: e.append(r.duration_s))
        t0 = time.perf_counter()
        dead = engine.process(records if i else records[:30])
        total = time.perf_counter() - t0
        assert not dead, dead[:1]
        if i:
            runs.append({"total_s": total, "evaluation_s": sum(evals), "windows": len(evals)})
    best = min(runs, key=lambda r: r["total_s"])
    return {"messages": args.messages, "events": args.messages * BATCH, "encoding": args.encoding,
            "message_bytes": sum(len(m) for m in pool) / len(pool), "cpu": args.cpu,
            "decode_s": min(decode_s[1:]), "runs": runs, **best}


def child_rss(args: argparse.Namespace) -> dict[str, Any]:
    """Phase 3: 10 models fed round-robin until ``events_large`` (or the deadline)."""
    import numpy as np

    from monitor.runtime import tune_allocator
    from monitor.wire.records import Record

    tune_allocator()  # as `driftline serve` does
    deadline = time.monotonic() + args.deadline_s
    models = [f"m{i}" for i in range(args.models)]
    rng = np.random.default_rng(3)
    pool = [message(models[i % len(models)], rng, i * BATCH) for i in range(POOL)]
    keys = [m.encode() for m in models]
    rss_start = rss_bytes()
    engine = _engine(Path(args.config), models)
    rss_setup = rss_bytes()
    chunk = 500  # records per engine.process call, like one poll
    samples: list[tuple[int, int, float]] = []
    events = offset = 0
    t0 = time.perf_counter()
    step = 1_000_000
    next_sample = min(step, args.events_small)
    stopped_early = False
    while events < args.events_large:
        batch = [Record("p", 0, o, keys[o % len(keys)], pool[o % POOL])
                 for o in range(offset, offset + chunk)]
        engine.process(batch)
        offset += chunk
        events += chunk * BATCH
        if events >= next_sample:
            samples.append((events, rss_bytes(), time.perf_counter() - t0))
            next_sample += step
        if time.monotonic() > deadline:
            stopped_early = True
            break
    if not samples or samples[-1][0] != events:
        samples.append((events, rss_bytes(), time.perf_counter() - t0))
    windows = sum(len(m.history) for m in engine.monitors.values())
    joined = sum(len(m.join) for m in engine.monitors.values())
    return {"models": len(models), "events": events, "seconds": time.perf_counter() - t0,
            "rss_start": rss_start, "rss_setup": rss_setup, "samples": samples,
            "stopped_early": stopped_early, "history_kept": windows, "join_buffer": joined,
            "threads": os.environ.get("DRIFTLINE_THREADS", "default")}


def run_child(kind: str, extra: list[str], timeout: float, env: dict[str, str] | None = None
              ) -> dict[str, Any]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", kind, *extra]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, **(env or {})})
    if out.returncode != 0:
        raise RuntimeError(f"child {kind} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# ---- phase 1


def phase1(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    say("== 1. in-process throughput, one core ==")
    config = write_workdir(tmp / "p1", ["m0"], args.reference_rows)
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    say(f"{args.messages} messages x {BATCH} events x {FEATURES} features ({N_NUM} numerical, {N_CAT} "
        f"categorical), count windows of {WINDOW} (tumbling), reference {args.reference_rows} rows; "
        f"child pinned to CPU {cpu}, DRIFTLINE_THREADS=1, best of {args.repeat}")
    out: dict[str, Any] = {}
    for enc in args.encodings.split(","):
        r = run_child("throughput", ["--config", str(config), "--messages", str(args.messages),
                                     "--cpu", str(cpu), "--encoding", enc, "--repeat", str(args.repeat)],
                      timeout=900, env={"DRIFTLINE_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
        events = r["events"]
        windowing = r["total_s"] - r["decode_s"] - r["evaluation_s"]
        r["rows_per_s"] = events * FEATURES / r["total_s"]
        r["decode_rows_per_s"] = events * FEATURES / r["decode_s"]
        r["windowing_s"] = windowing
        out[enc] = r
        total = r["total_s"]
        say(f"[{enc}, {r['message_bytes'] / 1024:.1f} KiB/message] StreamEngine.process: "
            f"{total:.2f} s for {events} events -> {r['rows_per_s'] / 1e3:,.0f}k feature-rows/s "
            f"({events / total:,.0f} events/s) = {r['rows_per_s'] / TARGET_ROWS_S:.2f}x the target "
            f"(>= {TARGET_ROWS_S / 1e3:.0f}k)")
        say(f"    split: decode {r['decode_s']:.2f} s ({r['decode_s'] / total:.0%}), windowing "
            f"{windowing:.2f} s ({windowing / total:.0%}), evaluation {r['evaluation_s']:.2f} s "
            f"({r['evaluation_s'] / total:.0%}; {r['windows']} windows, "
            f"{r['evaluation_s'] / max(1, r['windows']) * 1e3:.1f} ms each); windowing = total - decode - "
            "evaluation: routing, rows to columns, pane updates, closing the window's profile")
        say(f"    baseline, decode only: {r['decode_rows_per_s'] / 1e3:,.0f}k feature-rows/s; the engine "
            f"runs at {r['rows_per_s'] / r['decode_rows_per_s']:.0%} of it "
            f"(runs: {', '.join(format(x['total_s'], '.2f') for x in r['runs'])} s)")
    say()
    return out


# ---- a broker, a serve process, /metrics


def metric(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float | None:
    found = [v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in labels.items())]
    return sum(found) if found else None


class Env:
    """The broker (started once, on first use) and every process started, stopped on exit."""

    def __init__(self, stack: contextlib.ExitStack, tmp: Path) -> None:
        self.stack = stack
        self.tmp = tmp
        self._broker: Any = None

    @property
    def broker(self) -> Any:
        if self._broker is None:
            from tests.servers import start_broker

            t0 = time.monotonic()
            self._broker = self.stack.enter_context(start_broker(self.tmp / "broker"))
            say(f"Tansu broker on {self._broker.bootstrap} (started in {time.monotonic() - t0:.1f} s)")
        return self._broker

    def topics(self, partitions: int = 4) -> dict[str, str]:
        tag = uuid.uuid4().hex[:8]
        topics = {"predictions": f"p-{tag}", "labels": f"l-{tag}", "dlq": f"d-{tag}", "state": f"s-{tag}"}
        self.broker.create_topics(list(topics.values()), partitions=partitions)
        return topics

    def serve(self, config: Path, name: str, timeout: float = 120.0) -> tuple[Any, str]:
        from tests.servers import Process, free_port

        port = free_port()
        proc = Process([sys.executable, "-m", "monitor.cli.main", "serve", "--config", str(config),
                        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                       self.tmp / "logs", name=name, cwd=ROOT)
        self.stack.callback(proc.terminate)  # terminating twice is harmless
        url = f"http://127.0.0.1:{port}"
        proc.wait_http(f"{url}/readyz", timeout=timeout)
        return proc, url


def models_on_distinct_partitions(count: int, partitions: int = 4) -> list[str]:
    from kafka.partitioner.default import murmur2

    names: dict[int, str] = {}
    i = 0
    while len(names) < count:
        name = f"model-{i}"
        names.setdefault((murmur2(name.encode()) & 0x7FFFFFFF) % partitions, name)
        i += 1
    return [names[p] for p in sorted(names)]


def producer(bootstrap: str, **kwargs: Any) -> Any:
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=bootstrap, max_request_size=8 << 20, **kwargs)


# ---- phase 2


def phase2(args: argparse.Namespace, env: Env, rate_hint: float | None) -> dict[str, Any]:
    import numpy as np
    from kafka import KafkaConsumer
    from kafka.record import util as record_util

    say("== 2. through the broker: serve vs a bare kafka-python consumer ==")
    crc = "C (crc32c package)" if record_util.crc32c_c is not None else "pure Python (slow!)"
    broker = env.broker
    topics = env.topics()
    models = models_on_distinct_partitions(4)
    m = args.broker_messages
    total = m * BATCH
    rng = np.random.default_rng(4)
    t0 = time.monotonic()
    values = [message(models[i % 4], rng, (i // 4) * BATCH) for i in range(m)]
    say(f"{m} messages x {BATCH} events x {FEATURES} features over models {', '.join(models)} "
        f"(one per partition of 4), {sum(map(len, values)) / 2**20:.0f} MiB of JSON "
        f"(encoded in {time.monotonic() - t0:.1f} s); kafka-python CRC32C: {crc}")
    prod = producer(broker.bootstrap, linger_ms=20, batch_size=512 * 1024)
    try:
        t0 = time.monotonic()
        for i, value in enumerate(values):
            prod.send(topics["predictions"], key=models[i % 4].encode(), value=value)
        prod.flush(120)
        produce_s = time.monotonic() - t0
    finally:
        prod.close(5)
    del values
    say(f"produced before consuming, in {produce_s:.1f} s")
    deadline_s = args.consume_timeout

    # (a) bare kafka-python, same fetch size as serve's consumer
    consumer = KafkaConsumer(
        topics["predictions"], bootstrap_servers=broker.bootstrap, group_id=f"bare-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest", enable_auto_commit=False, session_timeout_ms=6000,
        max_poll_interval_ms=6000, heartbeat_interval_ms=1000, max_partition_fetch_bytes=8 << 20)
    seen = first_batch = 0
    t_first = t_last = None
    try:
        t_sub = time.monotonic()
        while seen < m and time.monotonic() - t_sub < deadline_s:
            got = sum(len(rs) for rs in consumer.poll(timeout_ms=200, max_records=2000).values())
            if got and t_first is None:
                t_first, first_batch = time.monotonic(), got
            seen += got
            if seen >= m:
                t_last = time.monotonic()
    finally:
        consumer.close(autocommit=False)
    if t_first is None or t_last is None:
        raise RuntimeError(f"bare consumer read {seen} of {m} messages in {deadline_s} s")
    bare_s = t_last - t_first
    bare = {"seconds": bare_s, "events_per_s": total / bare_s, "join_s": t_first - t_sub,
            "first_batch_events": first_batch * BATCH,
            "events_per_s_excl_first": (total - first_batch * BATCH) / bare_s}
    say(f"(a) bare KafkaConsumer: {m} messages in {bare_s:.2f} s from first record to last -> "
        f"{bare['events_per_s']:,.0f} events/s (group join {bare['join_s']:.1f} s)")

    # (b) driftline serve, another group, same topics
    kafka_cfg = {"bootstrap_servers": broker.bootstrap, "group_id": f"serve-{uuid.uuid4().hex[:6]}",
                 "topics": topics}
    config = write_workdir(env.tmp / "p2", models, args.reference_rows, kafka=kafka_cfg)
    if rate_hint:
        deadline_s = min(600.0, max(deadline_s, 3 * total / rate_hint + 30))
    t_start = time.monotonic()
    proc, url = env.serve(config, "serve-throughput")
    ready_s = time.monotonic() - t_start
    t_first = t_last = None
    first_events = 0.0
    scrapes = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline_s:
        proc.check_alive("consuming")
        now_events = metric(scrape(url), "driftline_events_total") or 0.0
        now = time.monotonic()
        scrapes += 1
        if now_events > 0 and t_first is None:
            t_first, first_events = now, now_events
        if now_events >= total:
            t_last = now
            break
        time.sleep(max(0.0, args.scrape_interval - (time.monotonic() - now)))
    samples = scrape(url)
    invalid = metric(samples, "driftline_events_invalid_total") or 0.0
    windows = metric(samples, "driftline_evaluation_duration_seconds_count") or 0.0
    evaluation_s = metric(samples, "driftline_evaluation_duration_seconds_sum") or 0.0
    rc = proc.terminate(10)
    if t_first is None or t_last is None:
        raise RuntimeError(f"serve did not count {total} events in {deadline_s:.0f} s "
                           f"(saw {now_events:.0f})\n{proc.log_tail()}")
    serve_s = t_last - t_first
    serve = {"seconds": serve_s, "events_per_s": total / serve_s, "ready_s": ready_s,
             "first_scrape_events": first_events, "invalid": invalid, "windows": windows,
             "evaluation_s": evaluation_s, "scrape_interval_s": args.scrape_interval,
             "scrapes": scrapes, "exit_code": rc,
             "events_per_s_excl_first": (total - first_events) / serve_s}
    ratio = serve["events_per_s"] / bare["events_per_s"]
    say(f"(b) driftline serve: {total} events in {serve_s:.2f} s from the first scrape with events "
        f"to the one with all -> {serve['events_per_s']:,.0f} events/s "
        f"({serve['events_per_s'] * FEATURES / 1e3:,.0f}k feature-rows/s; {windows:.0f} windows, "
        f"{invalid:.0f} invalid; ready after {ready_s:.1f} s; "
        f"exit code {rc} on SIGTERM)")
    say(f"    serve's own evaluation time (driftline_evaluation_duration_seconds_sum): {evaluation_s:.2f} s "
        f"= {evaluation_s / serve_s:.0%} of that interval; /metrics scraped {scrapes} times, every "
        f"{args.scrape_interval * 1e3:.0f} ms")
    say(f"    serve / bare = {ratio:.0%} (target >= {TARGET_SERVE_SHARE:.0%}); excluding the events already "
        f"counted at the first observation: bare {bare['events_per_s_excl_first']:,.0f}, serve "
        f"{serve['events_per_s_excl_first']:,.0f} events/s, "
        f"{serve['events_per_s_excl_first'] / bare['events_per_s_excl_first']:.0%}")
    say()
    return {"messages": m, "events": total, "produce_s": produce_s, "bare": bare, "serve": serve,
            "ratio": ratio}


# ---- phase 3


def phase3(args: argparse.Namespace, tmp: Path, rate: float | None) -> dict[str, Any]:
    say(f"== 3. RSS of 10 models, {args.events_small / 1e6:g}M vs {args.events_large / 1e6:g}M events ==")
    config = write_workdir(tmp / "p3", [f"m{i}" for i in range(10)], args.reference_rows)
    budget = args.max_minutes * 60
    large = args.events_large
    capped = False
    if rate:
        estimate = large / rate
        say(f"estimate at phase 1's rate ({rate:,.0f} events/s on one core): {large:,} events in "
            f"{estimate / 60:.1f} min (budget {args.max_minutes:g} min)")
        if estimate > budget:
            large = max(2 * args.events_small, int(rate * budget) // 1_000_000 * 1_000_000)
            capped = True
            say(f"  -> over the budget: running {large:,} events instead of {args.events_large:,}")
    else:
        say("no rate from phase 1 in this run: no estimate; the child stops at the budget if it must")
    say(f"a pool of {POOL} pre-encoded messages reused round-robin over the models; the config has no "
        "prediction/target, so the label join holds nothing (no per-request state); the child runs as "
        "serve does: allocator tuned, default DRIFTLINE_THREADS, not pinned")
    r = run_child("rss", ["--config", str(config), "--events-small", str(args.events_small),
                          "--events-large", str(large), "--deadline-s", str(budget)],
                  timeout=budget + 300)
    samples = r["samples"]
    small = next((s for s in samples if s[0] >= args.events_small), samples[0])
    last = samples[-1]
    growth = last[1] / small[1] - 1
    mib = 2**20
    say(f"RSS: start {r['rss_start'] / mib:.0f} MiB, after setup (10 reference profiles) "
        f"{r['rss_setup'] / mib:.0f} MiB")
    say("events     RSS MiB   elapsed s")
    for events, rss, secs in samples:
        say(f"{events:>10,} {rss / mib:8.1f} {secs:9.0f}")
    say(f"after {small[0]:,}: {small[1] / mib:.1f} MiB; after {last[0]:,}: {last[1] / mib:.1f} MiB -> "
        f"growth {growth:+.1%} (target <= {TARGET_RSS_GROWTH:.0%}); {r['events'] / r['seconds']:,.0f} "
        f"events/s; join buffer {r['join_buffer']} entries, {r['history_kept']} reports kept"
        + ("; STOPPED AT THE BUDGET" if r["stopped_early"] else ""))
    say()
    return {**r, "capped": capped, "events_requested": args.events_large, "growth": growth,
            "rss_small": small[1], "rss_large": last[1], "events_at_small": small[0]}


# ---- phase 4


class Watcher(threading.Thread):
    """A bare consumer polling one partition: when did each offset arrive?"""

    def __init__(self, bootstrap: str, topic: str, partition: int) -> None:
        from kafka import KafkaConsumer, TopicPartition

        super().__init__(daemon=True, name="bench-watcher")
        self.arrived: dict[int, float] = {}
        self.stop = threading.Event()
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                       enable_auto_commit=False, max_partition_fetch_bytes=8 << 20)
        tp = TopicPartition(topic, partition)
        self._consumer.assign([tp])
        self._consumer.seek_to_beginning(tp)

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                for records in self._consumer.poll(timeout_ms=100).values():
                    now = time.monotonic()
                    for r in records:
                        self.arrived[r.offset] = now
        finally:
            self._consumer.close(autocommit=False)


def phase4(args: argparse.Namespace, env: Env) -> dict[str, Any]:
    import numpy as np

    say(f"== 4. drift latency: flush of the last message to driftline_feature_drifted{{feature={SHIFTED}}}"
        " == 1 ==")
    broker = env.broker
    topics = env.topics()
    model = "latency"
    from kafka.partitioner.default import murmur2

    partition = (murmur2(model.encode()) & 0x7FFFFFFF) % 4
    kafka_cfg = {"bootstrap_servers": broker.bootstrap, "group_id": f"lat-{uuid.uuid4().hex[:6]}",
                 "topics": topics}
    config = write_workdir(env.tmp / "p4", [model], args.reference_rows, kafka=kafka_cfg)
    proc, url = env.serve(config, "serve-latency")
    watcher = Watcher(broker.bootstrap, topics["predictions"], partition)
    watcher.start()
    env.stack.callback(watcher.join, 5)
    env.stack.callback(watcher.stop.set)
    prod = producer(broker.bootstrap, linger_ms=0)
    env.stack.callback(prod.close, 5)
    rng = np.random.default_rng(5)
    state = {"events": 0, "offset": 0}

    Samples = list[tuple[str, dict[str, str], float]]

    def window(shift: bool) -> tuple[float, float, int]:
        """Produce one window; (monotonic and wall time when flush returned, offset of its last message)."""
        for _ in range(WINDOW // BATCH):
            prod.send(topics["predictions"], key=model.encode(),
                      value=message(model, rng, state["events"], shift=shift))
            state["events"] += BATCH
            state["offset"] += 1
        prod.flush(30)
        return time.monotonic(), time.time(), state["offset"] - 1

    def wait(check: Callable[[Samples], bool], what: str, poll_s: float, timeout: float = 30.0
             ) -> tuple[float, Samples]:
        deadline = time.monotonic() + timeout
        while True:
            proc.check_alive(what)
            t = time.monotonic()
            samples = scrape(url)
            if check(samples):
                return t, samples
            if t > deadline:
                raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}\n{proc.log_tail()}")
            time.sleep(max(0.0, poll_s - (time.monotonic() - t)))

    def drifted(s: Samples) -> float | None:
        return metric(s, "driftline_feature_drifted", model=model, feature=SHIFTED)

    def counted(s: Samples) -> bool:
        return metric(s, "driftline_events_total", model=model) == state["events"] and \
            metric(s, "driftline_window_rows", model=model) == 0

    def calm(poll_s: float) -> int:
        """Unshifted windows until the feature reads 0 (a false alarm on it gets another window)."""
        for attempt in range(1, 4):
            window(False)
            _, samples = wait(counted, "an unshifted window evaluated", poll_s)
            if drifted(samples) == 0:
                return attempt
        raise RuntimeError(f"{SHIFTED} still drifted after 3 unshifted windows")

    def rounds(poll_s: float) -> dict[str, Any]:
        delays, evaluated, deliveries, extra = [], [], [], 0
        calm(poll_s)  # the first window evaluated (warm-up), or back to 0 after the last round
        for _ in range(args.latency_rounds):
            flushed, flushed_wall, last_offset = window(True)
            seen, samples = wait(lambda s: drifted(s) == 1, "the shifted window flagged", poll_s)
            delays.append(seen - flushed)
            at = metric(samples, "driftline_last_evaluation_timestamp_seconds", model=model)
            evaluated.append((at or math.nan) - flushed_wall)
            deadline = time.monotonic() + 10
            while last_offset not in watcher.arrived and time.monotonic() < deadline:
                time.sleep(0.005)
            deliveries.append(watcher.arrived.get(last_offset, math.nan) - flushed)
            extra += calm(poll_s) - 1
        return {"poll_s": poll_s, "delays_s": delays, "median_s": statistics.median(delays),
                "max_s": max(delays), "evaluated_s": evaluated,
                "evaluated_median_s": statistics.median(evaluated), "bare_delivery_s": deliveries,
                "bare_median_s": statistics.median(deliveries), "extra_calm_windows": extra}

    say(f"{args.latency_rounds} shifted windows of {WINDOW} events ({WINDOW // BATCH} messages, "
        f"{SHIFTED} + 1 sd) per /metrics poll interval, alternating with unshifted ones")
    runs = []
    for poll_s in args.latency_polls:
        r = rounds(poll_s)
        runs.append(r)
        say(f"/metrics polled every {poll_s * 1e3:.0f} ms: flush -> drifted == 1: {ms(r['delays_s'])} ms "
            f"-> median {r['median_s'] * 1e3:.0f} ms, max {r['max_s'] * 1e3:.0f} ms "
            f"(target <= {TARGET_LATENCY_S:g} s)")
        say(f"    flush -> serve's evaluated_at (last_evaluation_timestamp, wall clock): "
            f"{ms(r['evaluated_s'])} ms; baseline, a bare consumer already polling the partition "
            f"receives the last message: {ms(r['bare_delivery_s'])} ms "
            f"(median {r['bare_median_s'] * 1e3:.0f} ms)"
            + (f"; {r['extra_calm_windows']} extra unshifted window(s) after a false alarm on {SHIFTED}"
               if r["extra_calm_windows"] else ""))
    watcher.stop.set()
    rc = proc.terminate(10)
    say()
    return {**runs[0], "runs": runs, "exit_code": rc}


# ---- summary


def ms(seconds: Sequence[float]) -> str:
    return ", ".join(f"{s * 1e3:.0f}" for s in seconds)


def summary(results: dict[str, Any]) -> None:
    rows: list[tuple[str, str, str, str, str, str]] = []

    def yes(ok: bool) -> str:
        return "yes" if ok else "NO"

    for enc, r in results.get("throughput", {}).items():
        rows.append((f"1. engine, 1 core, {enc}", f">= {TARGET_ROWS_S / 1e3:.0f}k rows/s",
                     f"{r['rows_per_s'] / 1e3:,.0f}k rows/s",
                     f"decode only {r['decode_rows_per_s'] / 1e3:,.0f}k",
                     f"{r['rows_per_s'] / TARGET_ROWS_S:.2f}x target", yes(r["rows_per_s"] >= TARGET_ROWS_S)))
    if "broker" in results:
        r = results["broker"]
        rows.append(("2. serve vs bare, Tansu", f">= {TARGET_SERVE_SHARE:.0%} of bare",
                     f"{r['serve']['events_per_s']:,.0f} ev/s", f"bare {r['bare']['events_per_s']:,.0f} ev/s",
                     f"{r['ratio']:.0%}", yes(r["ratio"] >= TARGET_SERVE_SHARE)))
    if "rss" in results:
        r = results["rss"]
        mib = 2**20
        rows.append((f"3. RSS {r['events_at_small'] / 1e6:g}M -> {r['events'] / 1e6:g}M events",
                     f"<= +{TARGET_RSS_GROWTH:.0%}",
                     f"{r['rss_large'] / mib:.0f} MiB ({r['growth']:+.1%})",
                     f"{r['rss_small'] / mib:.0f} MiB at {r['events_at_small'] / 1e6:g}M",
                     f"{r['growth'] / TARGET_RSS_GROWTH:.2f}x allowance",
                     yes(r["growth"] <= TARGET_RSS_GROWTH)))
    if "latency" in results:
        r = results["latency"]
        rows.append(("4. drift latency, median / max", f"<= {TARGET_LATENCY_S:g} s",
                     f"{r['median_s'] * 1e3:.0f} / {r['max_s'] * 1e3:.0f} ms",
                     f"bare delivery {r['bare_median_s'] * 1e3:.0f} ms",
                     f"{r['max_s'] / TARGET_LATENCY_S:.2f}x target (max)",
                     yes(r["max_s"] <= TARGET_LATENCY_S)))
    head = ("measure", "target", "result", "baseline", "ratio", "met")
    summary_table(head, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase", default="1,2,3,4", help="phases to run, e.g. 1,3")
    parser.add_argument("--reference-rows", type=int, default=100_000,
                        help="rows of the reference every model is compared with")
    parser.add_argument("--messages", type=int, default=1000, help="phase 1: messages of 100 events")
    parser.add_argument("--repeat", type=int, default=3, help="phase 1: timed runs (best is kept)")
    parser.add_argument("--encodings", default="json,msgpack", help="phase 1: json and/or msgpack")
    parser.add_argument("--cpu", type=int, default=None, help="phase 1: CPU to pin (default: the last)")
    parser.add_argument("--broker-messages", type=int, default=3000, help="phase 2: messages produced")
    parser.add_argument("--scrape-interval", type=float, default=0.05,
                        help="phase 2: seconds between /metrics scrapes of serve")
    parser.add_argument("--consume-timeout", type=float, default=180.0, help="phase 2: seconds per consumer")
    parser.add_argument("--events-small", type=int, default=1_000_000, help="phase 3: first RSS reading")
    parser.add_argument("--events-large", type=int, default=10_000_000, help="phase 3: last RSS reading")
    parser.add_argument("--max-minutes", type=float, default=12.0,
                        help="phase 3: time budget; fewer events when the estimate is over it")
    parser.add_argument("--latency-rounds", type=int, default=5,
                        help="phase 4: shifted windows per poll interval")
    parser.add_argument("--latency-polls", default="0.01,0.1",
                        type=lambda v: [float(x) for x in v.split(",")],
                        help="phase 4: seconds between /metrics polls; the first is the headline")
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/")
    # children
    parser.add_argument("--child", choices=["throughput", "rss"], help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--encoding", default="json", help=argparse.SUPPRESS)
    parser.add_argument("--deadline-s", type=float, default=3600.0, help=argparse.SUPPRESS)
    parser.add_argument("--models", type=int, default=10, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "throughput":
        print(json.dumps(child_throughput(args)))
        return
    if args.child == "rss":
        print(json.dumps(child_rss(args)))
        return

    phases = {int(p) for p in args.phase.split(",") if p.strip()}
    import platform

    import kafka
    import msgspec
    import numpy

    say(f"driftline serve benchmark, {time.strftime('%Y-%m-%d %H:%M:%S')}; phases {sorted(phases)}; "
        f"{os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), Python {platform.python_version()}, "
        f"numpy {numpy.__version__}, msgspec {msgspec.__version__}, kafka-python {kafka.__version__}; "
        f"load average at start {os.getloadavg()[0]:.2f} (other work on the machine shows here)")
    say()
    results: dict[str, Any] = {"args": vars(args)}
    t_all = time.monotonic()
    try:
        with terminated_cleanly(), tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp_name, \
                contextlib.ExitStack() as stack:
            tmp = Path(tmp_name)
            env = Env(stack, tmp)
            rate: float | None = None
            if 1 in phases:
                results["throughput"] = phase1(args, tmp)
                first = next(iter(results["throughput"].values()))
                rate = first["events"] / first["total_s"]
            if 2 in phases:
                results["broker"] = phase2(args, env, rate)
            if 4 in phases:
                results["latency"] = phase4(args, env)
            stack.close()  # the broker is not needed by phase 3: stop it first
            if 3 in phases:
                if rate is None and args.events_large > 2_000_000:
                    say("(phase 3 without phase 1: calibrating the rate on 300 messages)")
                    r = run_child("throughput", ["--config", str(write_workdir(
                        tmp / "p1", ["m0"], args.reference_rows)), "--messages", "300",
                        "--cpu", str(max(os.sched_getaffinity(0))), "--repeat", "1"], timeout=300,
                        env={"DRIFTLINE_THREADS": "1"})
                    rate = r["events"] / r["total_s"]
                results["rss"] = phase3(args, tmp, rate)
    finally:
        if len(results) > 1:
            summary(results)
        say(f"total time {time.monotonic() - t_all:.0f} s")
        if not args.no_save:
            out = ROOT / "benchmarks" / "results"
            out.mkdir(exist_ok=True)
            tag = time.strftime("%Y-%m-%d") + ("" if phases == {1, 2, 3, 4}
                                               else "-p" + "".join(map(str, sorted(phases))))
            if args.reference_rows != parser.get_default("reference_rows"):
                tag += f"-ref{args.reference_rows}"
            (out / f"serve-{tag}.txt").write_text("\n".join(lines) + "\n")
            (out / f"serve-{tag}.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
