"""A lean HTTP/1.1 client for load generators: kept-alive connections on 127.0.0.1, nothing else.

At 1,500 requests a second the load generator shares the machine's two cores with the server,
so what it spends per request is taken from the server. aiohttp's client costs 0.3-0.5 ms of
CPU a request here (session, connector, tracing hooks, cookie jar, header multidicts, a
response object, a stream reader); this one writes and reads with agent_client's sans-I/O
HTTP/1.1 codec (`agent_client.http1`, the handsets' own client) on a pool of connections:
still real HTTP on a real socket, which is all the benchmark needs.

`LeanCallbacks` carries the operator simulator's callbacks the same way.

A broken connection or an answer the codec refuses is `HttpError`; a connection the server
asked to close is never reused.
"""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import Mapping
from urllib.parse import urlsplit

from agent_client.errors import HttpProtocolError
from agent_client.http1 import ResponseParser, encode_request
from field_lab.world.mno import NoReply, Reply


class HttpError(Exception):
    """The connection broke or the answer was not one this client reads."""


class _Connection(asyncio.Protocol):
    """One kept-alive connection: one request in flight at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = ResponseParser()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False
        self.keep = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        try:
            response = self.parser.feed(data)
        except HttpProtocolError as exc:
            self.keep = False
            if waiter is not None and not waiter.done():
                waiter.set_exception(HttpError(str(exc)))
            return
        if response is None:
            return
        self.keep = response.keep_alive and not self.parser.pending
        if waiter is not None and not waiter.done():
            waiter.set_result((response.status, response.body))
        else:
            self.keep = False  # an answer nobody asked for: the stream is not to be trusted

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(HttpError(f"connection lost: {exc or 'closed by server'}"))


class Client:
    """Requests to one `http://127.0.0.1:port` origin over at most `connections` connections;
    a request waits for an idle one when all are busy."""

    def __init__(self, url: str, connections: int) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise ValueError(f"need http://host:port, got {url!r}")
        self.host, self.port = parts.hostname, parts.port
        self._host = f"{parts.hostname}:{parts.port}"
        self.limit = connections
        self.open = 0
        self.idle: list[_Connection] = []
        self.waiting: collections.deque[asyncio.Future[_Connection]] = collections.deque()

    async def _acquire(self) -> _Connection:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                return conn
            self.open -= 1
        if self.open < self.limit:
            self.open += 1
            try:
                transport, conn = await asyncio.get_running_loop().create_connection(
                    _Connection, self.host, self.port
                )
            except OSError:
                self.open -= 1
                raise
            conn.transport = transport  # uvloop may call connection_made only later
            return conn
        waiter: asyncio.Future[_Connection] = asyncio.get_running_loop().create_future()
        self.waiting.append(waiter)
        return await waiter

    def _release(self, conn: _Connection) -> None:
        if conn.closed or not conn.keep:
            if conn.transport is not None:
                conn.transport.close()
            self.open -= 1
            return
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self.idle.append(conn)

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> tuple[int, bytes]:
        """(status, body)."""
        request = encode_request(method, self._host, path, headers or {}, body)
        conn = await self._acquire()
        ok = False
        try:
            assert conn.transport is not None
            waiter = conn.waiter = asyncio.get_running_loop().create_future()
            conn.transport.write(request)
            answer = await waiter
            ok = True
            return answer
        finally:
            conn.waiter = None
            if not ok:
                conn.closed = True  # a half-read answer leaves the stream unusable
            self._release(conn)

    async def close(self) -> None:
        for conn in self.idle:
            if conn.transport is not None:
                conn.transport.close()
        self.idle.clear()
        await asyncio.sleep(0)  # let the transports finish closing


class LeanCallbacks:
    """The operator simulator's `CallbackSender` on a lean `Client`: its callbacks are the
    load generator's CPU too."""

    def __init__(self, url: str, connections: int = 16) -> None:
        parts = urlsplit(url)
        self.path = parts.path
        self.client = Client(f"{parts.scheme}://{parts.netloc}", connections)

    async def open(self) -> None:
        pass

    async def send(self, body: bytes, headers: dict[str, str], timeout_s: float) -> Reply:
        try:
            async with asyncio.timeout(timeout_s):
                status, raw = await self.client.request("POST", self.path, body, headers)
        except TimeoutError:
            raise NoReply("timeout") from None
        except (HttpError, OSError) as exc:
            raise NoReply(type(exc).__name__) from None
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        return Reply(status, answer if isinstance(answer, dict) else None)

    async def close(self) -> None:
        await self.client.close()
