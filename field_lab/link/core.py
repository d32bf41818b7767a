"""A handset's radio link with its connections, in virtual time (sans-I/O).

Theory of operation. A `Link` owns the radio (wake-up), the outage schedule and two
`Direction`s ("up": handset -> platform, "down": platform -> handset). Each TCP connection over
it is a `Connection` with one `_Pipe` per direction holding the real bytes; directions only
count them. A connection opens with a header-only SYN up and a SYN-ACK down, so a cold connection
costs one round trip plus two headers; data from the handset waits until the SYN-ACK arrives and
data from the platform until the SYN arrives. EOF travels as a header-only FIN after the data.

Rule 1: the shell calls `poll(now)` at `next_event_time()` (and after it feeds bytes), and
acts on the returned events; the core never reads a clock.

Live control (a test or an operator at the controls, as with toxiproxy): `interrupt(now)` and
`restore(now)` take the radio down and up with no end known in advance, and `retune(now,
profile)` makes the link behave as another profile from now on. Bytes not yet on the air are
re-timed at once; bytes already on the air arrive as planned.

Connection states (transitions as data, anything else is a UsageError):

    CONNECTING --syn_arrived--> HALF_OPEN --synack_arrived--> OPEN
    any open state --reset--> RESET, --closed--> CLOSED
"""

from __future__ import annotations

import enum
import math
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from field_lab.link.direction import Direction, Radio
from field_lab.link.errors import UsageError
from field_lab.link.outages import Outage, OutageSchedule
from field_lab.link.profiles import Profile

UP = "up"
DOWN = "down"


class State(enum.Enum):
    CONNECTING = "connecting"
    HALF_OPEN = "half-open"  # the far end has the SYN; the handset does not know yet
    OPEN = "open"
    RESET = "reset"
    CLOSED = "closed"


_TRANSITIONS: dict[tuple[State, str], State] = {
    (State.CONNECTING, "syn_arrived"): State.HALF_OPEN,
    (State.HALF_OPEN, "synack_arrived"): State.OPEN,
    **{(s, "reset"): State.RESET for s in (State.CONNECTING, State.HALF_OPEN, State.OPEN)},
    **{(s, "closed"): State.CLOSED for s in (State.CONNECTING, State.HALF_OPEN, State.OPEN)},
}


@dataclass(frozen=True, slots=True)
class Accepted:
    """The SYN reached the far end (the shell may now connect upstream)."""

    conn: Connection


@dataclass(frozen=True, slots=True)
class Established:
    """The SYN-ACK reached the handset: the connection is open both ways."""

    conn: Connection


@dataclass(frozen=True, slots=True)
class Arrived:
    """Bytes arrived at the end of `direction` ("up": at the platform side)."""

    conn: Connection
    direction: str
    data: bytes


@dataclass(frozen=True, slots=True)
class EofArrived:
    """The FIN sent in `direction` arrived: no more bytes will come that way."""

    conn: Connection
    direction: str


@dataclass(frozen=True, slots=True)
class Reset:
    """An outage outlasted `reset_after_s` while the connection was open: both ends see a reset."""

    conn: Connection
    at: float


Event = Accepted | Established | Arrived | EofArrived | Reset


@dataclass(slots=True)
class ConnectionStats:
    opened_at: float
    established_at: float | None = None
    closed_at: float | None = None
    reset_at: float | None = None
    bytes: dict[str, int] = field(default_factory=lambda: {UP: 0, DOWN: 0})
    first_at: dict[str, float | None] = field(default_factory=lambda: {UP: None, DOWN: None})
    last_at: dict[str, float | None] = field(default_factory=lambda: {UP: None, DOWN: None})


class _Pipe:
    """One direction of one connection: bytes waiting for the queue, then in flight."""

    __slots__ = ("direction", "eof", "fin_sent", "inflight", "open", "pending", "stream")

    def __init__(self, direction: Direction, stream: int) -> None:
        self.direction = direction
        self.stream = stream
        self.pending = bytearray()
        self.inflight: deque[bytes] = deque()
        self.open = False
        self.eof = False
        self.fin_sent = False

    def push(self, now: float) -> None:
        """Move pending bytes into the queue: whole MSS packets while the link is busy (Nagle),
        only as much as fits, then the FIN once everything is queued."""
        if not self.open:
            return
        d = self.direction
        mss = d.profile.mss
        pending = self.pending
        head = 0
        while head < len(pending):
            size = min(mss, len(pending) - head)
            if (size < mss and d.busy(now)) or d.space(now) < size:
                break
            d.enqueue(now, self.stream, size)
            self.inflight.append(bytes(pending[head : head + size]))
            head += size
        del pending[:head]  # one move per push, not one per packet
        if pending:
            return
        if self.eof and not self.fin_sent:
            d.enqueue(now, self.stream, 0)
            self.fin_sent = True

    def wake_time(self, now: float) -> float | None:
        """When queue space or an idle link lets held bytes go on."""
        if self.open and self.pending:
            return self.direction.next_space_time(now)
        return None


_ResetMemo = tuple[int, float, float, "tuple[float, bool] | None"]
"""(outage version, scanned from, limit, what `Link._next_reset` found then)."""


class Connection:
    """One TCP connection carried by a Link (see the module docstring)."""

    def __init__(self, link: Link, stream: int, now: float) -> None:
        self.link = link
        self.id = stream
        self.state = State.CONNECTING
        self.stats = ConnectionStats(opened_at=now)
        self._pipes = {UP: _Pipe(link.up, stream), DOWN: _Pipe(link.down, stream)}
        self._control_seen = {UP: False, DOWN: False}  # SYN / SYN-ACK already arrived
        self._fin_in = {UP: False, DOWN: False}
        self._reset_memo: _ResetMemo | None = None  # see `Link._reset_lookup`

    def _fire(self, event: str) -> None:
        key = (self.state, event)
        if key not in _TRANSITIONS:
            raise UsageError(f"connection {self.id}: {event!r} not allowed in {self.state.value}")
        self.state = _TRANSITIONS[key]

    @property
    def alive(self) -> bool:
        return self.state in (State.CONNECTING, State.HALF_OPEN, State.OPEN)

    def send(self, now: float, direction: str, data: bytes) -> None:
        """Bytes written at the start of `direction` (UP: by the handset)."""
        pipe = self._pipe_for_writing(direction)
        self.link._advance_clock(now)
        self.link.bytes_written[direction] += len(data)
        pipe.pending += data
        pipe.push(now)

    def close(self, now: float, direction: str) -> None:
        """The writer at the start of `direction` is done: a FIN follows its bytes."""
        pipe = self._pipe_for_writing(direction)
        self.link._advance_clock(now)
        pipe.eof = True
        pipe.push(now)

    def abort(self, now: float) -> None:
        """Drop the connection at once (a shell-side error); no events follow."""
        if self.alive:
            self._fire("closed")
            self.stats.closed_at = now
            self.link._forget(now, self)

    def pending_bytes(self, direction: str) -> int:
        """Bytes accepted from the writer but not yet queued on the link (for back-pressure)."""
        return len(self._pipes[direction].pending)

    def _pipe_for_writing(self, direction: str) -> _Pipe:
        if direction not in self._pipes:
            raise UsageError(f"direction must be 'up' or 'down', got {direction!r}")
        if not self.alive:
            raise UsageError(f"connection {self.id} is {self.state.value}; nothing can be sent")
        pipe = self._pipes[direction]
        if pipe.eof:
            raise UsageError(f"connection {self.id}: {direction} was already closed")
        return pipe

    def _arrive(self, direction: str, at: float, nbytes: int, now: float) -> Event:
        """The event a packet of `nbytes` arriving at `at` in `direction` makes."""
        pipe = self._pipes[direction]
        stats = self.stats
        if nbytes == 0:
            if not self._control_seen[direction]:
                self._control_seen[direction] = True
                if direction == UP:
                    self._fire("syn_arrived")
                    down = self._pipes[DOWN]
                    start = down.direction.earliest(at)
                    down.direction.enqueue(start, self.id, 0)  # the SYN-ACK, ahead of any data
                    down.open = True
                    down.push(start)
                    return Accepted(self)
                self._fire("synack_arrived")
                stats.established_at = at
                up = self._pipes[UP]
                up.open = True
                up.push(up.direction.earliest(at))
                return Established(self)
            self._fin_in[direction] = True
            if self._fin_in[UP] and self._fin_in[DOWN]:
                self._fire("closed")
                stats.closed_at = at
                self.link._forget(now, self)
            return EofArrived(self, direction)
        data = pipe.inflight.popleft()
        stats.bytes[direction] += len(data)
        if stats.first_at[direction] is None:
            stats.first_at[direction] = at
        stats.last_at[direction] = at
        return Arrived(self, direction, data)


class Link:
    """One handset's link: radio, outages, two directions and its connections."""

    def __init__(
        self,
        profile: Profile,
        *,
        seed: int = 0,
        epoch: float = 0.0,
        outages: Iterable[Outage] | None = None,
    ) -> None:
        self.profile = profile
        self.epoch = epoch
        if profile.offline:
            schedule = OutageSchedule.always_down()
        elif outages is not None:
            schedule = OutageSchedule(outages)
        else:
            schedule = OutageSchedule(onoff=profile.outages, rng=random.Random(f"{seed}:outages"))
        self.outages = schedule
        self.radio = Radio(profile, epoch)
        self.up = Direction(profile, UP, self.radio, schedule, random.Random(f"{seed}:up"), epoch)
        self.down = Direction(
            profile, DOWN, self.radio, schedule, random.Random(f"{seed}:down"), epoch
        )
        self._connections: dict[int, Connection] = {}
        self._next_id = 1
        self._now = epoch
        self._scanned_to = epoch
        self._outage_version = 0
        """Bumped whenever the outages or `reset_after_s` change (connections' memos expire)."""
        self._radio_memo = (math.inf, -math.inf, False, -1)  # see `radio_down`
        self.resets = 0
        self.bytes_written = {UP: 0, DOWN: 0}
        """Application bytes written into each direction over the link's life (TCP payload)."""

    def _advance_clock(self, now: float) -> None:
        if now < self._now:
            raise UsageError(f"time went backwards: {now} < {self._now}")
        self._now = now

    def radio_down(self, now: float) -> bool:
        """Whether an outage covers `now`. Remembered until the next outage starts or the
        current one ends (a lab asks for every handset once a second)."""
        since, until, down, version = self._radio_memo
        if version == self._outage_version and since <= now < until:
            return down
        rel = now - self.epoch
        outage = self.outages.first_ending_after(rel)
        if outage is None:
            down, until = False, math.inf
        elif outage.start_s > rel:
            down, until = False, outage.start_s + self.epoch
        else:
            down, until = True, outage.end_s + self.epoch
        self._radio_memo = (now, until, down, self._outage_version)
        return down

    @property
    def interrupted(self) -> bool:
        """Whether a live outage (`interrupt`) is in progress."""
        return self.outages.live

    def interrupt(self, now: float) -> None:
        """The radio goes down at `now` until `restore`; an outage longer than the profile's
        `reset_after_s` resets the connections open through it, as a planned one does."""
        self._check_clock(now)
        if self.outages.live:
            raise UsageError("interrupt() twice: the link is already interrupted")
        self.outages.begin(now - self.epoch)
        self._outage_version += 1
        self._retime(now)

    def restore(self, now: float) -> None:
        """Coverage returns at `now`: from here on the link is as if the outage had been
        planned from its start to `now`."""
        self._check_clock(now)
        if not self.outages.live:
            raise UsageError("restore() without interrupt(): the link is not interrupted")
        self.outages.end(now - self.epoch)
        self._outage_version += 1
        self._retime(now)

    def retune(self, now: float, profile: Profile) -> None:
        """Behave as `profile` from `now` on. The outage process stays the one the link was
        built with; an offline profile cannot come or go this way (use `interrupt`)."""
        self._check_clock(now)
        if profile.offline or self.profile.offline:
            raise UsageError(
                f"cannot retune {self.profile.name!r} to {profile.name!r}: an offline profile"
                " has no capacity to change; interrupt() and restore() take the radio down"
            )
        self._advance_clock(now)
        self.profile = profile
        self._outage_version += 1  # another `reset_after_s`
        self.radio.retune(profile)
        self.radio.settle(now)
        self.up.retune(now, profile)
        self.down.retune(now, profile)

    def _check_clock(self, now: float) -> None:
        if now < self._now:
            raise UsageError(f"time went backwards: {now} < {self._now}")

    def _retime(self, now: float) -> None:
        self._advance_clock(now)
        self.radio.settle(now)
        self.up.retime(now, keep_progress=True)
        self.down.retime(now, keep_progress=True)

    def connect(self, now: float) -> Connection:
        """Open a connection from the handset: its SYN is queued on the uplink at `now`."""
        self._advance_clock(now)
        conn = Connection(self, self._next_id, now)
        self._next_id += 1
        self._connections[conn.id] = conn
        self.up.enqueue(now, conn.id, 0)
        return conn

    @property
    def connections(self) -> tuple[Connection, ...]:
        return tuple(self._connections.values())

    def _forget(self, now: float, conn: Connection) -> None:
        self._connections.pop(conn.id, None)
        self.up.drop_streams(now, {conn.id})
        self.down.drop_streams(now, {conn.id})

    def _next_reset(
        self, conn: Connection, scan_from: float, limit: float
    ) -> tuple[float, bool] | None:
        """From `scan_from`, the reset instant of `conn` (True) or, if only short outages come
        before `limit`, the end of the first one after it, a time to look again (False)."""
        t = scan_from - self.epoch
        opened = conn.stats.opened_at - self.epoch
        while True:
            outage = self.outages.first_ending_after(t)
            if outage is None:
                return None
            instant = max(outage.start_s, opened) + self.profile.reset_after_s
            if instant <= outage.end_s:
                return instant + self.epoch, True
            if outage.end_s + self.epoch > limit:
                return outage.end_s + self.epoch, False
            t = outage.end_s

    def _reset_lookup(
        self, conn: Connection, scan_from: float, limit: float
    ) -> tuple[float, bool] | None:
        """`_next_reset`, remembered per connection: the shell asks after every packet, with
        a scan start and a limit that only grow, and the answer stays what it was while
        (a reset) the scan has not reached it, (a time to look again) the limit has not
        reached it, or (None) always, unless the outages or the profile changed."""
        memo = conn._reset_memo
        version = self._outage_version
        if memo is not None:
            seen_version, seen_from, seen_limit, found = memo
            if seen_version == version and scan_from >= seen_from and limit >= seen_limit:
                if found is None:
                    return None
                at, is_reset = found
                if (scan_from < at) if is_reset else (limit < at):
                    return found
        found = self._next_reset(conn, scan_from, limit)
        conn._reset_memo = (version, scan_from, limit, found)
        return found

    def next_event_time(self) -> float | None:
        """The earliest time `poll` has something to do, or None if nothing is pending."""
        now = self._now
        best = math.inf
        for t in (self.up.next_delivery_time(), self.down.next_delivery_time()):
            if t is not None and t < best:
                best = t
        for conn in self._connections.values():
            found_reset = self._reset_lookup(conn, self._scanned_to, now)
            if found_reset is not None:
                at = max(found_reset[0], now)
                if at < best:
                    best = at
            for pipe in conn._pipes.values():
                wake = pipe.wake_time(now)
                if wake is not None and wake < best:
                    best = wake
        return None if math.isinf(best) else best

    def poll(self, now: float) -> list[Event]:
        """Everything that happened by `now`, in time order: arrivals, handshakes, resets."""
        self._advance_clock(now)
        events: list[Event] = []
        while True:
            reset_at, victims = self._due_resets(now)
            upto = reset_at if reset_at is not None else now
            events.extend(self._deliver(upto))
            if reset_at is None:
                break
            for conn in victims:
                conn._fire("reset")
                conn.stats.reset_at = reset_at
                self.resets += 1
                self._forget(reset_at, conn)
                events.append(Reset(conn, reset_at))
        for conn in list(self._connections.values()):
            for pipe in conn._pipes.values():
                pipe.push(now)
        self._scanned_to = now
        return events

    def _due_resets(self, now: float) -> tuple[float | None, list[Connection]]:
        """The earliest reset instant by `now` and the connections it resets."""
        first: float | None = None
        victims: list[Connection] = []
        for conn in self._connections.values():
            found = self._reset_lookup(conn, self._scanned_to, now)
            if found is None or not found[1] or found[0] > now:
                continue
            if first is None or found[0] < first:
                first, victims = found[0], [conn]
            elif found[0] == first:
                victims.append(conn)
        return first, victims

    def _deliver(self, upto: float) -> list[Event]:
        up = self.up.arrived(upto)
        down = self.down.arrived(upto)
        if up and down:  # both ways at once (rare): in time order, the uplink's first on ties
            arrivals = [(at, stream, n, UP) for at, stream, n in up]
            arrivals += [(at, stream, n, DOWN) for at, stream, n in down]
            arrivals.sort(key=lambda arrival: arrival[0])
        else:
            way = UP if up else DOWN
            arrivals = [(at, stream, n, way) for at, stream, n in up or down]
        connections = self._connections
        events: list[Event] = []
        for at, stream, nbytes, direction in arrivals:
            conn = connections.get(stream)
            if conn is not None:
                events.append(conn._arrive(direction, at, nbytes, upto))
        return events
