"""Issue 21: the OpenPAYGO sequences measured against OpenPAYGO-HW's C decoder and example.

Each sequence runs under the default (the safer device) and under `preset="c-example"`; the
example's used-count bitmap bug only with `quirks=["c-used-bitmap-shift"]`. Key and starting
code are the C example's (a29ab82e..., 123456789).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meter_sim import Meter, OpenPaygoBlocking, Outcome
from meter_sim.errors import ConfigError
from meter_sim.openpaygo import C_EXAMPLE, C_EXAMPLE_BLOCKING, TokenQuirk
from meter_sim.ratelimit import EntryBlock
from tests.meter_sim.openpaygo.encoder import DOCS_KEY, DOCS_STARTING_CODE

APPLIED, DUPLICATE, INVALID = Outcome.APPLIED, Outcome.DUPLICATE, Outcome.INVALID
BLOCKED = Outcome.RATE_LIMITED
DAY = 86_400
ADD2, ADD4, ADD6 = "916752791", "659543793", "407368795"
SYNC = "074712788"
RESERVED_996 = "818283785"


def meter(preset: str = "default", **options: object) -> Meter:
    return Meter.openpaygo(DOCS_KEY, DOCS_STARTING_CODE, preset=preset, **options)  # type: ignore[arg-type]


def outcomes(m: Meter, tokens: list[str], start: float = 0.0) -> list[Outcome]:
    return [m.enter_keycode(token, start + i).outcome for i, token in enumerate(tokens)]


# -- the C example's bitmap bug: only under quirks ---------------------------------------------


@pytest.mark.parametrize("preset", ["default", "c-example"])
def test_older_add_replay_is_refused_without_the_quirk(preset: str) -> None:
    assert outcomes(meter(preset), [ADD2, ADD4, ADD6, ADD2]) == [APPLIED] * 3 + [DUPLICATE]


def test_bitmap_quirk_credits_an_older_add_twice() -> None:
    m = meter("c-example", quirks=["c-used-bitmap-shift"])
    assert outcomes(m, [ADD2, ADD4, ADD6, ADD2]) == [APPLIED] * 4
    assert m.policy == replace(C_EXAMPLE, quirks=frozenset({TokenQuirk.C_USED_BITMAP_SHIFT}))


# -- SYNC re-entry -------------------------------------------------------------------------------


def test_sync_reentry() -> None:
    assert outcomes(meter(), [SYNC, SYNC]) == [APPLIED, DUPLICATE]
    assert outcomes(meter("c-example"), [SYNC, SYNC]) == [APPLIED, APPLIED]


# -- count 0 --------------------------------------------------------------------------------------


def test_count_zero() -> None:
    # A count-0 "token" is the starting code with another value in its low digits.
    base = DOCS_STARTING_CODE % 1000
    zero = f"{DOCS_STARTING_CODE - base + (base + 5) % 1000:09d}"
    assert meter().enter_keycode(zero, 0).outcome is INVALID
    result = meter("c-example").enter_keycode(zero, 0)
    assert (result.outcome, result.reason) == (DUPLICATE, "count 0: valid, already used")


# -- reserved values -----------------------------------------------------------------------------


def test_reserved_value_996() -> None:
    assert meter().enter_keycode(RESERVED_996, 0).outcome is INVALID
    result = meter("c-example").enter_keycode(RESERVED_996, 0)
    assert (result.outcome, result.credit_remaining) == (APPLIED, 996 * DAY)


# -- the entry block -----------------------------------------------------------------------------

BAD = "000000000"


def block_lengths(m: Meter, tries: int) -> list[float]:
    """Seconds each invalid token blocks entry for, entering each as soon as allowed."""
    now, lengths = 0.0, []
    for _ in range(tries):
        assert m.enter_keycode(BAD, now).outcome is INVALID
        blocked = 0.0
        while m.is_rate_limited(now + blocked):
            blocked += 60
        lengths.append(blocked)
        now += blocked
    return lengths


def test_entry_block_default_blocks_from_the_first_invalid_token() -> None:
    minutes = [s / 60 for s in block_lengths(meter(), 11)]
    assert minutes == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 512]


def test_entry_block_c_example_lets_two_through() -> None:
    minutes = [s / 60 for s in block_lengths(meter("c-example"), 12)]
    assert minutes == [0, 0, 2, 4, 8, 16, 32, 64, 128, 256, 512, 512]
    assert OpenPaygoBlocking(first_block_seconds=120, free_attempts=2) == C_EXAMPLE_BLOCKING


@given(count=st.integers(1, 60))
def test_c_example_block_is_the_c_formula(count: int) -> None:
    # device_payg_logic.c: count capped at 11, blocked 2**(count-2) minutes beyond 2 errors.
    capped = min(count, 11)
    expected = 2 ** (capped - 2) * 60 if capped > 2 else 0
    block = EntryBlock(invalid_count=count - 1).after_invalid(C_EXAMPLE_BLOCKING, 0.0)
    assert block.blocked_until == expected


def test_explicit_blocking_wins_over_the_preset() -> None:
    m = meter("c-example", blocking=None)
    assert block_lengths(m, 4) == [0, 0, 0, 0]


def test_unknown_preset_or_quirk_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        meter("arduino")
    with pytest.raises(ConfigError):
        meter(quirks=["no-such-bug"])


def test_preset_constant() -> None:
    assert meter("c-example").policy == C_EXAMPLE


def test_older_disable_at_an_even_count() -> None:
    # ADD at count 24, ADD at 28, then value 998 issued at the even count 14: the C example
    # takes any unused older even count, so it disables PAYG; the default refuses it.
    tokens = ["611038818", "090329814", "951253787"]
    assert outcomes(meter(), tokens) == [APPLIED, APPLIED, DUPLICATE]
    c_example = meter("c-example")
    assert outcomes(c_example, tokens) == [APPLIED, APPLIED, APPLIED]
    assert c_example.state(10) == "unlocked"
