"""One asyncio timer that drives any number of link models.

Theory of operation. Every `LinkPort` (one per emulated handset) wraps a sans-I/O `Link`. The
scheduler keeps a heap of (next event time, port) and a single `loop.call_at` timer armed for the
earliest; when it fires, every due port polls its link with the loop's clock and hands the events
to the per-connection sinks, then re-enters the heap at its new next event time. Feeding bytes
(`send`, `close`) re-arms the timer if the new event is earlier. Stale heap entries are skipped
(lazy deletion), so touching a port is O(log n). Thousands of handsets cost one timer, not one
task or one listening socket each.

With a `quantum_s`, the timer is armed on a grid of that step (rounded up): every port due within
one step is served by one wake-up of the loop, and an earlier event inside the armed step does
not re-arm it. Each delivery is then late by less than one step (the model still stamps it at
its own time; the shell sees it at the wake-up). A fleet of thousands of handsets has events
every fraction of a millisecond, each a turn of the loop without it; 2 ms on a 2G link whose
round trip is hundreds of milliseconds is noise (see docs/scale.md).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import Callable, Iterable

from field_lab.link.core import Connection, Event, Link
from field_lab.link.outages import Outage
from field_lab.link.profiles import Profile

Sink = Callable[[Event], None]

HIGH_WATER = 256 * 1024  # bytes held in front of the link before the producer is paused
LOW_WATER = 64 * 1024  # ... and resumed below this


class Valve:
    """Back-pressure with hysteresis: pause a producer when more than HIGH_WATER bytes wait in
    front of the link, resume it below LOW_WATER (as asyncio's write-buffer limits do)."""

    __slots__ = ("_pause", "_resume", "paused")

    def __init__(self, pause: Callable[[], None], resume: Callable[[], None]) -> None:
        self._pause = pause
        self._resume = resume
        self.paused = False

    def update(self, pending: int) -> None:
        if not self.paused and pending > HIGH_WATER:
            self.paused = True
            self._pause()
        elif self.paused and pending < LOW_WATER:
            self.paused = False
            self._resume()


class LinkPort:
    """A link driven by a scheduler, with per-connection event sinks."""

    __slots__ = ("_due", "_scheduler", "_sinks", "link", "opened")

    def __init__(self, scheduler: LinkScheduler, link: Link) -> None:
        self._scheduler = scheduler
        self.link = link
        self._sinks: dict[int, Sink] = {}
        self._due: float | None = None
        self.opened = 0
        """Connections opened so far (a cold exchange opened one)."""

    def now(self) -> float:
        return self._scheduler.now()

    def open(self, sink: Sink) -> Connection:
        """Open a connection from the handset (its SYN is queued now); events go to `sink`."""
        conn = self.link.connect(self.now())
        self.opened += 1
        self._sinks[conn.id] = sink
        self.touch()
        return conn

    def send(self, conn: Connection, direction: str, data: bytes) -> None:
        conn.send(self.now(), direction, data)
        self.touch()

    def close(self, conn: Connection, direction: str) -> None:
        conn.close(self.now(), direction)
        self.touch()

    def abort(self, conn: Connection) -> None:
        conn.abort(self.now())
        self._sinks.pop(conn.id, None)
        self.touch()

    def interrupt(self) -> None:
        """Take the radio down now, until `restore` (see `Link.interrupt`)."""
        self.link.interrupt(self.now())
        self.touch()

    def restore(self) -> None:
        """Bring the radio back now (see `Link.restore`)."""
        self.link.restore(self.now())
        self.touch()

    def retune(self, profile: Profile) -> None:
        """Behave as `profile` from now on (see `Link.retune`)."""
        self.link.retune(self.now(), profile)
        self.touch()

    def touch(self) -> None:
        """Tell the scheduler the link may have an earlier event now."""
        self._scheduler._reschedule(self)

    def _poll(self, now: float) -> None:
        events = self.link.poll(now)
        for event in events:
            sink = self._sinks.get(event.conn.id)
            if sink is not None:
                sink(event)
        for event in events:  # only now: a closing connection's last events all reach its sink
            if not event.conn.alive:
                self._sinks.pop(event.conn.id, None)


class LinkScheduler:
    """Drives many `LinkPort`s from one timer on the running loop (see the module docstring)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop | None = None, *, quantum_s: float = 0.0
    ) -> None:
        """`quantum_s`: the timer's grid (0: armed at each exact event time)."""
        if not quantum_s >= 0.0 or math.isinf(quantum_s):
            raise ValueError(f"quantum_s must be a finite number >= 0, got {quantum_s!r}")
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self.quantum_s = quantum_s
        self._heap: list[tuple[float, int, LinkPort]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closed = False
        self.polls = 0
        self.wakeups = 0
        """Times the timer fired (each serves every port due by then)."""

    def now(self) -> float:
        return self._loop.time()

    def add(
        self,
        profile: Profile,
        *,
        seed: int = 0,
        outages: Iterable[Outage] | None = None,
    ) -> LinkPort:
        """A new handset link whose epoch is now."""
        return LinkPort(self, Link(profile, seed=seed, epoch=self.now(), outages=outages))

    def _reschedule(self, port: LinkPort) -> None:
        if self._closed:
            return
        due = port.link.next_event_time()
        if due == port._due:
            return
        port._due = due
        if due is None:
            return
        heapq.heappush(self._heap, (due, next(self._seq), port))
        if self._timer_at is None or due < self._timer_at:
            self._arm(due)

    def _arm(self, at: float) -> None:
        q = self.quantum_s
        if q:
            at = math.ceil(at / q) * q
            if self._timer_at is not None and at >= self._timer_at:
                return  # the armed wake-up serves it
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(at, self._fire)
        self._timer_at = at

    def _fire(self) -> None:
        self.wakeups += 1
        self._timer = None
        self._timer_at = None
        now = self.now()
        heap = self._heap
        budget = 4 * len(heap) + 64  # a port whose next event stays due cannot spin the loop
        while heap and heap[0][0] <= now and budget > 0:
            budget -= 1
            due, _, port = heapq.heappop(heap)
            if port._due != due:
                continue  # stale entry: the port was rescheduled since
            port._due = None
            self.polls += 1
            try:
                port._poll(now)
            except Exception as exc:  # one handset's faulty sink must not stall the others
                self._loop.call_exception_handler(
                    {"message": "a link event sink raised", "exception": exc, "port": port}
                )
            self._reschedule(port)
        while heap and heap[0][2]._due != heap[0][0]:
            heapq.heappop(heap)
        if heap and not self._closed:
            self._arm(heap[0][0])

    def close(self) -> None:
        """Stop driving links (pending events are dropped)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._heap.clear()
