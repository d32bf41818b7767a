"""Stateful property test: a Link against a model of byte streams.

Whatever the handset and the platform write, in any order and at any times, each connection
delivers each direction's bytes in order, without loss or duplication, and never before the
handshake; draining the link delivers everything. Live outages (`interrupt`/`restore`) and
profile changes (`retune`) may come at any time; the profile never resets a connection."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from field_lab.link import (
    BUILTIN_PROFILES,
    DOWN,
    UP,
    Arrived,
    Connection,
    EofArrived,
    Established,
    Link,
    Reset,
)
from field_lab.link.profiles import Profile

PROFILE = BUILTIN_PROFILES["gprs-bad"].replace(
    outages=None, queue_bytes=4_000, rtt_s=0.3, reset_after_s=1e9
)
RETUNED = (
    PROFILE,
    PROFILE.replace(
        name="faster", up_bps=80_000, down_bps=160_000, rtt_s=0.1, jitter_s=0.05, loss=None
    ),
    PROFILE.replace(name="smaller", mtu=576, queue_bytes=2_000, jitter_s=0.0),
)


class LinkMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.link = Link(PROFILE, seed=1)
        self.now = 0.0
        self.conns: list[Connection] = []
        self.sent: dict[tuple[int, str], bytearray] = {}
        self.got: dict[tuple[int, str], bytearray] = {}
        self.eof: set[tuple[int, str]] = set()
        self.closed_by_writer: set[tuple[int, str]] = set()
        self.established: set[int] = set()
        self.counter = 0

    def _payload(self, n: int) -> bytes:
        self.counter += 1
        return bytes((self.counter + i) % 251 for i in range(n))

    def _poll(self) -> None:
        for event in self.link.poll(self.now):
            key = (event.conn.id, getattr(event, "direction", UP))
            if isinstance(event, Established):
                self.established.add(event.conn.id)
            elif isinstance(event, Arrived):
                assert event.conn.id in self.established  # data never overtakes the handshake
                assert key not in self.eof
                self.got[key] += event.data
            elif isinstance(event, EofArrived):
                self.eof.add(key)
            elif isinstance(event, Reset):  # pragma: no cover - no outages in PROFILE
                raise AssertionError("unexpected reset")

    @precondition(lambda self: len(self.conns) < 4)
    @rule()
    def connect(self) -> None:
        conn = self.link.connect(self.now)
        self.conns.append(conn)
        for d in (UP, DOWN):
            self.sent[(conn.id, d)] = bytearray()
            self.got[(conn.id, d)] = bytearray()

    @precondition(lambda self: bool(self.conns))
    @rule(index=st.integers(0, 3), up=st.booleans(), size=st.integers(0, 9_000))
    def write(self, index: int, up: bool, size: int) -> None:
        conn = self.conns[index % len(self.conns)]
        d = UP if up else DOWN
        if not conn.alive or (conn.id, d) in self.closed_by_writer:
            return
        data = self._payload(size)
        conn.send(self.now, d, data)
        self.sent[(conn.id, d)] += data

    @precondition(lambda self: bool(self.conns))
    @rule(index=st.integers(0, 3), up=st.booleans())
    def close(self, index: int, up: bool) -> None:
        conn = self.conns[index % len(self.conns)]
        d = UP if up else DOWN
        if conn.alive and (conn.id, d) not in self.closed_by_writer:
            conn.close(self.now, d)
            self.closed_by_writer.add((conn.id, d))

    @rule(dt=st.floats(min_value=0.0, max_value=10.0))
    def advance(self, dt: float) -> None:
        self.now += dt
        self._poll()

    @precondition(lambda self: not self.link.interrupted)
    @rule()
    def interrupt(self) -> None:
        self.link.interrupt(self.now)

    @precondition(lambda self: self.link.interrupted)
    @rule()
    def restore(self) -> None:
        self.link.restore(self.now)

    @rule(profile=st.sampled_from(RETUNED))
    def retune(self, profile: Profile) -> None:
        self.link.retune(self.now, profile)

    @invariant()
    def delivered_is_a_prefix_of_sent(self) -> None:
        for key, got in self.got.items():
            assert self.sent[key][: len(got)] == got

    def teardown(self) -> None:
        if self.link.interrupted:
            self.link.restore(self.now)
        for _ in range(10_000):
            t = self.link.next_event_time()
            if t is None:
                break
            self.now = max(self.now, t)
            self._poll()
        for key, got in self.got.items():
            assert got == self.sent[key], key
        assert self.eof == self.closed_by_writer


TestLinkMachine = LinkMachine.TestCase
TestLinkMachine.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
