"""The real `server_stub` application, driven in this process without sockets or threads.

The app is made with `create_app(..., inline_store=True)`: each store job runs at once on the
caller's thread, so a store call takes no virtual time and hands nothing to another thread.
`AppDispatch` turns one
request (method, path, headers, body) into an aiohttp `Request` and runs it through the
application's own router and middlewares: the handlers, signatures, frames, refusals and SQL
are the platform's, only the socket is missing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http import HttpVersion11, RawRequestMessage
from aiohttp.streams import StreamReader
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

PEER = ("127.0.0.1", 40_000)
"""Where every in-process request seems to come from (throttles key on the source)."""


class _Peer:
    """What a request reads of its connection: who is at the other end, no TLS."""

    ssl_context = None
    peername = PEER
    sockname = ("127.0.0.1", 8080)
    transport = None
    max_field_size = 8190
    max_headers = 128


class _NoWriter(AbstractStreamWriter):
    """Responses are read from the handler's return value, never written."""

    async def write(self, chunk: Any) -> None:
        return None

    async def write_eof(self, chunk: bytes = b"") -> None:
        return None

    async def drain(self) -> None:
        return None

    def enable_compression(self, encoding: str = "deflate", strategy: Any = None) -> None:
        return None

    def enable_chunking(self) -> None:
        return None

    async def write_headers(self, status_line: str, headers: Any) -> None:
        return None

    def send_headers(self) -> None:
        return None


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    head_bytes: int
    """Status line and headers as they would go on the wire (for the link's timing)."""


def head_bytes(first_line: str, headers: Any) -> int:
    """Bytes of an HTTP/1.1 head: the first line, `Name: value` lines, the blank line."""
    return len(first_line) + 2 + sum(len(k) + len(v) + 4 for k, v in headers.items()) + 2


class AppDispatch:
    """Runs requests through a started `web.Application` in this process."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self._peer = _Peer()
        self._writer = _NoWriter()

    async def __call__(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> Answer:
        loop = asyncio.get_running_loop()
        sent = CIMultiDict(headers)
        sent.setdefault("Host", "platform")
        if body:
            sent["Content-Length"] = str(len(body))
        frozen = CIMultiDictProxy(sent)
        raw = tuple((k.encode(), v.encode()) for k, v in sent.items())
        url = URL(path)
        message = RawRequestMessage(
            method, path, HttpVersion11, frozen, raw, False, None, False, False, url
        )
        payload = StreamReader(BaseProtocol(loop), 2**20, loop=loop)
        if body:
            payload.feed_data(body)
        payload.feed_eof()
        task = asyncio.current_task()
        assert task is not None
        request = web.Request(message, payload, self._peer, self._writer, task, loop)  # type: ignore[arg-type]
        response = await self.app._handle(request)
        out = response.body if isinstance(response, web.Response) else b""
        data = bytes(out) if isinstance(out, (bytes, bytearray, memoryview)) else b""
        head = head_bytes(f"HTTP/1.1 {response.status} {response.reason}", response.headers)
        return Answer(response.status, data, head + len("Content-Length: ") + 8)
