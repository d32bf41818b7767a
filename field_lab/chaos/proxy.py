"""A loopback TCP proxy the fault harness controls: cut the next connection after N bytes in
either direction, or refuse every connection for a while (an outage).

Cutting after N bytes stands for a process dying at that byte of an exchange: N bytes up is
the handset dying mid-send; N bytes down is a response lost after the server committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from dataclasses import dataclass

UP, DOWN = "up", "down"
CHUNK = 65536


@dataclass
class Cut:
    """Abort the connection once `after` more bytes have passed in `direction`."""

    direction: str
    after: int


class FaultProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._server: asyncio.Server | None = None
        self._cut: Cut | None = None
        self._down_until = 0.0
        self._writers: set[asyncio.StreamWriter] = set()
        self.cuts = 0
        self.refused = 0
        self.since_arm = {UP: 0, DOWN: 0}
        """Bytes passed each way since the last `arm`, over any connection: the size of the
        exchange an unfired cut was too long for (a kept-alive connection's total is not)."""

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    def arm(self, direction: str, after: int) -> None:
        """The next `after` bytes in `direction` pass, then the connection is reset."""
        if direction not in (UP, DOWN) or after < 0:
            raise ValueError(f"bad cut {direction!r} after {after}")
        self._cut = Cut(direction, after)
        self.since_arm = {UP: 0, DOWN: 0}

    def disarm(self) -> bool:
        """Drop an unfired cut; True if one was still armed."""
        armed, self._cut = self._cut is not None, None
        return armed

    def outage(self, seconds: float) -> None:
        """Reset every connection, new and open, for `seconds` from now."""
        self._down_until = time.monotonic() + seconds
        for writer in list(self._writers):
            _reset(writer)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                _reset(writer)
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self._down_until:
            self.refused += 1
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _reset(writer)
            return
        self._writers |= {writer, up_writer}
        pair = (writer, up_writer)
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, UP, pair), self._pump(up_reader, writer, DOWN, pair)
            )
        finally:
            self._writers -= {writer, up_writer}
            for w in pair:
                _reset(w)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        direction: str,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(CHUNK):
                cut = self._cut
                if cut is not None and cut.direction == direction and len(data) >= cut.after:
                    self._cut = None
                    self.cuts += 1
                    if cut.after:
                        writer.write(data[: cut.after])
                        with contextlib.suppress(OSError):
                            await writer.drain()
                    for w in pair:
                        _reset(w)
                    return
                if cut is not None and cut.direction == direction:
                    cut.after -= len(data)
                self.since_arm[direction] += len(data)
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Abort with RST, as a killed process's kernel would answer."""
    if writer.transport.is_closing():
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
