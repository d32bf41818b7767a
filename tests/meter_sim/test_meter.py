"""The Meter as a whole: the public API, entry paths, and a stateful test against a model."""

from __future__ import annotations

import math
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from meter_sim import ClockError, ConfigError, Meter, Outcome
from meter_sim.meter import Result
from meter_sim.strategies import KeypadProtocol, add_credit_keycodes, keycode_texts
from meter_sim.trace.device import DeviceConfig

from .helpers import (
    DAY,
    HOUR,
    KEY,
    OPAYGO_KEY,
    OPAYGO_SC,
    OTHER_KEY,
    full_add,
    full_set,
    full_unlock,
    opaygo_token,
)

DEVICES = [
    DeviceConfig("nexus-full", KEY),
    DeviceConfig("nexus-small", KEY),
    DeviceConfig("openpaygo", OPAYGO_KEY, starting_code=OPAYGO_SC),
    DeviceConfig("openpaygo-restricted", OPAYGO_KEY, starting_code=OPAYGO_SC),
]
"""One device per keypad protocol."""


def test_public_api_shape() -> None:
    meter = Meter.nexus(KEY, "full")
    result = meter.enter_keycode(full_add(1, 24), now=0.0)
    assert isinstance(result, Result)
    assert result.outcome == "applied"
    assert meter.credit_remaining(0.0) == 24 * HOUR
    assert meter.state(0.0) == "enabled"
    assert meter.state(24 * HOUR) == "disabled"
    assert Meter.nexus(KEY, "small").protocol == "nexus-small"
    assert Meter.openpaygo(OPAYGO_KEY, OPAYGO_SC, count=1).protocol == "openpaygo"


def test_unlocked_credit_is_infinite() -> None:
    meter = Meter.nexus(KEY)
    meter.enter_keycode(full_unlock(1), 0.0)
    assert meter.credit_remaining(1e9) == math.inf
    assert meter.state(1e9) == "unlocked"
    assert meter.output_on(1e9)


def test_spaces_and_grouping_are_ignored() -> None:
    code = full_add(1, 5)
    assert " " in code
    assert Meter.nexus(KEY).enter_keycode(code.replace(" ", ""), 0).outcome is Outcome.APPLIED
    assert Meter.nexus(KEY).enter_keycode(f"  {code}  ", 0).outcome is Outcome.APPLIED


@pytest.mark.parametrize(
    ("text", "reason", "strict"),
    [
        ("", "empty", False),
        ("747951838274", "starts with", False),
        ("*7479x1838274#", "not on this keypad", False),
        ("", "empty", True),
        ("747951838274", "starts with", True),
        ("*747951838274", "ends with", True),
        ("*74795183#8274#", "one", True),
        ("*7479x1838274#", "not on this keypad", True),
    ],
)
def test_unframed_text_is_invalid_and_costs_no_attempt(
    text: str, reason: str, strict: bool
) -> None:
    meter = Meter.nexus(KEY, strict=strict)
    for _ in range(10):
        result = meter.enter_keycode(text, 0.0)
        assert result.outcome is Outcome.INVALID
        assert reason in result.reason
    assert meter.enter_keycode(full_add(1, 1), 0.0).outcome is Outcome.APPLIED


@pytest.mark.parametrize("text", ["*747951838274", "*74795183#8274#"])
def test_firmware_evaluates_a_started_code_without_its_end_key(text: str) -> None:
    # nexus-embedded's whole-code entry drops the last key unchecked and evaluates the rest
    # (`7479518382 7` reads as a payg-id confirmation: valid, not this device's id).
    meter = Meter.nexus(KEY)
    for _ in range(6):
        assert meter.enter_keycode(text, 0.0).outcome in (Outcome.INVALID, Outcome.DUPLICATE)
    assert meter.enter_keycode(full_add(1, 1), 0.0).outcome is Outcome.RATE_LIMITED


def test_key_by_key_equals_whole_code() -> None:
    code = full_add(1, 24)
    meter = Meter.nexus(KEY)
    replies = [meter.press_key(k, 1.0) for k in code if k != " "]
    assert all(r.feedback == "accepted" for r in replies)
    assert replies[-1].result is not None
    assert replies[-1].result.outcome is Outcome.APPLIED
    assert meter.credit_remaining(1.0) == 24 * HOUR


def test_slow_typing_times_out_and_loses_the_code() -> None:
    meter = Meter.nexus(KEY)
    keys = [k for k in full_add(1, 24) if k != " "]
    now = 0.0
    for key in keys[:5]:
        meter.press_key(key, now)
        now += 10.0
    now += 20.0  # a pause longer than the 16 s entry timeout
    tail = [meter.press_key(key, now) for key in keys[5:]]
    assert all(r.result is None for r in tail)
    assert meter.credit_remaining(now) == 0


def test_clock_must_not_go_backwards() -> None:
    meter = Meter.nexus(KEY)
    meter.advance(100.0)
    with pytest.raises(ClockError):
        meter.enter_keycode(full_add(1, 1), 99.0)
    with pytest.raises(ClockError):
        meter.press_key("*", float("nan"))


@pytest.mark.parametrize(
    "build",
    [
        lambda: Meter.nexus(b"short"),
        lambda: Meter.nexus(KEY, "medium"),
        lambda: Meter.openpaygo(OPAYGO_KEY, 10**9),
        lambda: Meter.openpaygo(OPAYGO_KEY, OPAYGO_SC, count=0),
        lambda: Meter.openpaygo(OPAYGO_KEY, OPAYGO_SC, time_divider=0),
    ],
)
def test_impossible_devices_are_refused(build: object) -> None:
    with pytest.raises(ConfigError):
        build()  # type: ignore[operator]


def test_codes_for_another_device_are_invalid() -> None:
    meter = Meter.nexus(KEY)
    assert meter.enter_keycode(full_add(1, 1, OTHER_KEY), 0).outcome is Outcome.INVALID
    assert meter.credit_remaining(0) == 0


@pytest.mark.parametrize("device", DEVICES, ids=lambda d: d.protocol)
@settings(max_examples=20)
@given(data=st.data())
def test_each_meter_credits_an_issued_add_code_exactly_once(
    device: DeviceConfig, data: st.DataObject
) -> None:
    # Small meters credit whole days, full ones hours, OpenPAYGO days over its divider.
    code = data.draw(add_credit_keycodes(device))
    meter = device.build()
    assert meter.enter_keycode(code.text, 0.0).outcome is Outcome.APPLIED
    assert meter.credit_remaining(0.0) == code.credit_s
    again = meter.enter_keycode(code.text, 1.0)
    assert again.outcome is Outcome.DUPLICATE, again.reason
    assert meter.credit_remaining(1.0) == code.credit_s - 1


def test_openpaygo_meter_accepts_each_token_once() -> None:
    meter = Meter.openpaygo(OPAYGO_KEY, OPAYGO_SC)
    count, add7 = opaygo_token(1, 7)
    assert meter.enter_keycode(add7, 0).outcome is Outcome.APPLIED
    assert meter.enter_keycode(add7, 1).outcome is Outcome.DUPLICATE
    _, set30 = opaygo_token(count, 30, "SET_TIME")
    assert meter.enter_keycode(set30, 2).outcome is Outcome.APPLIED
    assert meter.credit_remaining(2) == 30 * DAY


def test_openpaygo_restricted_keypad_refuses_other_digits() -> None:
    meter = Meter.openpaygo(OPAYGO_KEY, OPAYGO_SC, restricted_digits=True)
    result = meter.enter_keycode("123456789012345", 0)
    assert result.outcome is Outcome.INVALID
    assert "not on this keypad" in result.reason


@pytest.mark.parametrize("device", DEVICES, ids=lambda d: d.protocol)
@given(data=st.data())
def test_no_input_raises(device: DeviceConfig, data: st.DataObject) -> None:
    # Any text, and text of the right shape (which gets past the keypad to the validator).
    protocol = cast(KeypadProtocol, device.protocol)
    text = data.draw(st.text(max_size=60) | keycode_texts(protocol))
    meter = device.build()
    assert meter.enter_keycode(text, 0.0).outcome in set(Outcome)
    for key in text:
        meter.press_key(key, 0.0)


class NexusMeterModel(RuleBasedStateMachine):
    """A Nexus full meter against a direct model of credit, id window and rate limit."""

    REFILL = 720.0

    @initialize()
    def boot(self) -> None:
        self.meter = Meter.nexus(KEY)
        self.now = 0.0
        self.issued: list[tuple[int, str, str, int]] = []  # (id, kind, code, hours)
        self.next_id = 1
        self.used: set[int] = set()
        self.masked_to = -1
        self.pd = 23
        self.bucket = 6 * self.REFILL
        self.until = 0.0
        self.unlocked = False

    def _credit(self) -> float:
        return math.inf if self.unlocked else max(0.0, self.until - self.now)

    @precondition(lambda self: self.next_id <= self.pd + 40)
    @rule(kind=st.sampled_from(["add", "add", "add", "set", "unlock"]), hours=st.integers(0, 200))
    def issue(self, kind: str, hours: int) -> None:
        id_ = self.next_id
        self.next_id += 1
        if kind == "add":
            code = full_add(id_, hours)
        elif kind == "set":
            code = full_set(id_, hours)
        else:
            code = full_unlock(id_)
        self.issued.append((id_, kind, code, hours))

    @rule(dt=st.sampled_from([0.0, 1.0, 300.0, 720.0, 3600.0, 86400.0]))
    def wait(self, dt: float) -> None:
        self.now += dt
        self.bucket = min(128 * self.REFILL, self.bucket + dt)
        self.meter.advance(self.now)

    @rule()
    def power_cycle(self) -> None:
        self.bucket = min(6, self.bucket // self.REFILL) * self.REFILL
        self.meter.power_cycle(self.now)

    def _expect(self, id_: int, kind: str, hours: int) -> Outcome:
        if self.bucket < self.REFILL:
            return Outcome.RATE_LIMITED
        self.bucket -= self.REFILL
        if id_ is None or id_ < self.pd - 23:
            return Outcome.INVALID
        if kind == "add":
            if id_ in self.used or id_ <= self.masked_to:
                return Outcome.DUPLICATE
            self.used.add(id_)
            self.pd = max(self.pd, id_)
            if self.unlocked:
                return Outcome.DUPLICATE
            self.until = max(self.until, self.now) + hours * HOUR
            return Outcome.APPLIED
        if id_ in self.used or id_ <= self.masked_to:
            return Outcome.DUPLICATE
        self.used.add(id_)
        self.masked_to = max(self.masked_to, id_)
        self.pd = max(self.pd, id_)
        if kind == "unlock":
            self.unlocked, self.until = True, self.now
        else:
            self.unlocked, self.until = False, self.now + hours * HOUR
        return Outcome.APPLIED

    @precondition(lambda self: self.issued)
    @rule(data=st.data())
    def enter(self, data: st.DataObject) -> None:
        id_, kind, code, hours = data.draw(st.sampled_from(self.issued))
        expected = self._expect(id_, kind, hours)
        result = self.meter.enter_keycode(code, self.now)
        assert result.outcome is expected, (id_, kind, result.reason)

    @rule()
    def enter_garbage(self) -> None:
        expected = Outcome.RATE_LIMITED if self.bucket < self.REFILL else Outcome.INVALID
        if expected is Outcome.INVALID:
            self.bucket -= self.REFILL
        assert self.meter.enter_keycode("*12345678901234#", self.now).outcome is expected

    @invariant()
    def credit_agrees(self) -> None:
        if hasattr(self, "meter"):
            assert self.meter.credit_remaining(self.now) == pytest.approx(self._credit())


TestNexusMeterModel = NexusMeterModel.TestCase
TestNexusMeterModel.settings = settings(stateful_step_count=30)


def test_restricted_flag_is_set_by_the_product_and_cleared_by_a_keycode(tmp_path: object) -> None:
    from nexus_keycode.protocols.full import FullMessage, FullMessageWipeFlags

    meter = Meter.nexus(KEY)
    meter.set_restricted(True, 0.0)
    assert meter.restricted
    meter.power_cycle(1.0)
    assert meter.restricted  # persisted in the Nexus custom-flag byte
    clear = FullMessage.wipe_state(
        id_=1, flags=FullMessageWipeFlags.WIPE_RESTRICTED_FLAG, secret_key=KEY
    ).to_keycode()
    assert meter.enter_keycode(str(clear), 2.0).outcome is Outcome.APPLIED
    assert not meter.restricted
    with pytest.raises(ConfigError):
        Meter.openpaygo(OPAYGO_KEY, OPAYGO_SC).set_restricted(True, 0.0)
