"""The replayer core: trace events in, request bytes out, device answers compared as data.

Sans-I/O and clock-free: the shell (`runner`) asks `next_send()` what to write and when,
feeds back whatever bytes the device produced with `receive()`, and calls `timeout()` when its
bounded wait ran out. After a timeout the core resynchronises by sending `HELLO` and discarding
everything up to its answer, so a late reply is never taken for the next event's; and an `OK`
answer whose verb cannot answer the request in flight (say, a late `HELLO` answer) is set aside.

Phases and input kinds form the dispatch table built in `__init__`; every pair is in it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from meter_sim.trace.format import KINDS, Event, Trace
from meter_sim.trace.lines import Garbage, Line, LineSplitter
from meter_sim.trace.replies import FieldDiff, Reply, ReplyError, Value, diff, parse_reply

PROBE = -1
"""`Send.index` of the HELLO probes the replayer adds (identify, resynchronise)."""

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


class Phase(Enum):
    READY = "ready"
    """Something is to be sent next."""
    AWAITING = "awaiting"
    """An event's request is out; its answer is awaited."""
    PROBING = "probing"
    """A HELLO is out (start or resynchronisation); lines before its answer are stale."""
    DONE = "done"


class Status(Enum):
    MATCH = "match"
    MISMATCH = "mismatch"
    TIMEOUT = "timeout"
    UNCHECKED = "unchecked"
    """The trace recorded no answer for this event."""


@dataclass(frozen=True, slots=True)
class Send:
    index: int
    """Event index, or PROBE."""
    data: bytes
    due: float
    """Seconds after the replay started at which to write `data` (0 as fast as possible)."""
    reconnect: bool = False
    """Open a new connection to the device before writing (a recorded connection start)."""


@dataclass(frozen=True, slots=True)
class Near:
    """A recorded event resembling what came back: where, and which fields still differ."""

    index: int
    line: int
    label: str
    differs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Check:
    index: int
    line: int
    event: Event
    status: Status
    got: Reply | None = None
    diffs: tuple[FieldDiff, ...] = ()
    nearest: tuple[Near, ...] = ()


@dataclass(frozen=True, slots=True)
class Incident:
    """Something on the wire that was not a clean answer (reported, never fatal)."""

    kind: str
    """`garbage`, `partial`, `stale`, `unsolicited`, `resync`, `identity`."""
    index: int | None
    detail: str


@dataclass
class Result:
    checks: list[Check] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    incidents_dropped: int = 0
    aborted: str | None = None
    """Why the replay stopped early, if it did."""
    abort_code: int = EXIT_OK
    target: str | None = None
    """What the target said it is (its HELLO answer)."""

    def count(self, status: Status) -> int:
        return sum(1 for c in self.checks if c.status is status)

    @property
    def exit_code(self) -> int:
        if self.aborted is not None:
            return self.abort_code
        bad = (Status.MISMATCH, Status.TIMEOUT)
        return EXIT_MISMATCH if any(c.status in bad for c in self.checks) else EXIT_OK

    def by_kind(self) -> dict[str, Counter[Status]]:
        table: dict[str, Counter[Status]] = {}
        for check in self.checks:
            table.setdefault(check.event.kind, Counter())[check.status] += 1
        return table


MAX_INCIDENTS = 1000
"""Incidents kept in detail; a device spewing noise only raises `incidents_dropped` past it."""
NEAR_WINDOW = 2000
NEAR_COUNT = 3


def nearest(trace: Trace, index: int, got: Reply) -> tuple[Near, ...]:
    """Recorded events of the same kind whose answers come closest to `got`.

    Ranked by fewest differing fields, then the same request, then distance in the trace, as
    VCR.py lists the closest recorded requests: it tells "device is one code ahead" from noise.
    """
    kind, arg = trace.events[index].kind, trace.events[index].arg
    scored: list[tuple[int, bool, int, Near]] = []
    lo, hi = max(0, index - NEAR_WINDOW), min(len(trace.events), index + NEAR_WINDOW)
    for j in range(lo, hi):
        other = trace.events[j]
        if j == index or other.kind != kind or other.reply is None:
            continue
        differs = tuple(d.field for d in diff(other.reply, got))
        near = Near(j, Trace.line_of(j), other.label(), differs)
        scored.append((len(differs), other.arg != arg, abs(j - index), near))
    scored.sort(key=lambda item: item[:3])
    return tuple(item[3] for item in scored[:NEAR_COUNT])


def answer_verb(event: Event) -> str | None:
    """The verb an OK answer to `event` carries (None when any may come back)."""
    verb = KINDS[event.kind].verb
    if verb is None and event.reply is not None and event.reply.ok:
        return event.reply.verb  # a verbatim line: trust what it got when recorded
    return verb


class Replayer:
    """Drive one replay of `trace`; `speed` None means as fast as possible."""

    def __init__(self, trace: Trace, *, speed: float | None = None, max_timeouts: int = 3) -> None:
        if speed is not None and not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a positive number, got {speed!r}")
        if max_timeouts < 1:
            raise ValueError("max_timeouts must be at least 1")
        self.trace = trace
        self.speed = speed
        self.max_timeouts = max_timeouts
        self.result = Result()
        self.phase = Phase.READY
        self._next = 0
        self._probe_due = True
        self._identified = False
        self._hello_error: Value | None = None
        """The error code a device without HELLO answers it with, once seen."""
        self._timeouts = 0
        self._sent_event = False
        self._splitter = LineSplitter()
        self._t0 = trace.events[0].t if trace.events else 0.0
        self._table: dict[tuple[Phase, type], Callable[[object], None]] = {
            (Phase.AWAITING, Line): self._answer,
            (Phase.AWAITING, Garbage): self._garbage,
            (Phase.PROBING, Line): self._probe_answer,
            (Phase.PROBING, Garbage): self._garbage,
            (Phase.READY, Line): self._unsolicited,
            (Phase.READY, Garbage): self._garbage,
            (Phase.DONE, Line): self._unsolicited,
            (Phase.DONE, Garbage): self._garbage,
        }

    # -- what the shell calls --------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.phase is Phase.DONE

    @property
    def waiting(self) -> bool:
        return self.phase in (Phase.AWAITING, Phase.PROBING)

    def next_send(self) -> Send | None:
        """The next request to write, or None while an answer is awaited or when done."""
        if self.phase is not Phase.READY:
            return None
        if self._probe_due:
            self._probe_due = False
            self.phase = Phase.PROBING
            return Send(PROBE, b"HELLO\n", self._due(self._next))
        if self._next >= len(self.trace.events):
            self.phase = Phase.DONE
            return None
        event = self.trace.events[self._next]
        self.phase = Phase.AWAITING
        data = event.command().encode("ascii") + b"\n"
        reconnect = event.kind == "connect" and self._sent_event
        self._sent_event = True
        if reconnect:
            self._splitter.clear()  # what was half-received belongs to the old connection
        return Send(self._next, data, self._due(self._next), reconnect)

    def receive(self, data: bytes) -> None:
        for item in self._splitter.feed(data):
            self._table[(self.phase, type(item))](item)

    def timeout(self) -> None:
        """The shell's bounded wait for an answer ran out."""
        if not self.waiting:
            return
        partial = self._splitter.clear()
        index = self._next if self.phase is Phase.AWAITING else None
        if partial:
            self._incident("partial", index, f"incomplete line at timeout: {partial[:64]!r}")
        if self.phase is Phase.AWAITING:
            self._check(Status.TIMEOUT)
        self._timeouts += 1
        if self._timeouts >= self.max_timeouts:
            self._abort(
                f"no answer after {self._timeouts} bounded waits in a row", EXIT_UNREACHABLE
            )
            return
        self._incident("resync", index, "resynchronising with HELLO")
        self.phase = Phase.READY
        self._probe_due = True

    # -- transitions -------------------------------------------------------------------------

    def _answer(self, item: object) -> None:
        assert isinstance(item, Line)
        try:
            got = parse_reply(item.text)
        except ReplyError as exc:
            self._incident("garbage", self._next, f"{exc} (line {item.text[:64]!r})")
            return
        event = self.trace.events[self._next]
        want = answer_verb(event)
        if got.ok and want is not None and got.verb != want:
            # e.g. the answer to a resync HELLO arriving after this request went out
            self._incident("stale", self._next, f"OK {got.verb} cannot answer {event.label()}")
            return
        self._timeouts = 0
        if event.kind == "connect":
            self._check(Status.MATCH, got)  # the device answers on the new connection
            return
        if event.reply is None:
            self._check(Status.UNCHECKED, got)
            return
        diffs = diff(event.reply, got)
        if not diffs:
            self._check(Status.MATCH, got)
        else:
            self._check(Status.MISMATCH, got, diffs, nearest(self.trace, self._next, got))

    def _probe_answer(self, item: object) -> None:
        assert isinstance(item, Line)
        try:
            got = parse_reply(item.text)
        except ReplyError as exc:
            self._incident("garbage", None, f"{exc} (line {item.text[:64]!r})")
            return
        if got.verb != "HELLO":
            first = not self._identified and self._hello_error is None
            if not got.ok and (first or got.get("error") == self._hello_error):
                # A device without HELLO: carry on unidentified; its error marks resyncs.
                if first:
                    self._hello_error = got.get("error")
                    self._incident("identity", None, f"target does not identify: {item.text[:64]}")
                self._ready()
                return
            self._incident("stale", self._next, f"dropped before HELLO: {item.text[:64]}")
            return
        self._timeouts = 0
        if not self._identified and self._hello_error is None:
            self._identified = True
            self.result.target = item.text
            protocol = got.get("protocol")
            wanted = self.trace.header.device.protocol
            if protocol is not None and protocol != wanted:
                self._abort(
                    f"the trace is for a {wanted} device, the target says protocol={protocol}",
                    EXIT_USAGE,
                )
                return
        self._ready()

    def _garbage(self, item: object) -> None:
        assert isinstance(item, Garbage)
        index = self._next if self.phase is Phase.AWAITING else None
        self._incident("garbage", index, f"{item.why}: {item.data!r}")

    def _unsolicited(self, item: object) -> None:
        assert isinstance(item, Line)
        self._incident("unsolicited", None, f"line with no request out: {item.text[:64]}")

    # -- helpers -----------------------------------------------------------------------------

    def _due(self, index: int) -> float:
        if self.speed is None or index >= len(self.trace.events):
            return 0.0
        return (self.trace.events[index].t - self._t0) / self.speed

    def _check(
        self,
        status: Status,
        got: Reply | None = None,
        diffs: tuple[FieldDiff, ...] = (),
        near: tuple[Near, ...] = (),
    ) -> None:
        index = self._next
        event = self.trace.events[index]
        self.result.checks.append(
            Check(index, Trace.line_of(index), event, status, got, diffs, near)
        )
        self._next += 1
        self._ready()

    def _ready(self) -> None:
        self.phase = Phase.READY

    def _incident(self, kind: str, index: int | None, detail: str) -> None:
        if len(self.result.incidents) < MAX_INCIDENTS:
            self.result.incidents.append(Incident(kind, index, detail))
        else:
            self.result.incidents_dropped += 1

    def _abort(self, why: str, code: int) -> None:
        self.result.aborted = why
        self.result.abort_code = code
        self.phase = Phase.DONE
