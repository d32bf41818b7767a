"""The transport seam: how an exchange reaches the platform, and two implementations of it.

`Transport` is the `Protocol` the Agent needs (one POST per exchange, and `close`). Ours:

    HttpTransport   aiohttp, one kept-alive connection sized for 2G (the handset's real wire)
    MockTransport   in memory: a handler you write answers each request (tests, virtual time)

Neither retries by itself (a retry is the sync loop's decision, and safe only because every
operation carries its key). Both apply one rule, `raise_for_transient`: a 5xx or 429 answer
is the server saying "not now" and becomes `TransientError`, as does every link failure
(a timeout, a reset, a refused connection); a 4xx reaches the caller as a `Reply`, which
`refusal` turns into `ServerRefused` with the server's machine-readable code.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import ssl
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

import aiohttp

from .errors import ServerRefused, TransientError

__all__ = [
    "Handler",
    "HttpTransport",
    "MockTransport",
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


@contextmanager
def _link_failures(*also: type[BaseException]) -> Iterator[None]:
    """Translate a link failure (timeout, reset, refused, plus `also`) into TransientError."""
    caught: tuple[type[BaseException], ...] = (TimeoutError, OSError, *also)
    try:
        yield
    except caught as exc:
        raise TransientError(f"{type(exc).__name__}: {exc}") from exc


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
