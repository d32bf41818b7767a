"""An emulated agent handset: a real `agent_client.Agent` whose HTTP rides its own 2G link.

The handset's sync habit is the lab's to drive (`field_lab.world.syncs`: one scheduler for the
fleet): sync when something was recorded, and every `sync_interval_s` to fetch what came down
for its customers. Every exchange is measured on the link (bytes each way, time) and compared
with the link's physical floor (a cold connection's floor counts the handshake).

How long an idle connection is kept is the lab's to choose (`MeasuredTransport(keep_s=...)`):
`KEEP_WARM_S` for as many handsets as the descriptor budget has a socket for, as a phone's
HTTP client keeps one, so a handset polling every 15 s reuses it; `IDLE_CLOSE_S` for the
rest, which hold no socket while idle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from agent_client.adapters import Link, PlatformAdapter, Provisioned
from agent_client.agent import Agent
from agent_client.database import Inline, Storage
from agent_client.errors import ServerRefused
from agent_client.protocol.frames import Keycode
from agent_client.protocol.ops import Operation
from agent_client.protocol.sync import Result
from agent_client.transport import Http1Transport, Reply
from field_lab.lab.stats import NO_COVERAGE
from field_lab.link import DOWN, UP, Profile, floor_seconds
from field_lab.link.aio import LinkOpener
from field_lab.link.scheduler import LinkPort
from field_lab.world.fixture import AgentSpec
from field_lab.world.pool import SetupPool

IDLE_CLOSE_S = 5.0
"""An idle handset's connection closes this long after its last exchange, when the lab cannot
give every handset a socket (then the next poll starts cold)."""
KEEP_WARM_S = 30.0
"""An idle connection kept this long otherwise: a phone's HTTP client keeps an idle connection
for minutes (OkHttp: 5), and a radio that went idle meanwhile costs the link's wake-up, not a
new connection; longer than the default 15 s poll, shorter than the platform's 75 s
keep-alive (aiohttp's), so the platform does not close it under a request."""
STORAGE = Storage(journal="persist", synchronous="off", runner=Inline(), locks=False)
"""How emulated handsets keep their files: each commit handed to the OS (it survives the
handset's process dying, not the lab machine losing power), one descriptor per idle file, no
thread, no file locks (each file has one connection, in this process: an open costs the same
however many files are open; see docs/scale.md for what was measured). The rollback journal
persists: a commit zeroes its header instead of truncating the file (the file system frees
and allocates its blocks again at every commit otherwise), so each handset keeps a journal of
its largest transaction's size (about 15-30 KiB) beside its file; a crash mid-transaction
still leaves it hot, rolled back at the next open."""


@dataclass(frozen=True)
class Exchange:
    at: float
    seconds: float
    bytes_up: int
    bytes_down: int
    ok: bool
    floor: float
    ops: int
    """Operations the request carried (0: a poll for downlink only)."""
    cold: bool = False
    """It opened its connection (its time and floor include the handshake)."""


class Metered:
    """Any platform adapter, telling the handset's measured transport how many operations
    the exchange it is about to make carries (whatever the wire format)."""

    def __init__(self, inner: PlatformAdapter) -> None:
        self.inner = inner
        self.max_batch = inner.max_batch
        self.polls = inner.polls

    async def provision(self, link: Link, *, agent: str, code: str) -> Provisioned:
        return await self.inner.provision(link, agent=agent, code=code)

    async def exchange(self, link: Link, ops: Sequence[Operation], cursor: int) -> Result:
        if isinstance(link.transport, MeasuredTransport):
            link.transport.carrying = len(ops)
        return await self.inner.exchange(link, ops, cursor)


class MeasuredTransport(Http1Transport):
    """The agent's transport (agent_client's HTTP/1.1 client) over a link port, recording each
    exchange."""

    def __init__(
        self, base_url: str, port: LinkPort, profile: Profile, keep_s: float = IDLE_CLOSE_S
    ) -> None:
        """`keep_s`: how long an idle connection is kept open."""
        super().__init__(base_url, opener=LinkOpener(port), keep_alive_s=keep_s)
        self.port = port
        self.profile = profile
        self.exchanges: list[Exchange] = []
        self.handshakes: list[tuple[float, float]] = []
        """(at, seconds) of each connection opened ahead of an exchange (`connect`)."""
        self.carrying = 0
        """Operations the next request carries (`Metered` says; a one-per-request adapter
        carries its one in each of its requests)."""
        self._loop = asyncio.get_running_loop()

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        ops = self.carrying
        opened = self.port.opened
        written = self.port.link.bytes_written
        up0, down0 = written[UP], written[DOWN]
        start = self._loop.time()
        ok = False
        try:
            reply = await super().post(path, body, headers)
            ok = reply.status < 400
            return reply
        finally:
            up, down = written[UP] - up0, written[DOWN] - down0
            cold = self.port.opened != opened
            self.exchanges.append(
                Exchange(
                    at=start,
                    seconds=self._loop.time() - start,
                    bytes_up=up,
                    bytes_down=down,
                    ok=ok,
                    floor=floor_seconds(self.profile, up, down, warm=not cold),
                    ops=ops,
                    cold=cold,
                )
            )

    async def connect(self) -> bool:
        """`Http1Transport.connect`, recording how long the handshake took (`handshakes`)."""
        start = self._loop.time()
        opened = await super().connect()
        if opened:
            self.handshakes.append((start, self._loop.time() - start))
        return opened


@dataclass
class Handset:
    index: int
    spec: AgentSpec
    profile: Profile
    agent: Agent
    on_keycodes: Callable[[Handset, list[Keycode]], None]
    unsold: list[int] = field(default_factory=list)
    port: LinkPort | None = None
    """Its link (None while it is set up: over the lab's shared loopback pool, no link)."""
    transport: MeasuredTransport | None = None
    """Its measured transport over `port` (None while it is set up)."""
    waker: Callable[[Handset], None] | None = None
    """Who syncs this handset when something is recorded (the fleet's sync scheduler)."""
    offline_village: bool = False
    """Its agent works where there is no coverage: no sync during the field, sales offline."""
    covered: bool = True
    """Whether it has a signal now (an offline village's handset has none in the field)."""
    refused: int = 0
    syncs: int = 0
    finished: int = 0
    """Operations the platform has acknowledged or refused, as this handset has heard."""

    @classmethod
    async def provision(
        cls,
        index: int,
        spec: AgentSpec,
        profile: Profile,
        pool: SetupPool,
        db_path: Path,
        on_keycodes: Callable[[Handset, list[Keycode]], None],
        adapter: PlatformAdapter,
    ) -> Handset:
        """A new handset, provisioned (and later set up) over `pool`: loopback connections the
        fleet shares while it sets up, where no link is emulated (set-up is not measured);
        `use` moves it onto its own link for the field."""
        agent = await Agent.provision(
            db_path,
            pool.base_url,
            spec.name,
            spec.code,
            transport=pool.transport(),
            adapter=Metered(adapter),
            storage=STORAGE,
        )
        return cls(index, spec, profile, agent, on_keycodes, list(spec.devices))

    @property
    def handset_id(self) -> int:
        return self.agent.handset

    @property
    def group(self) -> str:
        """The figures group it counts in: its link profile, or the villages without coverage."""
        return NO_COVERAGE if self.offline_village else self.profile.name

    @property
    def exchanges(self) -> list[Exchange]:
        """Its exchanges on its link (none before it has one)."""
        return [] if self.transport is None else self.transport.exchanges

    def link_down(self, now: float) -> bool:
        return self.port is not None and self.port.link.radio_down(now)

    async def sync_once(self, max_exchanges: int = 16, max_wait_s: float = 0.0) -> int | None:
        """Sync once; the operations its outbox still holds after (None: no sync was made,
        or it failed before the count)."""
        if not self.covered:
            return None  # no signal: the phone does not try (what it recorded waits)
        try:
            report = await self.agent.sync(max_exchanges=max_exchanges, max_wait_s=max_wait_s)
        except ServerRefused:
            self.refused += 1
            return None
        except (aiohttp.ClientError, OSError, TimeoutError):
            return None
        self.syncs += 1
        self.finished += len(report.acked) + len(report.rejected)
        if report.keycodes:
            self.on_keycodes(self, report.keycodes)
        return report.pending

    def wake(self) -> None:
        """Something was recorded: sync soon (at once, or when the backoff ends)."""
        if self.waker is not None:
            self.waker(self)

    async def use(self, transport: MeasuredTransport, port: LinkPort) -> None:
        """Carry this handset's exchanges over another link from now on."""
        await self.agent.transport.close()
        self.transport = transport
        self.agent.transport = transport
        self.port = port

    async def close(self) -> None:
        await self.agent.close()
