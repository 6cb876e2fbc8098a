"""``driftline collect`` (the sidecar collector) against the targets of issue 4, next to its baselines.

One run, side by side (select phases with ``--phase 1,2,3``):

1. latency at a fixed rate (500 requests/s, 30 s each): a model server with about
   1 ms of service time answering a 1 KB KServe v1 JSON request, measured (a)
   directly, (b) through ``python -m monitor.cli.main collect`` shipping every
   capture to a real Tansu broker, (c) through nginx as a plain reverse proxy
   (keep-alive upstream, ``proxy_pass``).  Targets: collector-added p50
   <= 1 ms and p99 <= 5 ms (collector minus direct); collector-added p50
   <= 3x nginx-added p50;
2. closed-loop maximum throughput (``wrk -t 2 -c 32``, 20 s): direct, through
   the collector, through nginx.  Target: collector >= 90% of direct;
3. the collector's RSS during a broker outage: 500 requests/s through the
   collector, the broker SIGKILLed for ``--outage-s`` (300 s) and then started
   again on the same port; VmRSS every 5 s.  Targets: <= 100 MB, flat; drops
   and failures from its /metrics reported.

The load generator is ``wrk`` (Debian package ``wrk`` 4.1; install with
``apt-get install -y wrk nginx-light``).  Debian has no wrk2, so the fixed rate
comes from a Lua ``delay()`` hook that hands out send slots on an absolute
schedule (1/rate apart, read from ``clock_gettime`` through LuaJIT's FFI): the
rate is exact as long as a connection is free, and latencies come from wrk's own
microsecond histogram.  Like ``hey -q`` (the other candidate: 0.1 ms
resolution), this is not coordinated-omission corrected: a request that waits
for a busy connection is timed from when it is sent.

The model is a small aiohttp app inside this script (``--child model``):
``POST /v1/models/<name>:predict`` parses the body, sleeps ``--service-ms`` (1 ms)
on the event loop and answers ``{"predictions": [...]}``.  With ``--compute-ms 1``
it instead holds its one worker for 1 ms of CPU (a busy loop), the way a model's
inference does; the two models bound "about 1 ms of service time" from both
sides: the sleeping model leaves its CPU free and so can answer ~10,000
requests/s on 2 cores, which makes any proxy's per-request CPU the bottleneck
of phase 2, while the computing model is CPU-bound at ~1,000 requests/s like a
real one.  tests/model_server.py is not used: it has no sleep on the predict
route and FastAPI's per-request overhead would blur what the 1 ms service time is.

The workload (``--workload``): ``kserve-json`` (the default, above), or ``oip-binary``,
the Open Inference Protocol's binary tensor extension as Triton's clients send it
by default (issue 15): ``POST /v2/models/<name>/infer`` with a JSON header of
``Inference-Header-Content-Length`` bytes followed by one FP32 input tensor of
``--binary-shape`` (4x250: 1,000 values, 4,000 bytes) and
``"binary_data_output": true``, so the model answers in the same form (an FP32
output of one score per row, after its own JSON header).  Phases 1-3 run the
same way on either; the collector runs with ``--protocol oip_v2`` for it.

Optional: ``--profile`` samples the collector with py-spy (``pip install --target
DIR py-spy``; ``--py-spy DIR/bin/py-spy``) at the fixed rate and in closed loop and
prints where its CPU goes (by thread, by package, by function).

Every wait has a deadline; every process started here is stopped on exit.
Output goes to the terminal and to benchmarks/results/collect-<date>.txt/.json.

Usage: python benchmarks/bench_collect.py [--phase 1,2,3] [--outage-s 300] [--workload oip-binary] ...
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._metrics import scrape  # noqa: E402  (after the path is set)
from benchmarks._report import lines, say, summary_table, terminated_cleanly  # noqa: E402
from collectors.delivery.metrics import DROP_REASONS, UNPARSED_REASONS  # noqa: E402

MODEL = "bench"
RATE = 500
TARGET_ADDED_P50_S = 0.001
TARGET_ADDED_P99_S = 0.005
TARGET_VS_NGINX = 3.0
TARGET_THROUGHPUT_SHARE = 0.90
TARGET_RSS_BYTES = 100_000_000  # 100 MB
TARGET_RSS_FLAT_BYTES = 5 * 2**20  # growth once the bounded queue is full
MIB = 2**20



# ---- the workload


def payload(instances: int) -> bytes:
    """A KServe v1 request of ``instances`` rows x 17 features (15 numerical, 2 categorical), seeded;
    1,032 bytes with 4 instances."""
    rng = random.Random(7)
    rows = []
    for _ in range(instances):
        row: dict[str, Any] = {f"num{i}": round(rng.gauss(0, 10), 4) for i in range(15)}
        row["cat0"] = f"c0_{rng.randrange(10)}"
        row["cat1"] = f"c1_{rng.randrange(100)}"
        rows.append(row)
    return json.dumps({"instances": rows}, separators=(",", ":")).encode()


HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class Workload:
    """One request, sent unchanged by every wrk run: its body, URL path, headers, and what the collector
    is told it speaks."""

    name: str
    body: bytes
    path: str
    protocol: str
    described: str
    rows: int  # instances per request: the events one request should give
    headers: dict[str, str] = field(default_factory=dict)


def oip_binary_payload(rows: int, columns: int) -> bytes:
    """An OIP request in the binary tensor extension: a JSON header (its length goes in
    ``Inference-Header-Content-Length``), then ``rows`` x ``columns`` FP32 values, little-endian,
    row-major, seeded; the response is asked for in binary too."""
    rng = random.Random(7)
    values = [rng.gauss(0, 10) for _ in range(rows * columns)]
    tail = struct.pack(f"<{len(values)}f", *values)
    tensor = {"name": "INPUT0", "shape": [rows, columns], "datatype": "FP32",
              "parameters": {"binary_data_size": len(tail)}}
    header = json.dumps({"id": "bench", "inputs": [tensor], "parameters": {"binary_data_output": True}},
                        separators=(",", ":")).encode()
    return header + tail


def workload(args: argparse.Namespace) -> Workload:
    if args.workload == "oip-binary":
        rows, columns = args.binary_shape
        body = oip_binary_payload(rows, columns)
        header = len(body) - 4 * rows * columns
        return Workload(
            "oip-binary", body, f"/v2/models/{MODEL}/infer", "oip_v2",
            f"OIP v2 binary tensor extension, one FP32 input [{rows}, {columns}] ({rows * columns:,} values, "
            f"{4 * rows * columns:,} bytes) after a {header}-byte JSON header, binary_data_output "
            f"(the answer: FP32 [{rows}] after its own JSON header); {len(body):,} bytes",
            rows, {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(header)})
    body = payload(args.instances)
    return Workload("kserve-json", body, f"/v1/models/{MODEL}:predict", "kserve_v1",
                    f"KServe v1, {args.instances} instances x 17 features (15 numerical, 2 categorical), "
                    f"{len(body):,} bytes of JSON", args.instances, {"Content-Type": "application/json"})


def oip_binary_answer(header: bytes, tail: bytes) -> tuple[bytes, int]:
    """The model's work on a binary OIP request: each row's score (sum / 10), answered as a binary
    FP32 tensor; (body, its JSON header's length)."""
    doc = json.loads(header)
    tensor = doc["inputs"][0]
    rows, columns = tensor["shape"]
    values = struct.unpack(f"<{rows * columns}f", tail)
    scores = [sum(values[i * columns:(i + 1) * columns]) / 10 for i in range(rows)]
    raw = struct.pack(f"<{rows}f", *scores)
    output = {"name": "OUTPUT0", "datatype": "FP32", "shape": [rows],
              "parameters": {"binary_data_size": len(raw)}}
    out = json.dumps({"model_name": MODEL, "id": doc.get("id", ""), "outputs": [output]},
                     separators=(",", ":")).encode()
    return out + raw, len(out)


def child_model(args: argparse.Namespace) -> None:
    """The model server: parse the request, compute ``compute_ms`` (the CPU held, like a model's
    inference in its one worker), sleep ``service_ms`` on the loop (waiting, like a call to an
    accelerator or another service), answer."""
    import asyncio

    from aiohttp import web

    service_s = args.service_ms / 1000
    compute_s = args.compute_ms / 1000

    async def work() -> None:
        if compute_s > 0:
            until = time.perf_counter() + compute_s
            while time.perf_counter() < until:
                pass
        if service_s > 0:
            await asyncio.sleep(service_s)

    async def predict(request: web.Request) -> web.Response:
        doc = json.loads(await request.read())
        await work()
        scores = [round(sum(v for v in row.values() if isinstance(v, float)) / 10, 6)
                  for row in doc["instances"]]
        return web.Response(body=json.dumps({"predictions": scores}).encode(),
                            content_type="application/json")

    async def infer(request: web.Request) -> web.Response:
        """OIP v2 in the binary tensor extension (the oip-binary workload)."""
        body = await request.read()
        length = int(request.headers[HEADER_LENGTH])
        answer, answer_length = oip_binary_answer(body[:length], body[length:])
        await work()
        return web.Response(body=answer, content_type="application/octet-stream",
                            headers={HEADER_LENGTH: str(answer_length)})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/v1/models/{name}", predict)  # {name} takes "<model>:predict"
    app.router.add_post("/v2/models/{name}/infer", infer)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


def model_work(args: argparse.Namespace) -> str:
    parts = ([f"{args.compute_ms:g} ms of CPU (busy loop)"] if args.compute_ms > 0 else []) + \
            ([f"{args.service_ms:g} ms asyncio.sleep"] if args.service_ms > 0 else [])
    return " + ".join(parts) or "no work"


# ---- wrk


_LUA = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

wrk.method = "POST"
wrk.body = "%(body)s"
%(headers)s

local rate = %(rate)s  -- requests/s per wrk thread; 0: closed loop
if rate > 0 then
  local interval = 1000 / rate
  local next_at = nil
  -- each request claims the next slot of an absolute schedule; behind by more than
  -- a second (a stall), the schedule restarts from now instead of bursting
  function delay()
    local t = now_ms()
    if next_at == nil or next_at < t - 1000 then next_at = t end
    local d = next_at - t
    next_at = next_at + interval
    if d < 0 then d = 0 end
    return d
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local p = {}
  for _, q in ipairs({50, 90, 99, 99.9}) do
    p[#p + 1] = string.format('"%%s": %%.0f', tostring(q), latency:percentile(q))
  end
  io.write(string.format(
    'BENCHJSON {"requests": %%d, "duration_us": %%d, "bytes": %%d, "min_us": %%d, "mean_us": %%.1f, ' ..
    '"max_us": %%d, "stdev_us": %%.1f, "percentiles_us": {%%s}, "errors": {"connect": %%d, "read": %%d, ' ..
    '"write": %%d, "status": %%d, "timeout": %%d}}\n',
    summary.requests, summary.duration, summary.bytes, latency.min, latency.mean, latency.max,
    latency.stdev, table.concat(p, ", "), e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def lua_string(data: bytes) -> str:
    """The inside of a double-quoted Lua string holding ``data`` byte for byte (binary bodies too:
    every byte outside printable ASCII, and the quote and backslash, as a three-digit ``\\ddd``)."""
    return "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\{b:03d}" for b in data)


def wrk_script(tmp: Path, work: Workload, rate_per_thread: float) -> Path:
    path = tmp / f"wrk-{work.name}-{rate_per_thread:g}.lua"
    headers = "\n".join(f'wrk.headers["{k}"] = "{lua_string(v.encode())}"' for k, v in work.headers.items())
    path.write_text(_LUA % {"body": lua_string(work.body), "headers": headers,
                            "rate": f"{rate_per_thread:g}"})
    return path


def wrk_argv(url: str, script: Path, *, threads: int, connections: int, duration_s: float) -> list[str]:
    return ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(duration_s))}s",
            "--timeout", "5s", "-s", str(script), url]


def parse_wrk(out: str) -> dict[str, Any]:
    for line in out.splitlines():
        if line.startswith("BENCHJSON "):
            r: dict[str, Any] = json.loads(line[len("BENCHJSON "):])
            r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
            r["p"] = {float(k): v / 1e6 for k, v in r.pop("percentiles_us").items()}  # seconds
            r["failed"] = sum(r["errors"].values())
            return r
    raise RuntimeError(f"no result line in wrk's output:\n{out[-2000:]}")


def run_wrk(url: str, script: Path, *, threads: int, connections: int, duration_s: float
            ) -> dict[str, Any]:
    """Run wrk to completion (bounded); its result with the CPU seconds wrk itself used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    argv = wrk_argv(url, script, threads=threads, connections=connections, duration_s=duration_s)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    r = parse_wrk(out.stdout)
    r["wrk_cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return r


# ---- /metrics, /proc


def metric(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in labels.items()))


def counters(url: str) -> dict[str, float]:
    """The collector's delivery counters (events, i.e. rows: captured = sent + failed + dropped), the
    requests it left out before their rows were known (``unparsed_<reason>``: shed by the CPU budget
    is ``unparsed_overload``), the calls it left out for their answer (``uncaptured``: outside 2xx, or
    ``uncaptured_error``: no whole answer, e.g. wrk closing its connections mid-request at the end of
    a run), and its queue depth."""
    s = scrape(url)
    c = "driftline_collector_"
    out = {k: metric(s, f"{c}events_{k}_total") for k in ("captured", "sent", "failed")}
    out["dropped"] = metric(s, f"{c}events_dropped_total")
    for reason in DROP_REASONS:  # queue_full, oversize, sampled_out, shutdown
        out[f"dropped_{reason}"] = metric(s, f"{c}events_dropped_total", reason=reason)
    out["unparsed"] = metric(s, f"{c}requests_unparsed_total")
    for reason in UNPARSED_REASONS:  # skipped, sampled_out, overload, oversize, unparseable, no_model
        out[f"unparsed_{reason}"] = metric(s, f"{c}requests_unparsed_total", reason=reason)
    out["uncaptured"] = metric(s, f"{c}responses_uncaptured_total")
    out["uncaptured_error"] = metric(s, f"{c}responses_uncaptured_total", **{"class": "error"})
    out["queue_depth"] = metric(s, f"{c}queue_depth")
    out["proxied"] = metric(s, f"{c}proxy_latency_seconds_count")
    out["proxy_errors"] = metric(s, f"{c}proxy_latency_seconds_count", status="error")
    return out


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after}


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


_TICK = os.sysconf("SC_CLK_TCK")


def session_cpu_s(sid: int) -> float:
    """User + system CPU seconds of every live process in session ``sid`` (a Process and its children)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(rest[3]) == sid:
            total += int(rest[11]) + int(rest[12])
    return total / _TICK


# ---- the processes


class Env:
    """Broker, model, collector and nginx, each started on first use and stopped on exit."""

    def __init__(self, stack: contextlib.ExitStack, tmp: Path, args: argparse.Namespace) -> None:
        self.stack, self.tmp, self.args = stack, tmp, args
        self.logs = tmp / "logs"
        self.topic = f"predictions-{uuid.uuid4().hex[:8]}"
        self.work = workload(args)
        self.body = self.work.body
        self.path = self.work.path
        self._broker: Any = None
        self._model: str | None = None
        self._nginx: str | None = None
        self._collector: tuple[Any, str, str] | None = None
        self.procs: dict[str, Any] = {}
        self.rss_marks: list[tuple[str, int]] = []

    def _process(self, argv: list[str], name: str) -> Any:
        from tests.servers import Process

        proc = Process(argv, self.logs, name=name, cwd=ROOT)
        self.stack.callback(proc.terminate)  # terminating twice is harmless
        self.procs[name] = proc
        return proc

    @property
    def broker(self) -> Any:
        if self._broker is None:
            from tests.servers import start_broker

            t0 = time.monotonic()
            self._broker = self.stack.enter_context(start_broker(self.tmp / "broker"))
            self._broker.create_topics([self.topic], partitions=4)
            say(f"Tansu broker on {self._broker.bootstrap} (started in {time.monotonic() - t0:.1f} s), "
                f"topic {self.topic} (4 partitions)")
        return self._broker

    def restart_broker(self) -> float:
        """A new (empty, in-memory) broker on the old port, the topic created again; seconds taken."""
        from tests.servers import Broker

        t0 = time.monotonic()
        port = self.broker.port
        self._broker = Broker(self.tmp / "broker-2", port=port)
        self.stack.callback(self._broker.stop)
        self._broker.start()
        self._broker.create_topics([self.topic], partitions=4)
        return time.monotonic() - t0

    @property
    def model(self) -> str:
        """The model's base URL."""
        if self._model is None:
            from tests.servers import free_port

            port = free_port()
            proc = self._process([sys.executable, str(Path(__file__).resolve()), "--child", "model",
                                  "--port", str(port), "--service-ms", str(self.args.service_ms),
                                  "--compute-ms", str(self.args.compute_ms)], "model")
            self._model = f"http://127.0.0.1:{port}"
            proc.wait_http(f"{self._model}/healthz", timeout=30)
        return self._model

    def collector(self) -> tuple[Any, str, str]:
        """(process, proxy URL, metrics URL) of ``driftline collect``."""
        if self._collector is None:
            from tests.servers import free_port

            model, broker = self.model, self.broker
            port, mport = free_port(), free_port()
            launch = ["-m", "monitor.cli.main"]
            proc = self._process([sys.executable, *launch, "collect", "--upstream", model,
                                  "--model", MODEL, "--kafka", broker.bootstrap,
                                  "--listen", f"127.0.0.1:{port}", "--metrics-port", str(mport),
                                  "--topic", self.topic, "--protocol", self.work.protocol,
                                  "--log-level", "warning", *self.args.collector_arg], "collector")
            metrics_url = f"http://127.0.0.1:{mport}"
            proc.wait_http(f"{metrics_url}/healthz", timeout=60)
            self._collector = (proc, f"http://127.0.0.1:{port}", metrics_url)
            self.mark_rss("collector started, idle")
        return self._collector

    def mark_rss(self, when: str) -> None:
        if self._collector is not None:
            rss = rss_bytes(self._collector[0].pid)
            self.rss_marks.append((when, rss))

    def nginx(self) -> str:
        """The URL of nginx proxying to the model."""
        if self._nginx is None:
            from tests.servers import free_port

            model_port = int(self.model.rsplit(":", 1)[1])
            port = free_port()
            prefix = self.tmp / "nginx"
            prefix.mkdir(exist_ok=True)
            conf = prefix / "nginx.conf"
            user = "user root;\n" if os.geteuid() == 0 else ""  # workers read nothing of ours: no matter
            conf.write_text(f"""{user}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    upstream model {{
        server 127.0.0.1:{model_port};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://model;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
""")
            binary = shutil.which("nginx") or "/usr/sbin/nginx"
            proc = self._process([binary, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf),
                                  "-g", "daemon off;"], "nginx")
            self._nginx = f"http://127.0.0.1:{port}"
            proc.wait_http(f"{self._nginx}/healthz", timeout=20)
        return self._nginx

    def targets(self) -> dict[str, tuple[str, Any]]:
        """name -> (URL to load, process whose session's CPU is the proxy's, or None)."""
        coll, proxy_url, _ = self.collector()
        return {"direct": (self.model + self.path, None),
                "collector": (proxy_url + self.path, coll),
                "nginx": (self.nginx() + self.path, self.procs["nginx"])}


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all CPUs; /proc/stat, everything but idle and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / _TICK


def cpu_snapshot(env: Env) -> dict[str, float]:
    """CPU seconds so far of each process started here (its session), the broker's and the machine's."""
    out = {name: session_cpu_s(p.pid) for name, p in env.procs.items() if p.alive()}
    if env._broker is not None and env._broker.alive():
        out["broker"] = session_cpu_s(env._broker.process.pid)
    out["machine"] = machine_busy_s()
    return out


def per_request_ms(cpu: dict[str, float], requests: int) -> str:
    return ", ".join(f"{k} {v / max(1, requests) * 1e3:.3f}" for k, v in ours(cpu).items() if v > 0)


def ours(cpu: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in cpu.items() if k != "machine"}


def others_s(cpu: dict[str, float], wrk_cpu_s: float) -> float:
    """CPU seconds of the machine not spent by anything this benchmark runs (other work: noise)."""
    return cpu["machine"] - wrk_cpu_s - sum(ours(cpu).values())


def left_out(d: dict[str, float]) -> str:
    """The requests the collector left out before reading their rows, by reason, and the calls it left
    out for their answer (``none`` when there were none)."""
    parts = [f"{d[f'unparsed_{r}']:.0f} {r}" for r in UNPARSED_REASONS if d[f"unparsed_{r}"]]
    if d["uncaptured"] - d["uncaptured_error"]:
        parts.append(f"{d['uncaptured'] - d['uncaptured_error']:.0f} non-2xx answers")
    if d["uncaptured_error"]:
        parts.append(f"{d['uncaptured_error']:.0f} without a whole answer (the caller left, or 502/504)")
    return ", ".join(parts) or "none"


# ---- phase 1


def phase1(args: argparse.Namespace, env: Env) -> dict[str, Any]:
    say(f"== 1. latency at a fixed {args.rate} requests/s, {args.duration_s:g} s each ==")
    targets = env.targets()
    script = wrk_script(env.tmp, env.work, args.rate)
    say(f"request: {env.work.described}; "
        f"model: aiohttp, {model_work(args)} per request; wrk -t 1 -c {args.connections} "
        f"with a fixed-rate schedule; {args.warmup_s:g} s warm-up before each")
    out: dict[str, Any] = {"workload": env.work.name, "payload_bytes": len(env.body), "runs": {}}
    _, _, metrics_url = env.collector()
    for rnd in range(args.rounds):
        for name, (url, _proc) in targets.items():
            run_wrk(url, script, threads=1, connections=args.connections, duration_s=args.warmup_s)
            time.sleep(0.5)  # the warm-up's captures delivered before the counters are read
            before = counters(metrics_url)
            cpu0 = cpu_snapshot(env)
            r = run_wrk(url, script, threads=1, connections=args.connections, duration_s=args.duration_s)
            cpu = delta(cpu_snapshot(env), cpu0)
            time.sleep(0.3)  # the collector's linger (50 ms) and the broker's ack
            d = delta(counters(metrics_url), before)
            r["cpu_s"] = cpu
            r["collector"] = d if name == "collector" else None
            out["runs"].setdefault(name, []).append(r)
            p = r["p"]
            say(f"({name}{'' if args.rounds == 1 else f', round {rnd + 1}'}) {r['requests']} requests, "
                f"{r['rps']:.0f}/s: p50 {p[50] * 1e3:.3f} ms, p90 {p[90] * 1e3:.3f}, "
                f"p99 {p[99] * 1e3:.3f}, p99.9 {p[99.9] * 1e3:.3f}, max {r['max_us'] / 1e3:.1f} ms; "
                f"errors {r['failed']}")
            say(f"    CPU ms per request: {per_request_ms(cpu, r['requests'])}, wrk "
                f"{r['wrk_cpu_s'] / max(1, r['requests']) * 1e3:.3f}; load average {os.getloadavg()[0]:.2f}")
            if name == "collector":
                say(f"    collector: {d['proxied']:.0f} proxied, {d['captured']:.0f} events captured "
                    f"({d['captured'] / max(1, d['proxied']):.2f} per request; {env.work.rows} per request "
                    f"sent), {d['sent']:.0f} acknowledged by the broker, {d['failed']:.0f} failed, "
                    f"{d['dropped']:.0f} dropped; requests not captured: {left_out(d)}; queue depth now "
                    f"{d['queue_depth'] + before['queue_depth']:.0f}")
    env.mark_rss("after phase 1")

    import statistics

    runs = out["runs"]
    for q in (50, 99):
        for name in ("direct", "collector", "nginx"):
            out[f"{name}_p{q}"] = statistics.median(run["p"][q] for run in runs[name])
        for name in ("collector", "nginx"):  # the median of the per-round differences
            added = [a["p"][q] - d["p"][q] for a, d in zip(runs[name], runs["direct"], strict=True)]
            out[f"{name}_added_p{q}_rounds"] = added
            out[f"{name}_added_p{q}"] = statistics.median(added)
    nginx_added = out["nginx_added_p50"]
    out["vs_nginx"] = out["collector_added_p50"] / nginx_added if nginx_added > 0 else None
    vs = f"{out['vs_nginx']:.1f}x" if out["vs_nginx"] is not None else "n/a (nginx adds nothing measurable)"

    def rounds(key: str) -> str:
        return "" if args.rounds == 1 else " (rounds: " + ", ".join(f"{x * 1e3:.3f}" for x in out[key]) + ")"

    say(f"added by the collector (median of the rounds' collector - direct): p50 "
        f"{out['collector_added_p50'] * 1e3:.3f} ms{rounds('collector_added_p50_rounds')} (target <= "
        f"{TARGET_ADDED_P50_S * 1e3:g}), p99 {out['collector_added_p99'] * 1e3:.3f} ms"
        f"{rounds('collector_added_p99_rounds')} (target <= {TARGET_ADDED_P99_S * 1e3:g})")
    say(f"added by nginx: p50 {nginx_added * 1e3:.3f} ms{rounds('nginx_added_p50_rounds')}, p99 "
        f"{out['nginx_added_p99'] * 1e3:.3f} ms{rounds('nginx_added_p99_rounds')}; collector / nginx at p50: "
        f"{vs} (target <= {TARGET_VS_NGINX:g}x)")
    say()
    return out


# ---- phase 2


def phase2(args: argparse.Namespace, env: Env) -> dict[str, Any]:
    say(f"== 2. closed-loop maximum throughput: wrk -t {args.max_threads} -c {args.max_connections}, "
        f"{args.max_duration_s:g} s each; model: {model_work(args)} per request ==")
    targets = env.targets()
    script = wrk_script(env.tmp, env.work, 0)
    _, _, metrics_url = env.collector()
    out: dict[str, Any] = {"runs": {}}
    for name, (url, _proc) in targets.items():
        run_wrk(url, script, threads=args.max_threads, connections=args.max_connections, duration_s=3)
        time.sleep(0.5)
        before = counters(metrics_url)
        cpu0 = cpu_snapshot(env)
        r = run_wrk(url, script, threads=args.max_threads, connections=args.max_connections,
                    duration_s=args.max_duration_s)
        cpu = delta(cpu_snapshot(env), cpu0)
        time.sleep(0.5)
        d = delta(counters(metrics_url), before)
        r["cpu_s"] = cpu
        r["collector"] = d if name == "collector" else None
        out["runs"][name] = r
        busy = sum(ours(cpu).values()) + r["wrk_cpu_s"]
        say(f"({name}) {r['rps']:,.0f} requests/s ({r['requests']} in {r['duration_us'] / 1e6:.1f} s), "
            f"p50 {r['p'][50] * 1e3:.2f} ms, p99 {r['p'][99] * 1e3:.2f} ms, errors {r['failed']}")
        say(f"    CPU seconds: {', '.join(f'{k} {v:.1f}' for k, v in ours(cpu).items() if v > 0)}"
            f", wrk {r['wrk_cpu_s']:.1f} = {busy:.1f} of {os.cpu_count()} x {r['duration_us'] / 1e6:.0f} s "
            f"(other work on the machine, approx. {others_s(cpu, r['wrk_cpu_s']):.1f}); CPU ms per request: "
            f"{per_request_ms(cpu, r['requests'])}")
        if name == "collector":
            r["shed_share"] = d["unparsed_overload"] / max(1, d["proxied"])
            say(f"    collector: {d['proxied']:.0f} proxied, {d['captured']:.0f} events captured, "
                f"{d['sent']:.0f} acknowledged, {d['failed']:.0f} failed, {d['dropped']:.0f} dropped "
                f"(queue_full {d['dropped_queue_full']:.0f}); requests not captured: {left_out(d)} "
                f"({r['shed_share']:.1%} of the proxied requests shed by the CPU budget)")
    env.mark_rss("after phase 2")
    direct = out["runs"]["direct"]["rps"]
    out["ratio"] = out["runs"]["collector"]["rps"] / direct
    out["nginx_ratio"] = out["runs"]["nginx"]["rps"] / direct
    say(f"collector / direct = {out['ratio']:.0%} (target >= {TARGET_THROUGHPUT_SHARE:.0%}); "
        f"nginx / direct = {out['nginx_ratio']:.0%}")
    say()
    return out


def count_in_topic(env: Env, timeout: float = 60.0) -> dict[str, int]:
    """Messages and events in the predictions topic (read back from the broker)."""
    from kafka import KafkaConsumer, TopicPartition

    from monitor.wire.decode import decode_predictions

    consumer = KafkaConsumer(bootstrap_servers=env.broker.bootstrap, group_id=None, enable_auto_commit=False,
                             max_partition_fetch_bytes=8 << 20)
    try:
        parts = [TopicPartition(env.topic, p) for p in range(4)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        want = sum(end.values())
        messages = events = 0
        deadline = time.monotonic() + timeout
        while messages < want and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500, max_records=5000).values():
                for rec in records:
                    messages += 1
                    events += decode_predictions(rec.value).n
        return {"messages": messages, "events": events, "end_offsets": want}
    finally:
        consumer.close(autocommit=False)


# ---- phase 3


def phase3(args: argparse.Namespace, env: Env) -> dict[str, Any]:
    pre, outage, post = args.pre_s, args.outage_s, args.post_s
    total = pre + outage + post
    say(f"== 3. collector RSS at {args.rate} requests/s with the broker down for {outage:g} s ==")
    say(f"{pre:g} s with the broker up, broker SIGKILLed, {outage:g} s down, a new broker on the same port "
        f"(Tansu keeps nothing: topic created again), {post:g} s more; VmRSS and /metrics every "
        f"{args.sample_s:g} s; one wrk run per stretch, started right after the broker is killed or back")
    proc, proxy_url, metrics_url = env.collector()
    broker = env.broker
    script = wrk_script(env.tmp, env.work, args.rate)
    loads: dict[str, Any] = {}

    def load(state: str, seconds: float) -> None:
        argv = wrk_argv(proxy_url + env.path, script, threads=1, connections=args.connections,
                        duration_s=seconds)
        loads[state] = env._process(argv, f"wrk-{state}")

    time.sleep(0.5)  # what phases 1-2 left in the queue is delivered
    base = counters(metrics_url)
    t0 = time.monotonic()
    load("up", pre)
    samples: list[dict[str, Any]] = []
    killed_at = restarted_at = None
    restart_s: float | None = None
    restart_error = ""
    say("     t s  state    RSS MiB  captured     sent   failed  dropped(queue_full)  queue")
    step = 0
    while True:
        now = time.monotonic() - t0
        if killed_at is None and now >= pre:
            loads["up"].wait(30)
            broker.kill()
            killed_at = time.monotonic() - t0
            load("down", outage)
        if killed_at is not None and restarted_at is None and now >= pre + outage:
            loads["down"].wait(30)
            try:
                restart_s = env.restart_broker()
            except Exception as e:  # report it, keep measuring
                restart_error = repr(e)[:300]
            restarted_at = time.monotonic() - t0
            load("back", post)
        proc.check_alive("under load during the outage")
        c = delta(counters(metrics_url), base)
        state = "up" if killed_at is None else ("down" if restarted_at is None else "back")
        s = {"t": round(now, 1), "state": state, "rss": rss_bytes(proc.pid), **c}
        s["queue_depth"] += base["queue_depth"]
        samples.append(s)
        say(f"{now:8.0f}  {state:5} {s['rss'] / MIB:10.1f} {c['captured']:9.0f} {c['sent']:8.0f} "
            f"{c['failed']:8.0f} {c['dropped_queue_full']:20.0f} {s['queue_depth']:6.0f}")
        if now >= total:
            break
        step += 1
        time.sleep(max(0.0, t0 + step * args.sample_s - time.monotonic()))
    loads["back"].wait(60)
    wrk = {state: parse_wrk(p.stdout_path.read_text()) for state, p in loads.items()}
    rss = [s["rss"] for s in samples]
    down = [s for s in samples if s["state"] == "down"]
    late_from = pre + min(60.0, outage / 2)
    late = [s["rss"] for s in down if s["t"] >= late_from]
    out: dict[str, Any] = {
        "samples": samples, "wrk": wrk, "killed_at_s": killed_at, "restarted_at_s": restarted_at,
        "restart_s": restart_s, "restart_error": restart_error,
        "rss_start": rss[0], "rss_max": max(rss), "rss_min": min(rss), "rss_end": rss[-1],
        "rss_before_outage": max(s["rss"] for s in samples if s["state"] == "up"),
        "rss_outage_max": max(s["rss"] for s in down) if down else None,
        "rss_late_growth": (max(late) - min(late)) if late else None, "late_from_s": late_from,
    }
    keys = ("captured", "sent", "failed", "dropped", "dropped_queue_full")
    end = samples[-1]
    at_kill = next((s for s in samples if s["state"] != "up"), end)
    at_back = next((s for s in samples if s["state"] == "back"), end)
    out["outage"] = {k: at_back[k] - at_kill[k] for k in keys}
    out["after"] = {k: end[k] - at_back[k] for k in keys}
    out["totals"] = {k: end[k] for k in (*keys, "dropped_shutdown", "dropped_oversize", "unparsed",
                                         "unparsed_overload", "unparsed_oversize", "unparsed_unparseable",
                                         "uncaptured", "proxy_errors")}
    growth = (out["rss_late_growth"] or 0) / MIB
    say(f"RSS: start {out['rss_start'] / MIB:.1f} MiB, max {out['rss_max'] / MIB:.1f}, min "
        f"{out['rss_min'] / MIB:.1f}, end {out['rss_end'] / MIB:.1f} (max - min "
        f"{(out['rss_max'] - out['rss_min']) / MIB:.1f} MiB); with the broker up at most "
        f"{out['rss_before_outage'] / MIB:.1f} MiB; growth from {late_from:.0f} s to the end of the outage "
        f"{growth:.1f} MiB (targets: <= {TARGET_RSS_BYTES / 1e6:.0f} MB = {TARGET_RSS_BYTES / MIB:.1f} MiB; "
        f"flat: <= "
        f"{TARGET_RSS_FLAT_BYTES / MIB:.0f} MiB once the queue is full)")
    o, a = out["outage"], out["after"]
    say(f"from the kill to the first sample with the broker back: {o['captured']:.0f} events captured, "
        f"{o['sent']:.0f} acknowledged, {o['failed']:.0f} failed, {o['dropped']:.0f} dropped "
        f"({o['dropped_queue_full']:.0f} queue_full)")
    say(f"broker back ({restart_s or 0:.1f} s to start it{'; ' + restart_error if restart_error else ''}), "
        f"to the end: {a['captured']:.0f} captured, {a['sent']:.0f} acknowledged, {a['failed']:.0f} "
        f"failed, {a['dropped']:.0f} dropped")
    for state, r in wrk.items():
        p = r["p"]
        say(f"load through the collector, broker {state}: {r['requests']} requests, {r['rps']:.0f}/s, "
            f"p50 {p[50] * 1e3:.3f} ms, p99 {p[99] * 1e3:.3f} ms, max {r['max_us'] / 1e3:.1f} ms, "
            f"errors {r['failed']}")
    say()
    return out


# ---- profile (optional: --profile, with py-spy)


_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*)(?::\d+)?\)$")


def _area(path: str) -> str:
    """Where a frame's code lives: our module (two levels), else the top-level package or stdlib module."""
    path = path.split("site-packages/")[-1].split(str(ROOT) + "/")[-1]
    if "/lib/python3" in path:
        path = path.split("/lib/python3", 1)[1].split("/", 1)[-1]
    parts = path.split("/")
    if parts[0] in ("collectors", "monitor"):
        return "/".join(parts[:2]).removesuffix(".py")
    return parts[0].removesuffix(".py")


def summarize_profile(raw: Path, rate_hz: int, pid: int, requests: int, top: int = 12) -> dict[str, Any]:
    """Self time by thread, by code area and by function; inclusive time of the collector's own functions,
    from py-spy's raw (collapsed) stacks.  py-spy samples only threads that are running, so samples / rate
    is CPU time."""
    from collections import Counter

    threads: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        thread, frames = frames[0], frames[1:]
        if any(f.startswith("Delivery._run (") for f in frames):
            kind = "delivery thread"
        elif f"({pid})" in thread or thread.endswith(f" {pid}"):
            kind = "event loop (main thread)"
        else:
            kind = "other threads (kafka-python I/O)"
        total += n
        threads[kind] += n
        parsed = [m for m in map(_FRAME.match, frames) if m]
        if parsed:
            leaf = parsed[-1]
            areas[_area(leaf["file"])] += n
            own[f"{leaf['func']} ({_area(leaf['file'])})"] += n
        areas_of = [(m, _area(m["file"])) for m in parsed]
        ours = {f"{m['func']} ({a})" for m, a in areas_of  # not the roots of every stack
                if a.startswith(("collectors", "monitor")) and a != "monitor/cli/main"
                and not m["func"].startswith(("run", "serve"))}
        for name in ours:
            inclusive[name] += n

    def share(c: Counter[str]) -> list[tuple[str, float, float]]:
        # (what, share of samples, CPU ms per request)
        return [(k, v / max(1, total), v / rate_hz / max(1, requests) * 1e3) for k, v in c.most_common(top)]

    return {"samples": total, "cpu_ms_per_request": total / rate_hz / max(1, requests) * 1e3,
            "threads": share(threads), "areas": share(areas), "own": share(own),
            "inclusive": share(inclusive)}


def profile(args: argparse.Namespace, env: Env, label: str, *, rate: float, threads: int, connections: int,
            seconds: float) -> dict[str, Any]:
    proc, proxy_url, _ = env.collector()
    tag = label.replace("/", "").replace(" ", "-")
    raw = env.tmp / f"py-spy-{tag}.txt"
    rate_hz = 250
    spy = env._process([args.py_spy, "record", "--pid", str(proc.pid), "--duration", str(round(seconds) + 2),
                        "--rate", str(rate_hz), "--format", "raw", "--threads", "--nonblocking",
                        "--output", str(raw)], f"py-spy-{tag}")
    time.sleep(1.0)  # attached
    r = run_wrk(proxy_url + env.path, wrk_script(env.tmp, env.work, rate), threads=threads,
                connections=connections, duration_s=seconds)
    spy.wait(seconds + 30)
    if not raw.exists():
        raise RuntimeError(f"py-spy wrote nothing\n{spy.log_tail()}")
    # the 1-2 s around the load are idle: py-spy does not sample idle threads
    prof = summarize_profile(raw, rate_hz, proc.pid, r["requests"])
    prof["wrk"] = r
    say(f"({label}) {r['requests']} requests at {r['rps']:.0f}/s, p50 {r['p'][50] * 1e3:.3f} ms, p99 "
        f"{r['p'][99] * 1e3:.3f} ms; {prof['samples']} samples at {rate_hz} Hz = "
        f"{prof['cpu_ms_per_request']:.3f} ms of collector CPU per request")
    for title in ("threads", "areas", "own", "inclusive"):
        head = {"threads": "by thread", "areas": "self time by code area", "own": "self time by function",
                "inclusive": "inclusive time of the collector's own functions"}[title]
        say(f"    {head}: " + "; ".join(f"{k} {sh:.0%} ({ms:.3f} ms/req)" for k, sh, ms in prof[title]))
    return prof


def phase_profile(args: argparse.Namespace, env: Env) -> dict[str, Any]:
    say(f"== profile of the collector (py-spy {args.py_spy}, sampling, not blocking the process) ==")
    out = {"fixed_rate": profile(args, env, f"{args.rate}/s", rate=args.rate, threads=1,
                                 connections=args.connections, seconds=args.profile_s),
           "closed_loop": profile(args, env, "closed loop", rate=0, threads=args.max_threads,
                                  connections=args.max_connections, seconds=args.profile_s)}
    say()
    return out


# ---- summary


def summary(results: dict[str, Any]) -> list[dict[str, str]]:
    rows: list[tuple[str, str, str, str, str, str]] = []

    def yes(ok: bool) -> str:
        return "yes" if ok else "NO"

    def ms(s: float) -> str:
        return f"{s * 1e3:.3f} ms"

    if "latency" in results:
        r = results["latency"]
        for q, target in ((50, TARGET_ADDED_P50_S), (99, TARGET_ADDED_P99_S)):
            added = r[f"collector_added_p{q}"]
            rows.append((f"1. collector-added p{q} at {results['args']['rate']}/s", f"<= {target * 1e3:g} ms",
                         f"{ms(added)} ({ms(r[f'collector_p{q}'])} total)",
                         f"direct p{q} {ms(r[f'direct_p{q}'])}",
                         f"{added / target:.2f}x target", yes(added <= target)))
        rows.append(("1. collector-added / nginx-added p50", f"<= {TARGET_VS_NGINX:g}x",
                     f"{ms(r['collector_added_p50'])}", f"nginx-added {ms(r['nginx_added_p50'])} "
                     f"(p99 {ms(r['nginx_added_p99'])})",
                     "n/a" if r["vs_nginx"] is None else f"{r['vs_nginx']:.1f}x",
                     yes(r["vs_nginx"] is not None and r["vs_nginx"] <= TARGET_VS_NGINX)))
    if "throughput" in results:
        r = results["throughput"]
        runs = r["runs"]
        shed = runs["collector"].get("shed_share")
        rows.append(("2. max throughput, wrk -c 32 -t 2", f">= {TARGET_THROUGHPUT_SHARE:.0%} of direct",
                     f"{runs['collector']['rps']:,.0f} req/s"
                     + ("" if shed is None else f", {shed:.1%} of requests shed (overload)"),
                     f"direct {runs['direct']['rps']:,.0f}; nginx {runs['nginx']['rps']:,.0f} "
                     f"({r['nginx_ratio']:.0%})", f"{r['ratio']:.0%}",
                     yes(r["ratio"] >= TARGET_THROUGHPUT_SHARE)))
    if "outage" in results:
        r = results["outage"]
        o = r["outage"]
        rows.append((f"3. collector RSS, broker down {results['args']['outage_s']:g} s",
                     f"<= {TARGET_RSS_BYTES / 1e6:.0f} MB ({TARGET_RSS_BYTES / MIB:.1f} MiB)",
                     f"start {r['rss_start'] / MIB:.1f}, max {r['rss_max'] / MIB:.1f} "
                     f"({r['rss_max'] / 1e6:.1f} MB), end {r['rss_end'] / MIB:.1f} MiB",
                     f"broker up: {r['rss_before_outage'] / MIB:.1f} MiB",
                     f"{r['rss_max'] / TARGET_RSS_BYTES:.2f}x target", yes(r["rss_max"] <= TARGET_RSS_BYTES)))
        late = r["rss_late_growth"] or 0
        rows.append(("3. RSS flat during the outage",
                     f"<= {TARGET_RSS_FLAT_BYTES / MIB:.0f} MiB growth after {r['late_from_s']:.0f} s",
                     f"+{late / MIB:.1f} MiB (max - min over the phase "
                     f"{(r['rss_max'] - r['rss_min']) / MIB:.1f})", "", "",
                     yes(late <= TARGET_RSS_FLAT_BYTES)))
        w = r["wrk"]
        if "down" in w:
            rows.append(("3. latency via the collector, broker down", "none (info)",
                         f"p50 {ms(w['down']['p'][50])}, p99 {ms(w['down']['p'][99])}, max "
                         f"{w['down']['max_us'] / 1e3:.0f} ms", f"broker up: p99 {ms(w['up']['p'][99])}",
                         "", "-"))
        rows.append(("3. events during the outage", "counted", f"{o['captured']:.0f} captured, "
                     f"{o['dropped_queue_full']:.0f} dropped queue_full, {o['failed']:.0f} failed",
                     f"after: {r['after']['sent']:.0f} sent", "", "-"))
    head = ("measure", "target", "result", "baseline, same run", "ratio", "met")
    summary_table(head, rows)
    return [dict(zip(head, row, strict=True)) for row in rows]


def shape_arg(text: str) -> tuple[int, int]:
    rows, _, columns = text.lower().partition("x")
    try:
        out = int(rows), int(columns)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not ROWSxCOLUMNS, e.g. 4x250") from None
    if min(out) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: rows and columns must be at least 1")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase", default="1,2,3", help="phases to run, e.g. 1,3")
    parser.add_argument("--rate", type=int, default=RATE, help="phases 1 and 3: requests/s")
    parser.add_argument("--duration-s", type=float, default=30.0, help="phase 1: seconds per measurement")
    parser.add_argument("--warmup-s", type=float, default=5.0, help="phase 1: warm-up seconds before each")
    parser.add_argument("--rounds", type=int, default=3,
                        help="phase 1: rounds of direct, collector, nginx; medians are reported")
    parser.add_argument("--connections", type=int, default=16, help="phases 1 and 3: wrk connections")
    parser.add_argument("--max-threads", type=int, default=2, help="phase 2: wrk threads")
    parser.add_argument("--max-connections", type=int, default=32, help="phase 2: wrk connections")
    parser.add_argument("--max-duration-s", type=float, default=20.0, help="phase 2: seconds per target")
    parser.add_argument("--outage-s", type=float, default=300.0, help="phase 3: seconds the broker is down")
    parser.add_argument("--pre-s", type=float, default=20.0, help="phase 3: seconds before the outage")
    parser.add_argument("--post-s", type=float, default=30.0,
                        help="phase 3: seconds after the broker is back")
    parser.add_argument("--sample-s", type=float, default=5.0, help="phase 3: seconds between RSS samples")
    parser.add_argument("--workload", choices=["kserve-json", "oip-binary"], default="kserve-json",
                        help="the request: KServe v1 JSON (default), or the Open Inference Protocol's binary "
                             "tensor extension (one FP32 input of --binary-shape, binary output)")
    parser.add_argument("--binary-shape", type=shape_arg, default=(4, 250),
                        help="oip-binary: the input tensor's ROWSxCOLUMNS (default 4x250: 1,000 FP32 values)")
    parser.add_argument("--instances", type=int, default=4,
                        help="kserve-json: instances per request (4: about 1 KB)")
    parser.add_argument("--service-ms", type=float, default=None,
                        help="the model's sleep per request (default 1 ms, or 0 with --compute-ms)")
    parser.add_argument("--compute-ms", type=float, default=0.0,
                        help="the model's CPU per request, a busy loop holding its one worker "
                             "(default 0: the model sleeps its service time instead)")
    parser.add_argument("--profile", action="store_true",
                        help="after phase 2: profile the collector with py-spy (fixed rate, closed loop)")
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy",
                        help="the py-spy binary (pip install --target DIR py-spy: DIR/bin/py-spy)")
    parser.add_argument("--profile-s", type=float, default=20.0, help="seconds of each profile")
    parser.add_argument("--collector-arg", action="append", default=[],
                        help="an extra argument for `driftline collect` (repeat it; e.g. "
                             "--collector-arg=--sample-rate=0 measures the proxy without capture); "
                             "results are not saved")
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/")
    parser.add_argument("--child", choices=["model"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.service_ms is None:
        args.service_ms = 0.0 if args.compute_ms > 0 else 1.0
    if args.child == "model":
        child_model(args)
        return

    phases = {int(p) for p in args.phase.split(",") if p.strip()}
    missing = [b for b in ("wrk", "nginx") if shutil.which(b) is None and not Path(f"/usr/sbin/{b}").exists()]
    if missing:
        sys.exit(f"missing: {', '.join(missing)}; install with `apt-get install -y wrk nginx-light`")
    import platform

    import aiohttp
    import httptools
    import uvloop

    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("[")[0]
    nginx_version = subprocess.run([shutil.which("nginx") or "/usr/sbin/nginx", "-v"], capture_output=True,
                                   text=True).stderr.strip().split("/")[-1]
    say(f"driftline collect benchmark, {time.strftime('%Y-%m-%d %H:%M:%S')}; phases {sorted(phases)}; "
        f"workload {args.workload}; "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"uvloop {uvloop.__version__}, httptools {httptools.__version__}, "
        f"aiohttp {aiohttp.__version__} (the model), "
        f"{wrk_version.strip()}, nginx {nginx_version}; load average at start {os.getloadavg()[0]:.2f} "
        "(other work on the machine shows here)")
    say("everything runs on this machine: the load generator, the model, the collector or nginx and the "
        "broker share its CPUs")
    say()
    results: dict[str, Any] = {"args": vars(args)}
    t_all = time.monotonic()
    try:
        with terminated_cleanly(), tempfile.TemporaryDirectory(prefix="bench-collect-") as tmp_name, \
                contextlib.ExitStack() as stack:
            env = Env(stack, Path(tmp_name), args)
            if 1 in phases:
                results["latency"] = phase1(args, env)
            if 2 in phases:
                results["throughput"] = phase2(args, env)
            if args.profile:
                results["profile"] = phase_profile(args, env)
            if results.get("latency") or results.get("throughput"):
                sent = counters(env.collector()[2])["sent"]
                got = count_in_topic(env)
                results["topic"] = {**got, "collector_sent": sent}
                say(f"read back from the broker: {got['messages']} messages holding {got['events']} events; "
                    f"the collector counted {sent:.0f} events acknowledged")
                say()
            if 3 in phases:
                results["outage"] = phase3(args, env)
            env.mark_rss("end")
            results["rss_marks"] = env.rss_marks
            if env.rss_marks:
                say("collector RSS: " + ", ".join(f"{w} {b / MIB:.1f} MiB" for w, b in env.rss_marks))
            coll = env.procs.get("collector")
            if coll is not None:
                rc = coll.terminate(10)
                results["collector_exit_code"] = rc
                say(f"collector exit code on SIGTERM: {rc}")
                say()
    finally:
        if len(results) > 1:
            results["summary"] = summary(results)
        say(f"total time {time.monotonic() - t_all:.0f} s")
        if not args.no_save and not args.collector_arg:
            out = ROOT / "benchmarks" / "results"
            out.mkdir(exist_ok=True)
            tag = time.strftime("%Y-%m-%d") + ("" if phases == {1, 2, 3}
                                               else "-p" + "".join(map(str, sorted(phases))))
            if 3 in phases and args.outage_s != parser.get_default("outage_s"):
                tag += f"-outage{args.outage_s:g}"
            if args.compute_ms > 0:
                tag += f"-compute{args.compute_ms:g}ms"
            if args.workload != "kserve-json":
                rows, columns = args.binary_shape
                tag += f"-{args.workload}-{rows}x{columns}"
            (out / f"collect-{tag}.txt").write_text("\n".join(lines) + "\n")
            (out / f"collect-{tag}.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
