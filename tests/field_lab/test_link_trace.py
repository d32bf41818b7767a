"""Mahimahi trace parsing and trace-driven serialisation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from field_lab.link import BUILTIN_PROFILES, Link, Outage, TraceError, parse_trace
from field_lab.link.trace import OpportunityCursor, Trace, load_trace, rate_trace
from field_lab.link.virtual import exchange_time as exchange


def test_parse_a_valid_trace() -> None:
    trace = parse_trace("0\n300\n300\n\n600\n")
    assert trace.opportunities_ms == (0, 300, 300, 600)
    assert trace.period_s == 0.6
    assert trace.mean_rate_bps == pytest.approx(4 * 1500 * 8 / 0.6)


@pytest.mark.parametrize(
    ("text", "where", "fragment"),
    [
        ("10\nabc\n", "t:2", "integer"),
        ("10\n-5\n", "t:2", "integer"),
        ("10\n3.5\n", "t:2", "integer"),
        ("10\n20\n15\n", "t:3", "before the previous"),
        ("", "t", "no timestamps"),
        ("\n\n", "t", "no timestamps"),
        ("0\n0\n", "t", "positive"),
        ("１２\n", "t:1", "integer"),
    ],
)
def test_malformed_traces_name_the_line(text: str, where: str, fragment: str) -> None:
    with pytest.raises(TraceError) as info:
        parse_trace(text, "t")
    assert info.value.where == where
    assert fragment in info.value.problem


@given(st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=50))
def test_round_trip(values: list[int]) -> None:
    values.sort()
    if values[-1] == 0:
        values[-1] = 1
    assert parse_trace("\n".join(map(str, values))).opportunities_ms == tuple(values)


@given(st.text(max_size=200))
def test_arbitrary_text_gives_a_trace_or_a_trace_error(text: str) -> None:
    try:
        trace = parse_trace(text)
    except TraceError:
        return
    assert trace.opportunities_ms[-1] > 0


def test_unreadable_file_is_a_trace_error() -> None:
    with pytest.raises(TraceError, match="cannot read"):
        load_trace("/nonexistent/trace.txt")


def test_cursor_walks_repeats_and_loops() -> None:
    cursor = OpportunityCursor(Trace((100, 100, 400)))
    assert cursor.advance_to(0.0) == 0.1
    assert cursor.advance_to(0.0) == 0.1  # the second opportunity at 100 ms
    assert cursor.advance_to(0.0) == 0.4
    assert cursor.advance_to(0.0) == 0.5  # next loop: 400 + 100 ms
    assert cursor.advance_to(2.0) == 2.1


def test_small_packet_waits_for_the_next_opportunity() -> None:
    profile = BUILTIN_PROFILES["perfect"].replace(name="t", rtt_s=0.2, up_trace=Trace((300,)))
    link = Link(profile)
    (delivery,) = link.up.send(0.05, 1, 100)
    assert delivery.at == pytest.approx(0.3 + 0.1)


def test_small_packets_share_an_opportunity() -> None:
    profile = BUILTIN_PROFILES["perfect"].replace(name="t", up_trace=Trace((300,)))
    link = Link(profile)
    first = link.up.send(0.0, 1, 400)
    second = link.up.send(0.0, 1, 400)  # 452 + 452 wire bytes fit one 1500-byte opportunity
    assert first[0].at == second[0].at == pytest.approx(0.3)


def test_trace_capacity_equals_its_rate() -> None:
    """A 40 kbit/s trace delivers 100 KB in wire-bytes/rate, as the fixed rate would."""
    trace = rate_trace(40_000)
    fixed = BUILTIN_PROFILES["perfect"].replace(name="f", rtt_s=0.4, down_bps=40_000, up_bps=40_000)
    traced = fixed.replace(up_trace=trace, down_trace=trace)
    a = exchange(fixed, 100, 100_000)
    b = exchange(traced, 100, 100_000)
    assert b == pytest.approx(a, rel=0.02)


def test_opportunities_during_outages_are_lost() -> None:
    profile = BUILTIN_PROFILES["perfect"].replace(name="t", up_trace=Trace((100,)))
    link = Link(profile, outages=[Outage(0.0, 0.25)])
    (delivery,) = link.up.send(0.0, 1, 10)
    assert delivery.at == pytest.approx(0.3)
