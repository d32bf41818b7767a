"""Outages: on/off periods of the radio, scripted or drawn from a seeded on/off process.

An outage stalls both directions: nothing is serialised while it lasts, and queued bytes wait.
An outage that lasts at least the profile's `reset_after_s` also resets every connection open
at `start + reset_after_s` (coverage lost long enough for the PDP context and NAT state to go).
Times are seconds since the link's epoch (its creation time).

A live outage (`begin`, then `end`) is one whose end nobody knew when it began: a test or an
operator turns the radio off and on again. While it lasts it swallows every planned outage after
its start; when it ends, planned outages that reach past its end come back (one that spans the
end extends it), so the schedule stays sorted and disjoint.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from field_lab.link.config import load_toml, number, read_text
from field_lab.link.errors import OutageFileError

MAX_SCRIPTED_OUTAGES = 100_000


@dataclass(frozen=True, slots=True)
class Outage:
    """The radio is down from `start_s` for `duration_s` (math.inf: for good)."""

    start_s: float
    duration_s: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start_s) and self.start_s >= 0.0):
            raise ValueError(f"outage start must be finite and >= 0, got {self.start_s!r}")
        if not self.duration_s > 0.0:
            raise ValueError(f"outage duration must be > 0, got {self.duration_s!r}")

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass(frozen=True, slots=True)
class OnOff:
    """Random outages: exponential up periods (mean `mean_up_s`) and down periods."""

    mean_up_s: float
    mean_down_s: float

    def __post_init__(self) -> None:
        for name in ("mean_up_s", "mean_down_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name} must be finite and > 0, got {value!r}")


class OutageSchedule:
    """Sorted, disjoint outages; a random on/off process is generated lazily as time goes on."""

    __slots__ = ("_ends", "_generated_to", "_held", "_live", "_onoff", "_outages", "_rng")

    def __init__(
        self,
        scripted: Iterable[Outage] = (),
        onoff: OnOff | None = None,
        rng: random.Random | None = None,
    ) -> None:
        outages = sorted(scripted, key=lambda o: o.start_s)
        for before, after in itertools.pairwise(outages):
            if after.start_s < before.end_s:
                raise ValueError(f"outages overlap: {before} and {after}")
        if onoff is not None and outages:
            raise ValueError("give either scripted outages or an on/off process, not both")
        self._outages = outages
        self._ends = [o.end_s for o in outages]
        self._onoff = onoff
        self._rng = rng if rng is not None else random.Random(0)
        self._generated_to = 0.0 if onoff is not None else math.inf
        self._live: float | None = None  # start of the live outage in progress
        self._held: list[Outage] = []  # planned outages the live one swallowed, for `end`

    @classmethod
    def always_down(cls) -> OutageSchedule:
        return cls([Outage(0.0, math.inf)])

    def _generate_past(self, t: float) -> None:
        """Draw on/off periods until some outage ends after `t` (bounded: each draw moves on)."""
        onoff = self._onoff
        if onoff is None or self._live is not None:
            return  # a live outage is open-ended: nothing after its start is needed yet
        while self._generated_to <= t or not self._ends or self._ends[-1] <= t:
            start = self._generated_to + self._rng.expovariate(1.0 / onoff.mean_up_s)
            duration = max(1e-3, self._rng.expovariate(1.0 / onoff.mean_down_s))
            outage = Outage(start, duration)
            self._outages.append(outage)
            self._ends.append(outage.end_s)
            self._generated_to = outage.end_s

    def first_ending_after(self, t: float) -> Outage | None:
        """The outage in progress at `t`, or else the next one; None when there is none."""
        self._generate_past(t)
        index = bisect.bisect_right(self._ends, t)
        return self._outages[index] if index < len(self._outages) else None

    def up_time_end(self, start: float, busy: float) -> float:
        """When `busy` seconds of radio-up time starting at `start` have elapsed."""
        if math.isinf(busy):
            return math.inf
        t, remaining = start, busy
        while True:
            outage = self.first_ending_after(t)
            if outage is None or t + remaining <= outage.start_s:
                return t + remaining
            if outage.start_s > t:
                remaining -= outage.start_s - t
            t = outage.end_s
            if math.isinf(t):
                return math.inf

    def next_up(self, t: float) -> float:
        """`t` if the radio is up then, else the end of the outage covering `t`."""
        outage = self.first_ending_after(t)
        if outage is None or outage.start_s > t:
            return t
        return outage.end_s

    def known(self) -> Sequence[Outage]:
        """Outages generated or scripted so far (for stats and plots)."""
        return tuple(self._outages)

    @property
    def live(self) -> bool:
        """Whether a live outage has begun and not ended."""
        return self._live is not None

    def begin(self, t: float) -> None:
        """The radio goes down at `t` until `end` is called (a live outage)."""
        if self._live is not None:
            raise ValueError(f"a live outage is already in progress (since {self._live} s)")
        if not (math.isfinite(t) and t >= 0.0):
            raise ValueError(f"a live outage must begin at a finite time >= 0, got {t!r}")
        self._generate_past(t)
        index = bisect.bisect_left(self._ends, t)  # the outage in progress at (or ending at) t
        start = t
        if index < len(self._outages) and self._outages[index].start_s <= t:
            start = self._outages[index].start_s  # already down: the live outage continues it
        self._held = self._outages[index:]
        del self._outages[index:]
        del self._ends[index:]
        self._outages.append(Outage(start, math.inf))
        self._ends.append(math.inf)
        self._live = t

    def end(self, t: float) -> None:
        """The live outage ends at `t` (not before it began); planned ones past `t` return."""
        began = self._live
        if began is None:
            raise ValueError("no live outage is in progress")
        if not (math.isfinite(t) and t >= began):
            raise ValueError(f"a live outage must end at a finite time >= {began}, got {t!r}")
        start = self._outages[-1].start_s
        self._outages.pop()
        self._ends.pop()
        rest = [o for o in self._held if o.end_s > t]
        end = t
        if rest and rest[0].start_s <= t:  # a planned outage spans the end: down until it ends
            end = rest.pop(0).end_s
        if end > start:
            merged = Outage(start, end - start)
            self._outages.append(merged)
            self._ends.append(merged.end_s)
        for outage in rest:
            self._outages.append(outage)
            self._ends.append(outage.end_s)
        self._held = []
        self._live = None
        if self._onoff is not None:
            self._generated_to = max(self._generated_to, self._ends[-1] if self._ends else t)


def parse_outages(text: str, name: str = "outages") -> list[Outage]:
    """Parse a TOML outage script: `[[outage]]` tables with `start_s` and `duration_s`."""
    tables = load_toml(text, name, OutageFileError, "outage", "[[outage]]")
    if tables is None:
        tables = []
    if not isinstance(tables, list):
        raise OutageFileError(name, "`outage` must be an array of tables ([[outage]])")
    if len(tables) > MAX_SCRIPTED_OUTAGES:
        raise OutageFileError(name, f"more than {MAX_SCRIPTED_OUTAGES} outages")
    outages: list[Outage] = []
    for index, table in enumerate(tables):
        where = f"{name}: outage[{index}]"
        if not isinstance(table, dict):
            raise OutageFileError(where, "each outage must be a table")
        extra = set(table) - {"start_s", "duration_s"}
        if extra:
            raise OutageFileError(where, f"unknown keys {sorted(extra)}")
        start = number(table, "start_s", where, OutageFileError)
        duration = number(table, "duration_s", where, OutageFileError)
        if not (math.isfinite(start) and start >= 0.0):
            raise OutageFileError(f"{where}.start_s", f"must be finite and >= 0, got {start}")
        if not duration > 0.0:
            raise OutageFileError(f"{where}.duration_s", f"must be > 0, got {duration}")
        if outages and start < outages[-1].end_s:
            raise OutageFileError(
                where,
                f"starts at {start} s, before the previous outage ends ({outages[-1].end_s} s)",
            )
        outages.append(Outage(start, duration))
    return outages


def load_outages(path: str | Path) -> list[Outage]:
    """Read and parse an outage script; unreadable files raise OutageFileError too."""
    return parse_outages(read_text(path, OutageFileError, "outage file"), str(path))
