"""The agents' handsets: one real `agent_client.Agent` each, its HTTP on its own emulated link.

Provisioning and the installed base run over one pool of loopback connections the fleet shares
(`SETUP_CONCURRENCY` of agent_client's `Http1Transport`, `field_lab.world.pool`; no link is
emulated: set-up is not measured), each handset's exchanges through its own `Agent`; then every
handset moves onto its scenario link, with its scripted outages, for the field phase. A fleet
may be one shard's part of a larger one: handsets keep their index in the whole fleet.

A large fleet is set up in worker processes instead (`prepare`, `field_lab.world.prepare`):
the same code per handset there, and each prepared file opened here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from agent_client.adapters import PlatformAdapter
from agent_client.agent import Agent
from agent_client.errors import AgentError, TransientError
from agent_client.protocol.frames import Keycode
from agent_client.store import HandsetStore
from field_lab.link import Outage, Profile, get_profile
from field_lab.link.scheduler import LinkScheduler
from field_lab.world.fixture import AgentSpec, Fixture
from field_lab.world.handset import (
    IDLE_CLOSE_S,
    KEEP_WARM_S,
    STORAGE,
    Handset,
    MeasuredTransport,
    Metered,
)
from field_lab.world.pool import SetupPool
from field_lab.world.prepare import Order, Prepared, Settings, prepare

SETUP_CONCURRENCY = 64
LINK_QUANTUM_S = 0.002
"""The fleet's link timer wakes on this grid: one turn of the loop for every handset whose link
has an event within it (see `LinkScheduler`)."""
WARM_UP_S = 8.0
"""The longest `warm_up` waits (a 2G round trip and the radio's wake-up are a second or two,
and thousands of handshakes take the lab seconds of CPU; a link in an outage, or a lost SYN,
can take longer). The step ends sooner, once all but `WARM_UP_STRAGGLERS` of the handshakes
are done: the handsets left over open their connections at their first polls, as a cold poll
does. The connections are then well within `KEEP_WARM_S` of their opening when the field's
first polls (spread over one interval) come."""
WARM_UP_STRAGGLERS = 0.01
"""The share of `warm_up`'s handshakes it does not wait for."""
DRAIN_ROUNDS = 8
BACKOFF_WAIT_S = 10.0
"""A draining handset waits out its backoff this long (after a failed exchange), no more."""


class Fleet:
    def __init__(
        self, workdir: Path, adapter: PlatformAdapter, concurrency: int = SETUP_CONCURRENCY
    ) -> None:
        """`concurrency`: handsets set up at once (and the set-up pool's connections)."""
        self.workdir = workdir
        self.adapter = adapter
        self.concurrency = concurrency
        self.scheduler = LinkScheduler(quantum_s=LINK_QUANTUM_S)
        self.handsets: list[Handset] = []
        self.by_index: dict[int, Handset] = {}
        self._gate = asyncio.Semaphore(concurrency)
        self._setup: SetupPool | None = None
        """The loopback pool the handsets are set up over (until `to_field`)."""

    async def provision(
        self,
        url: str,
        fixture: Fixture,
        profiles: list[str],
        indexes: list[int],
        on_keycodes: Callable[[Handset, list[Keycode]], None],
    ) -> None:
        """A handset for each of `indexes` (of the fixture's agents, on `profiles[index]`),
        its file a copy of one empty database migrated once (the same bytes each migration
        would write, without its dozen statements per handset).
        Its stock and catalog come down with its first sync (`drain`), with the answer to the
        installed base's sales: one exchange, not two."""
        pool = self.pool(url)
        image = (await self.template()).read_bytes()

        async def one(index: int) -> Handset:
            spec, profile = fixture.agents[index], get_profile(profiles[index])
            return await self.provision_one(index, spec, profile, pool, image, on_keycodes)

        made = await asyncio.gather(*(one(i) for i in indexes), return_exceptions=True)
        self.handsets = [h for h in made if isinstance(h, Handset)]  # closed by close()
        self.by_index = {h.index: h for h in self.handsets}
        for outcome in made:
            if isinstance(outcome, BaseException):
                raise outcome

    def pool(self, url: str) -> SetupPool:
        """The loopback pool the handsets are set up over (one per fleet, until `to_field`)."""
        if self._setup is None:
            self._setup = SetupPool(url, self.concurrency)
        return self._setup

    async def template(self) -> Path:
        """An empty handset database, migrated once: each new handset's file is a copy."""
        template = self.workdir / "handset-template.db"
        await (await HandsetStore.open(template, STORAGE)).close()
        return template

    async def provision_one(
        self,
        index: int,
        spec: AgentSpec,
        profile: Profile,
        pool: SetupPool,
        image: bytes,
        on_keycodes: Callable[[Handset, list[Keycode]], None],
    ) -> Handset:
        """Handset `index`, its file written from `image` and provisioned over `pool`."""
        async with self._gate:
            db_path = self.db_path(index)
            with contextlib.suppress(FileExistsError):  # a phone set up before keeps it
                _create(db_path, image)  # a new phone: its empty, migrated database
            return await Handset.provision(
                index, spec, profile, pool, db_path, on_keycodes, self.adapter
            )

    def db_path(self, index: int) -> Path:
        return self.workdir / f"handset-{index:05d}.db"

    async def prepare(
        self,
        url: str,
        adapter: str,
        orders: list[Order],
        workers: int,
        on_keycodes: Callable[[Handset, list[Keycode]], None],
        ready: Callable[[Handset, Prepared], None],
        meanwhile: Callable[[], None] | None = None,
    ) -> float:
        """Set up the handsets of `orders` in `workers` processes (`field_lab.world.prepare`:
        provisioned, their sales recorded, drained), speaking `adapter` (by name), and open
        each here as its worker reports it, calling `ready` with what set-up did on it;
        returns the workers' CPU seconds. `meanwhile` runs here once the workers are started,
        before any is opened."""
        await self.template()
        pool = self.pool(url)  # the handsets' transport until `to_field`, as if set up here
        by_index = {order.index: order for order in orders}
        made: dict[int, Handset] = {}

        async def opened(done: Prepared) -> None:
            order = by_index[done.index]
            agent = await Agent.open(
                self.db_path(done.index),
                transport=pool.transport(),
                adapter=Metered(self.adapter),
                storage=STORAGE,
            )
            profile = get_profile(order.profile)
            handset = Handset(
                order.index, order.spec, profile, agent, on_keycodes, list(order.spec.devices)
            )
            handset.syncs, handset.refused, handset.finished = done.counters
            made[order.index] = handset
            ready(handset, done)

        share = Settings(url, adapter, self.workdir, max(1, self.concurrency // workers))
        try:
            return await prepare(share, orders, workers, opened, meanwhile=meanwhile)
        finally:  # what was opened is closed by close(), whatever happened
            self.handsets = [made[o.index] for o in orders if o.index in made]
            self.by_index = {h.index: h for h in self.handsets}

    async def drain(self, handsets: list[Handset] | None = None) -> None:
        """Sync every handset (or each of `handsets`) until its outbox is empty."""
        chosen = self.handsets if handsets is None else handsets
        await asyncio.gather(*(self.drain_one(h) for h in chosen))

    async def drain_one(self, handset: Handset) -> None:
        """Sync `handset` until its outbox is empty (bounded rounds)."""
        async with self._gate:
            for _ in range(DRAIN_ROUNDS):
                left = await handset.sync_once(max_exchanges=32, max_wait_s=BACKOFF_WAIT_S)
                if left == 0 or (left is None and not await handset.agent.store.sendable(1)):
                    return  # the sync's own count, read after its last exchange

    async def to_field(self, url: str, outages: dict[int, list[Outage]], warm: int = 0) -> None:
        """Move every handset onto its scenario link with its outages; the first `warm` keep
        an idle connection `KEEP_WARM_S`, the others `IDLE_CLOSE_S`."""
        for n, handset in enumerate(self.handsets):
            port = self.scheduler.add(
                handset.profile, seed=handset.index, outages=outages.get(handset.index)
            )
            keep_s = KEEP_WARM_S if n < warm else IDLE_CLOSE_S
            await handset.use(MeasuredTransport(url, port, handset.profile, keep_s), port)
        await self._close_setup()

    async def warm_up(self, within_s: float = WARM_UP_S) -> int:
        """Open, over its field link, the connection of every covered handset that keeps one
        (`KEEP_WARM_S`), all together, before the field starts: a handset that was already in
        the field would have it from its last poll, so the field's first poll is not a cold one
        only because set-up ran over a shared pool. Each handshake crosses the link (SYN,
        SYN-ACK, the radio's wake-up) and the platform accepts a real connection, as a cold
        poll's would; the lab's CPU for it is set-up's. Returns how many were opened (one that
        fails, or is still under way when the step ends, leaves its handset's first poll
        cold: see `WARM_UP_S`, the default `within_s`)."""

        async def one(transport: MeasuredTransport) -> bool:
            try:
                return await transport.connect()
            except TransientError:
                return False

        warm = [
            h.transport
            for h in self.handsets
            if h.covered and h.transport is not None and h.transport.keep_alive_s == KEEP_WARM_S
        ]
        tasks = [asyncio.ensure_future(one(t)) for t in warm]
        left = len(tasks) - int(len(tasks) * WARM_UP_STRAGGLERS)  # to wait for
        enough = asyncio.Event()

        def done(_: object) -> None:
            nonlocal left
            left -= 1
            if left <= 0:
                enough.set()

        for task in tasks:
            task.add_done_callback(done)
        try:
            if left > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(enough.wait(), within_s)
        finally:
            for task in tasks:
                task.cancel()  # the stragglers (the others are done)
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        return sum(1 for outcome in outcomes if outcome is True)

    async def _close_setup(self) -> None:
        if self._setup is not None:
            await self._setup.close()
            self._setup = None

    async def leave_coverage(self, offline: frozenset[int]) -> None:
        """The handsets of agents in villages without coverage sync once more (their escrow
        topped up past revocations of the set-up's sales), then lose their signal."""
        leaving = [h for h in self.handsets if h.index in offline]
        for handset in leaving:
            handset.offline_village = True

        async def one(handset: Handset) -> None:
            async with self._gate:
                await handset.sync_once()
                handset.covered = False

        await asyncio.gather(*(one(h) for h in leaving))

    def back_in_coverage(self) -> None:
        for handset in self.handsets:
            handset.covered = True

    def queue_depth(self, recorded: int) -> int:
        """Operations recorded in the field that no handset has heard settled yet."""
        return max(0, recorded - sum(h.finished for h in self.handsets))

    def links_down(self, now: float) -> int:
        return sum(1 for h in self.handsets if h.link_down(now))

    async def close(self) -> None:
        for handset in self.handsets:
            with contextlib.suppress(AgentError, OSError):
                await handset.close()
        await self._close_setup()


def _create(path: Path, image: bytes) -> None:
    """A new file holding `image` (FileExistsError if there is one): a copy of the template
    from memory, without opening it or checking it exists for each handset."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(image)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
