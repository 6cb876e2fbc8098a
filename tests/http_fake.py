"""What the HTTP fakes of real servers share (tests/k8s_fake.py, tests/grafana_fake.py): a
threaded server on a loopback port that tracks its open connections, so that :meth:`stop`
(or :meth:`down`, the port closed as a crashed server's would be) also cuts the ones in use,
and :meth:`up` listens again on the same port with the fake's state kept."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class FakeHandler(BaseHTTPRequestHandler):
    """The base of a fake's request handler; ``fake`` is set to the serving fake."""

    fake: FakeServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stalls

    def setup(self) -> None:
        super().setup()
        with self.fake._lock:
            self.fake._connections.add(self.connection)

    def finish(self) -> None:
        with self.fake._lock:
            self.fake._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        return None


class FakeServer:
    """Lifecycle of a fake: a context manager, or :meth:`start`/:meth:`stop`; ``url`` is
    ``http://127.0.0.1:<port>``.  Subclasses set ``handler`` and ``name``."""

    handler: type[FakeHandler]
    name = "fake"

    def __init__(self) -> None:
        self._lock = threading.RLock()  # the fake's state too: handlers run on many threads
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        handler = type(f"{type(self).__name__}Handler", (self.handler,), {"fake": self})
        server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{self.name}-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            connections, self._connections = set(self._connections), set()
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def down(self) -> None:
        """Close the port (connection refused) and every open connection; the state is kept."""
        self.stop()

    def up(self) -> None:
        """Listen again on the same port."""
        if self._server is None:
            self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
