"""HTTP transport: one POST per exchange on one kept-alive connection, sized for 2G.

It never retries by itself (a retry is the sync loop's decision, and safe only because every
operation carries its key); it turns every network-level failure into `TransientError` and
every 4xx into `ServerRefused` with the server's machine-readable code.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from .errors import ServerRefused, TransientError


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


class Transport:
    def __init__(
        self,
        base_url: str,
        *,
        timeouts: Timeouts | None = None,
        ssl_context: ssl.SSLContext | bool = True,
        connector: Callable[[], aiohttp.BaseConnector] | None = None,
    ) -> None:
        """`connector` makes the connection pool (e.g. one that routes over an emulated link);
        by default a single kept-alive TCP connection."""
        self.base_url = base_url.rstrip("/")
        self._connector = connector
        t = timeouts or Timeouts()
        self._timeout = aiohttp.ClientTimeout(
            total=t.total_s, sock_connect=t.connect_s, sock_read=t.read_s
        )
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = (
                self._connector()
                if self._connector is not None
                else aiohttp.TCPConnector(limit=1, keepalive_timeout=300, ssl=self._ssl)
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                # every header costs airtime: send only what the server needs
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            )
        return self._session

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        try:
            async with self._client().post(
                self.base_url + path, data=body, headers=headers
            ) as response:
                reply = Reply(response.status, await response.read())
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransientError(f"{type(exc).__name__}: {exc}") from exc
        if reply.status >= 500 or reply.status == 429:
            raise TransientError(f"server answered {reply.status}")
        return reply

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            await asyncio.sleep(0)  # let the connector finish closing its transport


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
