"""The sync core's rules one by one: the transition table, batch sizing, backoff bounds."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_client.protocol.errors import FrameError, UsageError
from agent_client.protocol.frames import DownlinkFrame, encode_downlink
from agent_client.protocol.ops import Kind, Operation
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
