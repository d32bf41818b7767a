"""Keycode issuing: never more credit than paid for, and a meter_sim meter applies exactly the
credit the server announces, for every format, at any creditable day count."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent_client.protocol.keycodes import KeycodeFormat, keycode_text
from server_stub.errors import SetupError
from server_stub.keycodes import DAY_S, DeviceSecret, creditable_days, issue

from .fixtures import meter_for

OPAYGO = (KeycodeFormat.OPENPAYGO, KeycodeFormat.OPENPAYGO_RESTRICTED)


@given(st.sampled_from(KeycodeFormat), st.integers(-5, 5000), st.integers(1, 255))
def test_creditable_days_never_exceed_what_was_paid(
    fmt: KeycodeFormat, days: int, divider: int
) -> None:
    got = creditable_days(fmt, days, divider)
    assert 0 <= got <= max(days, 0)
    if days >= 1 and (fmt not in OPAYGO or divider <= 995):
        assert got >= 1


@pytest.mark.parametrize(
    ("days", "expected"), [(180, 180), (181, 180), (183, 183), (185, 183), (405, 405), (999, 405)]
)
def test_small_protocol_uses_its_table(days: int, expected: int) -> None:
    assert creditable_days(KeycodeFormat.NEXUS_SMALL, days) == expected


@settings(max_examples=25)
@example(  # the 30-day simulation's device whose third ADD 7 token was also a SET at count 5
    fmt=KeycodeFormat.OPENPAYGO,
    key=bytes.fromhex("5635874cca99a45a782c4ce996c8d941"),
    starting_code=190496368,
    divider=1,
    wanted=[7, 7, 7],
)
@example(  # a device whose ADD 7 tokens at counts 8 and 10 would be the same token
    fmt=KeycodeFormat.OPENPAYGO,
    key=bytes.fromhex("35bf98b887851fc2b148e6e3cb068bdc"),
    starting_code=168530243,
    divider=1,
    wanted=[7, 7, 7, 7, 7],
)
@given(
    fmt=st.sampled_from(KeycodeFormat),
    key=st.binary(min_size=16, max_size=16),
    starting_code=st.integers(1, 10**9 - 1),
    divider=st.sampled_from([1, 2, 4, 24]),
    wanted=st.lists(st.integers(1, 500), min_size=1, max_size=3),
)
def test_meter_applies_the_announced_credit(
    fmt: KeycodeFormat, key: bytes, starting_code: int, divider: int, wanted: list[int]
) -> None:
    secret = DeviceSecret(fmt, key, starting_code, divider)
    meter = meter_for(secret)
    next_id = 1
    now = 0.0
    texts: set[str] = set()
    for days in wanted:
        credit_days = creditable_days(fmt, days, divider)
        issued = issue(secret, next_id, credit_days)
        assert issued.credit_s == credit_days * DAY_S
        assert keycode_text(fmt, issued.number) == issued.text
        assert issued.text not in texts, "the same keycode issued twice for one device"
        texts.add(issued.text)
        now += 720
        before = meter.credit_remaining(now)
        result = meter.enter_keycode(issued.text, now)
        assert result.outcome == "applied", (issued, result)
        assert meter.credit_remaining(now) - before == issued.credit_s
        next_id = issued.next_id


def test_bad_device_secrets_and_days_are_refused() -> None:
    with pytest.raises(SetupError):
        DeviceSecret(KeycodeFormat.NEXUS_FULL, b"short")
    with pytest.raises(SetupError):
        DeviceSecret(KeycodeFormat.OPENPAYGO, bytes(16), 5, time_divider=0)
    with pytest.raises(SetupError, match="starting code"):
        DeviceSecret(KeycodeFormat.OPENPAYGO, bytes(16), 0)
    with pytest.raises(ValueError, match="not creditable"):
        issue(DeviceSecret(KeycodeFormat.NEXUS_SMALL, bytes(16)), 1, 181)
