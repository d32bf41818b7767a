"""Typed digits to token numbers: lengths, alphabets and the 1-4 keypad's two bits a key."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openpaygo.token_shared import OpenPAYGOTokenShared
from openpaygo.token_shared_extended import OpenPAYGOTokenSharedExtended

from meter_sim.openpaygo import EXTENDED, STANDARD
from meter_sim.openpaygo.digits import Typed, parse_digits


@given(st.integers(0, STANDARD.max_code))
def test_restricted_standard_round_trip(code: int) -> None:
    keys = f"{OpenPAYGOTokenShared.convert_to_4_digit_token(code):015d}"
    assert parse_digits(keys, restricted=True) == Typed(STANDARD, code)


@given(st.integers(0, EXTENDED.max_code))
def test_restricted_extended_round_trip(code: int) -> None:
    keys = f"{OpenPAYGOTokenSharedExtended.convert_to_4_digit_token(code):020d}"
    assert parse_digits(keys, restricted=True) == Typed(EXTENDED, code)


def test_docs_restricted_example() -> None:
    assert parse_digits("324244134441123", restricted=True) == Typed(STANDARD, 662486790)


@given(st.text("0123456789", min_size=1, max_size=12))
def test_decimal_tokens_route_by_typed_length(digits: str) -> None:
    fmt = STANDARD if len(digits) <= 9 else EXTENDED
    assert parse_digits(digits, restricted=False) == Typed(fmt, int(digits))


def test_spaces_are_ignored() -> None:
    assert parse_digits("662 486 790", restricted=False) == Typed(STANDARD, 662486790)


@pytest.mark.parametrize(
    ("digits", "restricted", "reason"),
    [
        ("", False, "empty token"),
        ("   ", False, "empty token"),
        ("1234567890123", False, "13 digits: a token has at most 12"),
        ("12345678a", False, "only keys 0-9"),
        ("١٢٣٤٥٦٧٨٩", False, "only keys 0-9"),  # digits, but not keypad digits
        ("+12345678", False, "only keys 0-9"),
        ("1_000", False, "only keys 0-9"),
        ("123412341234125", True, "only keys 1-4"),
        ("023412341234123", True, "only keys 1-4"),
        ("1234", True, "4 keys: a token on this keypad has 15 or 20"),
        ("1234123412341234", True, "16 keys"),
        ("4" * 15, True, "beyond the standard code range"),
        ("4" * 20, True, "beyond the extended code range"),
    ],
)
def test_malformed(digits: str, restricted: bool, reason: str) -> None:
    result = parse_digits(digits, restricted=restricted)
    assert isinstance(result, str)
    assert reason in result


@pytest.mark.parametrize("thing", [None, 662486790, b"662486790", ["6"]])
def test_not_text(thing: object) -> None:
    assert parse_digits(thing, restricted=False) == f"not text: {type(thing).__name__}"
