"""Our keycode encoders equal the reference encoders (a sample of `make equivalence`), and the
comparison itself catches a wrong encoder."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nexus_keycode.protocols.full import FullMessage
from nexus_keycode.protocols.small import AddCreditSmallMessage, SetCreditSmallMessage

from meter_sim import EncodeError, Meter, Outcome
from meter_sim.nexus import encode
from meter_sim.nexus.full import FullType
from meter_sim.openpaygo.encode import Kind, issue_token
from tests.equivalence import Case, mismatch, nexus_case, openpaygo_case, run

KEYS = st.binary(min_size=16, max_size=16)
IDS = st.integers(0, 2**32 - 1)


@settings(max_examples=40)
@given(KEYS, IDS, st.integers(0, 99_999))
def test_full_codes_equal_nexus_keycode(key: bytes, id_: int, hours: int) -> None:
    assert encode.full_add_credit(key, id_, hours) == FullMessage.add_credit(
        id_, hours, key
    ).to_keycode(separator="")
    assert encode.full_set_credit(key, id_, hours) == FullMessage.set_credit(
        id_, hours, key
    ).to_keycode(separator="")


@settings(max_examples=40)
@given(KEYS, IDS, st.integers(1, 405), st.integers(0, 960))
def test_small_codes_equal_nexus_keycode(key: bytes, id_: int, add: int, set_: int) -> None:
    assert encode.small_add_credit(key, id_, add) == AddCreditSmallMessage(
        id_, add, key
    ).to_keycode(separator="")
    if not (id_ & 0x3F == 63 and set_ == 1):
        assert encode.small_set_credit(key, id_, set_) == SetCreditSmallMessage(
            id_, set_, key
        ).to_keycode(separator="")


def test_a_random_sample_agrees_message_by_message() -> None:
    messages, issued, bad = run(nexus_case, seed=18, n=400)
    assert bad == []
    assert issued > 0.8 * messages  # most draws are codes, a few are refused by both
    assert run(openpaygo_case, seed=18, n=60)[2] == []


def test_the_comparison_catches_a_wrong_encoder() -> None:
    key = bytes(range(16))
    right = encode.full_add_credit(key, 5, 24)
    wrong = right[:-2] + str((int(right[-2]) + 1) % 10) + "#"
    found = mismatch(Case("off by one digit", lambda: wrong, lambda: right))
    assert found is not None
    assert "off by one digit" in found

    def refuse() -> str:
        raise ValueError("refused")

    assert mismatch(Case("one refuses", refuse, lambda: right)) is not None
    assert mismatch(Case("both refuse", refuse, refuse)) is None


def test_codes_from_the_encoder_are_applied_by_a_meter() -> None:
    key = bytes.fromhex("deadbeef1020304004030201feebdaed")
    full = Meter.nexus(key, rate_limit=None)
    assert full.enter_keycode(encode.full_add_credit(key, 1, 24), 0.0).outcome is Outcome.APPLIED
    assert full.credit_remaining(0.0) == 24 * 3600
    small = Meter.nexus(key, "small", rate_limit=None)
    assert small.enter_keycode(encode.small_add_credit(key, 1, 7), 0.0).outcome is Outcome.APPLIED
    assert small.credit_remaining(0.0) == 7 * 86400
    token = Meter.openpaygo(key, 123456789, blocking=None)
    _, text = issue_token(key, 123456789, 1, Kind.ADD, 3)
    assert token.enter_keycode(text, 0.0).outcome is Outcome.APPLIED


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: encode.full_add_credit(bytes(15), 1, 1), "16 bytes"),
        (lambda: encode.full_add_credit(bytes(16), -1, 1), "message id"),
        (lambda: encode.full_add_credit(bytes(16), 1, 100_000), "0..99999"),
        (lambda: encode.small_add_credit(bytes(16), 1, 406), "1..405 days"),
        (lambda: encode.small_set_credit(bytes(16), 63, 1), "legacy test code"),
        (lambda: encode.full_factory(FullType.QC_TEST), "factory code"),
        (lambda: issue_token(bytes(16), 1, 1, Kind.ADD, 996), "maximum of 995"),
        (lambda: issue_token(bytes(16), 1, 1, Kind.SYNC, 3), "carries no value"),
    ],
)
def test_what_a_protocol_cannot_carry_is_refused_with_a_reason(make, words: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(EncodeError, match=words):
        make()
