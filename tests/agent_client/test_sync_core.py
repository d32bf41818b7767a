"""The sync core's rules one by one: the transition table, batch sizing, backoff bounds."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_client.protocol.errors import FrameError, UsageError
from agent_client.protocol.frames import DownlinkFrame, encode_downlink
from agent_client.protocol.ops import Kind, Operation
from agent_client.protocol.pacing import MAX_RATE_BPS, MIN_RATE_BPS, LinkEstimate, Pacing
from agent_client.protocol.sync import TRANSITIONS, Input, State, SyncConfig, SyncCore

OPS = [Operation.make(s, Kind.RECORD_PAYMENT, 1, 5, 100) for s in range(1, 301)]
OK = encode_downlink(DownlinkFrame(1, (), (), 1, (), False))


def core_in(state: State) -> SyncCore:
    core = SyncCore(7, config=SyncConfig(backoff_base_s=1, backoff_cap_s=4), rng=random.Random(0))
    if state is not State.IDLE:
        request = core.start(OPS[:1], 0.0)
        if state is State.BACKOFF:
            core.fail(request, 0.0)
    assert core.state is state
    return core


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("event", list(Input))
def test_every_pair_is_in_the_table_or_refused(state: State, event: Input) -> None:
    core = core_in(state)
    core.retry_at = 0.0
    target = TRANSITIONS.get((state, event))
    if target is None:
        with pytest.raises(UsageError):
            core._move(event)
        assert core.state is state
    else:
        core._move(event)
        assert core.state is target


def test_backing_off_refuses_an_early_start() -> None:
    core = core_in(State.BACKOFF)
    with pytest.raises(UsageError, match="backing off"):
        core.start(OPS, core.retry_at - 0.001)
    assert not core.ready(core.retry_at - 0.001)
    assert core.ready(core.retry_at)
    core.start(OPS, core.retry_at)


@given(st.lists(st.booleans(), max_size=40))
def test_batch_doubles_on_success_and_halves_on_failure(outcomes: list[bool]) -> None:
    config = SyncConfig(initial_batch=8, min_batch=2, max_batch=64)
    core = SyncCore(7, config=config, rng=random.Random(0))
    expected = 8
    now = 0.0
    for ok in outcomes:
        now = max(now, core.retry_at)
        request = core.start(OPS, now)
        assert len(request.seqs) == min(expected, len(OPS))
        if ok:
            core.receive(request, OK)
            expected = min(64, expected * 2)
        else:
            core.fail(request, now)
            expected = max(2, expected // 2)
        assert core.batch_size == expected


@given(st.integers(1, 60), st.floats(0.01, 5), st.floats(5, 600))
def test_backoff_is_jittered_capped_and_exponential(failures: int, base: float, cap: float) -> None:
    core = SyncCore(7, config=SyncConfig(backoff_base_s=base, backoff_cap_s=cap))
    now = 0.0
    for n in range(1, failures + 1):
        request = core.start(OPS[:1], now)
        retry = core.fail(request, now)
        ceiling = min(cap, base * 2 ** (n - 1))
        assert ceiling / 2 <= retry - now <= ceiling
        now = retry


def test_body_is_kept_under_the_cap() -> None:
    big = [Operation.make(s, Kind.REGISTER_CUSTOMER, s, "x" * 60, "1" * 20) for s in range(1, 200)]
    core = SyncCore(7, config=SyncConfig(initial_batch=256, max_batch=256, max_body=2048))
    request = core.start(big, 0.0)
    assert len(request.body) <= 2048
    assert request.seqs == tuple(range(1, len(request.seqs) + 1))


def workload(n: int) -> list[Operation]:
    """The benchmark's mix: per customer a registration, a sale and three payments."""
    ops = []
    for seq in range(1, n + 1):
        if seq % 5 == 1:
            ops.append(
                Operation.make(
                    seq,
                    Kind.REGISTER_CUSTOMER,
                    1795000000 + seq,
                    f"Customer {seq}",
                    f"+2332{seq:08d}",
                )
            )
        elif seq % 5 == 2:
            ops.append(
                Operation.make(
                    seq, Kind.RECORD_SALE, 1795000000 + seq, seq - 1, 20_000_000 + seq, 1, 700
                )
            )
        else:
            ops.append(
                Operation.make(seq, Kind.RECORD_PAYMENT, 1795000000 + seq, 20_000_000 + seq, 300)
            )
    return ops


def test_a_200_operation_backlog_goes_in_one_exchange_before_any_measurement() -> None:
    core = SyncCore(7)
    request = core.start(workload(200), 0.0)
    assert len(request.seqs) == 200
    assert len(request.body) <= core.budget == Pacing().floor_bytes


@given(
    st.integers(1, 300),
    st.integers(40, 4000),
    st.integers(1, 64),
)
def test_fit_takes_the_longest_prefix_within_budget_and_count(
    n: int, floor: int, count: int
) -> None:
    config = SyncConfig(initial_batch=count, max_batch=64, pacing=Pacing(floor_bytes=floor))
    core = SyncCore(7, config=config)
    backlog = workload(n)
    ops, body = core.fit(list(reversed(backlog)))
    assert [op.seq for op in ops] == list(range(1, len(ops) + 1))  # a seq-ordered prefix
    assert 1 <= len(ops) <= count
    assert len(body) <= core.budget or len(ops) == 1
    if len(ops) < min(count, n):  # stopped by bytes: one more would not fit
        longer, _ = SyncCore(7, config=config).fit(backlog[: len(ops) + 1])
        bigger = core.fit(backlog[: len(ops) + 1])[1]
        assert len(bigger) > core.budget or len(longer) == len(ops)


@given(
    st.floats(0.05, 2.0),
    st.floats(500, 200_000),
    st.lists(st.integers(200, 60_000), min_size=8, max_size=30),
)
def test_the_estimate_finds_a_links_rate_and_round_trip(
    rtt: float, rate: float, sizes: list[int]
) -> None:
    link = LinkEstimate()
    link.observe(100, rtt + 100 / rate)  # a small exchange: mostly the round trip
    for size in sizes:
        link.observe(size, rtt + size / rate)
    assert link.rtt_s is not None
    assert rtt <= link.rtt_s <= rtt + max(sizes) / rate + 1e-9
    assert MIN_RATE_BPS <= link.rate_bps <= MAX_RATE_BPS
    # never wildly above the truth (over-sized batches), and near it once transfers show
    assert link.rate_bps <= max(rate * 4, Pacing().prior_rate_bps) + 1
    budget = link.budget(Pacing(), 48 * 1024)
    assert Pacing().floor_bytes <= budget <= 48 * 1024


def test_the_budget_follows_the_measured_link() -> None:
    gprs, lan = SyncCore(7), SyncCore(7)
    for core, rtt, rate in ((gprs, 0.8, 2500.0), (lan, 0.002, 5e6)):
        for size in (200, 20_000, 200, 30_000, 200):
            request = core.begin([1], 0.0, size)
            core.answered(request, 0, rtt + size / rate)
    assert 4096 <= gprs.budget <= 4 * 2500 * 1.2  # a few seconds of GPRS
    assert lan.budget == 48 * 1024  # the body cap


def test_a_failure_shrinks_the_next_exchange() -> None:
    core = SyncCore(7)
    backlog = workload(300)
    request = core.start(backlog, 0.0)
    assert len(request.seqs) == 300
    core.fail(request, 0.0)
    assert len(core.start(backlog, core.retry_at).seqs) == 256


def test_a_garbled_answer_leaves_the_request_to_fail() -> None:
    core = core_in(State.SENDING)
    request = core._current
    assert request is not None
    with pytest.raises(FrameError):
        core.receive(request, b"<html>")
    assert core.state is State.SENDING
    core.fail(request, 0.0)
    assert core.state is State.BACKOFF


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        SyncConfig(initial_batch=0)
    with pytest.raises(ValueError):
        SyncConfig(backoff_base_s=10, backoff_cap_s=1)
