"""Operation histories and the checkers that judge them, as Jepsen does.

Every operation is invoked once and completes as `ok` (it happened), `fail` (it did not) or
`info` (unknown: a timeout, a crash). At the end, checkers compare the history with what the
system holds: nothing acknowledged may be lost, nothing applied twice, nothing appear that was
never attempted, and every meter's credit must lie between what was confirmed and what was
attempted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from field_lab.errors import HarnessError


class Status(StrEnum):
    INVOKE = "invoke"
    OK = "ok"
    FAIL = "fail"
    INFO = "info"


class HistoryError(HarnessError):
    """The harness recorded an impossible history (its own bug, not the system's)."""


@dataclass(frozen=True, slots=True)
class Event:
    key: str
    kind: str
    status: Status
    at: float
    detail: str = ""


@dataclass
class History:
    """Append-only per-run history; `key` is the operation's idempotency key."""

    events: list[Event] = field(default_factory=list)
    _open: dict[str, str] = field(default_factory=dict)
    _final: dict[str, Status] = field(default_factory=dict)
    _kinds: dict[str, str] = field(default_factory=dict)

    def invoke(self, key: str, kind: str, at: float) -> None:
        if key in self._kinds:
            raise HistoryError(f"operation {key!r} invoked twice")
        self._kinds[key] = kind
        self._open[key] = kind
        self.events.append(Event(key, kind, Status.INVOKE, at))

    def complete(self, key: str, status: Status, at: float, detail: str = "") -> None:
        if status is Status.INVOKE:
            raise HistoryError("complete() takes ok, fail or info")
        kind = self._kinds.get(key)
        if kind is None:
            raise HistoryError(f"operation {key!r} completed without an invoke")
        previous = self._final.get(key)
        # An unknown outcome may later be learned (info -> ok/fail); nothing else may change.
        if previous is not None and previous is not Status.INFO:
            raise HistoryError(f"operation {key!r} completed twice ({previous} then {status})")
        self._open.pop(key, None)
        self._final[key] = status
        self.events.append(Event(key, kind, status, at, detail))

    def ok(self, key: str, at: float, detail: str = "") -> None:
        self.complete(key, Status.OK, at, detail)

    def fail(self, key: str, at: float, detail: str = "") -> None:
        self.complete(key, Status.FAIL, at, detail)

    def info(self, key: str, at: float, detail: str = "") -> None:
        self.complete(key, Status.INFO, at, detail)

    def final(self, key: str) -> Status:
        """The last known status: INVOKE when never completed (counts as unknown)."""
        return self._final.get(key, Status.INVOKE if key in self._kinds else Status.FAIL)

    def kind(self, key: str) -> str | None:
        """What kind of operation `key` was invoked as (None: never invoked)."""
        return self._kinds.get(key)

    def keys(self, kind: str | None = None) -> list[str]:
        return [k for k, v in self._kinds.items() if kind is None or v == kind]

    def counts(self) -> dict[str, int]:
        tally = Counter(self.final(k).value for k in self._kinds)
        return {s.value: tally.get(s.value, 0) for s in Status}


@dataclass(frozen=True, slots=True)
class SetCheck:
    """What went in must come out, once (Jepsen's set + total-queue + unique-ids)."""

    attempted: int
    acknowledged: int
    lost: tuple[str, ...]
    """Acknowledged (ok) but not applied by the system."""
    duplicated: tuple[str, ...]
    """Applied more than once."""
    unexpected: tuple[str, ...]
    """Applied but never attempted."""
    recovered: int
    """Unknown (info/never completed) operations that turned out applied."""
    failed_but_applied: tuple[str, ...]
    """Reported failed to the client, yet applied: the client was told a lie."""

    @property
    def valid(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected or self.failed_but_applied)


def check_applied(
    history: History,
    applied: Iterable[str],
    kind: str | None = None,
    *,
    where: Callable[[str], bool] | None = None,
) -> SetCheck:
    """Compare a history with the keys the system applied (one entry per application);
    `kind` or `where` narrow the attempted keys this check is about."""
    times = Counter(applied)
    attempted = {k for k in history.keys(kind) if where is None or where(k)}
    statuses = {k: history.final(k) for k in attempted}
    ok = {k for k, s in statuses.items() if s is Status.OK}
    unknown = {k for k, s in statuses.items() if s in (Status.INFO, Status.INVOKE)}
    failed = {k for k, s in statuses.items() if s is Status.FAIL}
    return SetCheck(
        attempted=len(attempted),
        acknowledged=len(ok),
        lost=tuple(sorted(k for k in ok if times[k] == 0)),
        duplicated=tuple(sorted(k for k, n in times.items() if n > 1)),
        unexpected=tuple(sorted(k for k in times if k not in attempted)),
        recovered=sum(1 for k in unknown if times[k] > 0),
        failed_but_applied=tuple(sorted(k for k in failed if times[k] > 0)),
    )


@dataclass(frozen=True, slots=True)
class Bounded:
    """One counter reading and the bounds the history allows for it."""

    name: str
    observed: float
    lower: float
    """What was confirmed: the reading may not be below this."""
    upper: float
    """What was attempted: the reading may not be above this."""


@dataclass(frozen=True, slots=True)
class CounterCheck:
    """Jepsen's counter checker, for meter credit against payments."""

    checked: int
    over: tuple[Bounded, ...]
    under: tuple[Bounded, ...]

    @property
    def valid(self) -> bool:
        return not (self.over or self.under)


def check_bounds(readings: Iterable[Bounded], tolerance: float = 1e-6) -> CounterCheck:
    items = list(readings)
    for item in items:
        if item.lower > item.upper + tolerance:
            raise HistoryError(
                f"{item.name}: confirmed {item.lower} exceeds attempted {item.upper}"
            )
    return CounterCheck(
        checked=len(items),
        over=tuple(r for r in items if r.observed > r.upper + tolerance),
        under=tuple(r for r in items if r.observed < r.lower - tolerance),
    )
