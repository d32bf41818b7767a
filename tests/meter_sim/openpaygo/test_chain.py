"""The code chain against the reference library's, and the memo against a cold walk."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openpaygo.token_shared import OpenPAYGOTokenShared
from openpaygo.token_shared_extended import OpenPAYGOTokenSharedExtended

from meter_sim.openpaygo import EXTENDED, STANDARD, TokenFormat, chain, derive_starting_code
from meter_sim.openpaygo.chain import (
    CACHE_CHAINS,
    chain_highs,
    clear_chain_cache,
    next_extended,
    next_standard,
)

KEYS = st.binary(min_size=16, max_size=16)


@given(KEYS, st.integers(0, STANDARD.max_code))
def test_standard_step_matches_the_library(key: bytes, code: int) -> None:
    assert next_standard(key, code) == OpenPAYGOTokenShared.generate_next_token(code, key)


@given(KEYS, st.integers(0, EXTENDED.max_code))
def test_extended_step_matches_the_library(key: bytes, code: int) -> None:
    expected = OpenPAYGOTokenSharedExtended.generate_next_token(code, key)
    assert next_extended(key, code) == expected


@given(KEYS)
def test_starting_code_matches_the_library(key: bytes) -> None:
    assert derive_starting_code(key) == OpenPAYGOTokenShared.generate_starting_code(key)


def cold_walk(fmt: TokenFormat, key: bytes, start: int, last: int) -> list[int]:
    code, highs = start, [start // fmt.value_modulus]
    for _ in range(last):
        code = fmt.step(key, code)
        highs.append(code // fmt.value_modulus)
    return highs


@given(
    KEYS,
    st.sampled_from([STANDARD, EXTENDED]),
    st.integers(0, STANDARD.max_code),
    st.lists(st.integers(0, 80), min_size=1, max_size=4),
)
def test_memo_equals_a_cold_walk(
    key: bytes, fmt: TokenFormat, start: int, lasts: list[int]
) -> None:
    # Growing, shrinking and repeated requests all read the same chain.
    clear_chain_cache()
    for last in lasts:
        highs = chain_highs(fmt, key, start, last)
        assert len(highs) > last
        assert list(highs[: last + 1]) == cold_walk(fmt, key, start, last)


def test_memo_is_bounded() -> None:
    clear_chain_cache()
    key = bytes(16)
    first = chain_highs(STANDARD, key, 0, 3)
    for start in range(1, CACHE_CHAINS + 5):
        chain_highs(STANDARD, key, start, 3)
    assert len(chain._chains) == CACHE_CHAINS
    assert chain_highs(STANDARD, key, 0, 3) == first  # evicted, recomputed identically


def test_memo_bounds_the_codes_it_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chain, "CACHE_CODES", 100)
    clear_chain_cache()
    key = bytes(range(16))
    for start in range(10):
        chain_highs(STANDARD, key, start, 39)
    assert sum(len(highs) for highs, _ in chain._chains.values()) <= 100
    assert (STANDARD.name, key, 9) in chain._chains  # the newest stays
    # A single chain longer than the bound is still kept: it is the one in use.
    chain_highs(STANDARD, key, 99, 150)
    assert list(chain._chains) == [(STANDARD.name, key, 99)]
    clear_chain_cache()
