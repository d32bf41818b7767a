"""The validator's deliberate policies, each shown on the sequence that motivates it.

Where a policy departs from `openpaygo` 0.6.3 on purpose, the test also shows what the
library does, so the difference stays visible (reference §2.8, §3, §6).
"""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from openpaygo import TokenType, decode_token

from meter_sim.actions import AddCredit, SetCredit
from meter_sim.errors import ConfigError
from meter_sim.openpaygo import Kind, TokenState, process_token
from meter_sim.outcomes import Outcome
from tests.meter_sim.openpaygo.encoder import (
    DOCS_KEY,
    DOCS_STARTING_CODE,
    Device,
    action_for,
    encode,
    token_at,
)

DOCS = Device()
A, S, D, Y = Kind.ADD, Kind.SET, Kind.DISABLE, Kind.SYNC
APPLIED, DUPLICATE, INVALID = Outcome.APPLIED, Outcome.DUPLICATE, Outcome.INVALID


def enter(tokens: list[str], state: TokenState, **options: int) -> tuple[list[Outcome], TokenState]:
    """Type `tokens` in order into a docs-key device; the outcomes and the final state."""
    outcomes = []
    for token in tokens:
        decision = process_token(
            token, secret_key=DOCS_KEY, starting_code=DOCS_STARTING_CODE, state=state, **options
        )
        if decision.outcome is not APPLIED:
            assert decision.state == state, "a refused token must not change the state"
        outcomes.append(decision.outcome)
        state = decision.state
    return outcomes, state


def library(token: str, state: TokenState) -> tuple[object, ...]:
    return tuple(
        decode_token(
            token=token,
            secret_key=DOCS_KEY.hex(),
            count=state.count,
            used_counts=sorted(state.used),
            starting_code=DOCS_STARTING_CODE,
        )
    )


@pytest.mark.parametrize(
    "order",
    [["662486790", "059799790", "059799790"], ["059799790", "662486790", "059799790"]],
)
def test_readme_replay_is_refused(order: list[str]) -> None:
    # The library README sets count = updated_count: entering ADD@2 after ADD@6 lowers the
    # count to 2, and ADD@6 is then credited a second time. The count never goes down here.
    outcomes, state = enter(order, TokenState.initial(1))
    assert outcomes == [APPLIED, APPLIED, DUPLICATE]
    assert state == TokenState(count=6, used=frozenset({1, 2, 6}))


def test_hw10_older_add_after_set_is_refused() -> None:
    # OpenPAYGO-HW#10: the C bitmask macros let ADD@4 through again after SET@5 and ADD@6.
    add4, set5, add6 = (token_at(DOCS, A, 3, 4), token_at(DOCS, S, 9, 5), token_at(DOCS, A, 2, 6))
    outcomes, state = enter([add4, set5, add6, add4], TokenState.initial(1))
    assert outcomes == [APPLIED, APPLIED, APPLIED, DUPLICATE]
    assert state.count == 6


JUMP = {A: 64, S: 64, D: 64, Y: 100}


@given(
    start=st.integers(0, 150),
    kind=st.sampled_from(Kind),
    key=st.binary(min_size=16, max_size=16),
    starting_code=st.integers(0, 999_999_999),
)
# SET 6 at count 85 has the same nine digits as ADD 6 at count 44, inside the window (found by
# Hypothesis): the meter applies it as count 44, as the library does.
@example(start=19, kind=S, key=b".\xf4\xcc\xc2^IA\x07\x14Sp>U\x91:T", starting_code=33554432)
def test_forward_window_edges(start: int, kind: Kind, key: bytes, starting_code: int) -> None:
    # Counts are tried up to device count + jump inclusive; the kind fixes the parity.
    device = Device(key, starting_code)
    parity = 0 if kind is A else 1
    edge = start + JUMP[kind] - (start + JUMP[kind] + parity) % 2
    value = {A: 5, S: 6, D: 998, Y: 999}[kind]
    state = TokenState.initial(start)
    decisions = [
        process_token(
            token_at(device, kind, value, n),
            secret_key=key,
            starting_code=starting_code,
            state=state,
        )
        for n in (edge, edge + 2)
    ]
    at_edge, beyond = decisions
    assert at_edge.outcome is APPLIED
    assert at_edge.state.count == edge
    # Past the edge a token is refused, unless its digits happen to equal another count's token
    # inside the window (about 1 in 10**6 per count tried): then it is that count's, as the
    # reference library decodes it, never the count past the edge.
    if beyond.outcome is not INVALID:
        token = token_at(device, kind, value, edge + 2)
        _, _, count, _ = decode_token(
            token=token,
            secret_key=key.hex(),
            count=start,
            used_counts=[],
            starting_code=starting_code,
        )
        assert beyond.outcome is APPLIED
        assert beyond.state.count == count <= start + JUMP[kind]
    assert at_edge.action == action_for(kind, value)


def test_reference_window_example() -> None:
    # §3: from count 1, ADD@64 and SET@65 (count + 64) are accepted, ADD@66 is not.
    state = TokenState.initial(1)
    outcomes = [
        enter([token_at(DOCS, kind, 1, n)], state)[0][0] for kind, n in [(A, 64), (S, 65), (A, 66)]
    ]
    assert outcomes == [APPLIED, APPLIED, INVALID]


def test_older_add_window() -> None:
    t = {n: token_at(DOCS, A, 1, n) for n in (6, 8, 20, 22)}
    _, state = enter([t[22]], TokenState.initial(1))
    outcomes, state = enter([t[6], t[8], t[8], t[20]], state)
    # 6 = 22 - 16 is outside the window; 8 and 20 are inside, and accepted once each.
    assert outcomes == [DUPLICATE, APPLIED, DUPLICATE, APPLIED]
    assert state == TokenState(count=22, used=frozenset({8, 20, 22}))
    older_set = token_at(DOCS, S, 1, 21)
    newer_set = token_at(DOCS, S, 1, 23)
    outcomes, state = enter([older_set, newer_set, token_at(DOCS, A, 1, 10)], state)
    assert outcomes == [DUPLICATE, APPLIED, DUPLICATE]
    assert state == TokenState(count=23, used=frozenset(range(7, 24)))


def test_older_sync_is_duplicate_not_reapplied() -> None:
    _, state = enter([token_at(DOCS, A, 1, 30)], TokenState.initial(1))
    sync11 = token_at(DOCS, Y, 999, 11)
    # The library accepts it (11 > 30 - 64) and would close the ADD window each time.
    assert library(sync11, state)[1:3] == (TokenType.COUNTER_SYNC, 11)
    assert enter([sync11], state)[0] == [DUPLICATE]


def test_sync_moves_the_count_forward_only() -> None:
    _, state = enter([token_at(DOCS, Y, 999, 101)], TokenState.initial(1))
    assert state == TokenState(count=101, used=frozenset(range(85, 102)))


def test_count_zero_is_invalid() -> None:
    # A count-0 "token" is the starting code with a value in its low digits.
    base = DOCS_STARTING_CODE % 1000
    zero = f"{DOCS_STARTING_CODE - base + (base + 5) % 1000:09d}"
    state = TokenState.initial(1)
    assert library(zero, state)[1:3] == (TokenType.ADD_TIME, 0)  # the library takes it
    assert enter([zero], state)[0] == [INVALID]


@pytest.mark.parametrize("value", [996, 997])
def test_reserved_values_are_invalid(value: int) -> None:
    _, token = encode(DOCS, A, value, 1)
    decision = process_token(
        token,
        secret_key=DOCS_KEY,
        starting_code=DOCS_STARTING_CODE,
        state=TokenState.initial(1),
    )
    assert (decision.outcome, decision.reason) == (INVALID, f"value {value} is reserved")


def test_value_decides_before_parity() -> None:
    # 999 at an even count is still a SYNC (with the SYNC jump), 998 still a DISABLE.
    sync = process_token(
        token_at(DOCS, A, 999, 90),
        secret_key=DOCS_KEY,
        starting_code=DOCS_STARTING_CODE,
        state=TokenState.initial(1),
    )
    assert (sync.outcome, sync.action, sync.state.count) == (APPLIED, None, 90)
    outcomes, _ = enter([token_at(DOCS, A, 1, 4), token_at(DOCS, A, 998, 6)], TokenState.initial(1))
    assert outcomes == [APPLIED, APPLIED]
    outcomes, _ = enter([token_at(DOCS, A, 998, 6), token_at(DOCS, A, 1, 4)], TokenState.initial(1))
    assert outcomes == [APPLIED, DUPLICATE]  # a DISABLE closes the older-ADD window


@pytest.mark.parametrize(("divider", "value"), [(1, 7), (2, 7), (4, 995), (255, 1)])
def test_time_divider(divider: int, value: int) -> None:
    decision = process_token(
        token_at(DOCS, S, value, 3),
        secret_key=DOCS_KEY,
        starting_code=DOCS_STARTING_CODE,
        state=TokenState.initial(1),
        time_divider=divider,
    )
    assert decision.action == SetCredit(value * 86_400 // divider)


def test_extended_tokens_are_days_by_parity() -> None:
    state = TokenState.initial(1)
    cases = [(A, 998, 2), (S, 999, 3), (A, 999_999, 4), (S, 0, 5)]
    for kind, value, n in cases:
        decision = process_token(
            token_at(DOCS, kind, value, n, extended=True),
            secret_key=DOCS_KEY,
            starting_code=DOCS_STARTING_CODE,
            state=state,
        )
        assert (decision.outcome, decision.action) == (APPLIED, action_for(kind, value))
        state = decision.state
    # No SYNC window for extended tokens: 999 beyond count + 64 is just out of range.
    far = token_at(DOCS, S, 999, state.count + 66, extended=True)
    assert enter([far], state)[0] == [INVALID]
    # Older extended ADD: once, within the window, and not after a SET.
    older = token_at(DOCS, A, 12, 8, extended=True)
    outcomes, _ = enter([token_at(DOCS, A, 1, 10, extended=True), older, older], state)
    assert outcomes == [APPLIED, APPLIED, DUPLICATE]


def test_the_device_count_is_used_even_if_the_state_forgot_it() -> None:
    # A state read back from storage with count missing from `used` cannot re-open it.
    add4 = token_at(DOCS, A, 1, 4)
    assert enter([add4], TokenState(count=4, used=frozenset()))[0] == [DUPLICATE]


def test_add_credit_is_days() -> None:
    decision = process_token(
        token_at(DOCS, A, 30, 2),
        secret_key=DOCS_KEY,
        starting_code=DOCS_STARTING_CODE,
        state=TokenState.initial(1),
    )
    assert decision.action == AddCredit(30 * 86_400)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"secret_key": b"short"}, "secret_key must be 16 bytes"),
        ({"secret_key": DOCS_KEY.hex()}, "secret_key must be 16 bytes"),
        ({"starting_code": -1}, "starting_code must be 0..999999999"),
        ({"starting_code": 1_000_000_000}, "starting_code must be 0..999999999"),
        ({"starting_code": "123456789"}, "starting_code must be an integer"),
        ({"time_divider": 0}, "time_divider must be 1..255"),
        ({"time_divider": 256}, "time_divider must be 1..255"),
        ({"time_divider": True}, "time_divider must be an integer"),
        ({"state": (1, frozenset({1}))}, "state must be a TokenState"),
    ],
)
def test_bad_configuration_raises_config_error(options: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {
        "secret_key": DOCS_KEY,
        "starting_code": DOCS_STARTING_CODE,
        "state": TokenState.initial(1),
        **options,
    }
    with pytest.raises(ConfigError, match=message):
        process_token("662486790", **arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize("count", [-1, 1.5, True, "3"])
def test_token_state_rejects_a_bad_count(count: object) -> None:
    with pytest.raises(ConfigError, match="token count"):
        TokenState(count=count, used=frozenset())  # type: ignore[arg-type]


def test_initial_state_uses_its_count() -> None:
    assert TokenState.initial() == TokenState(count=1, used=frozenset({1}))
    assert TokenState.initial(7) == TokenState(count=7, used=frozenset({7}))
