"""A few kept-alive connections to the platform that many handsets share while they are set up.

Set-up (provisioning, the installed base's exchanges) is not measured and crosses no emulated
link, so a connection per handset would only cost a connect and the platform's accept each.
Each connection is agent_client's own HTTP/1.1 client (`Http1Transport`, the handsets' field
transport too); an exchange borrows an idle one and gives it back when its answer is in. Every
handset's exchanges still go through its own `Agent`, adapter and store; only the socket is
shared.

Provisionings are coalesced: the handsets' own `POST /v1/provision` bodies that wait together
go as one `POST /v1/provision/many` (docs/sync-protocol.md), and each handset gets its item of
the answer as the answer to its own request. A lot refused for one item (all or nothing: a 4xx
naming it) gives that handset the refusal and goes again without it, so a wrong code is tried,
and counted against the platform's guessing throttle, once. A platform that refuses a lot
without naming an item, or has no such endpoint, gets each request on its own instead, so every
handset sees the answer its own request gets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any

from agent_client.adapters import PROVISION_PATH
from agent_client.errors import AgentError
from agent_client.transport import Http1Transport, Reply
from server_stub.provisioning import MAX_PROVISIONINGS, PROVISION_MANY_PATH

KEEP_ALIVE_S = 30.0
"""An idle pooled connection closes after this (shorter than the platform's 75 s keep-alive, so
the platform does not close one under a request)."""
JSON = {"Content-Type": "application/json"}

Waiting = tuple[bytes, dict[str, str], "asyncio.Future[Reply]"]


@dataclass(frozen=True)
class Refused:
    """The platform refused a lot for its item `item`: `reply` is that handset's answer."""

    item: int
    reply: Reply


def refused_item(status: int, answer: object, size: int) -> Refused | None:
    """The refusal of a lot of `size` as its item's own answer, if it names one (a 4xx with
    `item`, docs/sync-protocol.md): the answer one request alone gets, without the item's place
    in a lot the handset never sent."""
    if not (400 <= status < 500 and isinstance(answer, dict)):
        return None
    item = answer.get("item")
    if not isinstance(item, int) or isinstance(item, bool) or not 0 <= item < size:
        return None
    alone = {k: v for k, v in answer.items() if k != "item"}
    detail = alone.get("detail")
    if isinstance(detail, str):
        alone["detail"] = detail.removeprefix(f"handsets[{item}]: ")
    return Refused(item, Reply(status, json.dumps(alone).encode()))


class SetupPool:
    """`size` connections to `base_url`, lent one exchange at a time."""

    def __init__(self, base_url: str, size: int, *, coalesce: bool = True) -> None:
        """`coalesce`: provisionings waiting together go in one request (see above)."""
        if size < 1:
            raise ValueError(f"a pool needs at least one connection, got {size}")
        self.base_url = base_url.rstrip("/")
        self._all = [Http1Transport(base_url, keep_alive_s=KEEP_ALIVE_S) for _ in range(size)]
        self._idle: asyncio.Queue[Http1Transport] = asyncio.Queue()
        for transport in self._all:
            self._idle.put_nowait(transport)
        self._coalesce = coalesce
        self._waiting: list[Waiting] = []
        self._flusher: asyncio.Task[None] | None = None
        self.coalesced = 0
        """Provisionings answered from a `POST /v1/provision/many`."""

    def transport(self) -> Borrower:
        """A handset's transport on this pool (closing it leaves the pool open)."""
        return Borrower(self)

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        if path == PROVISION_PATH and self._coalesce:
            future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
            self._waiting.append((body, headers, future))
            if self._flusher is None:  # started after this turn: the others waiting join in
                self._flusher = asyncio.get_running_loop().create_task(self._flush())
            return await future
        return await self._send(path, body, headers)

    async def _send(self, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        transport = await self._idle.get()
        try:
            return await transport.post(path, body, headers)
        finally:  # a failed exchange closed its connection: the next one opens a new one
            self._idle.put_nowait(transport)

    async def _flush(self) -> None:
        """Send what waits, a lot at a time, until nothing does (one lot in flight at once:
        what arrives meanwhile makes the next one)."""
        try:
            while self._waiting:
                lot = self._waiting[:MAX_PROVISIONINGS]
                del self._waiting[:MAX_PROVISIONINGS]
                try:
                    await self._provision(lot)
                finally:  # nobody is left waiting for an answer that will not come
                    for _, _, future in lot:
                        future.cancel()
        finally:
            self._flusher = None

    async def _provision(self, lot: list[Waiting]) -> None:
        while len(lot) > 1:
            outcome = await self._together(lot)
            if isinstance(outcome, Refused):  # its handset hears it; the rest go again
                _, _, future = lot.pop(outcome.item)
                if not future.done():
                    future.set_result(outcome.reply)
                continue
            if outcome is None:
                break
            self.coalesced += len(lot)
            for (_, _, future), answer in zip(lot, outcome, strict=True):
                if not future.done():
                    future.set_result(Reply(201, json.dumps(answer).encode()))
            return
        # alone, or refused together without a culprit: each on its own, its own answer
        await asyncio.gather(*(self._alone(waiting) for waiting in lot))

    async def _together(self, lot: list[Waiting]) -> list[Any] | Refused | None:
        """The platform's answer for each of `lot`, in one request; its refusal of one item of
        it; None if it has neither."""
        try:
            docs = [json.loads(body) for body, _, _ in lot]
            reply = await self._send(
                PROVISION_MANY_PATH, json.dumps({"handsets": docs}).encode(), JSON
            )
            answer = json.loads(reply.body)
        except (AgentError, OSError, ValueError, TypeError):
            return None  # each request on its own says what went wrong with it
        if reply.status in (404, 405):
            self._coalesce = False  # a platform without the endpoint: never ask again
        if reply.status == 201 and isinstance(answer, dict):
            answers = answer.get("handsets")
            return answers if isinstance(answers, list) and len(answers) == len(lot) else None
        return refused_item(reply.status, answer, len(lot))

    async def _alone(self, waiting: Waiting) -> None:
        body, headers, future = waiting
        try:
            reply = await self._send(PROVISION_PATH, body, headers)
        except (AgentError, OSError) as exc:  # its own request's error: its post raises it
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(reply)

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        for _, _, future in self._waiting:
            future.cancel()
        self._waiting.clear()
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
