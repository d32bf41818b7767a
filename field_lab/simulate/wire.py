"""How a handset's exchange reaches the platform in simulated time, and where it can fail.

`Door` is the platform's front door: closed while a `platform_down` incident lasts (a request
then fails as a refused connection would), otherwise it hands the request to the real
application (`AppDispatch`). `LinkTransport` is an `agent_client.transport.Transport`: each
POST rides the handset's 2G link, timed by the sans-I/O link core (`field_lab.link.core`) with
its outages and the phone's offline windows, and the handset waits that long on the loop's
virtual clock: no per-packet task, no socket.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable, Iterable, Iterator

from agent_client.errors import TransientError
from agent_client.transport import Reply, raise_for_transient
from field_lab.link import DOWN, UP, Profile
from field_lab.link.core import Arrived, Connection, EofArrived, Link, Reset
from field_lab.link.outages import Outage
from field_lab.simulate.inproc import Answer, AppDispatch, head_bytes

MAX_STEPS = 10_000
"""Link events one exchange may take (a few packets each way; bounded anyway)."""
TOTAL_TIMEOUT_S = 120.0
"""The handset's own timeout for an exchange (agent_client.transport.Timeouts.total_s)."""


class Windows:
    """Sorted, disjoint [start, end) windows of simulated time, merged when they overlap."""

    def __init__(self, windows: Iterable[tuple[float, float]] = ()) -> None:
        merged: list[list[float]] = []
        for start, end in sorted(w for w in windows if w[1] > w[0]):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        self.starts = [w[0] for w in merged]
        self.ends = [w[1] for w in merged]

    def covering(self, t: float) -> tuple[float, float] | None:
        """The window that contains `t`, if any."""
        i = bisect.bisect_right(self.starts, t) - 1
        if i >= 0 and t < self.ends[i]:
            return self.starts[i], self.ends[i]
        return None

    def __iter__(self) -> Iterator[tuple[float, float]]:
        return iter(zip(self.starts, self.ends, strict=True))

    def outages(self) -> list[Outage]:
        """The same windows as the link core's scripted outages."""
        return [Outage(s, e - s) for s, e in zip(self.starts, self.ends, strict=True)]


class PlatformDown(Exception):
    """The platform did not answer: a `platform_down` incident covers this moment."""


class Door:
    """The platform's front door on the simulated clock."""

    def __init__(self, dispatch: AppDispatch, down: Windows) -> None:
        self.dispatch = dispatch
        self.down = down
        self.refused = 0
        self.served = 0

    async def __call__(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> Answer:
        if self.down.covering(asyncio.get_running_loop().time()) is not None:
            self.refused += 1
            raise PlatformDown(f"{method} {path}: the platform is down")
        self.served += 1
        return await self.dispatch(method, path, headers, body)


class LinkTransport:
    """A handset's exchanges over its link (a Transport for `agent_client.Agent`)."""

    base_url = "http://platform.sim"

    def __init__(
        self,
        door: Door,
        profile: Profile,
        *,
        seed: int,
        offline: Windows,
        on_arrival: Callable[[float], None] | None = None,
    ) -> None:
        """`offline`: when this handset has no link (its village's coverage holes and the
        phone's own offline spells); `on_arrival(t)`: a request reached the platform's door."""
        self.door = door
        self.profile = profile
        self.offline = offline
        self.on_arrival = on_arrival
        self._link = Link(profile, seed=seed, outages=offline.outages())
        self.exchanges = 0
        self.failures = 0
        self.seconds = 0.0

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        loop = asyncio.get_running_loop()
        start = loop.time()
        self.exchanges += 1
        if self.offline.covering(start) is not None:
            self.failures += 1  # no network: the phone says so at once
            raise TransientError("no network")
        up = head_bytes(f"POST {path} HTTP/1.1", headers) + len(body)
        conn = self._link.connect(start)
        arrived = self._carry(conn, UP, up, start)
        if arrived is None or arrived - start > TOTAL_TIMEOUT_S:
            return await self._failed(conn, start, "timeout on the uplink")
        await asyncio.sleep(arrived - loop.time())
        if self.on_arrival is not None:
            self.on_arrival(arrived)
        try:
            answer = await self.door("POST", path, headers, body)
        except PlatformDown as exc:
            return await self._failed(conn, start, str(exc), at=loop.time())
        now = loop.time()
        back = self._carry(conn, DOWN, answer.head_bytes + len(answer.body), now)
        if back is None or back - start > TOTAL_TIMEOUT_S:
            return await self._failed(conn, start, "timeout on the downlink")
        await asyncio.sleep(back - now)
        conn.abort(back)  # the data session idles out long before the next sync
        self.seconds += back - start
        return raise_for_transient(Reply(answer.status, answer.body))

    async def _failed(
        self, conn: Connection, start: float, why: str, at: float | None = None
    ) -> Reply:
        """The exchange failed: the handset learns it at `at` (default its own timeout)."""
        loop = asyncio.get_running_loop()
        end = at if at is not None else start + TOTAL_TIMEOUT_S
        await asyncio.sleep(max(0.0, end - loop.time()))
        conn.abort(max(end, loop.time()))
        self._link = Link(self.profile, seed=self.exchanges, outages=self.offline.outages())
        self.failures += 1
        self.seconds += end - start
        raise TransientError(why)

    def _carry(self, conn: Connection, direction: str, nbytes: int, now: float) -> float | None:
        """When the last of `nbytes` sent at `now` arrives (None: reset or never)."""
        conn.send(now, direction, b"x" * nbytes)
        got = 0
        link = self._link
        for _ in range(MAX_STEPS):
            t = link.next_event_time()
            if t is None:
                return None
            for event in link.poll(t):
                if not isinstance(event, Arrived | Reset | EofArrived) or event.conn is not conn:
                    continue
                if not isinstance(event, Arrived):
                    return None
                if event.direction == direction:
                    got += len(event.data)
                    if got >= nbytes:
                        return t
        return None

    async def close(self) -> None:
        """Nothing held between exchanges."""
