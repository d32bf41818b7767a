"""The handset API: record operations offline, sync when the link allows, read keycodes.

`Agent` is the I/O shell around `SyncCore`: it reads the clock, owns the store and the
transport, and runs exchanges until the outbox is drained, the link fails past what the caller
will wait for, or a bounded number of exchanges is spent. A background task syncs whenever
something is enqueued or connectivity returns. What goes on the wire is its adapter's business
(`agent_client.adapters`: our compact protocol by default, or any platform's own API).

Time comes from outside: `clock` says what time it is and `sleep` does every waiting (backoff
inside `sync`, the background retry), so a virtual clock runs hours of backoff in no time.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .adapters import CompactAdapter, Link, PlatformAdapter
from .database import Storage
from .errors import InvalidOperation, NotProvisioned, ServerRefused, TransientError
from .escrow import EscrowCode
from .protocol.auth import HandsetKey, Stamper
from .protocol.frames import Keycode, Reason
from .protocol.keycodes import KeycodeFormat, keycode_text
from .protocol.ops import Kind
from .protocol.sync import Result, SyncConfig, SyncCore
from .store import HandsetStore, OpState
from .transport import Http1Transport, Transport

Clock = Callable[[], float]
"""Seconds since the epoch (or any origin the server's clock agrees with, give or take)."""
Sleep = Callable[[float], Awaitable[None]]
"""Waits the given seconds (on whatever clock `Clock` reads)."""


@dataclass
class SyncReport:
    exchanges: int = 0
    failures: int = 0
    acked: list[int] = field(default_factory=list)
    rejected: list[tuple[int, Reason]] = field(default_factory=list)
    keycodes: list[Keycode] = field(default_factory=list)
    pending: int = 0
    last_error: str | None = None


@dataclass(frozen=True)
class NewSale:
    """A sale to a customer not registered yet: who they are, and what they buy."""

    name: str
    phone: str
    device: int
    plan: int
    down_payment: int


@dataclass(frozen=True)
class OfflineSale:
    """A sale made with no link: its operation, and the escrowed code the customer types."""

    seq: int
    device: int
    keycode: str
    credit_s: int


@dataclass(frozen=True)
class Status:
    handset: int
    server_url: str
    cursor: int
    clock_offset_ms: int
    queue: dict[OpState, int]
    stock: list[int]  # devices in stock not yet sold from this handset
    parked: list[tuple[int, str]] = field(default_factory=list)
    """(seq, reason) of every operation the platform refused: kept, never sent again."""


class Agent:
    def __init__(
        self,
        store: HandsetStore,
        transport: Transport,
        handset: int,
        key: HandsetKey,
        *,
        cursor: int,
        stamper: Stamper,
        config: SyncConfig | None,
        clock: Clock,
        rng: random.Random | None,
        sleep: Sleep = asyncio.sleep,
        adapter: PlatformAdapter | None = None,
        meta: dict[str, str] | None = None,
    ) -> None:
        self.store = store
        self.handset = handset
        self.adapter: PlatformAdapter = adapter or CompactAdapter()
        self.link = Link(transport, key, clock, stamper, handset, dict(meta or {}))
        """What the adapter reaches the platform with (transport, key, clock, its meta)."""
        self._clock = clock
        self._sleep = sleep
        self.core = SyncCore(handset, cursor, config, rng)
        self._wake = asyncio.Event()
        self._online = True
        self._background: asyncio.Task[None] | None = None
        self._retry: asyncio.Task[None] | None = None
        self._sync_lock = asyncio.Lock()

    @property
    def transport(self) -> Transport:
        return self.link.transport

    @transport.setter
    def transport(self, transport: Transport) -> None:
        """Carry this handset's exchanges over another transport from now on."""
        self.link.transport = transport

    # -- life cycle ----------------------------------------------------------------------------

    @classmethod
    async def provision(
        cls,
        db_path: str | Path,
        server_url: str,
        agent: str,
        code: str,
        *,
        transport: Transport | None = None,
        ssl_context: ssl.SSLContext | bool = True,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        config: SyncConfig | None = None,
        rng: random.Random | None = None,
        adapter: PlatformAdapter | None = None,
        storage: Storage | None = None,
    ) -> Agent:
        """Create this handset's key pair, register it with the platform (through `adapter`,
        default our compact protocol) and store the identity.

        The returned Agent keeps using `transport` (and its warm connection); without one it
        makes an `Http1Transport` to `server_url`."""
        store = await HandsetStore.open(db_path, storage)
        own = transport is None
        transport = transport or Http1Transport(server_url, ssl_context=ssl_context)
        adapter = adapter or CompactAdapter()
        try:
            if await store.get("handset") is not None:
                raise InvalidOperation(f"{db_path} is already provisioned")
            seed = await store.get("key_seed")
            if seed is None:  # kept before sending: a retry after a lost answer reuses it
                seed = HandsetKey.generate().seed
                await store.put(key_seed=seed, server_url=server_url)
            link = Link(transport, HandsetKey.from_seed(bytes(seed)), clock, Stamper())
            sent = link.now_ms()
            done = await adapter.provision(link, agent=agent, code=code)
            offset = 0
            if done.server_ms is not None:
                offset = Stamper().observe(sent, link.now_ms(), done.server_ms)
            await store.put(
                handset=done.handset,
                server_url=server_url,
                offset_ms=offset,
                adapter_meta=json.dumps(dict(done.meta)),
            )
            return await cls._of(
                store,
                transport,
                config=config,
                clock=clock,
                sleep=sleep,
                rng=rng,
                adapter=adapter,
            )  # the same open file: provisioning then selling opens it once
        except BaseException:
            await store.close()
            if own:
                await transport.close()
            raise

    @classmethod
    async def open(
        cls,
        db_path: str | Path,
        *,
        server_url: str | None = None,
        transport: Transport | None = None,
        ssl_context: ssl.SSLContext | bool = True,
        config: SyncConfig | None = None,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        adapter: PlatformAdapter | None = None,
        storage: Storage | None = None,
    ) -> Agent:
        """The provisioned handset at `db_path`, over `transport` (default: an `Http1Transport`
        to `server_url`, or to the server it was provisioned with), speaking through `adapter`
        (default our compact protocol; it must be the one it was provisioned with); `storage`:
        how its file is kept and which thread serves it (`agent_client.database`)."""
        store = await HandsetStore.open(db_path, storage)
        meta = await store.meta()  # one read: the identity, its server and the agent's state
        if meta.get("handset") is None:
            await store.close()
            raise NotProvisioned(f"{db_path} has no handset identity; provision it first")
        url = server_url or str(meta.get("server_url"))
        return await cls._of(
            store,
            transport or Http1Transport(url, ssl_context=ssl_context),
            config=config,
            clock=clock,
            sleep=sleep,
            rng=rng,
            adapter=adapter,
            meta=meta,
        )

    @classmethod
    async def _of(
        cls,
        store: HandsetStore,
        transport: Transport,
        *,
        config: SyncConfig | None,
        clock: Clock,
        sleep: Sleep,
        rng: random.Random | None,
        adapter: PlatformAdapter | None,
        meta: dict[str, Any] | None = None,
    ) -> Agent:
        """The agent of a provisioned handset's open store (`meta`: its meta, if just read)."""
        if meta is None:
            meta = await store.meta()
        return cls(
            store,
            transport,
            int(meta["handset"]),
            HandsetKey.from_seed(bytes(meta["key_seed"])),
            cursor=int(meta.get("cursor", 0)),
            stamper=Stamper(int(meta.get("offset_ms", 0)), int(meta.get("last_ms", 0))),
            config=config,
            clock=clock,
            rng=rng,
            sleep=sleep,
            adapter=adapter,
            meta=json.loads(str(meta.get("adapter_meta", "{}"))),
        )

    async def close(self) -> None:
        tasks = [t for t in (self._background, self._retry) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.transport.close()
        await self.store.close()

    # -- recording (works offline) -------------------------------------------------------------

    async def _enqueue(self, kind: Kind, *fields: object) -> int:
        now = self._clock()
        op = await self.store.enqueue(kind, int(now), *fields, now_ms=int(now * 1000))
        self._wake.set()
        return op.seq

    async def register_customer(self, name: str, phone: str) -> int:
        """Returns the customer's reference: the seq of this registration."""
        return await self._enqueue(Kind.REGISTER_CUSTOMER, name, phone)

    async def record_sale(self, customer: int, device: int, plan: int, down_payment: int) -> int:
        row = await self.store.operation(customer)
        if row is None or row.op.kind is not Kind.REGISTER_CUSTOMER:
            raise InvalidOperation(f"{customer} is not a customer registered on this handset")
        stock = await self.store.stock()
        if stock and device not in stock:
            raise InvalidOperation(f"device {device} is not in this agent's stock")
        return await self._enqueue(Kind.RECORD_SALE, customer, device, plan, down_payment)

    async def sell_to_new_customers(self, sales: Sequence[NewSale]) -> list[tuple[int, int]]:
        """Register each sale's customer and record the sale, all in one transaction (an agent
        entering the day's paper sales, or an installed base imported onto the handset):
        (customer reference, sale seq) of each, in order. Nothing is recorded if one of them
        is refused (a device not in stock, twice in the lot, or a field out of range)."""
        stock = await self.store.stock()
        devices = [sale.device for sale in sales]
        for device in devices:
            if stock and device not in stock:
                raise InvalidOperation(f"device {device} is not in this agent's stock")
        if len(set(devices)) != len(devices):
            raise InvalidOperation("a device is sold twice in one lot of sales")
        if not sales:
            return []
        now = self._clock()
        made = await self.store.enqueue_sales(
            int(now),
            [(s.name, s.phone, s.device, s.plan, s.down_payment) for s in sales],
            now_ms=int(now * 1000),
        )
        self._wake.set()
        return [(customer.seq, sale.seq) for customer, sale in made]

    async def sell_offline(
        self, customer: int, device: int, plan: int, down_payment: int
    ) -> OfflineSale:
        """Sell with no link: release the device's escrowed code at once (the customer types
        it now) and queue the sale carrying its reserved id; both reach the platform at the
        next sync, where the sale is accounted once. EscrowRefused when there is no code to
        release (none granted, revoked, released already, or the device not in stock)."""
        row = await self.store.operation(customer)
        if row is None or row.op.kind is not Kind.REGISTER_CUSTOMER:
            raise InvalidOperation(f"{customer} is not a customer registered on this handset")
        prices = {p.plan: p.price_per_day for p in await self.store.plans()}
        if plan not in prices:
            raise InvalidOperation(f"plan {plan} is not in this handset's catalog; sync first")
        if down_payment < prices[plan]:
            raise InvalidOperation(
                f"a down payment of {down_payment} buys less than one day of plan {plan}"
                f" ({prices[plan]} a day)"
            )
        now = self._clock()
        op, code = await self.store.sell_offline(
            int(now),
            customer,
            device,
            plan,
            down_payment,
            price_per_day=prices[plan],
            now_ms=int(now * 1000),
        )
        self._wake.set()
        fmt = KeycodeFormat(code.format)
        return OfflineSale(op.seq, device, keycode_text(fmt, code.number), code.credit_s)

    async def escrow(self) -> list[EscrowCode]:
        """The codes this handset holds for offline sales."""
        return await self.store.escrow()

    async def record_payment(self, account: int, amount: int) -> int:
        return await self._enqueue(Kind.RECORD_PAYMENT, account, amount)

    async def keycodes_for(self, device: int) -> list[Keycode]:
        return await self.store.keycodes(device)

    async def keycodes(self) -> list[Keycode]:
        """Every keycode this handset has received, in the order it received them."""
        return await self.store.keycodes()

    async def status(self) -> Status:
        rows = await self.store.queue()
        sold = {
            int(row.op.field("device"))
            for row in rows
            if row.op.kind is Kind.RECORD_SALE and row.state is not OpState.REJECTED
        }
        return Status(
            self.handset,
            self.transport.base_url,
            self.core.cursor,
            self.link.stamper.offset_ms,
            await self.store.counts(),
            sorted(set(await self.store.stock()) - sold),
            [(row.op.seq, str(row.reason)) for row in rows if row.state is OpState.REJECTED],
        )

    # -- syncing -------------------------------------------------------------------------------

    async def sync(self, *, max_exchanges: int = 64, max_wait_s: float = 0.0) -> SyncReport:
        """Exchange until nothing is left to send or fetch; waits out backoff up to `max_wait_s`.

        Raises ServerRefused when the server refuses the request itself (auth, frame); transient
        failures are counted in the report and leave the operations queued.
        """
        async with self._sync_lock:
            report = SyncReport()
            fetch = self.adapter.polls  # an explicit sync asks for the downlink once
            waited = 0.0
            for _ in range(max_exchanges):
                queued = await self.store.sendable(
                    min(self.core.batch_size, self.adapter.max_batch)
                )
                if not queued and not fetch:
                    break
                now = self._clock()
                if not self.core.ready(now):
                    delay = self.core.retry_at - now
                    if waited + delay > max_wait_s:
                        break
                    waited += delay
                    await self._sleep(delay)
                ops, body = self.core.fit(queued)  # what the measured link moves in seconds
                request = self.core.begin([op.seq for op in ops], self._clock(), len(body))
                stamper = self.link.stamper
                last_ms = stamper.stamp(int(self._clock() * 1000))
                if request.seqs:  # a poll freezes nothing: no write (see `_unchanged`)
                    await self.store.mark_in_flight(request.seqs, last_ms=last_ms)
                report.exchanges += 1
                cursor = self.core.cursor
                sent = self._clock()
                try:
                    result = await self.adapter.exchange(self.link, ops, cursor)
                except TransientError as exc:
                    self.core.fail(request, self._clock())
                    report.failures += 1
                    report.last_error = str(exc)
                    continue
                except (ServerRefused, asyncio.CancelledError):
                    # refused, or abandoned mid-exchange: a failed attempt; the ops go again
                    self.core.fail(request, self._clock())
                    raise
                self.core.answered(request, result.cursor, self._clock() - sent)
                if _unchanged(result, cursor):
                    fetch = result.more
                    continue
                try:
                    await self.store.apply(
                        result,
                        int(self._clock() * 1000),
                        offset_ms=stamper.offset_ms,
                        last_ms=stamper.last_ms,
                    )
                except BaseException:
                    self.core.cursor = cursor  # not stored: fetch those entries again
                    raise
                report.acked += result.acked
                report.rejected += result.rejected
                report.keycodes += [e for _, e in result.entries if isinstance(e, Keycode)]
                fetch = result.more
            report.pending = await self.store.unsettled()
            return report

    # -- background ----------------------------------------------------------------------------

    def start_background(self, *, max_wait_s: float = 600.0) -> None:
        """Sync on every enqueue and whenever connectivity returns, until `close()`."""
        if self._background is None:
            self._background = asyncio.create_task(self._run(max_wait_s))

    def connectivity_changed(self, online: bool) -> None:
        self._online = online
        if online:
            self._wake.set()

    async def _run(self, max_wait_s: float) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._online:
                continue
            try:
                report = await self.sync(max_wait_s=max_wait_s)
            except ServerRefused:
                continue  # needs a human (re-provisioning); do not hammer the server
            if report.pending and report.failures:
                self._wake_after(max(0.0, self.core.retry_at - self._clock()))

    def _wake_after(self, delay: float) -> None:
        """Wake the background loop once the backoff is over (an enqueue may wake it sooner)."""
        if self._retry is not None:
            self._retry.cancel()  # superseded: the latest backoff decides
        self._retry = asyncio.create_task(self._alarm(delay))

    async def _alarm(self, delay: float) -> None:
        await self._sleep(delay)
        self._wake.set()


def _unchanged(result: Result, cursor: int) -> bool:
    """An answer that settles nothing, brings nothing and moves no cursor: nothing to store.

    Such a poll writes nothing (no transaction, no commit). What it leaves unsaved is the
    stamper's state (`last_ms`, `offset_ms`), kept in memory and stored with the next exchange
    that changes something; a handset that dies before then reopens with an older `last_ms`,
    and if the platform refuses its next stamp as replayed, the exchange corrects its clock
    once from the platform's answer (`CompactAdapter.exchange`) and goes on."""
    return not (result.acked or result.rejected or result.entries) and result.cursor == cursor
