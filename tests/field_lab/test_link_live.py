"""Live control of a link (the pytest plugin's `payg_link` and any harness at the controls):
an outage started and stopped at will acts as a planned one of the same span, a profile change
re-times what is queued, and bad calls change nothing. In virtual time, then on real sockets."""

from __future__ import annotations

import asyncio
import itertools
import math
import random
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from field_lab.link import (
    BUILTIN_PROFILES,
    UP,
    Arrived,
    Link,
    OnOff,
    Outage,
    Reset,
    State,
    UsageError,
)
from field_lab.link.outages import OutageSchedule
from field_lab.link.proxy import LinkProxy
from field_lab.link.virtual import Timeline, run_until_idle
from tests.field_lab.echo import echo_upper

PLAIN = BUILTIN_PROFILES["perfect"].replace(
    name="plain", rtt_s=0.8, down_bps=40_000, up_bps=20_000, queue_bytes=32_000
)
FAST = PLAIN.replace(name="fast", up_bps=200_000, down_bps=400_000, rtt_s=0.1)


def _open(profile: object = PLAIN, **kwargs: object) -> tuple[Link, Timeline]:
    """A link with one open connection, polled up to the end of its handshake."""
    link = Link(profile, **kwargs)  # type: ignore[arg-type]
    link.connect(0.0)
    timeline = Timeline()
    run_until_idle(link, timeline, until=2.0)
    assert link.connections[0].state is State.OPEN
    return link, timeline


def _arrivals(link: Link, timeline: Timeline) -> list[float]:
    run_until_idle(link, timeline)
    return timeline.times(Arrived)


def test_an_interruption_stalls_like_a_planned_outage_of_the_same_span() -> None:
    planned, p_timeline = _open(outages=[Outage(2.1, 5.0)])
    live, l_timeline = _open()
    for link in (planned, live):
        (conn,) = link.connections
        conn.send(2.0, UP, b"x" * 1448)  # 0.6 s to serialise; the radio goes at 2.1 s
    live.interrupt(2.1)
    assert live.interrupted
    run_until_idle(live, l_timeline, until=7.0)
    assert not l_timeline.times(Arrived)  # nothing while down (the reset is 30 s away)
    live.restore(7.1)
    assert not live.interrupted
    expected = 2.0 + 0.6 + 5.0 + 0.4
    assert _arrivals(planned, p_timeline) == pytest.approx([expected])
    assert _arrivals(live, l_timeline) == pytest.approx([expected])


def test_a_long_interruption_resets_open_connections_on_time() -> None:
    link, timeline = _open(PLAIN.replace(reset_after_s=5.0))
    (conn,) = link.connections
    link.interrupt(10.0)
    run_until_idle(link, timeline)
    assert timeline.times(Reset) == pytest.approx([15.0])
    assert conn.state is State.RESET
    link.restore(16.0)
    fresh = link.connect(16.0)
    run_until_idle(link, timeline)
    assert fresh.state is State.OPEN


def test_the_idle_timer_runs_through_an_interruption() -> None:
    link, timeline = _open(PLAIN.replace(wakeup_s=0.6, idle_s=5.0))
    wakeups = link.radio.wakeups
    now = timeline.now
    link.interrupt(now + 0.5)
    link.restore(now + 1.0)  # a short gap with nothing queued: the radio is still awake
    (conn,) = link.connections
    conn.send(now + 1.0, UP, b"x" * 100)
    serialise = 152 * 8 / 20_000
    assert _arrivals(link, timeline) == pytest.approx([now + 1.0 + serialise + 0.4])
    assert link.radio.wakeups == wakeups
    later = timeline.now + 10.0
    link.interrupt(later)
    link.restore(later + 1.0)  # idle for longer than idle_s: the next packet wakes it
    conn.send(later + 1.0, UP, b"x" * 100)
    assert _arrivals(link, timeline)[-1] == pytest.approx(later + 1.0 + 0.6 + serialise + 0.4)
    assert link.radio.wakeups == wakeups + 1


def test_planned_outages_come_back_after_an_interruption() -> None:
    schedule = OutageSchedule([Outage(10.0, 10.0), Outage(40.0, 5.0), Outage(60.0, 5.0)])
    schedule.begin(15.0)  # during the first: it continues it
    assert schedule.next_up(50.0) == math.inf
    schedule.end(30.0)
    assert schedule.known() == (Outage(10.0, 20.0), Outage(40.0, 5.0), Outage(60.0, 5.0))
    schedule.begin(35.0)
    schedule.end(42.0)  # ends inside the second planned one: down until it ends
    assert schedule.known() == (Outage(10.0, 20.0), Outage(35.0, 10.0), Outage(60.0, 5.0))
    schedule.begin(50.0)
    schedule.end(50.0)  # began and ended at once: nothing happened
    assert schedule.known()[-1] == Outage(60.0, 5.0)


@given(
    seed=st.integers(0, 1000),
    spans=st.lists(st.tuples(st.floats(0.0, 500.0), st.floats(0.0, 200.0)), min_size=1, max_size=5),
)
def test_interruptions_keep_a_random_schedule_sorted_disjoint_and_down(
    seed: int, spans: list[tuple[float, float]]
) -> None:
    schedule = OutageSchedule(onoff=OnOff(60.0, 20.0), rng=random.Random(seed))
    t = 0.0
    for gap, length in spans:
        begin, end = t + gap, t + gap + length
        schedule.begin(begin)
        schedule.end(end)
        if end > begin:
            # down all through the interruption (to the last bit of float arithmetic)
            assert schedule.next_up(begin) == pytest.approx(end) or schedule.next_up(begin) > end
            assert schedule.next_up((begin + end) / 2) >= schedule.next_up(begin)
        t = end
    schedule.first_ending_after(t + 1000.0)  # the random process goes on after them
    known = schedule.known()
    assert all(a.end_s < b.start_s for a, b in itertools.pairwise(known))


def test_retuning_re_times_queued_bytes_as_the_new_profile() -> None:
    retuned, built = Link(PLAIN), Link(FAST)
    retuned.up.send(0.0, 1, 5000)
    retuned.retune(0.0, FAST)
    built.up.send(0.0, 1, 5000)
    times = [d.at for d in retuned.up.deliverable(math.inf)]
    assert times == pytest.approx([d.at for d in built.up.deliverable(math.inf)])
    assert retuned.profile is FAST
    assert retuned.up.profile is retuned.down.profile is FAST


def test_retuning_an_open_connection_changes_its_round_trip() -> None:
    link, timeline = _open()
    (conn,) = link.connections
    start = timeline.now
    conn.send(start, UP, b"x" * 100)
    slow = _arrivals(link, timeline)[-1] - start
    link.retune(timeline.now, FAST)
    start = timeline.now
    conn.send(start, UP, b"x" * 100)
    fast = _arrivals(link, timeline)[-1] - start
    assert slow == pytest.approx(152 * 8 / 20_000 + 0.4)
    assert fast == pytest.approx(152 * 8 / 200_000 + 0.05)


def test_bad_live_calls_raise_and_change_nothing() -> None:
    link, timeline = _open()
    now = timeline.now
    with pytest.raises(UsageError, match="not interrupted"):
        link.restore(now + 1.0)
    link.interrupt(now + 1.0)
    with pytest.raises(UsageError, match="already interrupted"):
        link.interrupt(now + 2.0)
    with pytest.raises(UsageError, match="backwards"):
        link.restore(now + 0.5)
    assert link.interrupted
    with pytest.raises(UsageError, match="offline"):
        link.retune(now + 2.0, BUILTIN_PROFILES["offline"])
    assert link.profile is PLAIN
    link.restore(now + 2.0)
    offline = Link(BUILTIN_PROFILES["offline"])
    with pytest.raises(UsageError, match="offline"):
        offline.retune(0.0, PLAIN)
    with pytest.raises(ValueError, match="no live outage"):
        OutageSchedule().end(1.0)
    schedule = OutageSchedule()
    schedule.begin(3.0)
    with pytest.raises(ValueError, match=r"end at a finite time >= 3\.0"):
        schedule.end(2.0)
    assert schedule.live


# -- on real sockets ----------------------------------------------------------------------


@pytest.fixture
async def proxy() -> AsyncIterator[tuple[LinkProxy, int]]:
    server = await asyncio.start_server(echo_upper, "127.0.0.1", 0)
    upstream = ("127.0.0.1", int(server.sockets[0].getsockname()[1]))
    quick = BUILTIN_PROFILES["perfect"].replace(name="quick", reset_after_s=0.3)
    link = LinkProxy(quick, upstream)
    _, port = await link.start()
    yield link, port
    await link.aclose()
    server.close()
    await server.wait_closed()


async def _round_trip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> float:
    loop = asyncio.get_running_loop()
    began = loop.time()
    writer.write(data)
    assert await asyncio.wait_for(reader.readexactly(len(data)), 10) == data.upper()
    return loop.time() - began


async def test_proxy_controls_act_on_an_open_connection(proxy: tuple[LinkProxy, int]) -> None:
    link, port = proxy
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await _round_trip(reader, writer, b"a") < 0.2
    link.set_profile(link.profile.replace(name="far", rtt_s=0.4))
    assert link.stats()["profile"] == "far"
    assert await _round_trip(reader, writer, b"b") >= 0.4
    link.start_outage()  # shorter than reset_after_s: a stall, not a reset
    writer.write(b"c")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(1), 0.15)
    link.stop_outage()
    assert await asyncio.wait_for(reader.readexactly(1), 5) == b"C"
    link.start_outage()  # longer than reset_after_s: the connection is reset
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(1), 5)
    assert link.resets == 1
    assert link.outage_active
    link.stop_outage()
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await _round_trip(reader, writer, b"d") >= 0.4
    writer.close()
    with pytest.raises(UsageError, match="not interrupted"):
        link.stop_outage()
