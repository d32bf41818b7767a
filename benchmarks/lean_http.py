"""A lean HTTP/1.1 client for load generators: kept-alive connections on 127.0.0.1, nothing else.

At 1,500 requests a second the load generator shares the machine's two cores with the server,
so what it spends per request is taken from the server. aiohttp's client costs 0.3-0.5 ms of
CPU a request here (session, connector, tracing hooks, cookie jar, header multidicts, a
response object, a stream reader); this one writes and reads with agent_client's sans-I/O
HTTP/1.1 codec (`agent_client.http1`, the handsets' own client) on a pool of connections:
still real HTTP on a real socket, which is all the benchmark needs. `Client.submit` hands the
answer to a callback (no task or future per request); `Client.request` awaits it.

`LeanCallbacks` carries the operator simulator's callbacks the same way.

A broken connection or an answer the codec refuses is `HttpError`; a connection the server
asked to close is never reused.
"""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import Callable, Mapping
from functools import partial
from urllib.parse import urlsplit

from agent_client.errors import HttpProtocolError
from agent_client.http1 import ResponseParser, encode_request
from field_lab.world.mno import NoReply, Reply


class HttpError(Exception):
    """The connection broke or the answer was not one this client reads."""


Answer = tuple[int, bytes] | HttpError
"""What a request ends with: (status, body), or why there is none."""
OnAnswer = Callable[[Answer], None]


class _Connection(asyncio.Protocol):
    """One kept-alive connection: one request in flight at a time, its answer handed to the
    callback that came with it."""

    def __init__(self, pool: Client) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = ResponseParser()
        self.on_answer: OnAnswer | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport

    def send(self, request: bytes, on_answer: OnAnswer) -> None:
        assert self.transport is not None
        self.on_answer = on_answer
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        try:
            response = self.parser.feed(data)
        except HttpProtocolError as exc:
            self._fail(HttpError(str(exc)))
            return
        if response is None:
            return
        on_answer, self.on_answer = self.on_answer, None
        if on_answer is None or not response.keep_alive or self.parser.pending:
            # an answer nobody asked for, or the server's last: the stream is not to be reused
            self._fail(HttpError("answer out of turn") if on_answer is None else None)
        else:
            self.pool._release(self)
        if on_answer is not None:
            on_answer((response.status, response.body))

    def _fail(self, error: HttpError | None) -> None:
        """Stop using this connection; the request on it (if any) fails with `error`."""
        on_answer, self.on_answer = self.on_answer, None
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
            self.pool._lost(self)
        if on_answer is not None and error is not None:
            on_answer(error)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(HttpError(f"connection lost: {exc or 'closed by server'}"))


class Client:
    """Requests to one `http://127.0.0.1:port` origin over at most `connections` connections;
    a request waits its turn (first come, first served) when all are busy.

    `submit` is the cheap form (no task, no future: the answer goes to a callback, on the
    event loop's thread); `request` awaits the answer."""

    def __init__(self, url: str, connections: int) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise ValueError(f"need http://host:port, got {url!r}")
        self.host, self.port = parts.hostname, parts.port
        self._host = f"{parts.hostname}:{parts.port}"
        self.limit = connections
        self.open = 0
        self.idle: list[_Connection] = []
        self.queued: collections.deque[tuple[bytes, OnAnswer]] = collections.deque()
        self.opening: set[asyncio.Task[None]] = set()

    def submit(
        self,
        method: str,
        path: str,
        body: bytes,
        on_answer: OnAnswer,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Send a request on an idle connection (a new one if the pool has room; else it
        queues); `on_answer` gets the answer, or the HttpError that stopped it."""
        request = encode_request(method, self._host, path, headers or {}, body)
        if self.idle:
            self.idle.pop().send(request, on_answer)
        else:
            self.queued.append((request, on_answer))
            self._grow()

    def _grow(self) -> None:
        """Open connections while requests wait and the pool has room."""
        while self.open < self.limit and len(self.opening) < len(self.queued):
            self.open += 1
            task = asyncio.get_running_loop().create_task(self._connect())
            self.opening.add(task)
            task.add_done_callback(self.opening.discard)

    async def _connect(self) -> None:
        try:
            transport, conn = await asyncio.get_running_loop().create_connection(
                partial(_Connection, self), self.host, self.port
            )
        except OSError as exc:
            self.open -= 1
            self.opening.discard(asyncio.current_task())  # this attempt: over
            if self.queued:  # one waiting request fails per failed attempt (bounded)...
                self.queued.popleft()[1](HttpError(f"cannot connect: {exc}"))
                self._grow()  # ...and the rest try again
            return
        conn.transport = transport  # uvloop may call connection_made only later
        self._release(conn)

    def _release(self, conn: _Connection) -> None:
        """A connection free for the next request: the longest queued one, else idle."""
        if self.queued:
            conn.send(*self.queued.popleft())
        else:
            self.idle.append(conn)

    def _lost(self, conn: _Connection) -> None:
        self.open -= 1
        if conn in self.idle:
            self.idle.remove(conn)
        if self.queued:
            self._grow()

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> tuple[int, bytes]:
        """(status, body); HttpError when the connection broke or the answer was unreadable."""
        answered: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()

        def done(answer: Answer) -> None:
            if not answered.done():  # a request given up on still holds its connection
                answered.set_result(answer)

        self.submit(method, path, body, done, headers)
        answer = await answered
        if isinstance(answer, HttpError):
            raise answer
        return answer

    async def close(self) -> None:
        for task in list(self.opening):
            task.cancel()
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
