"""Put one handset's emulated link under its HTTP client, in process.

`LinkOpener` opens a connection over the link for `agent_client.transport.Http1Transport` (its
`opener` seam, what the lab's handsets use); `LinkConnector` does the same for an aiohttp
ClientSession.

`LinkConnector` is an aiohttp `TCPConnector` whose connections are real loopback TCP
connections with the link model spliced in between the socket and aiohttp's protocol: aiohttp
writes into a `_HandsetTransport`, whose bytes go up the link and reach the socket only when the
model delivers them; the socket's bytes go down the link and reach aiohttp's protocol the same
way. Opening a connection first runs the SYN / SYN-ACK handshake over the link, so a cold
connection costs its round trip. Many handsets share one `LinkScheduler` (one timer) and need no
listening port each.

The splice point is `TCPConnector._wrap_create_connection`, the hook aiohttp's own connector
calls around `loop.create_connection`; it is not public API, so `tests/field_lab` pins it.
TLS is not carried through the model byte-for-byte (the connector sees plaintext); put a
`LinkProxy` in front when handshake bytes matter.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any, cast

import aiohttp
from aiohttp.client_proto import ResponseHandler

from field_lab.link.core import DOWN, UP, Arrived, Connection, EofArrived, Established, Event, Reset
from field_lab.link.errors import LinkReset, UsageError
from field_lab.link.scheduler import LinkPort, Valve


class _Channel(asyncio.Protocol):
    """Protocol of the real socket; owns the link connection and aiohttp's protocol."""

    def __init__(self, port: LinkPort) -> None:
        self.port = port
        self.loop = asyncio.get_running_loop()
        self.conn: Connection | None = None
        self.inner: asyncio.Protocol | None = None
        self.real: asyncio.Transport | None = None
        self.transport = _HandsetTransport(self)
        self.established: asyncio.Future[None] = self.loop.create_future()
        self.lost = False
        self.read_valve: Valve | None = None
        self.write_valve: Valve | None = None

    async def handshake(self) -> None:
        self.conn = self.port.open(self._on_event)
        try:
            await self.established
        except BaseException:
            if self.conn.alive:
                self.port.abort(self.conn)
            raise

    def wrap(self, inner: asyncio.Protocol) -> _Channel:
        self.inner = inner
        self.write_valve = Valve(inner.pause_writing, inner.resume_writing)
        return self

    # -- the real socket -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        assert self.inner is not None
        self.real = transport
        self.read_valve = Valve(transport.pause_reading, transport.resume_reading)
        self.inner.connection_made(self.transport)

    def data_received(self, data: bytes) -> None:
        if self.conn is not None and self.conn.alive:
            self.port.send(self.conn, DOWN, data)
            self._flow()

    def eof_received(self) -> bool:
        if self.conn is not None and self.conn.alive:
            self.port.close(self.conn, DOWN)
        return True  # the FIN travels down the link; close when it arrives

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            if self.conn is not None and self.conn.alive:
                self.port.abort(self.conn)
            self.lose(exc)

    # -- link events -----------------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        if isinstance(event, Established):
            if not self.established.done():
                self.established.set_result(None)
        elif isinstance(event, Reset):
            error = LinkReset("the emulated link reset the connection (long outage)")
            if not self.established.done():
                self.established.set_exception(error)
            if self.real is not None:
                self.real.abort()
            self.lose(error)
        elif isinstance(event, Arrived):
            if event.direction == UP:
                if self.real is not None and not self.real.is_closing():
                    self.real.write(event.data)
            elif self.inner is not None and not self.lost:
                self.inner.data_received(event.data)
            self._flow()
        elif isinstance(event, EofArrived):
            if event.direction == UP:
                if self.real is not None and self.real.can_write_eof():
                    self.real.write_eof()
            elif self.inner is not None and not self.lost:
                self.inner.eof_received()
                if self.real is not None:
                    self.real.close()
                self.lose(None)

    def _flow(self) -> None:
        conn = self.conn
        if conn is None or not conn.alive:
            return
        if self.read_valve is not None and self.real is not None and not self.real.is_closing():
            self.read_valve.update(conn.pending_bytes(DOWN))
        if self.write_valve is not None and not self.lost:
            self.write_valve.update(conn.pending_bytes(UP))

    def lose(self, exc: Exception | None) -> None:
        """Tell aiohttp's protocol, once, that the connection is gone."""
        if not self.lost and self.inner is not None:
            self.lost = True
            self.inner.connection_lost(exc)


class _HandsetTransport(asyncio.Transport):
    """What aiohttp's protocol writes to: the handset's end of the link."""

    def __init__(self, channel: _Channel) -> None:
        super().__init__()
        self._channel = channel
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview[Any]) -> None:
        ch = self._channel
        if self._closing or ch.conn is None or not ch.conn.alive:
            return
        ch.port.send(ch.conn, UP, bytes(data))
        ch._flow()

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        ch = self._channel
        if ch.conn is not None and ch.conn.alive:
            ch.port.close(ch.conn, UP)

    def can_write_eof(self) -> bool:
        return True

    def is_closing(self) -> bool:
        return self._closing

    def _shut(self, how: Callable[[asyncio.Transport], None]) -> None:
        if self._closing:
            return
        self._closing = True
        ch = self._channel
        if ch.conn is not None and ch.conn.alive:
            ch.port.abort(ch.conn)
        if ch.real is not None:
            how(ch.real)
        ch.loop.call_soon(ch.lose, None)

    def close(self) -> None:
        self._shut(lambda real: real.close())

    def abort(self) -> None:
        self._shut(lambda real: real.abort())

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        real = self._channel.real
        return real.get_extra_info(name, default) if real is not None else default

    def pause_reading(self) -> None:
        if self._channel.real is not None:
            self._channel.real.pause_reading()

    def resume_reading(self) -> None:
        if self._channel.real is not None:
            self._channel.real.resume_reading()

    def is_reading(self) -> bool:
        real = self._channel.real
        return real is not None and real.is_reading()

    def get_write_buffer_size(self) -> int:
        conn = self._channel.conn
        return conn.pending_bytes(UP) if conn is not None and conn.alive else 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Limits are the link's (see scheduler.HIGH_WATER); accepted for API compatibility."""


class LinkOpener:
    """Opens connections over one handset's link (an `agent_client.transport.Opener`)."""

    __slots__ = ("port",)

    def __init__(self, port: LinkPort) -> None:
        self.port = port

    async def __call__(
        self,
        factory: Callable[[], asyncio.Protocol],
        host: str,
        port: int,
        tls: ssl.SSLContext | None,
    ) -> tuple[asyncio.Transport, asyncio.Protocol]:
        """The SYN / SYN-ACK over the link, then the real loopback connection under it.

        A reset during the handshake raises `LinkReset` (a ConnectionResetError)."""
        if tls is not None:
            raise UsageError(
                "TLS is not carried through the link model; put a LinkProxy in front instead"
            )
        channel = _Channel(self.port)
        await channel.handshake()
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: channel.wrap(factory()), host, port)
        except BaseException:  # the platform refused: the link's connection goes too
            if channel.conn is not None and channel.conn.alive:
                self.port.abort(channel.conn)
            raise
        assert channel.inner is not None
        return channel.transport, channel.inner


class LinkConnector(aiohttp.TCPConnector):
    """A TCPConnector whose connections travel over one handset's emulated link."""

    def __init__(self, port: LinkPort, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.link_port = port

    async def _wrap_create_connection(
        self,
        *args: Any,
        addr_infos: Any,
        req: aiohttp.ClientRequest,
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (aiohttp's signature)
        client_error: type[Exception] = aiohttp.ClientConnectorError,
        **kwargs: Any,
    ) -> tuple[asyncio.Transport, ResponseHandler]:
        factory = args[0]
        channel = _Channel(self.link_port)
        try:
            async with asyncio.timeout(timeout.sock_connect):
                await channel.handshake()
        except LinkReset as exc:
            raise client_error(req.connection_key, exc) from exc
        await super()._wrap_create_connection(
            lambda: channel.wrap(factory()),
            *args[1:],
            addr_infos=addr_infos,
            req=req,
            timeout=timeout,
            client_error=client_error,
            **kwargs,
        )
        return channel.transport, cast(ResponseHandler, channel.inner)
