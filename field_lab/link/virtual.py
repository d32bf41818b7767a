"""Drive a Link in virtual time: no clock, no sockets, the same code paths as the shells.

For tests, for the benchmark's many-seed means, and for the lab when it wants the distribution
of a transfer's time on a profile without waiting for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from field_lab.link.core import DOWN, UP, Arrived, Connection, EofArrived, Established, Event, Link
from field_lab.link.errors import UsageError
from field_lab.link.profiles import Profile

MAX_STEPS = 1_000_000


@dataclass
class Timeline:
    """Every (time, event) a run saw, and the time it stopped at."""

    events: list[tuple[float, Event]] = field(default_factory=list)
    now: float = 0.0

    def times(self, kind: type) -> list[float]:
        return [t for t, e in self.events if isinstance(e, kind)]


def run_until_idle(link: Link, timeline: Timeline, until: float = 1e9) -> Timeline:
    """Poll at every next event time until nothing is pending or the next event is after
    `until`; bounded by MAX_STEPS."""
    for _ in range(MAX_STEPS):
        t = link.next_event_time()
        if t is None or t > until:
            return timeline
        timeline.now = t
        timeline.events.extend((t, e) for e in link.poll(t))
    raise UsageError("the link kept producing events past MAX_STEPS")


def exchange_time(
    profile: Profile,
    bytes_up: int,
    bytes_down: int,
    *,
    seed: int = 0,
    warm: bool = True,
    awake: bool = True,
) -> float:
    """Seconds from the handset writing `bytes_up` (>= 1) to the last of `bytes_down` (>= 1)
    arriving, the platform answering as soon as the request is in.

    warm: the connection is set up first; awake: the request follows the handshake while the
    radio is still active (else after its idle timer). A cold exchange starts asleep."""
    if bytes_up < 1 or bytes_down < 1:
        raise UsageError("an exchange needs at least one byte each way")
    if not warm and awake:
        raise UsageError("a cold connection starts with the radio asleep (awake=False)")
    link = Link(profile, seed=seed)
    timeline = Timeline()
    conn = link.connect(0.0)
    start = 0.0
    if warm:
        run_until_idle(link, timeline)
        if not timeline.times(Established):
            raise UsageError(f"profile {profile.name!r} never completes a handshake")
        start = timeline.now + (0.0 if awake else profile.idle_s + 1.0)
        link.poll(start)
    return _serve(link, conn, start, bytes_up, bytes_down)


def _serve(link: Link, conn: Connection, start: float, bytes_up: int, bytes_down: int) -> float:
    conn.send(start, UP, b"u" * bytes_up)
    got = {UP: 0, DOWN: 0}
    for _ in range(MAX_STEPS):
        t = link.next_event_time()
        if t is None:
            break
        for event in link.poll(t):
            if isinstance(event, Arrived):
                got[event.direction] += len(event.data)
                if event.direction == UP and got[UP] == bytes_up:
                    conn.send(t, DOWN, b"d" * bytes_down)
                if event.direction == DOWN and got[DOWN] == bytes_down:
                    return t - start
            elif isinstance(event, EofArrived):
                break
    raise UsageError("the exchange did not finish (offline profile or a reset)")
