"""Every second a meter was dark, and whose fault it was.

A dark second is "unpaid" (the customer had not paid: expected) unless a payment for that meter
was on its way (paid, keycode not yet applied): then it is "paid_waiting", charged to exactly one
cause, first match wins:

1. an incident covering the second that holds up the stage the payment was in
   (`Incident.holds_up`; the earliest-starting incident when several do);
2. a link outage covering the second on the stage's link (`Stage.scope == Outage.scope`);
3. the stage's own cause (`OWN_CAUSE`): the operator's usual latency, the platform, the SMS or
   the agent's next visit, the customer not yet typing the code.

Pure and exact: times are rounded to whole milliseconds on the way in and every figure is an
integer count of milliseconds, so unpaid + paid_waiting is the dark total and the causes sum to
paid_waiting with no rounding left over. Hours appear only when the figures are written out.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from field_lab.errors import HarnessError
from field_lab.simulate.month import DAY, HOUR, STAGES, Incident

VIAS = ("sms", "agent", "metrics")
OWN_CAUSE = {
    "operator": "operator_latency",
    "platform": "platform",
    "delivery:sms": "sms_delay",
    "delivery:agent": "agent_delay",
    "delivery:metrics": "metrics_delay",
    "entry": "customer_entry",
}
"""A stage's own cause, when no incident or link outage explains the wait."""
LINK_OUTAGE = "link_outage"
MS_PER_HOUR = 3_600_000


def ms(t: float) -> int:
    """Simulated seconds to whole milliseconds (how attribution counts)."""
    return round(t * 1000)


def hours(milliseconds: int) -> float:
    """Milliseconds to hours, rounded to the millisecond's precision for output."""
    return round(milliseconds / MS_PER_HOUR, 7)


@dataclass(frozen=True)
class Dark:
    """An interval [start, end) the meter's output was off."""

    meter: str
    start: float
    end: float

    def __post_init__(self) -> None:
        if not self.start <= self.end:
            raise HarnessError(f"dark interval of {self.meter} ends before it starts: {self}")


@dataclass(frozen=True)
class Stage:
    """One step of a payment's way to the meter, [start, end).

    `via` says how a "delivery" reached the customer ("sms", "agent", "metrics"); `scope` names
    the link the stage depends on (e.g. `month.agent_scope(id)`), "" when none."""

    name: str
    start: float
    end: float
    via: str = ""
    scope: str = ""

    def __post_init__(self) -> None:
        if self.name not in STAGES:
            raise HarnessError(f"stage {self.name!r}: expected one of {', '.join(STAGES)}")
        if (self.name == "delivery") != (self.via in VIAS):
            raise HarnessError(f"stage {self.name!r} via {self.via!r}: only a delivery has a via")
        if not self.start <= self.end:
            raise HarnessError(f"stage {self.name} ends before it starts: {self}")

    @property
    def own_cause(self) -> str:
        return OWN_CAUSE[f"delivery:{self.via}" if self.name == "delivery" else self.name]


@dataclass(frozen=True)
class Delivery:
    """A payment's way from `paid_at` to `applied_at` (None: not applied by the run's end).

    The stages are contiguous from `paid_at`; the last ends at `applied_at` (when applied) or is
    taken to last to the run's end."""

    meter: str
    paid_at: float
    applied_at: float | None
    stages: tuple[Stage, ...]

    def __post_init__(self) -> None:
        if not self.stages:
            raise HarnessError(f"delivery to {self.meter} at {self.paid_at}: no stages")
        edges = [ms(self.paid_at)]
        for stage in self.stages:
            if ms(stage.start) != edges[-1]:
                raise HarnessError(
                    f"delivery to {self.meter}: stage {stage.name} starts at {stage.start},"
                    f" not where the previous one ended ({edges[-1] / 1000})"
                )
            edges.append(ms(stage.end))
        if self.applied_at is not None and ms(self.applied_at) != edges[-1]:
            raise HarnessError(
                f"delivery to {self.meter}: applied at {self.applied_at} but the last stage"
                f" ends at {self.stages[-1].end}"
            )


@dataclass(frozen=True)
class Outage:
    """A link outage window [start, end) of one scope (a village's or an agent's link)."""

    scope: str
    start: float
    end: float


@dataclass(frozen=True)
class IncidentHours:
    name: str
    kind: str
    start: float
    ms: int
    households: int


@dataclass(frozen=True)
class DayRow:
    """One simulated day's figures (day = floor(t / DAY))."""

    day: int
    unpaid_ms: int
    paid_waiting_ms: int
    by_cause_ms: dict[str, int]
    dark_households: int
    """Meters dark at some moment of the day."""
    waiting_households: int
    """Meters dark after payment at some moment of the day."""


@dataclass(frozen=True)
class DarkHours:
    start: float
    end: float
    unpaid_ms: int
    paid_waiting_ms: int
    by_cause_ms: dict[str, int]
    by_incident: dict[str, IncidentHours]
    days: tuple[DayRow, ...]
    hourly_dark: tuple[int, ...]
    """Households dark at some moment of each hour from floor(start / HOUR)."""
    hourly_waiting: tuple[int, ...]
    """Households dark after payment at some moment of each hour."""
    households: int
    """Meters dark at all."""
    incidents: tuple[Incident, ...] = field(default=())

    @property
    def dark_ms(self) -> int:
        return self.unpaid_ms + self.paid_waiting_ms


def attribute(
    *,
    dark: Iterable[Dark],
    deliveries: Iterable[Delivery],
    incidents: Sequence[Incident],
    outages: Iterable[Outage],
    start: float,
    end: float,
) -> DarkHours:
    """Charge every dark millisecond in [start, end) to unpaid or to one cause (module doc)."""
    t0, t1 = ms(start), ms(end)
    if t1 < t0:
        raise HarnessError(f"attribution window ends ({end}) before it starts ({start})")
    by_meter: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for d in dark:
        a, b = max(ms(d.start), t0), min(ms(d.end), t1)
        if a < b:
            by_meter[d.meter].append((a, b))
    pays: dict[str, list[Delivery]] = defaultdict(list)
    for delivery in deliveries:
        pays[delivery.meter].append(delivery)
    links: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for o in outages:
        if ms(o.start) < ms(o.end):
            links[o.scope].append((ms(o.start), ms(o.end)))
    merged_links = {scope: _merge(sorted(w)) for scope, w in links.items()}
    order = sorted(range(len(incidents)), key=lambda i: (incidents[i].start, i))
    ranked = [incidents[i] for i in order]
    windows = [(ms(i.start), ms(i.end), ms(i.effect_end), i) for i in ranked]
    tally = _Tally(t0, t1, ranked)
    for meter in sorted(by_meter):
        intervals = _merge(sorted(by_meter[meter]))
        meter_pays = sorted(pays.get(meter, ()), key=lambda p: ms(p.paid_at))
        _attribute_meter(intervals, meter_pays, windows, merged_links, t1, tally)
    return tally.result(start, end)


def _merge(windows: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in windows:
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _covers(windows: list[tuple[int, int]], t: int) -> bool:
    i = bisect.bisect_right(windows, (t, 2**62)) - 1
    return i >= 0 and windows[i][0] <= t < windows[i][1]


class _Tally:
    """The running sums (one per attribution call)."""

    def __init__(self, t0: int, t1: int, incidents: list[Incident]) -> None:
        self.t0, self.t1 = t0, t1
        self.unpaid = 0
        self.waiting = 0
        self.by_cause: dict[str, int] = defaultdict(int)
        self.incidents = incidents
        self.by_incident: dict[str, int] = defaultdict(int)
        self.incident_meters: dict[str, int] = defaultdict(int)
        self.day0 = t0 // ms(DAY)
        ndays = max(0, -(-t1 // ms(DAY)) - self.day0)
        self.day_unpaid = [0] * ndays
        self.day_waiting = [0] * ndays
        self.day_cause: list[dict[str, int]] = [defaultdict(int) for _ in range(ndays)]
        self.day_dark_households = [0] * (ndays + 1)
        self.day_waiting_households = [0] * (ndays + 1)
        self.hour0 = t0 // ms(HOUR)
        nhours = max(0, -(-t1 // ms(HOUR)) - self.hour0)
        self.hour_dark = [0] * (nhours + 1)
        self.hour_waiting = [0] * (nhours + 1)
        self.households = 0

    def add_span(
        self, counts: list[int], spans: list[tuple[int, int]], unit: int, first: int
    ) -> None:
        """Count a meter once in each unit (hour or day) any of its sorted spans touches."""
        done = first
        for a, b in spans:
            lo, hi = max(a // unit, done), -(-b // unit)
            if hi > lo:
                counts[lo - first] += 1
                counts[hi - first] -= 1
                done = hi

    def result(self, start: float, end: float) -> DarkHours:
        def running(diffs: list[int]) -> tuple[int, ...]:
            out, level = [], 0
            for d in diffs[:-1]:
                level += d
                out.append(level)
            return tuple(out)

        dark_h = running(self.day_dark_households)
        wait_h = running(self.day_waiting_households)
        days = tuple(
            DayRow(
                day=self.day0 + i,
                unpaid_ms=self.day_unpaid[i],
                paid_waiting_ms=self.day_waiting[i],
                by_cause_ms=dict(sorted(self.day_cause[i].items())),
                dark_households=dark_h[i],
                waiting_households=wait_h[i],
            )
            for i in range(len(self.day_unpaid))
        )
        by_incident = {
            inc.name: IncidentHours(
                inc.name,
                inc.kind,
                inc.start,
                self.by_incident.get(inc.name, 0),
                self.incident_meters.get(inc.name, 0),
            )
            for inc in self.incidents
        }
        return DarkHours(
            start=start,
            end=end,
            unpaid_ms=self.unpaid,
            paid_waiting_ms=self.waiting,
            by_cause_ms=dict(sorted(self.by_cause.items())),
            by_incident=by_incident,
            days=days,
            hourly_dark=running(self.hour_dark),
            hourly_waiting=running(self.hour_waiting),
            households=self.households,
            incidents=tuple(self.incidents),
        )


_Window = tuple[int, int, int, Incident]
"""An incident in ms: (start, end, effect_end, incident)."""
_Span = tuple[int, int, list[tuple[int, int, Stage]]]
"""A payment on its way in ms: (paid, until, its stages as (start, end, stage))."""


def _attribute_meter(
    intervals: list[tuple[int, int]],
    pays: list[Delivery],
    incidents: list[_Window],
    links: dict[str, list[tuple[int, int]]],
    t1: int,
    tally: _Tally,
) -> None:
    day = ms(DAY)
    lo, hi = intervals[0][0], intervals[-1][1]
    # Every moment the answer can change: segments between them are charged to one cause.
    cuts: set[int] = set(range(-(-lo // day) * day, hi, day))
    spans: list[_Span] = []  # in paid order; only those overlapping the dark time
    for p in pays:
        paid = ms(p.paid_at)
        until = t1 if p.applied_at is None else ms(p.applied_at)
        if paid >= hi or until <= lo:
            continue
        stages = [(ms(s.start), ms(s.end), s) for s in p.stages]
        if p.applied_at is None:  # the last stage lasts to the run's end
            a, b, last = stages[-1]
            stages[-1] = (a, max(t1, b), last)
        spans.append((paid, until, stages))
        cuts.update((paid, until))
        for a, b, stage in stages:
            cuts.update((a, b))
            windows = links.get(stage.scope) if stage.scope else None
            if windows:
                first = max(0, bisect.bisect_left(windows, (lo, lo)) - 1)
                for w in windows[first : bisect.bisect_left(windows, (hi, hi))]:
                    cuts.update(w)
    for a, b, c, _ in incidents:
        cuts.update((a, b, c))
    ordered = sorted(c for c in cuts if lo < c < hi)
    seen: set[str] = set()
    waiting_spans: list[tuple[int, int]] = []
    tally.households += 1
    tally.add_span(tally.hour_dark, intervals, ms(HOUR), tally.hour0)
    tally.add_span(tally.day_dark_households, intervals, day, tally.day0)
    for a_all, b_all in intervals:
        i = bisect.bisect_right(ordered, a_all)
        edges = [a_all, *ordered[i : bisect.bisect_left(ordered, b_all)], b_all]
        for a, b in pairwise(edges):
            length = b - a
            d = a // day - tally.day0
            cause, incident = _cause_at(a, spans, incidents, links) if spans else (None, None)
            if cause is None:
                tally.unpaid += length
                tally.day_unpaid[d] += length
                continue
            tally.waiting += length
            tally.by_cause[cause] += length
            tally.day_waiting[d] += length
            tally.day_cause[d][cause] += length
            if incident is not None:
                tally.by_incident[incident] += length
                if incident not in seen:
                    seen.add(incident)
                    tally.incident_meters[incident] += 1
            if waiting_spans and waiting_spans[-1][1] == a:
                waiting_spans[-1] = (waiting_spans[-1][0], b)
            else:
                waiting_spans.append((a, b))
    tally.add_span(tally.hour_waiting, waiting_spans, ms(HOUR), tally.hour0)
    tally.add_span(tally.day_waiting_households, waiting_spans, day, tally.day0)


def _cause_at(
    t: int,
    spans: list[_Span],
    incidents: list[_Window],
    links: dict[str, list[tuple[int, int]]],
) -> tuple[str | None, str | None]:
    """(cause, incident name) of a dark millisecond t; (None, None) when unpaid."""
    # the earliest payment still on its way
    stages = next((st for paid, until, st in spans if paid <= t < until), None)
    if stages is None:
        return None, None
    begun, _, stage = stages[-1]
    for a, b, s in stages:
        if a <= t < b:
            begun, stage = a, s
            break
    for start, end, effect_end, inc in incidents:
        if (
            start <= t < effect_end
            and begun < end
            and inc.holds_up(stage.name, stage.via, stage.scope)
        ):
            return inc.kind, inc.name
    if stage.scope and _covers(links.get(stage.scope, []), t):
        return LINK_OUTAGE, None
    return stage.own_cause, None
