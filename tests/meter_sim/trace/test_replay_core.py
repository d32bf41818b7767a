"""The sans-I/O replayer: no wires, no clocks; a device is a function of the request."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from meter_sim.line_protocol import LineSession
from meter_sim.trace import (
    DeviceConfig,
    Event,
    Header,
    Replayer,
    Status,
    Timing,
    TraceRecorder,
    load,
    replay,
)
from meter_sim.trace.format import Trace
from meter_sim.trace.replay import PROBE, Phase
from meter_sim.trace.targets import SimLink

from ..helpers import KEY, full_add
from .test_golden import GOLDEN_DIR

TRACE = load(GOLDEN_DIR / "nexus_small.jsonl")
BEHAVIOURS = ["ok", "silent", "garbage", "wrong", "late", "split", "junk-line"]


def drive(trace: Trace, behaviours: list[str], max_timeouts: int = 3) -> Replayer:
    """Run the core against a simulated device that misbehaves per request, in order."""
    core = Replayer(trace, max_timeouts=max_timeouts)
    device = LineSession(trace.header.device.build())
    plan = iter(behaviours)
    held = b""
    for _ in range(10 * (len(trace.events) + len(behaviours)) + 10):
        if core.finished:
            break
        send = core.next_send()
        if send is None:
            continue
        answer = device.feed(send.data)
        if held:
            core.receive(held)
            held = b""
        how = next(plan, "ok")
        if how == "garbage":
            core.receive(b"\xfe\xff noise\n" + answer)
        elif how == "wrong":
            core.receive(answer.replace(b"OK ", b"OK ", 1).replace(b"=", b"=9", 1))
        elif how == "late":
            held = answer
        elif how == "split":
            for i in range(len(answer)):
                core.receive(answer[i : i + 1])
        elif how == "junk-line":
            core.receive(b"OK FROB 1\n" + answer)
        elif how == "ok":
            core.receive(answer)
        if core.waiting:
            core.timeout()
    assert core.finished, "the core must finish within a bounded number of steps"
    return core


def test_a_faithful_device_matches_every_event() -> None:
    core = drive(TRACE, [])
    assert core.result.exit_code == 0
    assert [c.index for c in core.result.checks] == list(range(len(TRACE.events)))
    assert core.result.count(Status.MATCH) == len(TRACE.events)


def test_first_send_is_the_identifying_hello() -> None:
    core = Replayer(TRACE)
    send = core.next_send()
    assert send is not None
    assert send.index == PROBE
    assert send.data == b"HELLO\n"
    assert core.next_send() is None  # nothing more while its answer is awaited
    assert core.phase is Phase.PROBING


def test_a_late_answer_is_never_taken_for_the_next_events() -> None:
    core = drive(TRACE, ["ok", "late"])
    first = core.result.checks[0]
    assert first.status is Status.TIMEOUT
    assert any(i.kind == "stale" for i in core.result.incidents)
    # every later event matched: the stale answer was dropped, not shifted onto them
    assert all(c.status is Status.MATCH for c in core.result.checks[1:])


def test_a_late_hello_answer_is_not_taken_for_an_events_answer() -> None:
    # the first HELLO's answer comes late, after the resync HELLO; the resync HELLO's answer
    # comes after the first event was sent: it must be set aside, not compared with the event
    core = drive(TRACE, ["late", "late"])
    assert core.result.count(Status.MISMATCH) == 0
    assert core.result.checks[0].status is Status.MATCH
    assert any(i.kind == "stale" for i in core.result.incidents)


@given(st.lists(st.sampled_from(BEHAVIOURS), max_size=60), st.integers(1, 4))
def test_any_device_behaviour_ends_with_one_check_per_event_in_order(
    behaviours: list[str], max_timeouts: int
) -> None:
    core = drive(TRACE, behaviours, max_timeouts)
    result = core.result
    indices = [c.index for c in result.checks]
    assert indices == list(range(len(indices)))
    if result.aborted is None:
        assert len(indices) == len(TRACE.events)
    else:
        assert result.exit_code == 3
    if all(b in ("ok", "split", "garbage", "junk-line") for b in behaviours):
        assert result.exit_code == 0
    if "wrong" not in behaviours:
        # the device never answered wrongly, so a mismatch would mean the replayer lost sync
        assert result.count(Status.MISMATCH) == 0
    if result.exit_code == 0:
        assert result.count(Status.MATCH) == len(TRACE.events)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_recorded_speed_and_n_times_speed_pace_by_the_trace() -> None:
    ts = [e.t - TRACE.events[0].t for e in TRACE.events]
    for speed in (1.0, 4.0):
        clock = FakeClock()
        timing = Timing()
        result = replay(
            TRACE,
            SimLink.for_device(TRACE.header.device),
            speed=speed,
            clock=clock,
            sleep=clock.sleep,
            timing=timing,
        )
        assert result.exit_code == 0
        assert abs(sum(clock.sleeps) - ts[-1] / speed) < 1e-9
        assert abs(timing.elapsed - ts[-1] / speed) < 1e-9
        assert timing.sent == len(TRACE.events) + 1


def test_as_fast_as_possible_never_sleeps() -> None:
    clock = FakeClock()
    result = replay(TRACE, SimLink.for_device(TRACE.header.device), clock=clock, sleep=clock.sleep)
    assert result.exit_code == 0
    assert clock.sleeps == []


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Replayer(TRACE, speed=0)
    with pytest.raises(ValueError):
        Replayer(TRACE, max_timeouts=0)
    with pytest.raises(ValueError):
        replay(TRACE, SimLink.for_device(TRACE.header.device), timeout=0)


class NoHello(LineSession):
    """A device that predates HELLO: it answers it with ERR unknown-command."""

    def handle_line(self, line: str) -> str:
        if line.split()[0].upper() == "HELLO":
            return "ERR unknown-command no HELLO here"
        return super().handle_line(line)


def test_a_device_without_hello_is_replayed_unidentified_and_resyncs_on_its_error() -> None:
    link = SimLink(NoHello(TRACE.header.device.build()))
    result = replay(TRACE, link)
    assert result.exit_code == 0
    assert result.target is None
    assert [i.kind for i in result.incidents] == ["identity"]
    core = Replayer(TRACE)
    core.next_send()
    core.receive(b"ERR unknown-command no HELLO here\n")
    core.next_send()
    core.timeout()  # the first event got no answer: resynchronise
    core.next_send()
    core.receive(b"ERR clock-backwards stale answer\n")  # not the HELLO error: stale
    assert core.phase is Phase.PROBING
    core.receive(b"ERR unknown-command no HELLO here\n")
    assert core.phase is Phase.READY


class ReplayerMachine(RuleBasedStateMachine):
    """The core under any interleaving of what a wire can do, against a faithful device."""

    def __init__(self) -> None:
        super().__init__()
        self.core = Replayer(TRACE, max_timeouts=3)
        self.device = LineSession(TRACE.header.device.build())
        self.outbox: list[bytes] = []
        self.sent = 0

    @precondition(lambda self: self.core.phase is Phase.READY)
    @rule()
    def send(self) -> None:
        send = self.core.next_send()
        if send is not None:
            self.sent += 1
            self.outbox.append(self.device.feed(send.data))

    @precondition(lambda self: bool(self.outbox))
    @rule(cut=st.integers(0, 80))
    def deliver(self, cut: int) -> None:
        answer = self.outbox.pop(0)
        self.core.receive(answer[:cut])
        self.core.receive(answer[cut:])

    @precondition(lambda self: bool(self.outbox))
    @rule()
    def lose(self) -> None:
        self.outbox.pop(0)

    @rule(noise=st.binary(max_size=20))
    def noise(self, noise: bytes) -> None:
        self.core.receive(noise + b"\n")

    @rule()
    def timeout(self) -> None:
        self.core.timeout()

    @invariant()
    def checks_are_in_order_and_never_mismatch(self) -> None:
        result = self.core.result
        assert [c.index for c in result.checks] == list(range(len(result.checks)))
        assert result.count(Status.MISMATCH) == 0
        assert len(result.checks) <= self.sent
        assert self.core.waiting == (self.core.phase in (Phase.AWAITING, Phase.PROBING))


TestReplayerMachine = ReplayerMachine.TestCase


class WriteTimes(SimLink):
    """The simulator, noting the fake clock's time at each write and each reconnect."""

    def __init__(self, link: SimLink, clock: FakeClock) -> None:
        super().__init__(link.session)
        self.clock = clock
        self.writes: list[tuple[float, bytes]] = []
        self.reconnects: list[int] = []

    def write(self, data: bytes) -> None:
        self.writes.append((self.clock.now, data))
        super().write(data)

    def reconnect(self) -> None:
        self.reconnects.append(len(self.writes))
        super().reconnect()


def keyed_trace() -> Trace:
    events: list[Event] = []
    config = DeviceConfig("nexus-full", KEY)
    meter = TraceRecorder(config.build(), events.append)
    for key in full_add(1, 2).replace(" ", ""):
        meter.press_key(key, 0.0)
    meter.status(0.0)
    return Trace(Header(config, timebase="device"), tuple(events))


def test_key_gap_paces_keys_at_any_speed() -> None:
    trace = keyed_trace()
    clock = FakeClock()
    link = WriteTimes(SimLink.for_device(trace.header.device), clock)
    result = replay(trace, link, clock=clock, sleep=clock.sleep, key_gap=0.25)
    assert result.exit_code == 0
    keys = [t for t, data in link.writes if data.startswith(b"KEY ")]
    assert len(keys) == len(full_add(1, 2).replace(" ", ""))
    gaps = [b - a for a, b in itertools.pairwise(keys)]
    assert all(abs(gap - 0.25) < 1e-9 for gap in gaps)
    assert link.writes[-1][0] == keys[-1]  # STATUS is not a key: it is not held back
    with pytest.raises(ValueError, match="key_gap"):
        replay(trace, link, key_gap=-1)


def test_a_connection_mark_opens_a_new_connection_to_the_same_device() -> None:
    keys = full_add(1, 2).replace(" ", "")
    half = len(keys) // 2
    base = keyed_trace()
    events = (
        Event("connect", 0.0),
        *base.events[:half],
        Event("connect", 0.0),
        *base.events[half:],
    )
    trace = Trace(base.header, events)
    clock = FakeClock()
    link = WriteTimes(SimLink.for_device(trace.header.device), clock)
    result = replay(trace, link, clock=clock, sleep=clock.sleep)
    assert result.exit_code == 0
    assert result.count(Status.MATCH) == len(events)  # the key entry went on across connections
    assert link.reconnects == [half + 2]  # after identify, the first mark's HELLO, half the keys
    assert result.checks[0].event.label() == "(new connection) HELLO"
