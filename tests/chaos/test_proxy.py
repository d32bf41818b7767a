"""The fault proxy measures what an unfired cut missed per exchange, not per connection: the
crash harness sizes its next kill point from it, and a kept-alive connection's running total
would push kill points past the end of every later exchange."""

from __future__ import annotations

import asyncio
import contextlib

from field_lab.chaos.proxy import DOWN, UP, FaultProxy
from tests.field_lab.echo import echo_upper


async def _round_trip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> bytes:
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(data)), 5)


async def test_an_unfired_cut_reports_the_bytes_of_its_own_exchange() -> None:
    upstream = await asyncio.start_server(echo_upper, "127.0.0.1", 0)
    proxy = FaultProxy(("127.0.0.1", upstream.sockets[0].getsockname()[1]))
    reader, writer = await asyncio.open_connection("127.0.0.1", await proxy.start())
    try:
        assert await _round_trip(reader, writer, b"a" * 300) == b"A" * 300
        proxy.arm(DOWN, 10_000)  # longer than the next exchange: it never fires
        assert await _round_trip(reader, writer, b"b" * 40) == b"B" * 40
        assert proxy.disarm() is True
        assert proxy.since_arm == {UP: 40, DOWN: 40}
        proxy.arm(UP, 10)  # a cut that fires resets the connection
        writer.write(b"c" * 40)
        await writer.drain()
        with contextlib.suppress(ConnectionResetError):  # reset, as a killed peer's is
            assert await asyncio.wait_for(reader.read(100), 5) == b""
        assert proxy.disarm() is False
    finally:
        writer.close()
        await proxy.aclose()
        upstream.close()
        await upstream.wait_closed()
