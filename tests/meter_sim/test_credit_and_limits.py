from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meter_sim.actions import AddCredit, SetCredit, Unlock
from meter_sim.credit import Credit
from meter_sim.errors import ConfigError
from meter_sim.nv import crc16
from meter_sim.outcomes import PaygState
from meter_sim.ratelimit import EntryBlock, NexusBucket, NexusRateLimit, OpenPaygoBlocking


def crc16_ccitt_false(data: bytes) -> int:
    """The Nexus NV CRC written out bit by bit: poly 0x1021, init 0xFFFF, no reflection."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def test_crc_check_value() -> None:
    assert crc16(b"123456789") == crc16_ccitt_false(b"123456789") == 0x29B1


@given(st.binary(max_size=64))
def test_the_standard_library_crc_is_the_nexus_crc(data: bytes) -> None:
    # binascii.crc_hqx is CRC-16/XMODEM with a chosen start: from 0xFFFF, CCITT-FALSE.
    assert crc16(data) == crc16_ccitt_false(data)


def test_credit_counts_down_on_the_device_clock() -> None:
    credit = Credit().apply(AddCredit(3600), now=100.0)
    assert credit.remaining(100.0) == 3600
    assert credit.remaining(1900.0) == 1800
    assert credit.state(3699.0) is PaygState.ENABLED
    assert credit.state(3700.0) is PaygState.DISABLED
    assert credit.remaining(10_000.0) == 0


def test_add_after_expiry_starts_from_now_not_from_the_past() -> None:
    credit = Credit().apply(AddCredit(10), now=0.0).apply(AddCredit(10), now=100.0)
    assert credit.remaining(100.0) == 10


def test_unlock_keeps_output_on_until_a_set_relocks() -> None:
    credit = Credit().apply(Unlock(), now=0.0)
    assert credit.remaining(1e9) == math.inf
    assert credit.apply(AddCredit(60), 5.0).state(1e9) is PaygState.UNLOCKED
    relocked = credit.apply(SetCredit(60), 5.0)
    assert relocked.state(6.0) is PaygState.ENABLED
    assert relocked.state(65.0) is PaygState.DISABLED


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["add", "set", "unlock"]),
            st.integers(0, 10**6),
            st.floats(0, 10**6, allow_nan=False),
        ),
        max_size=30,
    )
)
def test_credit_matches_a_counter_model(ops: list[tuple[str, int, float]]) -> None:
    credit, now = Credit(), 0.0
    remaining, unlocked = 0.0, False
    for kind, seconds, dt in ops:
        remaining = max(0.0, remaining - dt)
        now += dt
        if kind == "add":
            credit, remaining = credit.apply(AddCredit(seconds), now), remaining + seconds
        elif kind == "set":
            credit, remaining, unlocked = credit.apply(SetCredit(seconds), now), seconds, False
        else:
            credit, remaining, unlocked = credit.apply(Unlock(), now), 0.0, True
        expected = math.inf if unlocked else remaining
        assert credit.remaining(now) == pytest.approx(expected, abs=1e-6)


def test_nexus_bucket_reference_defaults() -> None:
    limit = NexusRateLimit()
    bucket = NexusBucket.first_power_up(limit, now=0.0)
    for _ in range(6):
        assert not bucket.is_limited(limit, 0.0)
        bucket = bucket.spend(limit, 0.0)
    assert bucket.is_limited(limit, 0.0)
    assert bucket.is_limited(limit, 719.0)
    assert not bucket.is_limited(limit, 720.0)
    # Sustained: five an hour.  Banked: at most 128.
    assert bucket.attempts(limit, 3600.0) == 5
    assert bucket.attempts(limit, 10**9) == 128


def test_reboot_grants_at_most_the_grace_count() -> None:
    limit = NexusRateLimit()
    rich = NexusBucket(seconds=100 * 720.0, at=0.0)
    assert rich.grace(limit, 0.0) == 6
    poor = NexusBucket.first_power_up(limit, 0.0).spend(limit, 0.0).spend(limit, 0.0)
    assert poor.grace(limit, 0.0) == 4
    assert NexusBucket.on_boot(limit, poor.grace(limit, 0.0), 50.0).attempts(limit, 50.0) == 4


@pytest.mark.parametrize(
    "kwargs",
    [{"bucket_max": 0}, {"initial_count": 200}, {"refill_seconds": 0}, {"bucket_max": 256}],
)
def test_rate_limit_rejects_impossible_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        NexusRateLimit(**kwargs)  # type: ignore[arg-type]


def test_openpaygo_block_doubles_and_caps() -> None:
    policy = OpenPaygoBlocking()
    block, now, waits = EntryBlock(), 0.0, []
    for _ in range(12):
        block = block.after_invalid(policy, now)
        waits.append(block.blocked_until - now)
        now = block.blocked_until
    assert waits[:4] == [60, 120, 240, 480]
    assert max(waits) == 512 * 60
    assert block.after_valid() == EntryBlock()


@given(st.integers(0, 10**6))
def test_block_seconds_never_overflows(n: int) -> None:
    assert 0 <= OpenPaygoBlocking().block_seconds(n) <= 512 * 60
