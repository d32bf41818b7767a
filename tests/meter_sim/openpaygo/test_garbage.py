"""Whatever is typed, the validator answers and never raises; refusals change nothing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from meter_sim.openpaygo import TokenState, process_token
from meter_sim.outcomes import Outcome
from tests.meter_sim.openpaygo.encoder import DOCS_KEY, DOCS_STARTING_CODE

STATES = st.integers(0, 300).map(TokenState.initial)


def decide(digits: str, state: TokenState, restricted: bool) -> Outcome:
    decision = process_token(
        digits,
        secret_key=DOCS_KEY,
        starting_code=DOCS_STARTING_CODE,
        state=state,
        restricted_digits=restricted,
    )
    if decision.outcome is not Outcome.APPLIED:
        assert decision.state == state
        assert decision.action is None
    assert decision.reason
    return decision.outcome


@given(st.text(), STATES, st.booleans())
def test_any_text_gets_an_answer(digits: str, state: TokenState, restricted: bool) -> None:
    assert decide(digits, state, restricted) in set(Outcome)


@given(st.text("0123456789 ", max_size=14), STATES, st.booleans())
def test_any_keypad_digits_get_an_answer(digits: str, state: TokenState, restricted: bool) -> None:
    assert decide(digits, state, restricted) in set(Outcome)


@given(st.text("0123456789", min_size=13, max_size=40), STATES)
def test_too_long_is_invalid(digits: str, state: TokenState) -> None:
    assert decide(digits, state, False) is Outcome.INVALID


@given(st.text("1234", min_size=1, max_size=30).filter(lambda s: len(s) not in (15, 20)), STATES)
def test_restricted_wrong_length_is_invalid(digits: str, state: TokenState) -> None:
    assert decide(digits, state, True) is Outcome.INVALID


@given(
    st.text("1234", min_size=15, max_size=15),
    st.integers(0, 14),
    st.sampled_from("056789*#"),
    STATES,
)
def test_keys_outside_1_to_4_are_invalid(
    digits: str, where: int, key: str, state: TokenState
) -> None:
    # The library would read 5 as 1 and 0 as 4; a 1-4 keypad has no such keys.
    assert decide(digits[:where] + key + digits[where + 1 :], state, True) is Outcome.INVALID


def test_non_text_is_invalid() -> None:
    for thing in (None, 662486790, b"662486790"):
        assert decide(thing, TokenState.initial(1), False) is Outcome.INVALID  # type: ignore[arg-type]
