"""The transport seam: how an exchange reaches the platform, and two implementations of it.

`Transport` is the `Protocol` the Agent needs (one POST per exchange, and `close`). Ours:

    HttpTransport   aiohttp, one kept-alive connection sized for 2G (the handset's real wire)
    Http1Transport  the same exchange on our own HTTP/1.1 codec (`agent_client.http1`) over
                    one asyncio connection: a fraction of aiohttp's CPU per request, for the
                    lab's thousands of handsets; its `opener` seam routes it over any link
    MockTransport   in memory: a handler you write answers each request (tests, virtual time)

Neither retries by itself (a retry is the sync loop's decision, and safe only because every
operation carries its key). Both apply one rule, `raise_for_transient`: a 5xx or 429 answer
is the server saying "not now" and becomes `TransientError`, as does every link failure
(a timeout, a reset, a refused connection); a 4xx reaches the caller as a `Reply`, which
`refusal` turns into `ServerRefused` with the server's machine-readable code.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
import json
import math
import ssl
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp

from .errors import HttpProtocolError, ServerRefused, TransientError
from .http1 import Response, ResponseParser, encode_request

__all__ = [
    "Handler",
    "Http1Transport",
    "HttpTransport",
    "MockTransport",
    "Opener",
    "Reply",
    "Request",
    "Timeouts",
    "Transport",
    "client_session",
    "raise_for_transient",
    "refusal",
    "refusal_int",
]


@dataclass(frozen=True)
class Timeouts:
    """2G-sized: a 48 KiB batch at 10 kbit/s is ~40 s of uplink; GPRS RTTs reach seconds."""

    connect_s: float = 30.0
    read_s: float = 60.0
    total_s: float = 120.0


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes


@dataclass(frozen=True)
class Request:
    """One HTTP request as a `MockTransport` handler sees it.

    Not `agent_client.protocol.sync.Request` (the sync core's frozen batch): this is the
    transport-level request that carries such a batch, or any other body, to `path`.
    """

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    """What the Agent needs from a wire. Implement it to route a handset anywhere."""

    @property
    def base_url(self) -> str:
        """Where requests go (shown in `Agent.status`); no trailing slash."""
        ...

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        """POST `body` to `path`; any 2xx-4xx answer is returned.

        Raises `TransientError` when the link failed or the server answered 5xx/429.
        """
        ...

    async def close(self) -> None:
        """Release the connection; a later `post` may open a new one."""
        ...


def raise_for_transient(reply: Reply) -> Reply:
    """The reply, unless it is a 5xx or 429: the server is overloaded or failing, try later."""
    if reply.status >= 500 or reply.status == 429:
        raise TransientError(f"server answered {reply.status}")
    return reply


_LINK_FAILURES: tuple[type[BaseException], ...] = (TimeoutError, OSError)
"""What a failed link raises: a timeout, a reset, a refused connection."""


def _transient(exc: BaseException) -> TransientError:
    return TransientError(f"{type(exc).__name__}: {exc}")


@contextmanager
def _link_failures(*also: type[BaseException]) -> Iterator[None]:
    """Translate a link failure (`_LINK_FAILURES`, plus `also`) into TransientError."""
    try:
        yield
    except (*_LINK_FAILURES, *also) as exc:
        raise _transient(exc) from exc


def client_session(
    connector: aiohttp.BaseConnector, timeouts: Timeouts | None = None
) -> aiohttp.ClientSession:
    """An aiohttp session as a handset's `HttpTransport` makes one: 2G-sized timeouts, and
    only the headers the server needs (every header costs airtime)."""
    t = timeouts or Timeouts()
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(
            total=t.total_s, sock_connect=t.connect_s, sock_read=t.read_s
        ),
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
    )


class HttpTransport:
    """aiohttp over one kept-alive connection, with 2G-sized timeouts."""

    def __init__(
        self,
        base_url: str,
        *,
        timeouts: Timeouts | None = None,
        ssl_context: ssl.SSLContext | bool = True,
        connector: Callable[[], aiohttp.BaseConnector] | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        """`connector` makes the connection pool (e.g. one that routes over an emulated link);
        by default a single kept-alive TCP connection. `session`: one shared with other
        transports (`client_session`; e.g. a lab setting up thousands of handsets over one
        pool of connections): used as it is, never closed by this transport."""
        self.base_url = base_url.rstrip("/")
        self._connector = connector
        self._timeouts = timeouts or Timeouts()
        self._ssl = ssl_context
        self._shared = session
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._shared is not None:
            return self._shared
        if self._session is None or self._session.closed:
            connector = (
                self._connector()
                if self._connector is not None
                else aiohttp.TCPConnector(limit=1, keepalive_timeout=300, ssl=self._ssl)
            )
            self._session = client_session(connector, self._timeouts)
        return self._session

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        with _link_failures(aiohttp.ClientError):
            async with self._client().post(
                self.base_url + path, data=body, headers=headers
            ) as response:
                reply = Reply(response.status, await response.read())
        return raise_for_transient(reply)

    async def close(self) -> None:
        """Close this transport's own session (a shared one stays open: its owner closes it)."""
        if self._session is not None:
            await self._session.close()
            await asyncio.sleep(0)  # let the connector finish closing its transport


ProtocolFactory = Callable[[], asyncio.Protocol]
Opener = Callable[
    [ProtocolFactory, str, int, "ssl.SSLContext | None"],
    Awaitable[tuple[asyncio.BaseTransport, asyncio.Protocol]],
]
"""Opens one connection to (host, port) for the protocol `factory` makes, TLS when a context is
given, as `loop.create_connection` does (the default); the lab's routes it over a 2G link."""


async def _direct(
    factory: ProtocolFactory, host: str, port: int, tls: ssl.SSLContext | None
) -> tuple[asyncio.BaseTransport, asyncio.Protocol]:
    loop = asyncio.get_running_loop()
    return await loop.create_connection(factory, host, port, ssl=tls)


class _Connection(asyncio.Protocol):
    """One kept-alive HTTP/1.1 connection: feeds the parser, completes the waiting request."""

    __slots__ = ("closed", "parser", "transport", "waiter")

    def __init__(self) -> None:
        self.parser = ResponseParser()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Response] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            response = self.parser.feed(data)
        except HttpProtocolError as exc:
            self._fail(exc)
            return
        if response is None:
            return
        waiter = self.waiter
        if waiter is None or waiter.done():
            self._fail(HttpProtocolError(f"an unasked response ({response.status})"))
        else:
            waiter.set_result(response)

    def eof_received(self) -> bool:
        self.closed = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            try:
                waiter.set_result(self.parser.feed_eof())
            except HttpProtocolError as exc:
                waiter.set_exception(exc)
        return False  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            detail = f": {exc}" if exc is not None else ""
            waiter.set_exception(ConnectionResetError(f"the connection was lost{detail}"))

    def _fail(self, exc: Exception) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.drop()

    def shut(self) -> None:
        """Close after what was written (idle, or the server said so)."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def drop(self) -> None:
        """Abort at once: an exchange on it failed or was cancelled midway."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class _Reaper:
    """One timer for the idle connections of every `Http1Transport` on a loop.

    A transport hands itself over when an exchange leaves its connection idle, with the time
    it may close it; the reaper keeps a heap of (when, transport) and one timer for the
    earliest, and asks each due transport (`_reap`), which closes its connection or names a
    later time (it was used meanwhile). A process with thousands of handsets has one timer for
    their idle connections, not one each armed and cancelled per exchange. Transports are held
    weakly: one dropped without `close` is not kept alive.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, weakref.ref[Http1Transport]]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def watch(self, transport: Http1Transport, at: float) -> None:
        heapq.heappush(self._heap, (at, next(self._seq), weakref.ref(transport)))
        if at < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(at, self._fire)
            self._timer_at = at

    def _fire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        now = self._loop.time()
        heap = self._heap
        due = []
        while heap and heap[0][0] <= now:
            due.append(heapq.heappop(heap)[2])
        for ref in due:
            transport = ref()
            if transport is not None and (later := transport._reap(now)) is not None:
                heapq.heappush(heap, (later, next(self._seq), ref))
        if heap:
            self._timer_at = heap[0][0]
            self._timer = self._loop.call_at(self._timer_at, self._fire)


_reapers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Reaper] = (
    weakref.WeakKeyDictionary()
)


def _reaper(loop: asyncio.AbstractEventLoop) -> _Reaper:
    reaper = _reapers.get(loop)
    if reaper is None:
        reaper = _reapers[loop] = _Reaper(loop)
    return reaper


class Http1Transport:
    """Our HTTP/1.1 codec on one kept-alive asyncio connection, with 2G-sized timeouts.

    Sends exactly what the platform needs (`Host`, `Content-Length`, the caller's headers).
    An idle connection is closed after `keep_alive_s`, or when the server closes it; the next
    `post` opens a new one. A failed, timed-out or cancelled exchange closes its connection
    (what is left on it cannot be trusted). `Timeouts`: `connect_s` to open a connection,
    `read_s` from the request written to the whole response, `total_s` for everything.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeouts: Timeouts | None = None,
        ssl_context: ssl.SSLContext | bool = True,
        opener: Opener | None = None,
        keep_alive_s: float = 300.0,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._prefix = parts.path.rstrip("/")
        self._hostname = parts.hostname
        default_port = 443 if parts.scheme == "https" else 80
        self._port = parts.port or default_port
        self._host = parts.netloc.rpartition("@")[2]
        self._tls: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._tls = _tls_context(ssl_context)
        self._timeouts = timeouts or Timeouts()
        self._opener = opener or _direct
        self.keep_alive_s = keep_alive_s
        self._conn: _Connection | None = None
        self._watched = False  # on the loop's reaper (see `_Reaper`)
        self._idle_until = math.inf

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        return raise_for_transient(await self.request(path, body, headers))

    async def request(self, path: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        """POST `body` to `path` and return whatever status came back (`post` without the
        transient rule: a caller that records a 5xx as an answer, as an operator does).

        Raises `TransientError` when the link failed (no answer at all)."""
        request = encode_request("POST", self._host, self._prefix + path, headers, body)
        loop = asyncio.get_running_loop()
        t = self._timeouts
        start = loop.time()
        self._idle_until = math.inf  # busy: the reaper, if it looks now, leaves it open
        conn = self._conn
        cold = conn is None or conn.closed
        first = min(t.connect_s if cold else t.read_s, t.total_s)
        try:  # `_link_failures` written out: no context manager object per exchange
            async with asyncio.timeout_at(start + first) as deadline:
                if conn is None or conn.closed:
                    conn = self._install(await self._open())
                    deadline.reschedule(min(loop.time() + t.read_s, start + t.total_s))
                assert conn.transport is not None
                waiter = conn.waiter = loop.create_future()
                conn.transport.write(request)
                response = await waiter
        except BaseException as exc:
            if conn is not None:
                conn.waiter = None
                conn.drop()
            if isinstance(exc, (*_LINK_FAILURES, HttpProtocolError)):
                raise _transient(exc) from exc
            raise
        conn.waiter = None
        if not response.keep_alive or conn.parser.pending or conn.closed:
            conn.shut()
        else:
            self._idle(loop)
        return Reply(response.status, response.body)

    async def connect(self) -> bool:
        """Open the connection now if there is none, as a phone's client may before it has a
        request to make (an app coming to the foreground); the next `post` uses it. Until
        then it is idle, closed after `keep_alive_s` like one an exchange left. True if this
        call opened one (False: one was open already).

        Raises `TransientError` when the link failed (the next `post` tries again)."""
        if self._conn is not None and not self._conn.closed:
            return False
        loop = asyncio.get_running_loop()
        t = self._timeouts
        with _link_failures():
            async with asyncio.timeout(min(t.connect_s, t.total_s)):
                conn = await self._open()
        if self._conn is not None and not self._conn.closed:  # a `post` opened one meanwhile
            conn.shut()
            return False
        self._install(conn)
        self._idle(loop)
        return True

    def _install(self, conn: _Connection) -> _Connection:
        """`conn` is the connection from now on; one left open meanwhile (a `connect` that
        finished while this exchange opened its own) is closed, never left behind."""
        old = self._conn
        if old is not None and old is not conn and not old.closed and old.waiter is None:
            old.shut()
        self._conn = conn
        return conn

    def _idle(self, loop: asyncio.AbstractEventLoop) -> None:
        """The connection waits for the next exchange, at most `keep_alive_s` (the reaper)."""
        self._idle_until = loop.time() + self.keep_alive_s
        if not self._watched:
            self._watched = True
            _reaper(loop).watch(self, self._idle_until)

    def _reap(self, now: float) -> float | None:
        """The reaper's call: close the connection if it stayed idle; else when to look again
        (None: not at all; an exchange under way hands it over again when it ends)."""
        self._watched = False
        conn = self._conn
        if conn is None or conn.closed or math.isinf(self._idle_until):
            return None
        if now >= self._idle_until:
            conn.shut()
            return None
        self._watched = True
        return self._idle_until

    async def _open(self) -> _Connection:
        _, protocol = await self._opener(_Connection, self._hostname, self._port, self._tls)
        assert isinstance(protocol, _Connection)
        return protocol

    async def close(self) -> None:
        self._idle_until = math.inf
        if self._conn is not None:
            self._conn.shut()
            self._conn = None
            await asyncio.sleep(0)  # let the transport finish closing


def _tls_context(given: ssl.SSLContext | bool) -> ssl.SSLContext:
    """`True`: the system's verified defaults; `False`: encrypted but unverified (as aiohttp)."""
    if isinstance(given, ssl.SSLContext):
        return given
    context = ssl.create_default_context()
    if not given:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


Handler = Callable[[Request], Reply | Awaitable[Reply]]
"""Answers one request: returns a `Reply` (or an awaitable of one), or raises."""


class MockTransport:
    """A transport whose every request is answered by `handler`, in memory, with no socket.

    The handler may be sync or async. It sees a `Request` and returns a `Reply`, or raises:
    `TransientError`, `TimeoutError` or an `OSError` such as `ConnectionResetError` simulate
    a dead link (the latter two become `TransientError`, as on the real wire). A 5xx or 429
    reply becomes `TransientError` by the same rule as `HttpTransport`. Nothing is recorded:
    a test that wants the requests keeps them in its handler.
    """

    def __init__(self, handler: Handler, *, base_url: str = "http://platform.test") -> None:
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {type(handler).__name__}")
        if not isinstance(base_url, str):
            raise TypeError(f"base_url must be a str, got {type(base_url).__name__}")
        self.handler = handler
        self.base_url = base_url.rstrip("/")

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        request = Request("POST", path, MappingProxyType(dict(headers)), bytes(body))
        with _link_failures():
            answer = self.handler(request)
            reply = await answer if inspect.isawaitable(answer) else answer
        if not isinstance(reply, Reply):
            raise TypeError(
                f"MockTransport handler returned {type(reply).__name__} for POST {path};"
                " it must return a Reply"
            )
        return raise_for_transient(reply)

    async def close(self) -> None:
        """Nothing to release."""


def refusal(reply: Reply) -> ServerRefused:
    """The server's coded 4xx as an exception (also for bodies that are not ours)."""
    try:
        doc = json.loads(reply.body)
        return ServerRefused(reply.status, str(doc["error"]), str(doc.get("detail", "")))
    except (ValueError, KeyError, TypeError):
        return ServerRefused(
            reply.status, "unexpected_response", reply.body[:200].decode("latin-1")
        )


def refusal_int(reply: Reply, name: str) -> int | None:
    """An integer field (``server_ms``, ``last_ms``) of a refusal body, if it has one."""
    try:
        value = json.loads(reply.body)[name]
    except (ValueError, KeyError, TypeError):
        return None
    return value if type(value) is int else None
