"""The replay shell: paces the replayer core's sends and bounds every wait for an answer.

The clock and sleep are parameters so tests drive pacing without waiting on the wall clock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from meter_sim.trace.errors import TargetError
from meter_sim.trace.format import Trace
from meter_sim.trace.replay import EXIT_UNREACHABLE, Replayer, Result
from meter_sim.trace.targets import Link

DEFAULT_TIMEOUT = 2.0
"""Seconds to wait for one answer."""


@dataclass
class Timing:
    elapsed: float = 0.0
    sent: int = 0


def replay(
    trace: Trace,
    link: Link,
    *,
    speed: float | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_timeouts: int = 3,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    timing: Timing | None = None,
    key_gap: float = 0.0,
) -> Result:
    """Replay `trace` on `link`; returns the comparisons. Never waits longer than the bounds.

    `key_gap` paces keys: a KEY request goes out at least that many seconds after the one
    before it, whatever the speed (a real keypad's debounce and scan time)."""
    if not timeout > 0:
        raise ValueError("timeout must be positive")
    if not (math.isfinite(key_gap) and key_gap >= 0):
        raise ValueError(f"key_gap must be a non-negative number of seconds, got {key_gap!r}")
    core = Replayer(trace, speed=speed, max_timeouts=max_timeouts)
    timing = timing if timing is not None else Timing()
    start = clock()
    last_key = -math.inf
    try:
        while not core.finished:
            send = core.next_send()
            if send is None:
                continue
            due = send.due
            if key_gap and send.index >= 0 and trace.events[send.index].kind == "key":
                due = max(due, last_key + key_gap - start)
            delay = start + due - clock()
            if delay > 0:
                sleep(delay)
            if send.reconnect:
                link.reconnect()
            link.write(send.data)
            if send.index >= 0 and trace.events[send.index].kind == "key":
                last_key = clock()
            timing.sent += 1
            deadline = clock() + timeout
            while core.waiting:
                remaining = deadline - clock()
                if remaining <= 0:
                    core.timeout()
                    break
                data = link.read(remaining)
                if data:
                    core.receive(data)
    except TargetError as exc:
        core.result.aborted = str(exc)
        core.result.abort_code = EXIT_UNREACHABLE
    timing.elapsed = clock() - start
    return core.result
