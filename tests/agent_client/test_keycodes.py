"""Keycode text <-> wire integer, checked against the upstream README keycodes (nexus-keycode
1.5.1 README examples, quoted in ../shared/reference/nexus-keycode.md §3) and OpenPAYGO's
(reference/openpaygo.md §3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_client.protocol.errors import FrameError
from agent_client.protocol.keycodes import (
    LAYOUTS,
    KeycodeFormat,
    display,
    keycode_text,
    pack_keycode,
)


@pytest.mark.parametrize(
    ("fmt", "shown"),
    [
        (KeycodeFormat.NEXUS_FULL, "*747 951 838 274 41#"),
        (KeycodeFormat.NEXUS_SMALL, "135 253 543 544 243"),
        (KeycodeFormat.OPENPAYGO, "016609796"),
        (KeycodeFormat.OPENPAYGO_RESTRICTED, "111444224131121"),
    ],
)
def test_upstream_keycodes_survive_the_wire(fmt: KeycodeFormat, shown: str) -> None:
    number = pack_keycode(fmt, shown)
    assert keycode_text(fmt, number) == shown.replace(" ", "")


def test_display_groups_in_threes() -> None:
    assert display("*74795183827441#") == "*747 951 838 274 41#"
    assert display("135253543544243") == "135 253 543 544 243"


@given(st.sampled_from(KeycodeFormat), st.data())
def test_number_text_round_trip(fmt: KeycodeFormat, data: st.DataObject) -> None:
    number = data.draw(st.integers(0, LAYOUTS[fmt].limit - 1))
    assert pack_keycode(fmt, keycode_text(fmt, number)) == number


@pytest.mark.parametrize(
    ("fmt", "text"),
    [
        (KeycodeFormat.NEXUS_FULL, "*7479518382744#"),
        (KeycodeFormat.NEXUS_FULL, "74795183827441"),
        (KeycodeFormat.NEXUS_SMALL, "135253543544213"),
        (KeycodeFormat.OPENPAYGO, "01660979a"),
        # what int() would read but a keypad cannot type (packing reads digits with int())
        (KeycodeFormat.OPENPAYGO, "+01660979"),
        (KeycodeFormat.OPENPAYGO, "0_1660979"),
        (KeycodeFormat.OPENPAYGO, "٠١٦٦٠٩٧٩٨"),
        (KeycodeFormat.OPENPAYGO_RESTRICTED, "123412341234120"),
    ],
)
def test_wrong_keycodes_are_refused(fmt: KeycodeFormat, text: str) -> None:
    with pytest.raises(FrameError):
        pack_keycode(fmt, text)


def test_out_of_range_number_is_refused() -> None:
    with pytest.raises(FrameError):
        keycode_text(KeycodeFormat.OPENPAYGO, 10**9)
