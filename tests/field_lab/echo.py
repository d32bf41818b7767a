"""A tiny upstream for link tests: echoes upper-cased bytes until EOF, then closes."""

from __future__ import annotations

import asyncio


async def echo_upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data.upper())
        await writer.drain()
    writer.close()
