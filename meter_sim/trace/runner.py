"""The replay shell: paces the replayer core's sends and bounds every wait for an answer.

The clock and sleep are parameters so tests drive pacing without waiting on the wall clock.
"""

from __future__ import annotations

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
) -> Result:
    """Replay `trace` on `link`; returns the comparisons. Never waits longer than the bounds."""
    if not timeout > 0:
        raise ValueError("timeout must be positive")
    core = Replayer(trace, speed=speed, max_timeouts=max_timeouts)
    timing = timing if timing is not None else Timing()
    start = clock()
    try:
        while not core.finished:
            send = core.next_send()
            if send is None:
                continue
            delay = start + send.due - clock()
            if delay > 0:
                sleep(delay)
            link.write(send.data)
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
