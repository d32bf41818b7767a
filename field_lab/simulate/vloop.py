"""An asyncio event loop on a virtual clock: when nothing is ready, time jumps to the next timer.

Every `asyncio.sleep`, `wait_for` and `call_later` of the code it runs (agents' backoff, the
operator's callback delays, the SMS gateway, customers typing) reads `loop.time()`, which here
is simulated seconds since day 0 00:00. The selector still polls real file descriptors (the
self-pipe, loopback sockets) without waiting; it blocks in real time only when no timer is due
at all, i.e. when the program waits for real I/O or another thread. Work handed to threads in
the simulated phase would break determinism, so the platform's store runs inline
(`field_lab.simulate.inproc`).
"""

from __future__ import annotations

import asyncio
import selectors
import threading
from collections.abc import Callable, Coroutine
from contextvars import Context
from typing import Any, TypeVar

T = TypeVar("T")
REAL_POLL_EVERY = 64
"""While callbacks are ready, the real descriptors are polled once per this many turns of the
loop (a system call each, for I/O that a simulation does not do); always before time jumps."""


class _VirtualSelector(selectors.DefaultSelector):
    """A selector whose waits advance the loop's clock instead of the wall clock."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualLoop | None = None
        self._busy_turns = 0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout <= 0:  # callbacks are ready: they go first
            self._busy_turns += 1
            if self._busy_turns < REAL_POLL_EVERY:
                return []
        self._busy_turns = 0
        ready = super().select(0)
        if ready or (timeout is not None and timeout <= 0):
            return ready
        if timeout is None or self.loop is None:  # nothing scheduled: only real I/O can come
            return super().select(timeout)
        self.loop.advance(timeout)
        return []


class VirtualLoop(asyncio.SelectorEventLoop):
    """`time()` is the simulated clock; `advance` is the only thing that moves it."""

    def __init__(self, start: float = 0.0) -> None:
        selector = _VirtualSelector()
        super().__init__(selector)
        selector.loop = self
        self._now = start
        self.jumps = 0
        self._owner = threading.get_ident()

    def time(self) -> float:
        return self._now

    def call_soon_threadsafe(  # type: ignore[override]
        self, callback: Callable[..., object], *args: Any, context: Context | None = None
    ) -> asyncio.Handle:
        """From the loop's own thread (an executor that ran inline, as the platform's store
        does here) no wake-up through the self-pipe is needed: two syscalls saved a call."""
        if threading.get_ident() == self._owner:
            return self.call_soon(callback, *args, context=context)
        return super().call_soon_threadsafe(callback, *args, context=context)

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            self._now += seconds
            self.jumps += 1


def run(main: Coroutine[Any, Any, T], *, start: float = 0.0) -> tuple[T, VirtualLoop]:
    """Run `main` to completion on a fresh virtual loop; returns its result and the loop
    (whose `time()` says where the simulated clock stopped)."""
    loop = VirtualLoop(start)
    try:
        asyncio.set_event_loop(loop)
        result = loop.run_until_complete(main)
        loop.run_until_complete(loop.shutdown_asyncgens())
        return result, loop
    finally:
        asyncio.set_event_loop(None)
        loop.close()
