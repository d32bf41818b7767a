"""What a link remembers between the shell's questions (each connection's next reset, whether
the radio is down) is exactly what it would work out afresh, through outages drawn, scripted
and live, and profile changes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from field_lab.link import BUILTIN_PROFILES, Link, OnOff, Outage

PROFILE = BUILTIN_PROFILES["perfect"].replace(
    name="flaky", rtt_s=0.4, down_bps=40_000, up_bps=20_000, reset_after_s=3.0
)
SHORT = PROFILE.replace(name="short", reset_after_s=1.0)

steps = st.lists(
    st.tuples(
        st.floats(0.0, 4.0),  # how far time moves
        st.sampled_from(["ask", "ask", "ask", "connect", "interrupt", "restore", "retune"]),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(
    steps,
    st.booleans(),
    st.lists(st.tuples(st.floats(0.0, 60.0), st.floats(0.1, 8.0)), max_size=6),
    st.integers(0, 10),
)
def test_remembered_answers_are_fresh_answers(
    plan: list[tuple[float, str]],
    drawn: bool,
    scripted: list[tuple[float, float]],
    seed: int,
) -> None:
    if drawn:
        link = Link(PROFILE.replace(outages=OnOff(mean_up_s=6.0, mean_down_s=2.5)), seed=seed)
    else:
        outages, end = [], 0.0
        for gap, duration in scripted:  # sorted and disjoint
            outages.append(Outage(end + gap, duration))
            end = outages[-1].end_s
        link = Link(PROFILE, seed=seed, outages=outages)
    now = 0.0
    scanned = 0.0
    conns = [link.connect(now)]
    for advance, action in plan:
        now += advance
        if action == "connect":
            conns.append(link.connect(now))
        elif action == "interrupt" and not link.interrupted:
            link.interrupt(now)
        elif action == "restore" and link.interrupted:
            link.restore(now)
        elif action == "retune" and not link.interrupted:
            link.retune(now, SHORT if link.profile is PROFILE else PROFILE)
        for conn in conns:
            limit = now
            assert link._reset_lookup(conn, scanned, limit) == link._next_reset(
                conn, scanned, limit
            )
        rel = now - link.epoch
        assert link.radio_down(now) == (link.outages.next_up(rel) > rel)
        if action == "ask":
            scanned = now  # as `poll` does: the scan moves up to the time asked
