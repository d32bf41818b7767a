"""Mahimahi delivery-opportunity traces.

A trace file has one integer per line: a millisecond timestamp at which the link may deliver one
1500-byte packet's worth of bytes. Timestamps never decrease; several equal ones mean several
opportunities in the same millisecond. The trace loops with a period equal to its last timestamp
(as `mm-link` does), so that timestamp must be positive. Blank lines are ignored.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass
from pathlib import Path

from field_lab.link.config import read_text
from field_lab.link.errors import TraceError

OPPORTUNITY_BYTES = 1500
MAX_TRACE_LINES = 10_000_000


@dataclass(frozen=True, slots=True)
class Trace:
    """Delivery opportunities (ms offsets, non-decreasing) repeating every `period_ms`."""

    opportunities_ms: tuple[int, ...]
    name: str = "trace"

    def __post_init__(self) -> None:
        ops = self.opportunities_ms
        if not ops:
            raise TraceError(self.name, "a trace needs at least one delivery opportunity")
        if ops[-1] <= 0:
            raise TraceError(self.name, "the last timestamp (the loop period) must be positive")
        if ops[0] < 0 or any(b < a for a, b in itertools.pairwise(ops)):
            raise TraceError(self.name, "timestamps must be non-negative and non-decreasing")

    @property
    def period_s(self) -> float:
        return self.opportunities_ms[-1] / 1000.0

    @property
    def mean_rate_bps(self) -> float:
        """Average capacity in bits/s over one loop of the trace."""
        return len(self.opportunities_ms) * OPPORTUNITY_BYTES * 8 / self.period_s


class OpportunityCursor:
    """Walks a trace's opportunities in order, one at a time, including repeated timestamps."""

    __slots__ = ("_index", "_loops", "trace")

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self._loops = 0
        self._index = -1

    def current(self) -> float | None:
        if self._index < 0:
            return None
        period = self.trace.opportunities_ms[-1]
        return (self._loops * period + self.trace.opportunities_ms[self._index]) / 1000.0

    def advance_to(self, at: float) -> float:
        """Move to the first unused opportunity at or after `at`; return its time."""
        ops = self.trace.opportunities_ms
        period = ops[-1]
        current = self.current()
        if current is not None and current >= at:
            return self._step()
        at_ms = at * 1000.0
        loops = int(at_ms // period)
        index = bisect.bisect_left(ops, at_ms - loops * period)
        if index == len(ops):
            loops, index = loops + 1, 0
        self._loops, self._index = loops, index
        current = self.current()
        assert current is not None
        return current

    def _step(self) -> float:
        self._index += 1
        if self._index == len(self.trace.opportunities_ms):
            self._loops += 1
            self._index = 0
        current = self.current()
        assert current is not None
        return current


def parse_trace(text: str, name: str = "trace") -> Trace:
    """Parse Mahimahi trace text; raise TraceError naming the bad line."""
    values: list[int] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if len(values) >= MAX_TRACE_LINES:
            raise TraceError(f"{name}:{number}", f"more than {MAX_TRACE_LINES} opportunities")
        if not line.isdigit() or not line.isascii():
            raise TraceError(
                f"{name}:{number}", f"expected a non-negative integer millisecond, got {line!r}"
            )
        value = int(line)
        if values and value < values[-1]:
            raise TraceError(
                f"{name}:{number}", f"timestamp {value} is before the previous one ({values[-1]})"
            )
        values.append(value)
    if not values:
        raise TraceError(name, "the trace has no timestamps")
    if values[-1] == 0:
        raise TraceError(name, "the last timestamp is the loop period and must be positive")
    return Trace(tuple(values), name)


def load_trace(path: str | Path) -> Trace:
    """Read and parse a trace file; unreadable or non-UTF-8 files raise TraceError too."""
    return parse_trace(read_text(path, TraceError, "trace"), str(path))


def rate_trace(rate_bps: float, period_ms: int = 12_000) -> Trace:
    """A constant-rate trace (the `0, 300, 600, ...` recipe for 40 kbit/s), for tests and docs."""
    if rate_bps <= 0:
        raise TraceError("rate_trace", f"rate must be positive, got {rate_bps!r}")
    gap_ms = OPPORTUNITY_BYTES * 8 * 1000.0 / rate_bps
    count = max(1, round(period_ms / gap_ms))
    return Trace(tuple(round((i + 1) * period_ms / count) for i in range(count)), "rate_trace")
