"""HTTP/1.1 edge cases of the collector's reverse proxy (``collectors/proxy/server.py``), byte by byte.

The model is a raw asyncio server written in each test, so the framing of its
answers is exact (chunked with extensions, delimited by a close, cut short,
invalid); callers are raw sockets where the bytes matter and aiohttp
otherwise.  Every test runs under the default asyncio loop and under uvloop
(the sidecar's loop), within a time bound, and fails if an exception reaches
the event loop's exception handler.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import random
import re
import socket
import struct
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvloop

from collectors.proxy.server import Proxy, ProxySettings
from tests.test_proxy import RecordingMetrics, RecordingQueue

pytestmark = pytest.mark.slow

SCENARIO_S = 20.0  # each scenario is bounded; closing the proxy and the model comes on top


# -- raw HTTP/1.1 messages -------------------------------------------------------------------------
@dataclass
class Message:
    """A request or a response as it was on the wire: start line, headers in order, body."""

    start: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    raw_body: bytes = b""  # the body with its framing (chunk lines), as received

    def values(self, name: str) -> list[str]:
        low = name.lower().encode()
        return [v.decode("latin-1") for n, v in self.headers if n.lower() == low]

    def get(self, name: str) -> str | None:
        found = self.values(name)
        assert len(found) <= 1, f"{name} appears {len(found)} times: {self.headers}"
        return found[0] if found else None

    @property
    def status(self) -> int:
        return int(self.start.split(b" ")[1])

    @property
    def method(self) -> bytes:
        return self.start.split(b" ")[0]

    @property
    def target(self) -> bytes:
        return self.start.split(b" ")[1]


async def read_head(reader: asyncio.StreamReader) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw[:-4].split(b"\r\n")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        assert sep and name and name == name.strip(), f"a bad header line {line!r}"
        headers.append((name, value.strip()))
    return lines[0], headers


async def read_chunked(reader: asyncio.StreamReader, *, slow_for: float = 0.0,
                       piece: int = 4096) -> tuple[bytes, bytes]:
    """A chunked body (decoded, raw); for ``slow_for`` seconds it is read ``piece`` bytes at a time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + slow_for
    body, raw = bytearray(), bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        raw += line
        size = int(line[:-2].split(b";", 1)[0].strip(), 16)
        if size == 0:
            while True:  # trailers, then the empty line
                line = await reader.readuntil(b"\r\n")
                raw += line
                if line == b"\r\n":
                    return bytes(body), bytes(raw)
        remaining = size
        while remaining:
            slow = loop.time() < deadline
            data = await reader.readexactly(min(remaining, piece) if slow else remaining)
            body += data
            raw += data
            remaining -= len(data)
            if slow:
                await asyncio.sleep(0.005)
        end = await reader.readexactly(2)
        assert end == b"\r\n", f"no CRLF after a chunk: {end!r}"
        raw += end


async def read_body(reader: asyncio.StreamReader, headers: list[tuple[bytes, bytes]], *,
                    request: bool) -> tuple[bytes, bytes]:
    message = Message(b"", headers)
    if (te := message.get("Transfer-Encoding")) is not None:
        assert te.lower() == "chunked", te
        return await read_chunked(reader)
    if (length := message.get("Content-Length")) is not None:
        data = await reader.readexactly(int(length))
        return data, data
    if request:
        return b"", b""
    data = await reader.read()  # delimited by the close of the connection
    return data, data


async def read_request(reader: asyncio.StreamReader) -> Message | None:
    """The next request on a connection, its body decoded; None at a clean end of the connection."""
    try:
        start, headers = await read_head(reader)
    except asyncio.IncompleteReadError as exc:
        if exc.partial == b"":
            return None
        raise
    body, raw = await read_body(reader, headers, request=True)
    return Message(start, headers, body, raw)


async def read_response(reader: asyncio.StreamReader, method: bytes = b"GET") -> Message:
    start, headers = await read_head(reader)
    message = Message(start, headers)
    status = message.status
    if method == b"HEAD" or status in (204, 304) or 100 <= status < 200:
        return message
    message.body, message.raw_body = await read_body(reader, headers, request=False)
    return message


def response(status: int = 200, body: bytes = b"", *headers: tuple[str, str], reason: str = "OK",
             length: bool = True) -> bytes:
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    if length:
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def request(method: str, target: str, *headers: tuple[str, str], body: bytes | None = None,
            version: str = "1.1") -> bytes:
    head = f"{method} {target} HTTP/{version}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    if body is not None:
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + (body or b"")


def error_of(message: Message) -> str:
    """The proxy's own error answer: one line of JSON with an "error"."""
    assert message.get("Content-Type") == "application/json"
    assert b"\n" not in message.body
    payload = json.loads(message.body)
    assert payload["proxy"] == "driftline-collector"
    error: str = payload["error"]
    return error


# -- the model: a raw server -----------------------------------------------------------------------
Handler = Callable[["Upstream", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Upstream:
    """A raw HTTP server on 127.0.0.1 running ``handler`` for every connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Message] = []  # as received, on any connection
        self.connections = 0
        self.errors: list[BaseException] = []
        self.notes: dict[str, Any] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.handler(self, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the proxy closed the connection; some tests make it do so
        except asyncio.CancelledError:
            pass  # closed by the test (a cancelled task here is an error for asyncio's streams)
        except Exception as exc:  # an assertion of the model's side: the test reports it
            self.errors.append(exc)
        finally:
            self._tasks.discard(task)
            writer.close()

    async def read(self, reader: asyncio.StreamReader) -> Message | None:
        message = await read_request(reader)
        if message is not None:
            self.requests.append(message)
        return message

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


def answering(answer: Callable[[Message], bytes]) -> Handler:
    """A keep-alive model: every request on a connection gets ``answer(request)``."""

    async def handler(up: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (message := await up.read(reader)) is not None:
            writer.write(answer(message))
            await writer.drain()

    return handler


def echo(message: Message) -> bytes:
    return response(200, b"%s %s %s" % (message.method, message.target, message.body),
                    ("Content-Type", "text/plain"))


# -- the proxy between a caller and the model ------------------------------------------------------
@dataclass
class Env:
    port: int
    upstream: Upstream
    queue: RecordingQueue
    metrics: RecordingMetrics
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def connect(self, sock: socket.socket | None = None
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if sock is not None:
            sock.connect(("127.0.0.1", self.port))
            reader, writer = await asyncio.open_connection(sock=sock)
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writers.append(writer)
        return reader, writer

    async def call(self, data: bytes, method: bytes = b"GET") -> Message:
        """One request on a new connection, its answer."""
        reader, writer = await self.connect()
        writer.write(data)
        return await read_response(reader, method)


Scenario = Callable[[Env], Awaitable[None]]
Runner = Callable[..., Env]


@pytest.fixture(params=["asyncio", "uvloop"])
def proxied(request: pytest.FixtureRequest) -> Iterator[Runner]:
    """``proxied(handler, scenario, **settings)``: the scenario against a proxy in front of the model."""

    def runner(handler: Handler, scenario: Scenario, **settings: Any) -> Env:
        queue, metrics = RecordingQueue(), RecordingMetrics()
        loop_errors: list[dict[str, Any]] = []

        async def main() -> Env:
            loop = asyncio.get_running_loop()
            loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
            upstream = Upstream(handler)
            await upstream.start()
            proxy = Proxy(ProxySettings(upstream=upstream.url, model="m", **settings), queue, metrics,
                          clock=lambda: 1_700_000_000.0)
            await proxy.start("127.0.0.1", 0)
            env = Env(proxy.port, upstream, queue, metrics)
            try:
                await asyncio.wait_for(scenario(env), SCENARIO_S)
            finally:
                for writer in env.writers:
                    writer.close()
                await proxy.close()
                await upstream.close()
                await asyncio.sleep(0.05)
                gc.collect()  # a task that died with an exception reports it when collected
            return env

        async def bounded() -> Env:
            return await asyncio.wait_for(main(), SCENARIO_S + 15)

        env = uvloop.run(bounded()) if request.param == "uvloop" else asyncio.run(bounded())
        gc.collect()
        assert env.upstream.errors == []
        assert loop_errors == [], [(c.get("message"), c.get("exception")) for c in loop_errors]
        return env

    yield runner


# -- 1. pipelining ---------------------------------------------------------------------------------
def test_pipelined_requests_are_answered_in_order(proxied):
    async def handler(up: Upstream, reader, writer) -> None:
        while (message := await up.read(reader)) is not None:
            if message.target == b"/first":
                await asyncio.sleep(0.2)  # the first is the slowest: its answer must still come first
            answer = echo(message)
            writer.write(answer[:answer.index(b"\r\n\r\n") + 4] if message.method == b"HEAD" else answer)
            await writer.drain()

    async def scenario(env: Env) -> None:
        reader, writer = await env.connect()
        writer.write(request("POST", "/first", ("Host", "m"), body=b"hello")
                     + request("GET", "/second", ("Host", "m"))
                     + request("HEAD", "/head", ("Host", "m"))
                     + b"POST /third HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"3\r\nabc\r\n0\r\n\r\n")
        answers = [await read_response(reader, method) for method in (b"POST", b"GET", b"HEAD", b"POST")]
        assert [(a.status, a.body) for a in answers] == [(200, b"POST /first hello"),
                                                         (200, b"GET /second "),
                                                         (200, b""),
                                                         (200, b"POST /third abc")]
        assert answers[2].get("Content-Length") == str(len(b"HEAD /head "))
        assert len({a.get("X-Request-Id") for a in answers}) == 4
        # and the connection is still open for a fourth
        writer.write(request("GET", "/fourth", ("Host", "m")))
        assert (await read_response(reader)).body == b"GET /fourth "

    env = proxied(handler, scenario)
    assert [m.target for m in env.upstream.requests] == [b"/first", b"/second", b"/head", b"/third",
                                                         b"/fourth"]
    assert env.metrics.proxied == [200] * 5
    assert env.upstream.connections == 1


# -- 2. HTTP/1.0 callers, Connection: close, interim answers ---------------------------------------
def test_an_http10_caller_without_keep_alive_gets_connection_close_and_the_connection_closes(proxied):
    async def scenario(env: Env) -> None:
        reader, writer = await env.connect()
        writer.write(b"GET /a HTTP/1.0\r\n\r\n")
        answer = await read_response(reader)
        assert answer.status == 200 and answer.body == b"GET /a "
        assert answer.get("Connection") == "close"
        assert await asyncio.wait_for(reader.read(), 2) == b""  # closed by the proxy

    env = proxied(answering(echo), scenario)
    [seen] = env.upstream.requests
    assert seen.start == b"GET /a HTTP/1.1"  # the model is spoken to in HTTP/1.1


def test_an_http10_caller_with_keep_alive_gets_keep_alive_and_can_send_a_second_request(proxied):
    async def scenario(env: Env) -> None:
        reader, writer = await env.connect()
        for path in ("/a", "/b"):
            writer.write(f"GET {path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode())
            answer = await read_response(reader)
            assert answer.status == 200 and answer.body == f"GET {path} ".encode()
            assert answer.get("Connection") == "keep-alive"
            assert answer.get("Content-Length") == str(len(answer.body))

    env = proxied(answering(echo), scenario)
    assert [m.target for m in env.upstream.requests] == [b"/a", b"/b"]


def test_an_http10_caller_gets_a_chunked_answer_delimited_by_the_close(proxied):
    def chunked(message: Message) -> bytes:
        return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n")

    async def scenario(env: Env) -> None:
        reader, writer = await env.connect()
        writer.write(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        start, headers = await read_head(reader)
        answer = Message(start, headers)
        assert answer.status == 200
        assert answer.get("Transfer-Encoding") is None and answer.get("Content-Length") is None
        assert answer.get("Connection") == "close"
        assert await asyncio.wait_for(reader.read(), 2) == b"hello world"

    proxied(answering(chunked), scenario)


def test_an_http10_request_without_host_reaches_the_model_with_a_host(proxied):
    async def scenario(env: Env) -> None:
        answer = await env.call(b"GET /a HTTP/1.0\r\n\r\n")
        assert (answer.status, answer.body) == (200, b"GET /a ")

    env = proxied(answering(echo), scenario)
    [seen] = env.upstream.requests
    assert seen.start == b"GET /a HTTP/1.1"
    assert seen.get("Host") == env.upstream.url.removeprefix("http://")


def test_an_http11_caller_asking_for_close_gets_connection_close_and_the_connection_closes(proxied):
    async def scenario(env: Env) -> None:
        reader, writer = await env.connect()
        writer.write(request("GET", "/a", ("Host", "m"), ("Connection", "close")))
        answer = await read_response(reader)
        assert (answer.status, answer.body) == (200, b"GET /a ")
        assert answer.get("Connection") == "close"
        assert await asyncio.wait_for(reader.read(), 2) == b""

    env = proxied(answering(echo), scenario)
    assert [m.get("Connection") for m in env.upstream.requests] == [None]


def test_an_http10_caller_gets_no_interim_answer(proxied):
    # RFC 9110 15.2: a server must not send a 1xx answer to an HTTP/1.0 client
    def hints(message: Message) -> bytes:
        return b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + echo(message)

    async def scenario(env: Env) -> None:
        reader, writer = await env.connect()
        writer.write(b"GET /a HTTP/1.0\r\n\r\n")
        answer = await read_response(reader)
        assert (answer.status, answer.body) == (200, b"GET /a ")

    proxied(answering(hints), scenario)


def test_an_http11_caller_gets_interim_answers_before_the_final_one(proxied):
    def hints(message: Message) -> bytes:
        return (b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                b"HTTP/1.1 103 Early Hints\r\nLink: </b.js>; rel=preload\r\n\r\n" + echo(message))

    async def scenario(env: Env) -> None:
        reader, writer = await env.connect()
        writer.write(request("GET", "/a", ("Host", "m")))
        first, second, final = [await read_response(reader) for _ in range(3)]
        assert first.start == second.start == b"HTTP/1.1 103 Early Hints"
        assert (first.get("Link"), second.get("Link")) == ("</a.css>; rel=preload", "</b.js>; rel=preload")
        assert (final.status, final.body) == (200, b"GET /a ")

    proxied(answering(hints), scenario)


# -- 3. HEAD ---------------------------------------------------------------------------------------
def test_a_head_answer_keeps_its_content_length_has_no_body_and_the_connection_goes_on(proxied):
    def answer(message: Message) -> bytes:
        if message.method == b"HEAD":
            return b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n"
        return response(200, b"x" * 100, ("Content-Type", "text/plain"))

    async def scenario(env: Env) -> None:
        reader, writer = await env.connect()
        writer.write(request("HEAD", "/thing", ("Host", "m")))
        head = await read_response(reader, b"HEAD")
        assert head.status == 200 and head.get("Content-Length") == "100"
        writer.write(request("GET", "/thing", ("Host", "m")))
        # the next bytes are the GET's answer: nothing of a body came after the HEAD's head
        assert (await reader.readexactly(9)) == b"HTTP/1.1 "
        start, headers = await read_head(reader)
        body = await reader.readexactly(int(Message(start, headers).get("Content-Length") or 0))
        assert start.startswith(b"200 ") and body == b"x" * 100

    env = proxied(answering(answer), scenario)
    assert env.upstream.connections == 1  # the model's connection was reused after the HEAD
    assert env.metrics.proxied == [200, 200]


# -- 4. chunked answers ----------------------------------------------------------------------------
def test_a_chunked_answer_with_extensions_reaches_the_caller_and_the_capture_whole(proxied):
    prediction = b'{"predictions": [1.5]}'
    pieces = [prediction[:5], prediction[5:13], prediction[13:]]

    def chunked(message: Message) -> bytes:
        assert json.loads(message.body) == {"instances": [[1.0, 2.0]]}
        return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"%x;foo=bar\r\n%s\r\n" % (len(pieces[0]), pieces[0])
                + b"%x\r\n%s\r\n" % (len(pieces[1]), pieces[1])
                + b"%x ; a=1;b=\"two\"\r\n%s\r\n" % (len(pieces[2]), pieces[2])
                + b"0\r\nX-Trailer: t\r\n\r\n")

    async def scenario(env: Env) -> None:
        async with aiohttp.ClientSession() as session:
            for _ in range(2):
                async with session.post(env.url + "/v1/models/m:predict",
                                        json={"instances": [[1.0, 2.0]]}) as answer:
                    assert answer.status == 200
                    assert answer.headers["Transfer-Encoding"] == "chunked"
                    assert "Content-Length" not in answer.headers
                    assert await answer.read() == prediction

    env = proxied(answering(chunked), scenario)
    assert env.upstream.connections == 1  # reused after a chunked answer with trailers
    assert len(env.queue.captures) == 2
    capture = env.queue.captures[0]
    assert capture.status == 200 and capture.model == "m"
    assert [dict(i.inputs) for i in capture.instances] == [{"f0": 1.0, "f1": 2.0}]
    assert [dict(i.outputs) for i in capture.instances] == [{"prediction": 1.5}]
    assert env.metrics.drops == {}


# -- 5. answers delimited by the close of the connection -------------------------------------------
def test_an_answer_delimited_by_the_close_reaches_an_http11_caller_chunked(proxied):
    async def handler(up: Upstream, reader, writer) -> None:
        await up.read(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst part, ")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"second part")
        await writer.drain()
        writer.close()

    async def scenario(env: Env) -> None:
        reader, writer = await env.connect()
        for _ in range(2):  # the caller's connection stays usable
            writer.write(request("GET", "/stream", ("Host", "m")))
            answer = await read_response(reader)
            assert answer.status == 200 and answer.get("Transfer-Encoding") == "chunked"
            assert answer.body == b"first part, second part"
            assert answer.get("Connection") is None

    env = proxied(handler, scenario)
    assert env.upstream.connections == 2


def test_a_transfer_coding_other_than_chunked_stays_on_the_answer(proxied):
    import gzip

    packed = gzip.compress(b"squeezed")

    async def handler(up: Upstream, reader, writer) -> None:
        await up.read(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                     + b"%x\r\n%s\r\n0\r\n\r\n" % (len(packed), packed))
        await writer.drain()

    async def scenario(env: Env) -> None:
        reader, writer = await env.connect()
        writer.write(request("GET", "/z", ("Host", "m")))
        start, headers = await read_head(reader)
        assert Message(start, headers).get("Transfer-Encoding") == "gzip, chunked"
        size = int((await reader.readline()).strip(), 16)
        body = await reader.readexactly(size)
        assert await reader.readexactly(7) == b"\r\n0\r\n\r\n"
        assert gzip.decompress(body) == b"squeezed"

    proxied(handler, scenario)


# -- 6. chunked requests ---------------------------------------------------------------------------
def test_a_chunked_request_body_reaches_the_model_whole(proxied):
    async def scenario(env: Env) -> None:
        reader, writer = await env.connect()
        writer.write(b"POST /up HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5;ext=1\r\nhello\r\n")
        await writer.drain()
        await asyncio.sleep(0.1)  # the rest comes later: the body streams
        writer.write(b"6\r\n world\r\n")
        await asyncio.sleep(0.05)
        writer.write(b"0\r\nX-Trailer: t\r\n\r\n")
        answer = await read_response(reader)
        assert answer.status == 200 and answer.body == b"POST /up hello world"
        writer.write(request("GET", "/next", ("Host", "m")))
        assert (await read_response(reader)).body == b"GET /next "

    env = proxied(answering(echo), scenario)
    first = env.upstream.requests[0]
    assert first.get("Transfer-Encoding") == "chunked" and first.get("Content-Length") is None
    assert first.body == b"hello world"


# -- 7. Expect: 100-continue -----------------------------------------------------------------------
def test_expect_100_continue_passes_the_interim_answer_then_the_final_one(proxied):
    async def handler(up: Upstream, reader, writer) -> None:
        start, headers = await read_head(reader)
        assert Message(start, headers).get("Expect") == "100-continue"
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
        body = await reader.readexactly(5)
        up.notes["body"] = body
        writer.write(response(200, b"got " + body))
        await writer.drain()
        await reader.read()

    async def scenario(env: Env) -> None:
        reader, writer = await env.connect()
        writer.write(b"POST /up HTTP/1.1\r\nHost: m\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        interim = await asyncio.wait_for(read_response(reader), 5)  # before any byte of the body
        assert interim.start == b"HTTP/1.1 100 Continue"
        writer.write(b"hello")
        final = await read_response(reader)
        assert final.status == 200 and final.body == b"got hello"

    env = proxied(handler, scenario)
    assert env.upstream.notes["body"] == b"hello"


# -- 8. connections to the model: closed, not reusable, pooled -------------------------------------
def test_a_model_that_closes_after_every_answer_without_saying_so_is_still_served(proxied):
    async def handler(up: Upstream, reader, writer) -> None:
        message = await up.read(reader)
        assert message is not None
        writer.write(echo(message))  # no "Connection: close": a keep-alive timeout, as it were
        await writer.drain()

    async def scenario(env: Env) -> None:
        async with aiohttp.ClientSession() as session:
            for i in range(8):
                async with session.get(f"{env.url}/n{i}") as answer:
                    assert answer.status == 200 and await answer.read() == f"GET /n{i} ".encode()
                if i % 2:
                    await asyncio.sleep(0.05)  # the close is seen before the next request, or not

    env = proxied(handler, scenario)
    assert env.metrics.proxied == [200] * 8


@pytest.mark.parametrize("pool_size", [1, 4])
@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
@pytest.mark.parametrize("how", ["fin", "rst"])
def test_a_reused_connection_closed_just_as_a_request_is_sent_is_retried_once_on_a_new_one(
        proxied, how, chunked, pool_size):
    async def handler(up: Upstream, reader, writer) -> None:
        message = await up.read(reader)
        assert message is not None
        writer.write(echo(message))
        await writer.drain()
        await up.read(reader)  # the next request: the model closes instead of answering
        if how == "rst":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    async def scenario(env: Env) -> None:
        reader, writer = await env.connect()
        for i in range(4):
            if chunked:
                writer.write(b"POST /n%d HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"2\r\nbo\r\n4\r\ndy-%d\r\n0\r\n\r\n" % (i, i))
            else:
                writer.write(request("POST", f"/n{i}", ("Host", "m"), body=b"body-%d" % i))
            answer = await read_response(reader)
            assert (answer.status, answer.body) == (200, b"POST /n%d body-%d" % (i, i))

    env = proxied(handler, scenario, pool_size=pool_size)
    # every request after the first reached the model twice: on the closed connection, then again
    assert [m.target for m in env.upstream.requests] == [b"/n0", b"/n1", b"/n1", b"/n2", b"/n2",
                                                         b"/n3", b"/n3"]
    assert all(m.body == b"body-" + m.target[2:] for m in env.upstream.requests)
    assert env.metrics.proxied == [200] * 4


def test_a_model_that_closes_every_connection_at_once_is_a_502(proxied):
    async def handler(up: Upstream, reader, writer) -> None:
        writer.close()

    async def scenario(env: Env) -> None:
        for _ in range(3):
            answer = await env.call(request("GET", "/x", ("Host", "m")))
            assert answer.status == 502
            assert error_of(answer).startswith("the model closed the connection before it answered")

    env = proxied(handler, scenario)
    assert env.metrics.proxied == [None] * 3
    assert env.metrics.answers == [None] * 3  # each counted once: no answer from the model


@pytest.mark.parametrize("ending", ["http10", "close", "extra-bytes"])
def test_a_model_connection_that_cannot_carry_another_answer_is_not_reused(proxied, ending):
    async def handler(up: Upstream, reader, writer) -> None:
        message = await up.read(reader)
        assert message is not None
        answer = echo(message)
        if ending == "http10":
            answer = answer.replace(b"HTTP/1.1 ", b"HTTP/1.0 ", 1)
        elif ending == "close":
            answer = answer.replace(b"\r\n", b"\r\nConnection: close\r\n", 1)
        else:  # bytes beyond the Content-Length
            answer += b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale"
        writer.write(answer)
        await writer.drain()
        # the connection stays open: a request sent on it anyway would never be answered
        up.notes.setdefault("after", []).append(await reader.read())

    async def scenario(env: Env) -> None:
        reader, writer = await env.connect()
        for i in range(3):
            writer.write(request("GET", f"/n{i}", ("Host", "m")))
            answer = await read_response(reader)
            assert (answer.status, answer.body) == (200, b"GET /n%d " % i)
            await asyncio.sleep(0.05)

    env = proxied(handler, scenario, upstream_timeout_s=3.0)
    assert env.upstream.connections == 3
    assert env.upstream.notes["after"][:2] == [b"", b""]  # closed by the proxy, nothing sent


def test_concurrent_callers_take_turns_on_a_pool_of_one_connection(proxied):
    async def handler(up: Upstream, reader, writer) -> None:
        while (message := await up.read(reader)) is not None:
            await asyncio.sleep(0.02)
            writer.write(echo(message))
            await writer.drain()

    async def scenario(env: Env) -> None:
        async def one(i: int) -> bytes:
            answer = await env.call(request("POST", f"/c{i}", ("Host", "m"), body=b"%d" % i), b"POST")
            assert answer.status == 200
            return answer.body

        bodies = await asyncio.gather(*(one(i) for i in range(10)))
        assert bodies == [b"POST /c%d %d" % (i, i) for i in range(10)]

    env = proxied(handler, scenario, pool_size=1)
    assert env.upstream.connections == 1


# -- 9. invalid answers ----------------------------------------------------------------------------
@pytest.mark.parametrize("answer", [b"HTTP/1.1 abc\r\n\r\n", b"ICY 200 OK\r\n\r\n",
                                    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
                                    b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n",
                                    b"HTTP/1.1 200 OK\r\n folded: header\r\n\r\n",
                                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
                                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"],
                         ids=["status", "protocol", "header", "length", "fold", "two-lengths", "101"])
def test_an_invalid_answer_is_a_502_saying_it_is_not_valid_http(proxied, answer):
    async def scenario(env: Env) -> None:
        reader, writer = await env.connect()
        for _ in range(2):  # the caller's connection goes on
            writer.write(request("GET", "/x", ("Host", "m")))
            got = await read_response(reader)
            assert got.status == 502
            assert "not valid HTTP/1.1" in error_of(got)

    proxied(answering(lambda message: answer), scenario)


# -- 10. answers cut short -------------------------------------------------------------------------
@pytest.mark.parametrize("framing", ["length", "chunked", "bad-chunk"])
def test_an_answer_cut_mid_body_cuts_the_callers_connection_and_the_proxy_goes_on(proxied, framing):
    async def handler(up: Upstream, reader, writer) -> None:
        while (message := await up.read(reader)) is not None:
            if message.target == b"/ok":
                writer.write(echo(message))
                await writer.drain()
                continue
            if framing == "length":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"y" * 10)
            elif framing == "chunked":
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" + b"y" * 10)
            else:  # a chunk, then a chunk size that is not one: the rest cannot be framed
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n" + b"y" * 10
                             + b"\r\nzz\r\n")
                await writer.drain()
                await reader.read()  # the proxy closes the connection
            await writer.drain()
            return  # closed mid-body

    async def scenario(env: Env) -> None:
        reader, writer = await env.connect()
        writer.write(request("GET", "/cut", ("Host", "m")))
        start, headers = await read_head(reader)
        assert start.startswith(b"HTTP/1.1 200")
        rest = await asyncio.wait_for(reader.read(), 5)  # up to the close
        if framing == "length":
            assert Message(start, headers).get("Content-Length") == "100" and rest == b"y" * 10
        else:
            # the 10 bytes that came, as a chunk, and no last chunk: the caller sees the cut
            assert rest == b"a\r\n" + b"y" * 10 + b"\r\n"
        answer = await env.call(request("GET", "/ok", ("Host", "m")))
        assert (answer.status, answer.body) == (200, b"GET /ok ")

    env = proxied(handler, scenario)
    assert env.metrics.proxied == [None, 200]
    assert env.metrics.answers == [None]  # the cut answer, once (not again when the connection closes)


# -- framing: chunk sizes, bytes one by one, early answers -----------------------------------------
@pytest.mark.parametrize("size", [
    pytest.param(b"zz", id="letters"),
    pytest.param(b"-50", id="negative"),
    pytest.param(b"5_0", id="underscore"),
    pytest.param(b"0x5", id="0x"),
    pytest.param(b"+5", id="plus"),
])
def test_a_chunk_size_that_is_not_plain_hex_cuts_the_answer(proxied, size):
    # RFC 9112 7.1: chunk-size = 1*HEXDIG; what follows such a line cannot be framed
    async def handler(up: Upstream, reader, writer) -> None:
        await up.read(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n"
                     + size + b"\r\nhello\r\n0\r\n\r\n" + b"x" * 80)
        await writer.drain()
        await reader.read()

    async def scenario(env: Env) -> None:
        reader, writer = await env.connect()
        writer.write(request("GET", "/x", ("Host", "m")))
        start, _ = await read_head(reader)
        assert start == b"HTTP/1.1 200 OK"
        try:
            rest = await asyncio.wait_for(reader.read(), 1)
        except TimeoutError:
            rest = b"(not closed)"
        assert rest == b"a\r\n0123456789\r\n"  # the good chunk, no last chunk, then the close

    proxied(handler, scenario)


def _trickle_answers() -> list[Any]:
    return [
        pytest.param(response(200, b"0123456789abcdef", ("X-A", "1")), b"0123456789abcdef", id="length"),
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n"
                     b"6\r\n world\r\n0\r\nX-T: 1\r\n\r\n", b"hello world", id="chunked"),
        pytest.param(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + response(200, b"after hints"),
                     b"after hints", id="interim"),
    ]


@pytest.mark.parametrize(("answer", "body"), _trickle_answers())
def test_an_answer_and_a_request_trickling_in_byte_by_byte_are_parsed_whole(proxied, answer, body):
    async def handler(up: Upstream, reader, writer) -> None:
        while await up.read(reader) is not None:
            for i in range(len(answer)):
                writer.write(answer[i:i + 1])
                await writer.drain()
                await asyncio.sleep(0.001)

    async def scenario(env: Env) -> None:
        reader, writer = await env.connect()
        data = (b"POST /v1/models/m:predict?x=1 HTTP/1.1\r\nHost: m\r\nX-Long-Header: " + b"v" * 50
                + b"\r\nTransfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n0\r\n\r\n")
        for _ in range(2):
            for i in range(len(data)):
                writer.write(data[i:i + 1])
                await writer.drain()
                await asyncio.sleep(0.001)
            got = await read_response(reader)
            while got.status == 103:
                got = await read_response(reader)
            assert (got.status, got.body) == (200, body)

    env = proxied(handler, scenario)
    assert [(m.target, m.body, m.get("X-Long-Header")) for m in env.upstream.requests] \
        == [(b"/v1/models/m:predict?x=1", b"abc", "v" * 50)] * 2
    assert env.upstream.connections == 1


def test_an_answer_before_the_whole_request_body_lets_the_caller_finish_and_go_on(proxied):
    async def handler(up: Upstream, reader, writer) -> None:
        start, headers = await read_head(reader)
        if start.startswith(b"POST"):  # answered at once, the body unread
            writer.write(response(413, b"too large", reason="Content Too Large"))
            await writer.drain()
            up.notes["rest"] = await reader.read()  # the proxy gives up this connection
            return
        body, _ = await read_body(reader, headers, request=True)
        writer.write(echo(Message(start, headers, body)))
        await writer.drain()
        await reader.read()

    async def scenario(env: Env) -> None:
        reader, writer = await env.connect()
        writer.write(b"POST /up HTTP/1.1\r\nHost: m\r\nContent-Length: 100000\r\n\r\n" + b"b" * 10)
        got = await read_response(reader)
        assert (got.status, got.body) == (413, b"too large")
        writer.write(b"b" * 99_990)  # the rest of the body goes nowhere
        writer.write(request("GET", "/ok", ("Host", "m")))
        got = await read_response(reader)
        assert (got.status, got.body) == (200, b"GET /ok ")

    env = proxied(handler, scenario)
    assert env.upstream.connections == 2
    assert env.metrics.proxied == [413, 200]


# -- 11. invalid requests --------------------------------------------------------------------------
@pytest.mark.parametrize("data", [
    pytest.param(b"GARBAGE\r\n\r\n", id="garbage"),
    pytest.param(b"GET / HTTP/1.1\r\nBad Header Line\r\n\r\n", id="header"),
    pytest.param(b"GET / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", id="length"),
    pytest.param(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", id="two-lengths"),
    pytest.param(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"3\r\nabc\r\n0\r\n\r\n", id="smuggling"),
    pytest.param(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nabc", id="coding"),
    pytest.param(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n", id="chunk-size"),
])
def test_an_invalid_request_is_a_400_in_one_json_line_and_the_connection_closes(proxied, data):
    async def scenario(env: Env) -> None:
        reader, writer = await env.connect()
        writer.write(data)
        answer = await read_response(reader)
        assert answer.status == 400 and answer.get("Connection") == "close"
        assert error_of(answer).startswith("the request is not valid HTTP/1.1")
        assert re.fullmatch(r"[0-9a-f]{32}", answer.get("X-Request-Id") or "")
        assert await asyncio.wait_for(reader.read(), 2) == b""
        answer = await env.call(request("GET", "/ok", ("Host", "m")))
        assert (answer.status, answer.body) == (200, b"GET /ok ")

    env = proxied(answering(echo), scenario)
    assert [m.target for m in env.upstream.requests] == [b"/ok"]


# -- 12. callers that leave ------------------------------------------------------------------------
def test_a_caller_leaving_while_the_model_is_slow_raises_nothing_and_the_next_request_works(proxied):
    async def handler(up: Upstream, reader, writer) -> None:
        while (message := await up.read(reader)) is not None:
            if message.target == b"/slow":
                try:  # the proxy closes the model's connection when its caller has gone
                    up.notes["eof"] = await asyncio.wait_for(reader.read(1), 0.5)
                except TimeoutError:
                    up.notes["eof"] = None
                writer.write(echo(message))  # too late: nobody reads it
                await writer.drain()
                return
            writer.write(echo(message))
            await writer.drain()

    async def scenario(env: Env) -> None:
        reader, writer = await env.connect()
        writer.write(request("POST", "/slow", ("Host", "m"), body=b"x" * 1000))
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.close()
        await asyncio.sleep(0.6)  # the model's late answer has come and gone
        answer = await env.call(request("GET", "/ok", ("Host", "m")))
        assert (answer.status, answer.body) == (200, b"GET /ok ")

    env = proxied(handler, scenario)
    assert env.upstream.notes["eof"] == b""
    assert env.metrics.proxied == [200]
    assert env.metrics.answers == [None]  # the caller left before the answer: counted, not captured


def test_a_caller_leaving_mid_answer_raises_nothing_and_the_next_request_works(proxied):
    big = b"z" * 8_000_000

    def answer(message: Message) -> bytes:
        return response(200, big if message.target == b"/big" else b"small")

    async def scenario(env: Env) -> None:
        reader, writer = await env.connect()
        writer.write(request("GET", "/big", ("Host", "m")))
        await read_head(reader)
        await reader.readexactly(100_000)
        writer.transport.abort()
        await asyncio.sleep(0.2)
        answer = await env.call(request("GET", "/small", ("Host", "m")))
        assert (answer.status, answer.body) == (200, b"small")

    env = proxied(answering(answer), scenario)
    assert env.metrics.answers == [None]  # left mid-answer: counted once, not captured


# -- 13. headers -----------------------------------------------------------------------------------
def test_hop_by_hop_headers_are_dropped_and_end_to_end_ones_keep_their_order_case_and_host(proxied):
    def answer(message: Message) -> bytes:
        return (b"HTTP/1.1 200 OK\r\nx-lower: a\r\nX-Upper: B\r\nSet-Cookie: a=1\r\n"
                b"Connection: X-Resp-Hop\r\nX-Resp-Hop: 1\r\nKeep-Alive: timeout=5\r\nSet-Cookie: b=2\r\n"
                b"Content-Length: 2\r\n\r\nok")

    async def scenario(env: Env) -> None:
        reader, writer = await env.connect()
        writer.write(b"GET /h?q=1&r=%20 HTTP/1.1\r\nHost: model.example:8443\r\nX-Zeta: z\r\nx-alpha: a\r\n"
                     b"Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n"
                     b"TE: trailers\r\nX-Mixed-CASE: M\r\nX-Zeta: z2\r\n\r\n")
        got = await read_response(reader)
        assert got.status == 200 and got.body == b"ok"
        assert [(n, v) for n, v in got.headers if n.lower() not in (b"content-length", b"x-request-id")] \
            == [(b"x-lower", b"a"), (b"X-Upper", b"B"), (b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2")]

    env = proxied(answering(answer), scenario)
    [seen] = env.upstream.requests
    assert seen.start == b"GET /h?q=1&r=%20 HTTP/1.1"
    assert [(n, v) for n, v in seen.headers if n.lower() != b"x-request-id"] \
        == [(b"Host", b"model.example:8443"), (b"X-Zeta", b"z"), (b"x-alpha", b"a"),
            (b"X-Mixed-CASE", b"M"), (b"X-Zeta", b"z2")]


def test_a_generated_request_id_is_sent_to_the_model_and_returned_to_the_caller(proxied):
    def answer(message: Message) -> bytes:
        return response(200, b"ok", ("X-Request-Id", "the-models-own"))

    async def scenario(env: Env) -> None:
        reader, writer = await env.connect()
        ids = []
        for _ in range(2):
            writer.write(request("GET", "/x", ("Host", "m")))
            got = await read_response(reader)
            ids.append(got.get("X-Request-Id"))
        env.upstream.notes["ids"] = ids

    env = proxied(answering(answer), scenario)
    ids = env.upstream.notes["ids"]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i or "") for i in ids) and ids[0] != ids[1]
    assert [m.values("X-Request-Id") for m in env.upstream.requests] == [[ids[0]], [ids[1]]]


def test_the_callers_request_id_is_sent_to_the_model_once_and_returned_to_the_caller(proxied):
    async def scenario(env: Env) -> None:
        got = await env.call(request("POST", "/x", ("Host", "m"), ("x-request-id", "caller-id-42"),
                                     body=b"{}"))
        assert got.status == 200 and got.values("X-Request-Id") == ["caller-id-42"]

    env = proxied(answering(echo), scenario)
    [seen] = env.upstream.requests
    assert seen.values("X-Request-Id") == ["caller-id-42"], seen.headers


# -- 14. answers without a body --------------------------------------------------------------------
def test_204_and_304_answers_have_no_body_and_the_connection_is_reused(proxied):
    def answer(message: Message) -> bytes:
        if message.target == b"/204":
            return b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"
        if message.target == b"/304":  # the length of what would have been sent: no body follows
            return b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 100\r\n\r\n'
        return echo(message)

    async def scenario(env: Env) -> None:
        reader, writer = await env.connect()
        for path in ("/204", "/304", "/ok", "/304", "/204", "/ok"):
            writer.write(request("GET", path, ("Host", "m")))
            # the head of each answer is followed by nothing but the next answer
            assert await asyncio.wait_for(reader.readexactly(9), 5) == b"HTTP/1.1 "
            start, headers = await read_head(reader)
            got = Message(b"HTTP/1.1 " + start, headers)
            assert got.status == (200 if path == "/ok" else int(path[1:]))
            if path == "/ok":
                assert await reader.readexactly(int(got.get("Content-Length") or 0)) == b"GET /ok "
            else:
                assert got.get("Transfer-Encoding") is None
            if path == "/304":
                assert got.get("ETag") == '"v1"'

    env = proxied(answering(answer), scenario)
    assert env.upstream.connections == 1
    assert env.metrics.proxied == [204, 304, 200, 304, 204, 200]


# -- 15. oversize ----------------------------------------------------------------------------------
def test_an_answer_over_max_payload_bytes_streams_through_and_is_counted_as_oversize(proxied):
    predictions = json.dumps({"predictions": [0.5] * 50_000}).encode()

    def answer(message: Message) -> bytes:
        return response(200, predictions, ("Content-Type", "application/json"))

    async def scenario(env: Env) -> None:
        async with aiohttp.ClientSession() as session:
            async with session.post(env.url + "/v1/models/m:predict",
                                    json={"instances": [[1.0, 2.0]]}) as got:
                assert got.status == 200 and got.headers["Content-Length"] == str(len(predictions))
                assert await got.read() == predictions

    env = proxied(answering(answer), scenario, max_payload_bytes=10_000)
    assert len(predictions) > 10_000
    assert env.queue.captures == [] and env.metrics.drops == {"oversize": 1}


# -- 16. back-pressure -----------------------------------------------------------------------------
def test_a_20mb_chunked_answer_read_slowly_arrives_intact_and_holds_the_model_back(proxied):
    size, piece = 20_000_000, 256 * 1024
    payload = random.Random(16).randbytes(size)

    async def handler(up: Upstream, reader, writer) -> None:
        await up.read(reader)
        # small kernel buffers on both ends, so what is held back shows
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        up.notes["sent"] = 0
        for i in range(0, size, piece):
            data = payload[i:i + piece]
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await writer.drain()
            up.notes["sent"] += len(data)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async def scenario(env: Env) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        reader, writer = await env.connect(sock)
        writer.write(request("GET", "/big", ("Host", "m")))
        start, headers = await read_head(reader)
        assert start == b"HTTP/1.1 200 OK" and Message(start, headers).get("Transfer-Encoding") == "chunked"

        async def probe() -> None:
            await asyncio.sleep(1.0)
            env.upstream.notes["sent_after_1s"] = env.upstream.notes["sent"]

        probing = asyncio.create_task(probe())
        body, _ = await read_chunked(reader, slow_for=1.2, piece=4096)
        await probing
        assert len(body) == size and hashlib.sha256(body).digest() == hashlib.sha256(payload).digest()

    env = proxied(handler, scenario)
    # while the caller read slowly (some hundreds of kB), the model could not send it all: what it
    # sent sits in kernel buffers (5-8 MB on loopback with Linux's autotuning) and the proxy's write
    # buffer; without back-pressure the proxy reads all 20 MB at once
    assert env.upstream.notes["sent_after_1s"] < size * 4 // 5, env.upstream.notes
    assert env.metrics.proxied == [200]


def test_a_20mb_upload_to_a_slow_model_arrives_intact_and_holds_the_caller_back(proxied):
    size = 20_000_000
    payload = random.Random(61).randbytes(size)

    async def handler(up: Upstream, reader, writer) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        start, headers = await read_head(reader)
        await asyncio.sleep(1.0)  # a slow model: nothing read for a second
        body = await reader.readexactly(int(Message(start, headers).get("Content-Length") or 0))
        up.notes["digest"] = hashlib.sha256(body).digest()
        writer.write(response(200, b"%d" % len(body)))
        await writer.drain()
        await reader.read()

    async def scenario(env: Env) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        reader, writer = await env.connect(sock)
        writer.write(b"POST /up HTTP/1.1\r\nHost: m\r\nContent-Length: %d\r\n\r\n" % size)
        sent = 0

        async def send() -> None:
            nonlocal sent
            for i in range(0, size, 64 * 1024):
                writer.write(payload[i:i + 64 * 1024])
                await writer.drain()
                sent = i + 64 * 1024

        sending = asyncio.create_task(send())
        await asyncio.sleep(0.8)
        sent_while_the_model_slept = sent
        await sending
        answer = await read_response(reader)
        assert (answer.status, answer.body) == (200, b"%d" % size)
        # the proxy does not read the whole upload into memory while the model does not read it
        assert sent_while_the_model_slept < size * 4 // 5, sent_while_the_model_slept

    env = proxied(handler, scenario)
    assert env.upstream.notes["digest"] == hashlib.sha256(payload).digest()


def test_framing_fields_are_the_proxys_own_spelled_canonically_after_the_end_to_end_ones(proxied):
    """Issue 15, defect 8: the README says which headers keep their spelling and which are the proxy's."""
    def answer(message: Message) -> bytes:
        return (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-first: 1\r\nconnection: keep-alive\r\n"
                b"content-type: application/json\r\n\r\nok")

    async def scenario(env: Env) -> None:
        reader, writer = await env.connect()
        writer.write(request("GET", "/h", ("Host", "m"), ("X-Request-Id", "r")))
        got = await read_response(reader)
        assert got.body == b"ok"
        assert got.headers == [(b"x-first", b"1"), (b"content-type", b"application/json"),
                               (b"X-Request-Id", b"r"), (b"Content-Length", b"2")]

    proxied(answering(answer), scenario)
    readme = " ".join((Path(__file__).resolve().parent.parent / "README.md").read_text().split())
    assert ("`Content-Length`, `Transfer-Encoding` and `Connection` come after the end-to-end headers, "
            "spelled this way whatever the model's spelling") in readme
