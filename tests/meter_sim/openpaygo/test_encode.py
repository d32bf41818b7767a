"""OpenPAYGO issuing walks only the counts its chain has not walked before."""

from __future__ import annotations

from meter_sim.openpaygo import chain
from meter_sim.openpaygo.encode import Kind, issue_token

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
