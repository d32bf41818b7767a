"""The TCP proxy shell: any client behind one emulated handset link.

Every accepted client connection becomes a `Connection` on the proxy's single `Link` (one
handset: its connections share the radio, the queue and the outages). The proxy connects
upstream on loopback at once but lets bytes through only as the link model delivers them.
Back-pressure: when a side's bytes pile up in front of a full link queue, the proxy stops reading
that socket, so the sender's own socket buffer fills as it would on a phone. A reset from a long
outage aborts both sockets with RST.

Live control, as toxiproxy offers it: `set_profile` changes the link under open connections,
`start_outage` / `stop_outage` take the radio down and up again (a long outage resets the
connections open through it, as a planned one does). Cutting a connection after N bytes is the
fault harness's `field_lab.chaos.proxy.FaultProxy`; put one behind this proxy to have both.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import struct
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from field_lab.link.core import DOWN, UP, Arrived, Connection, EofArrived, Event, Reset
from field_lab.link.outages import Outage
from field_lab.link.profiles import Profile
from field_lab.link.scheduler import LinkPort, LinkScheduler, Valve

MAX_FINISHED = 10_000  # finished connections kept for stats; a long-running proxy stays bounded


def _abort_with_rst(transport: asyncio.BaseTransport | None) -> None:
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()  # type: ignore[attr-defined]


@dataclass
class _Side:
    transport: asyncio.Transport | None = None
    valve: Valve | None = None  # pauses reading this side's socket
    backlog: bytes = b""  # arrived before the socket existed (upstream still connecting)
    eof_pending: bool = False

    def attach(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.valve = Valve(transport.pause_reading, transport.resume_reading)


class _Relay:
    """One client connection relayed through the link to one upstream connection."""

    def __init__(self, proxy: LinkProxy, client: asyncio.Transport) -> None:
        self.proxy = proxy
        self.port = proxy.port
        self.sides = {UP: _Side(), DOWN: _Side()}  # keyed by who *receives*
        self.sides[DOWN].attach(client)
        self.conn: Connection = self.port.open(self.on_event)
        self.closed = False

    # bytes written by the handset go UP and are received by the upstream side, and vice versa
    def feed(self, direction: str, data: bytes) -> None:
        if self.closed or not self.conn.alive:
            return
        self.port.send(self.conn, direction, data)
        self._flow(direction)

    def feed_eof(self, direction: str) -> None:
        if not self.closed and self.conn.alive:
            self.port.close(self.conn, direction)

    def _reader(self, direction: str) -> _Side:
        """The side whose socket produces bytes for `direction`."""
        return self.sides[DOWN if direction == UP else UP]

    def _flow(self, direction: str) -> None:
        side = self._reader(direction)
        if (
            side.valve is not None
            and side.transport is not None
            and not side.transport.is_closing()
        ):
            side.valve.update(self.conn.pending_bytes(direction) if self.conn.alive else 0)

    def on_event(self, event: Event) -> None:
        if isinstance(event, Arrived):
            self._write(event.direction, event.data)
            self._flow(event.direction)
        elif isinstance(event, EofArrived):
            side = self.sides[event.direction]
            if side.transport is None:
                side.eof_pending = True
            elif side.transport.can_write_eof():
                side.transport.write_eof()
            if not self.conn.alive:  # both FINs arrived
                self.finish()
        elif isinstance(event, Reset):
            self.proxy.resets += 1
            self.abort()
        for direction in (UP, DOWN):
            if self.conn.alive:
                self._flow(direction)

    def _write(self, direction: str, data: bytes) -> None:
        side = self.sides[direction]
        if side.transport is None:
            side.backlog += data
        elif not side.transport.is_closing():
            side.transport.write(data)

    def upstream_ready(self, transport: asyncio.Transport) -> None:
        side = self.sides[UP]
        side.attach(transport)
        if side.backlog:
            transport.write(side.backlog)
            side.backlog = b""
        if side.eof_pending and transport.can_write_eof():
            transport.write_eof()

    def finish(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.proxy._retire(self)
        for side in self.sides.values():
            if side.transport is not None:
                side.transport.close()

    def abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.conn.alive:
            self.port.abort(self.conn)
        self.proxy._retire(self)
        for side in self.sides.values():
            _abort_with_rst(side.transport)


class _ClientProtocol(asyncio.Protocol):
    def __init__(self, proxy: LinkProxy) -> None:
        self.proxy = proxy
        self.relay: _Relay | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.relay = relay = _Relay(self.proxy, transport)
        self.proxy._track(relay)
        task = asyncio.get_running_loop().create_task(self.proxy._connect_upstream(relay))
        self.proxy._tasks.add(task)
        task.add_done_callback(self.proxy._tasks.discard)

    def data_received(self, data: bytes) -> None:
        if self.relay is not None:
            self.relay.feed(UP, data)

    def eof_received(self) -> bool:
        if self.relay is not None:
            self.relay.feed_eof(UP)
        return True  # keep the socket half-open: the response may still be on its way

    def connection_lost(self, exc: Exception | None) -> None:
        if self.relay is not None and not self.relay.closed and exc is not None:
            self.relay.abort()


class _UpstreamProtocol(asyncio.Protocol):
    def __init__(self, relay: _Relay) -> None:
        self.relay = relay

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.relay.upstream_ready(transport)

    def data_received(self, data: bytes) -> None:
        self.relay.feed(DOWN, data)

    def eof_received(self) -> bool:
        self.relay.feed_eof(DOWN)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.relay.closed and exc is not None:
            self.relay.abort()


class LinkProxy:
    """A TCP proxy that carries every client connection over one emulated link."""

    def __init__(
        self,
        profile: Profile,
        upstream: tuple[str, int],
        *,
        seed: int = 0,
        outages: Iterable[Outage] | None = None,
        scheduler: LinkScheduler | None = None,
    ) -> None:
        self.profile = profile
        self.upstream = upstream
        self.seed = seed
        self.scheduler = scheduler if scheduler is not None else LinkScheduler()
        self.port: LinkPort = self.scheduler.add(profile, seed=seed, outages=outages)
        self._server: asyncio.Server | None = None
        self._relays: set[_Relay] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.finished: deque[Connection] = deque(maxlen=MAX_FINISHED)  # newest, for stats
        self.connections_total = 0
        self.resets = 0
        self.upstream_failures = 0

    def set_profile(self, profile: Profile) -> None:
        """From now on the link behaves as `profile`; open connections stay open and bytes not
        yet on the air are re-timed. Raises UsageError for an offline profile (use
        `start_outage`)."""
        self.port.retune(profile)
        self.profile = profile

    def start_outage(self) -> None:
        """The radio goes down now, until `stop_outage`. Raises UsageError if it already is."""
        self.port.interrupt()

    def stop_outage(self) -> None:
        """The radio comes back now. Raises UsageError if no outage was started."""
        self.port.restore()

    @property
    def outage_active(self) -> bool:
        """Whether `start_outage` took the radio down and `stop_outage` has not yet."""
        return self.port.link.interrupted

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen; returns the bound (host, port)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _ClientProtocol(self), host, port)
        sockname = self._server.sockets[0].getsockname()
        return str(sockname[0]), int(sockname[1])

    async def _connect_upstream(self, relay: _Relay) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: _UpstreamProtocol(relay), *self.upstream)
        except OSError:
            self.upstream_failures += 1
            relay.abort()

    def _track(self, relay: _Relay) -> None:
        self._relays.add(relay)
        self.connections_total += 1

    def _retire(self, relay: _Relay) -> None:
        self._relays.discard(relay)
        self.finished.append(relay.conn)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for relay in list(self._relays):
            relay.abort()
        for task in list(self._tasks):
            task.cancel()
        self.scheduler.close()

    def stats(self) -> dict[str, Any]:
        """Per-direction link counters and per-connection byte and timing figures (JSON-ready),
        times in seconds since the link's epoch."""
        link = self.port.link
        epoch = link.epoch

        def rel(t: float | None) -> float | None:
            return None if t is None else round(t - epoch, 6)

        conns = [*self.finished, *(r.conn for r in self._relays)]
        return {
            "profile": self.profile.name,
            "seed": self.seed,
            "connections_total": self.connections_total,
            "resets": self.resets,
            "upstream_failures": self.upstream_failures,
            "radio_wakeups": link.radio.wakeups,
            "directions": {
                name: dataclasses.asdict(d.stats)
                for name, d in (("up", link.up), ("down", link.down))
            },
            "connections": [
                {
                    "id": c.id,
                    "state": c.state.value,
                    "opened_at": rel(c.stats.opened_at),
                    "established_at": rel(c.stats.established_at),
                    "closed_at": rel(c.stats.closed_at),
                    "reset_at": rel(c.stats.reset_at),
                    **{
                        d: {
                            "bytes": c.stats.bytes[d],
                            "first_at": rel(c.stats.first_at[d]),
                            "last_at": rel(c.stats.last_at[d]),
                        }
                        for d in (UP, DOWN)
                    },
                }
                for c in sorted(conns, key=lambda c: c.id)
            ],
        }

    def write_stats(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.stats(), indent=2) + "\n", encoding="utf-8")
