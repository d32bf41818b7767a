"""OpenPAYGO issuing walks only the counts its chain has not walked before."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from meter_sim.actions import Decision
from meter_sim.openpaygo import chain
from meter_sim.openpaygo.encode import Kind, issue_token
from meter_sim.openpaygo.state import TokenState
from meter_sim.openpaygo.token import process_token
from meter_sim.outcomes import Outcome

KEY = bytes.fromhex("a29ab82edc5fbbc41ec9530f6dac86b1")
START = 123456789


def _walked() -> int:
    return chain.memoised_codes()


def test_the_next_token_extends_the_memoised_chain_instead_of_walking_it_again() -> None:
    chain.clear_chain_cache()
    count, first = issue_token(KEY, START, 500, Kind.ADD, 7)
    assert count == 502
    assert _walked() == 503  # counts 0..502 of one chain (key, start, value 7)
    count, _ = issue_token(KEY, START, count, Kind.ADD, 7)
    assert count == 504
    assert _walked() == 505  # two more hashes, not 504
    chain.clear_chain_cache()
    assert issue_token(KEY, START, 500, Kind.ADD, 7)[1] == first  # same token from cold


COLLIDING_KEY = bytes.fromhex("5635874cca99a45a782c4ce996c8d941")
COLLIDING_START = 190496368
"""A device of the 30-day, 200-agent simulation (seed 1): on its value-7 chain, counts 5 and 6 share
their high digits (chain codes 642681677 and 642681847), so the ADD 7 token at count 6 is
also the SET 7 token at count 5."""


TWIN_KEY = bytes.fromhex("35bf98b887851fc2b148e6e3cb068bdc")
TWIN_START = 168530243
"""Counts 8 and 10 of its value-7 chain share their high digits: two ADD 7 tokens, one text."""


def _decode(token: str, count: int) -> Decision[TokenState]:
    state = TokenState(count=count, used=frozenset({count}))
    return process_token(
        token, secret_key=COLLIDING_KEY, starting_code=COLLIDING_START, state=state
    )


def test_a_token_an_earlier_count_also_makes_is_read_as_that_count() -> None:
    """The fault the simulation found: the plain token at count 6 is a SET at count 5."""
    count, token = issue_token(COLLIDING_KEY, COLLIDING_START, 4, Kind.ADD, 7)
    assert count == 6
    decision = _decode(token, 4)
    assert decision.reason == "standard SET 7 at count 5"


def test_an_unambiguous_token_skips_that_count() -> None:
    count, token = issue_token(COLLIDING_KEY, COLLIDING_START, 4, Kind.ADD, 7, unambiguous=True)
    assert count == 8
    decision = _decode(token, 4)
    assert decision.outcome is Outcome.APPLIED
    assert decision.reason == "standard ADD 7 at count 8"
    # counts without a clash are the plain ones
    assert issue_token(COLLIDING_KEY, COLLIDING_START, 2, Kind.ADD, 7, unambiguous=True) == (
        issue_token(COLLIDING_KEY, COLLIDING_START, 2, Kind.ADD, 7)
    )


@settings(max_examples=60)
@example(key=COLLIDING_KEY, start=COLLIDING_START, count=4, value=7, restricted=False)
@example(key=COLLIDING_KEY, start=COLLIDING_START, count=4, value=7, restricted=True)
@example(key=TWIN_KEY, start=TWIN_START, count=8, value=7, restricted=False)
@given(
    key=st.binary(min_size=16, max_size=16),
    start=st.integers(1, 10**9 - 1),
    count=st.integers(0, 300),
    value=st.integers(1, 995),
    restricted=st.booleans(),
)
def test_a_device_reads_an_unambiguous_token_at_its_own_count(
    key: bytes, start: int, count: int, value: int, restricted: bool
) -> None:
    """Whatever earlier tokens it took, the device reads an unambiguous ADD as that ADD, at
    the count the issuer gave it and no other."""
    new, token = issue_token(
        key, start, count, Kind.ADD, value, restricted=restricted, unambiguous=True
    )
    assert new > count
    assert new % 2 == 0
    for seen in sorted({max(0, count - 40), count}):  # a device up to date, or behind
        state = TokenState(count=seen, used=frozenset({seen}))
        decision = process_token(
            token, secret_key=key, starting_code=start, state=state, restricted_digits=restricted
        )
        assert decision.outcome is Outcome.APPLIED, decision
        assert decision.reason.endswith(f"ADD {value} at count {new}")
