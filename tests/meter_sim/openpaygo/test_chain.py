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
    Chain,
    clear_chain_cache,
    code_chain,
    memoised_codes,
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


def highs(walked: Chain, last: int) -> list[int]:
    return [walked.high(count) for count in range(last + 1)]


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
        walked = code_chain(fmt, key, start, last)
        assert len(walked) > last
        assert highs(walked, last) == cold_walk(fmt, key, start, last)


@given(
    KEYS,
    st.integers(0, STANDARD.max_code),
    st.integers(1, 120),
    st.integers(0, 2**20 - 1),
    st.integers(0, 120),
    st.integers(0, 120),
)
def test_find_is_the_first_matching_count(
    key: bytes, start: int, last: int, planted: int, first: int, stop: int
) -> None:
    # A high part from the chain itself (found) or any 20-bit value (mostly absent, and
    # its packed bytes may straddle two entries: such matches must not count).
    clear_chain_cache()
    walked = code_chain(STANDARD, key, start, last)
    cold = cold_walk(STANDARD, key, start, last)
    stop = min(stop, last)
    for target in (cold[first % (last + 1)], planted):
        expected = next((c for c in range(first, stop + 1) if cold[c] == target), -1)
        assert walked.find(target, first, stop) == expected


def test_find_skips_a_match_that_straddles_two_entries() -> None:
    walked = Chain(STANDARD, bytes(16), 0)
    walked._raw[:] = bytes.fromhex("0000010002000000")  # highs 0x10000 and 2
    assert walked.find(0x2_0001, 0, 1) == -1  # its bytes 01 00 02 00 sit across the two
    assert walked.find(2, 0, 1) == 1


def test_a_chain_grows_in_place() -> None:
    clear_chain_cache()
    key = bytes(range(16))
    walked = code_chain(STANDARD, key, 5, 10)
    assert code_chain(STANDARD, key, 5, 20) is walked  # the same object, longer
    assert len(walked) == 21
    assert memoised_codes() == 21
    with pytest.raises(IndexError):
        walked.high(21)


def test_memo_is_bounded() -> None:
    clear_chain_cache()
    key = bytes(16)
    first = highs(code_chain(STANDARD, key, 0, 3), 3)
    for start in range(1, CACHE_CHAINS + 5):
        code_chain(STANDARD, key, start, 3)
    assert len(chain._chains) == CACHE_CHAINS
    assert memoised_codes() == 4 * CACHE_CHAINS
    assert highs(code_chain(STANDARD, key, 0, 3), 3) == first  # evicted, recomputed identically


def test_memo_bounds_the_codes_it_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chain, "CACHE_CODES", 100)
    clear_chain_cache()
    key = bytes(range(16))
    for start in range(10):
        code_chain(STANDARD, key, start, 39)
    assert sum(len(walked) for walked in chain._chains.values()) == memoised_codes() <= 100
    assert (STANDARD.name, key, 9) in chain._chains  # the newest stays
    # A single chain longer than the bound is still kept: it is the one in use.
    code_chain(STANDARD, key, 99, 150)
    assert list(chain._chains) == [(STANDARD.name, key, 99)]
    clear_chain_cache()
