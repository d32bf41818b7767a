"""Drive a sans-I/O Link in virtual time, as the asyncio shells do with a real clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from field_lab.link import DOWN, UP, Arrived, Connection, EofArrived, Established, Event, Link
from field_lab.link.profiles import Profile

MAX_STEPS = 1_000_000


@dataclass
class Timeline:
    """Everything `run_until_idle` saw, for assertions."""

    events: list[tuple[float, Event]] = field(default_factory=list)
    now: float = 0.0

    def times(self, kind: type) -> list[float]:
        return [t for t, e in self.events if isinstance(e, kind)]


def run_until_idle(link: Link, timeline: Timeline, until: float = 1e9) -> Timeline:
    """Poll at every next event time until nothing is pending (or `until`)."""
    for _ in range(MAX_STEPS):
        t = link.next_event_time()
        if t is None or t > until:
            return timeline
        timeline.now = t
        timeline.events.extend((t, e) for e in link.poll(t))
    raise AssertionError("the link kept producing events")


def exchange(
    profile: Profile,
    bytes_up: int,
    bytes_down: int,
    *,
    seed: int = 0,
    warm: bool = True,
    awake: bool = True,
) -> float:
    """Seconds from the handset writing `bytes_up` to the last of `bytes_down` arriving.

    warm: the connection is established first; awake: the request goes out while the radio is
    still active from the handshake (otherwise the radio has slept past its idle timer)."""
    link = Link(profile, seed=seed)
    timeline = Timeline()
    now = 0.0
    conn = link.connect(now)
    if warm:
        run_until_idle(link, timeline)
        assert timeline.times(Established), "handshake did not complete"
        now = timeline.now + (0.0 if awake else profile.idle_s + 1.0)
        link.poll(now)
    elif awake:
        raise ValueError("a cold connection starts with the radio asleep")
    start = now
    return _serve(link, conn, start, bytes_up, bytes_down)


def _serve(link: Link, conn: Connection, start: float, bytes_up: int, bytes_down: int) -> float:
    conn.send(start, UP, b"u" * bytes_up)
    got = {UP: 0, DOWN: 0}
    for _ in range(MAX_STEPS):
        t = link.next_event_time()
        assert t is not None, "the exchange stalled"
        for event in link.poll(t):
            if isinstance(event, Arrived):
                got[event.direction] += len(event.data)
                if event.direction == UP and got[UP] == bytes_up:
                    conn.send(t, DOWN, b"d" * bytes_down)
                if event.direction == DOWN and got[DOWN] == bytes_down:
                    return t - start
            elif isinstance(event, EofArrived):
                raise AssertionError("unexpected EOF")
    raise AssertionError("the exchange did not finish")
