"""Usage metering: energy and hours of use, integrated over time, closed into history rows.

Pure: `advance` takes the device time and when the output goes off, and returns the new
usage. Rows close at multiples of the interval of device time, so they are contiguous and a
row's end time names it. A row holds the energy and the seconds of output in its interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

MAX_ROWS = 168
"""History rows a buffer holds (a week of hourly rows); older rows are dropped and counted."""


@dataclass(frozen=True, slots=True)
class Row:
    end: float
    """Device time at which the row's interval ended."""
    energy_wh: float
    seconds_on: float


@dataclass(frozen=True, slots=True)
class Usage:
    """Totals since provisioning, the open row, and the closed rows not yet sent."""

    observed: float
    """Device time up to which usage is counted."""
    energy_wh: float = 0.0
    seconds_on: float = 0.0
    open_energy_wh: float = 0.0
    open_seconds_on: float = 0.0
    rows: tuple[Row, ...] = ()
    dropped: int = 0

    def advance(self, now: float, on_until: float, watts: float, interval: int) -> Usage:
        """Usage at `now`, the output on until `on_until` (device time) and drawing `watts`."""
        if now <= self.observed:
            return self
        state = self
        t = self.observed
        last_boundary = math.floor(now / interval) * interval
        skip_to = last_boundary - MAX_ROWS * interval
        if skip_to > t:  # rows that would be dropped anyway: count them in one step
            on = max(0.0, min(skip_to, on_until) - t)
            closed = math.floor(skip_to / interval) - math.floor(t / interval)
            state = replace(
                state,
                energy_wh=state.energy_wh + on * watts / 3600,
                seconds_on=state.seconds_on + on,
                open_energy_wh=0.0,
                open_seconds_on=0.0,
                dropped=state.dropped + closed,
            )
            t = skip_to
        while t < now:  # at most MAX_ROWS + 1 steps
            boundary = (math.floor(t / interval) + 1) * interval
            step_end = min(boundary, now)
            on = max(0.0, min(step_end, on_until) - t)
            energy = on * watts / 3600
            state = replace(
                state,
                energy_wh=state.energy_wh + energy,
                seconds_on=state.seconds_on + on,
                open_energy_wh=state.open_energy_wh + energy,
                open_seconds_on=state.open_seconds_on + on,
            )
            if step_end == boundary:
                state = state.close_row(boundary)
            t = step_end
        return replace(state, observed=now)

    def close_row(self, end: float) -> Usage:
        row = Row(end, self.open_energy_wh, self.open_seconds_on)
        rows = (*self.rows, row)
        extra = max(0, len(rows) - MAX_ROWS)
        return replace(
            self,
            open_energy_wh=0.0,
            open_seconds_on=0.0,
            rows=rows[extra:],
            dropped=self.dropped + extra,
        )
