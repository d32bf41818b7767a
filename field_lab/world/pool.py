"""A few kept-alive connections to the platform that many handsets share while they are set up.

Set-up (provisioning, the installed base's exchanges) is not measured and crosses no emulated
link, so a connection per handset would only cost a connect and the platform's accept each.
Each connection is agent_client's own HTTP/1.1 client (`Http1Transport`, the handsets' field
transport too); an exchange borrows an idle one and gives it back when its answer is in. Every
handset's exchanges still go through its own `Agent`, adapter and store; only the socket is
shared.
"""

from __future__ import annotations

import asyncio

from agent_client.transport import Http1Transport, Reply

KEEP_ALIVE_S = 30.0
"""An idle pooled connection closes after this (shorter than the platform's 75 s keep-alive, so
the platform does not close one under a request)."""


class SetupPool:
    """`size` connections to `base_url`, lent one exchange at a time."""

    def __init__(self, base_url: str, size: int) -> None:
        if size < 1:
            raise ValueError(f"a pool needs at least one connection, got {size}")
        self.base_url = base_url.rstrip("/")
        self._all = [Http1Transport(base_url, keep_alive_s=KEEP_ALIVE_S) for _ in range(size)]
        self._idle: asyncio.Queue[Http1Transport] = asyncio.Queue()
        for transport in self._all:
            self._idle.put_nowait(transport)

    def transport(self) -> Borrower:
        """A handset's transport on this pool (closing it leaves the pool open)."""
        return Borrower(self)

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        transport = await self._idle.get()
        try:
            return await transport.post(path, body, headers)
        finally:  # a failed exchange closed its connection: the next one opens a new one
            self._idle.put_nowait(transport)

    async def close(self) -> None:
        for transport in self._all:
            await transport.close()


class Borrower:
    """One handset's `Transport` while it is set up: each exchange on a connection of the pool."""

    __slots__ = ("_pool",)

    def __init__(self, pool: SetupPool) -> None:
        self._pool = pool

    @property
    def base_url(self) -> str:
        return self._pool.base_url

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        return await self._pool.post(path, body, headers)

    async def close(self) -> None:
        """The pool's connections are its owner's to close."""
