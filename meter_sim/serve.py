"""I/O shells for the line protocol: stdin/stdout, TCP and a pseudo-terminal.

Each shell only moves bytes between its medium and a `LineSession`; all meaning lives there.
A TCP server is one `Device`: every connection gets its own session on that one meter and
its one clock.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tty
from collections.abc import Callable
from typing import BinaryIO

from meter_sim.line_protocol import Device, LineSession
from meter_sim.meter import Meter

SessionFactory = Callable[[Device], LineSession]


def serve_stdio(session: LineSession, stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Answer lines from `stdin` until end of input."""
    while chunk := stdin.readline(4096):
        reply = session.feed(chunk)
        if reply:
            stdout.write(reply)
            stdout.flush()


async def serve_tcp(
    device: Device | Meter,
    host: str,
    port: int,
    *,
    make_session: SessionFactory = LineSession,
    ready: Callable[[str, int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve one device on TCP: each connection gets its own session on the same meter and
    clock (a bare `Meter` gets a virtual clock)."""
    shared = device if isinstance(device, Device) else Device(device)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = make_session(shared)
        try:
            while chunk := await reader.read(4096):
                reply = session.feed(chunk)
                if reply:
                    writer.write(reply)
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port)
    bound_host, bound_port = server.sockets[0].getsockname()[:2]
    if ready is not None:
        ready(bound_host, bound_port)
    async with server:
        if stop is None:
            await server.serve_forever()
        else:
            await stop.wait()


def open_pty() -> tuple[int, str]:
    """Open a raw pseudo-terminal pair; return (controller fd, path of the device side)."""
    controller, device = os.openpty()
    tty.setraw(device)
    path = os.ttyname(device)
    # Keep the device side open so the pty survives a jig reconnecting.
    os.set_inheritable(device, False)
    return controller, path


async def serve_pty(
    session: LineSession,
    controller: int,
    *,
    stop: asyncio.Event | None = None,
) -> None:
    """Answer lines arriving on a pty's controller side until `stop` is set."""
    loop = asyncio.get_running_loop()
    done = stop or asyncio.Event()

    def readable() -> None:
        try:
            chunk = os.read(controller, 4096)
        except OSError:
            done.set()
            return
        reply = session.feed(chunk)
        if reply:
            os.write(controller, reply)

    loop.add_reader(controller, readable)
    try:
        await done.wait()
    finally:
        loop.remove_reader(controller)


def stdio_main(session: LineSession) -> None:
    serve_stdio(session, sys.stdin.buffer, sys.stdout.buffer)
