"""One scheduler for the whole fleet's sync habit: no task and no timer per idle handset.

Each handset syncs every `interval_s` (to fetch what came down for its customers) and at once
when something is recorded on it, but never before its agent's backoff ends. The scheduler
keeps one heap of (when, handset) and one loop timer armed for the earliest; a due handset
gets a task only while it syncs. At most `max_active` handsets sync at once (each holds a
socket while it does): the rest wait their turn in order, so the descriptors a run needs are
known before it starts. First polls are spread over one interval, as phones' are. The timer
wakes on a grid of `QUANTUM_S` (rounded up): the handsets due within one step start together,
one turn of the loop for them all, each at most one step late.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import Iterable

from field_lab.world.handset import Handset

QUANTUM_S = 0.005
"""The timer's grid: a 10,000-handset fleet's polls are due every 1.5 ms on average."""
GOLDEN = 0.6180339887498949
"""Spreads first polls evenly over the interval whatever the fleet's size."""


class SyncScheduler:
    def __init__(self, interval_s: float | None, max_active: int) -> None:
        if max_active < 1:
            raise ValueError(f"max_active must be >= 1, got {max_active}")
        self.interval_s = interval_s
        self.max_active = max_active
        self._loop = asyncio.get_running_loop()
        self._heap: list[tuple[float, int, int]] = []
        self._seq = itertools.count()
        self._due: dict[int, float] = {}
        self._handsets: dict[int, Handset] = {}
        self._ready: deque[Handset] = deque()
        self._queued: set[int] = set()
        self._active: dict[int, asyncio.Task[None]] = {}
        self._woken: set[int] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._stopped = False
        self.syncs = 0
        self.peak_active = 0
        self.failure: Exception | None = None
        """The first unexpected error of a sync (a lab bug: the run cannot be trusted)."""

    def start(self, handsets: Iterable[Handset]) -> None:
        now = self._loop.time()
        for handset in handsets:
            self._handsets[handset.index] = handset
            handset.waker = self.wake
            if self.interval_s is not None:
                self._at(handset, now + self.interval_s * ((handset.index * GOLDEN) % 1.0))

    def wake(self, handset: Handset) -> None:
        """Sync `handset` as soon as its backoff allows (after the current sync, if any)."""
        if self._stopped:
            return
        if handset.index in self._active:
            self._woken.add(handset.index)
            return
        self._at(handset, max(self._loop.time(), self._not_before(handset)))

    @staticmethod
    def _not_before(handset: Handset) -> float:
        """The agent's backoff end (on its own clock) on the loop's clock."""
        retry_in = handset.agent.core.retry_at - time.time()
        return asyncio.get_running_loop().time() + max(0.0, retry_in)

    def _at(self, handset: Handset, when: float) -> None:
        index = handset.index
        if index in self._queued:
            return
        current = self._due.get(index)
        if current is not None and current <= when:
            return
        self._due[index] = when
        heapq.heappush(self._heap, (when, next(self._seq), index))
        if self._timer_at is None or when < self._timer_at:
            self._arm(when)

    def _arm(self, when: float) -> None:
        when = math.ceil(when / QUANTUM_S) * QUANTUM_S
        if self._timer_at is not None and when >= self._timer_at:
            return  # the armed wake-up serves it
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._fire)
        self._timer_at = when

    def _fire(self) -> None:
        self._timer, self._timer_at = None, None
        now = self._loop.time()
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, index = heapq.heappop(heap)
            if self._due.get(index) != when:
                continue  # superseded by an earlier time
            del self._due[index]
            self._queued.add(index)
            self._ready.append(self._handsets[index])
        self._launch()
        while heap and self._due.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)
        if heap and not self._stopped:
            self._arm(heap[0][0])

    def _launch(self) -> None:
        while self._ready and len(self._active) < self.max_active and not self._stopped:
            handset = self._ready.popleft()
            self._queued.discard(handset.index)
            task = self._loop.create_task(self._sync(handset))
            self._active[handset.index] = task
            self.peak_active = max(self.peak_active, len(self._active))

    async def _sync(self, handset: Handset) -> None:
        try:
            await handset.sync_once()
            self.syncs += 1
        except Exception as exc:  # sync_once absorbs the link's and the platform's failures
            self.failure = self.failure or exc
        finally:
            del self._active[handset.index]
            if not self._stopped:
                self._next(handset)
                self._launch()

    def _next(self, handset: Handset) -> None:
        not_before = self._not_before(handset)
        if handset.index in self._woken:
            self._woken.discard(handset.index)
            self._at(handset, not_before)
        elif self.interval_s is not None:
            self._at(handset, max(self._loop.time() + self.interval_s, not_before))

    async def stop(self, timeout_s: float) -> None:
        """No new syncs; the ones under way get `timeout_s` to finish, then are cancelled."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
        running = list(self._active.values())
        if running:
            await asyncio.wait(running, timeout=timeout_s)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
