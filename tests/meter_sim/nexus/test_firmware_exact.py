"""Issue 21: the meter answers as nexus-embedded v2.0.1 does, on the minimal sequences found.

Each sequence is a fact measured on the firmware library (built for the host), key 00 01 .. 0f,
t in device seconds. The same sequences under `strict=True` keep the older backend-only
answers, so both policies stay visible side by side.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nexus_keycode.protocols.full import FullMessage, FullMessageWipeFlags
from nexus_keycode.protocols.small import AddCreditSmallMessage

from meter_sim import Meter, Outcome
from meter_sim.errors import ConfigError
from meter_sim.nexus import NexusState, is_set, process_full
from meter_sim.nexus.full import deobscure
from meter_sim.nexus.mac import full_mac
from meter_sim.nexus.policy import FIRMWARE, STRICT, NexusPolicy, Quirk
from meter_sim.openpaygo import TokenPolicy
from meter_sim.outcomes import PaygState

from .harness import full_frame

KEY = bytes(range(16))
APPLIED, DUPLICATE, INVALID = Outcome.APPLIED, Outcome.DUPLICATE, Outcome.INVALID
RATE_LIMITED = Outcome.RATE_LIMITED
DAY = 86_400


def full(strict: bool = False, **options: object) -> Meter:
    return Meter.nexus(KEY, "full", strict=strict, **options)  # type: ignore[arg-type]


def small(strict: bool = False) -> Meter:
    return Meter.nexus(KEY, "small", strict=strict)


# -- WIPE with a reserved digit changed ------------------------------------------------------


def test_wipe_with_a_reserved_digit_changed_applies() -> None:
    meter = full()
    assert meter.enter_keycode("*42345390564645#", 1000).outcome is APPLIED  # ADD 24 h
    result = meter.enter_keycode("*87157071104508#", 2000)
    assert (result.outcome, result.credit_remaining) == (APPLIED, 0)


def test_strict_wipe_with_a_reserved_digit_changed_is_invalid() -> None:
    meter = full(strict=True)
    meter.enter_keycode("*42345390564645#", 1000)
    result = meter.enter_keycode("*87157071104508#", 2000)
    assert (result.outcome, result.credit_remaining) == (INVALID, 85_400)


# -- small codes entered whole ----------------------------------------------------------------


def test_small_code_with_a_trailing_symbol_evaluates_the_first_14() -> None:
    result = small().enter_keycode("1235255342552422", 0)
    assert (result.outcome, result.credit_remaining) == (APPLIED, 7 * DAY)
    assert small(strict=True).enter_keycode("1235255342552422", 0).outcome is INVALID


def test_short_small_codes_spend_rate_limit_attempts() -> None:
    meter = small()
    for t in range(100, 106):
        assert meter.enter_keycode("12352553425524", t).outcome is INVALID
    assert meter.enter_keycode("123525534255242", 200).outcome is RATE_LIMITED


def test_strict_short_small_codes_cost_nothing() -> None:
    meter = small(strict=True)
    for t in range(100, 106):
        meter.enter_keycode("12352553425524", t)
    assert meter.enter_keycode("123525534255242", 200).outcome is APPLIED


# -- forms the backend never emits but the device accepts ------------------------------------


def test_seven_digit_short_activation_form_applies_set_zero() -> None:
    # `T MMMMMM` is type T at id 0 with an all-zero body: here SET 0 h, after an ADD (id 5).
    meter = full()
    assert meter.enter_keycode("*11284433655577#", 1000).outcome is APPLIED
    result = meter.enter_keycode("*1772670#", 2000)
    assert (result.outcome, result.credit_remaining) == (APPLIED, 0)
    assert "set 0 h, id 0" in result.reason
    strict = full(strict=True)
    strict.enter_keycode("*11284433655577#", 1000)
    assert strict.enter_keycode("*1772670#", 2000).outcome is INVALID


def test_seven_digit_short_activation_form_obeys_id_0s_flag() -> None:
    # Read from the firmware source: the short form carries id 0 through the same flag
    # check, so once a 14-digit code with id 0 is used it answers DUPLICATE.
    meter = full()
    meter.enter_keycode("*42345390564645#", 1000)  # ADD 24 h, id 0
    assert meter.enter_keycode("*1772670#", 2000).outcome is DUPLICATE


def test_qc_code_with_non_zero_reserved_digits_applies() -> None:
    result = full().enter_keycode("*512360694509#", 0)
    assert (result.outcome, result.credit_remaining) == (APPLIED, 3600)
    assert full(strict=True).enter_keycode("*512360694509#", 0).outcome is INVALID


def test_payg_id_confirmation_applies() -> None:
    assert full(payg_id="12345678").enter_keycode("*712345678#", 0).outcome is APPLIED
    assert full(strict=True, payg_id="12345678").enter_keycode("*712345678#", 0).outcome is INVALID
    explicit = full(strict=True, payg_id="12345678", allow_nomac_id=True)
    assert explicit.enter_keycode("*712345678#", 0).outcome is APPLIED


def test_small_test_code_with_a_non_zero_id_field_applies() -> None:
    result = small().enter_keycode("143244532343435", 0)
    assert (result.outcome, result.credit_remaining) == (APPLIED, 127)
    assert small(strict=True).enter_keycode("143244532343435", 0).outcome is INVALID


def test_small_set_with_a_reserved_increment_sets_credit_zero() -> None:
    meter = small()
    meter.enter_keycode("123525534255242", 1000)  # ADD 7 days
    result = meter.enter_keycode("124545323524543", 2000)
    assert (result.outcome, result.credit_remaining) == (APPLIED, 0)
    strict = small(strict=True)
    strict.enter_keycode("123525534255242", 1000)
    assert strict.enter_keycode("124545323524543", 2000).outcome is INVALID


def test_extended_small_set_with_a_reserved_increment_clears_restricted() -> None:
    meter = small()
    meter.enter_keycode("123525534255242", 0)
    meter.set_restricted(True, 0)
    result = meter.enter_keycode("154444544224553", 10)
    assert (result.outcome, result.credit_remaining, meter.restricted) == (APPLIED, 0, False)
    strict = small(strict=True)
    strict.set_restricted(True, 0)
    assert strict.enter_keycode("154444544224553", 10).outcome is INVALID
    assert strict.restricted


# -- a refused WIPE still masks its ids ---------------------------------------------------------


def test_wipe_with_unknown_target_masks_ids_though_invalid() -> None:
    meter = full()
    assert meter.enter_keycode("*55135696014178#", 1000).outcome is INVALID
    assert meter.enter_keycode("*11284433655577#", 2000).outcome is DUPLICATE  # ADD id 5
    strict = full(strict=True)
    assert strict.enter_keycode("*55135696014178#", 1000).outcome is INVALID
    assert strict.enter_keycode("*11284433655577#", 2000).outcome is APPLIED


# -- demo codes -----------------------------------------------------------------------------


def demo_code(id_: int, minutes: int) -> str:
    return "*" + full_frame(f"3{id_:02d}{minutes:05d}{full_mac(KEY, id_, 3, minutes):06d}") + "#"


def test_demo_codes_accepted_by_default() -> None:
    code = demo_code(1, 30)
    meter = full()
    assert meter.enter_keycode(code, 0).credit_remaining == 1800
    assert meter.enter_keycode(code, 1).credit_remaining == 3599  # reusable
    assert full(allow_demo=False).enter_keycode(code, 0).outcome is INVALID
    assert full(strict=True).enter_keycode(code, 0).outcome is INVALID


# -- knobs -----------------------------------------------------------------------------------


def test_qc_lifetime_knobs() -> None:
    meter = full(qc_long_lifetime_max=1)
    assert meter.enter_keycode("*500060694509#", 0).outcome is APPLIED
    assert meter.enter_keycode("*500060694509#", 1).outcome is DUPLICATE
    with pytest.raises(ConfigError):
        full(qc_short_lifetime_max=16)


def test_entry_timeout_knob() -> None:
    meter = full(entry_timeout_seconds=3)
    assert meter.entry_timeout_seconds == 3
    for t, key in enumerate("*4064"):
        meter.press_key(key, t)
    for key in "983#":
        meter.press_key(key, 10)  # the partial frame timed out: keys before '*' are rejected
    assert meter.credit_remaining(10) == 0
    with pytest.raises(ConfigError):
        full(entry_timeout_seconds=1)


def test_policy_is_visible() -> None:
    assert full().policy == FIRMWARE
    assert full(strict=True).policy == STRICT
    assert Meter.openpaygo(KEY, 123456789).policy == TokenPolicy()


# -- quirks --------------------------------------------------------------------------------


def test_id16_truncation_quirk_replays_above_65535() -> None:
    key = KEY
    code = FullMessage.add_credit(id_=65_540, hours=1, secret_key=key).to_keycode(
        prefix="", suffix="", separator=""
    )
    state = NexusState(pd=65_520)
    exact = process_full(code, secret_key=key, state=state, payg=PaygState.ENABLED)
    assert exact.outcome is INVALID  # beyond the 16-bit id range: refused
    buggy = NexusPolicy(quirks=frozenset({Quirk.ID16_TRUNCATION}))
    first = process_full(code, secret_key=key, state=state, payg=PaygState.ENABLED, policy=buggy)
    again = process_full(
        code, secret_key=key, state=first.state, payg=PaygState.ENABLED, policy=buggy
    )
    assert (first.outcome, again.outcome) == (APPLIED, APPLIED)
    assert Meter.nexus(key, quirks=["id16-truncation"]).policy == buggy
    with pytest.raises(ConfigError):
        Meter.nexus(key, quirks=["no-such-bug"])


# -- genuine codes are unchanged --------------------------------------------------------------


@given(
    id_=st.integers(17, 80),
    hours=st.integers(0, 99_999),
    kind=st.sampled_from(["add", "set", "wipe"]),
    target=st.sampled_from(list(FullMessageWipeFlags)),
)
def test_genuine_codes_same_under_both_policies(
    id_: int, hours: int, kind: str, target: FullMessageWipeFlags
) -> None:
    if kind == "add":
        message = FullMessage.add_credit(id_=id_, hours=hours, secret_key=KEY)
    elif kind == "set":
        message = FullMessage.set_credit(id_=id_, hours=min(hours, 99_998), secret_key=KEY)
    else:
        message = FullMessage.wipe_state(id_=id_, flags=target, secret_key=KEY)
    code = message.to_keycode(prefix="", suffix="", separator="")
    state = NexusState(pd=40)
    decisions = [
        process_full(code, secret_key=KEY, state=state, payg=PaygState.ENABLED, policy=policy)
        for policy in (FIRMWARE, STRICT)
    ]
    assert decisions[0] == decisions[1]
    assert decisions[0].outcome is APPLIED


# -- property: a digit the MAC does not cover ---------------------------------------------------


@given(
    id_=st.integers(17, 80),
    target=st.sampled_from(list(FullMessageWipeFlags)),
    position=st.integers(3, 6),
    digit=st.integers(0, 9),
)
def test_wipe_reserved_digit_changes_follow_the_firmware_rule(
    id_: int, target: FullMessageWipeFlags, position: int, digit: int
) -> None:
    # Firmware rule: the 4 reserved digits are discarded, so any change there answers exactly
    # as the genuine code does; strict refuses every change that makes them non-zero.
    genuine = FullMessage.wipe_state(id_=id_, flags=target, secret_key=KEY).to_keycode(
        prefix="", suffix="", separator=""
    )
    clear = deobscure(genuine)
    changed = full_frame(clear[:position] + str(digit) + clear[position + 1 :])
    state = NexusState(pd=40, received=0b1011)

    def decide(frame: str, policy: NexusPolicy) -> tuple[Outcome, object, NexusState]:
        d = process_full(frame, secret_key=KEY, state=state, payg=PaygState.ENABLED, policy=policy)
        return d.outcome, d.action, d.state

    assert decide(changed, FIRMWARE) == decide(genuine, FIRMWARE)
    strict = decide(changed, STRICT)
    if digit == 0:
        assert strict == decide(genuine, STRICT)
    else:
        assert strict == (INVALID, None, state)


@given(reserved=st.integers(0, 999), minutes=st.sampled_from([10, 60]))
def test_qc_reserved_digit_changes_follow_the_firmware_rule(reserved: int, minutes: int) -> None:
    mac = full_mac(bytes(16), 0, 5, minutes)
    frame = f"5{reserved:03d}{minutes:02d}{mac:06d}"
    decision = process_full(frame, secret_key=KEY, state=NexusState(), payg=PaygState.DISABLED)
    assert (decision.outcome, decision.state.qc_long + decision.state.qc_short) == (APPLIED, 1)


def test_wipe_unknown_target_is_invalid_after_masking() -> None:
    frame = "55135696014178"
    decision = process_full(frame, secret_key=KEY, state=NexusState(), payg=PaygState.ENABLED)
    assert decision.outcome is INVALID
    assert all(is_set(decision.state, i) for i in range(11))


@given(
    id_=st.integers(0, 40),
    days=st.integers(1, 180),
    suffix=st.text(alphabet="12345", max_size=6),
)
def test_small_whole_code_reads_the_first_14_symbols(id_: int, days: int, suffix: str) -> None:
    # Firmware rule: whole-code entry evaluates the 14 symbols after the start key and
    # ignores the rest; strict evaluates only an exact 14-symbol code.
    code = AddCreditSmallMessage(id_=id_, days=days, secret_key=KEY).to_keycode(separator="")
    firmware = Meter.nexus(KEY, "small", rate_limit=None).enter_keycode(code + suffix, 0)
    assert (firmware.outcome, firmware.credit_remaining) == (APPLIED, days * DAY)
    strict = Meter.nexus(KEY, "small", rate_limit=None, strict=True).enter_keycode(code + suffix, 0)
    assert strict.outcome is (APPLIED if not suffix else INVALID)


@given(cut=st.integers(0, 13))
def test_small_whole_code_too_short_is_evaluated(cut: int) -> None:
    code = AddCreditSmallMessage(id_=1, days=7, secret_key=KEY).to_keycode(separator="")
    firmware = Meter.nexus(KEY, "small")
    result = firmware.enter_keycode(code[: 1 + cut], 0)
    assert result.outcome is INVALID
    assert "expected 14" in result.reason  # evaluated by the validator, so it cost an attempt
    strict = Meter.nexus(KEY, "small", strict=True).enter_keycode(code[: 1 + cut], 0)
    assert "expected 14" not in strict.reason


def test_full_whole_code_drops_the_last_key_unchecked() -> None:
    # A genuine ADD whose `#` was mistyped as `7`: the device evaluates the 14 digits.
    result = full().enter_keycode("*423453905646457", 0)
    assert (result.outcome, result.credit_remaining) == (APPLIED, DAY)
    assert full(strict=True).enter_keycode("*423453905646457", 0).outcome is INVALID


def test_full_whole_code_without_end_key_is_evaluated_and_costs_an_attempt() -> None:
    meter = full()
    for t in range(6):
        assert meter.enter_keycode("*42345390564645", t).outcome is INVALID  # 13 digits left
    assert meter.enter_keycode("*42345390564645#", 10).outcome is RATE_LIMITED
    strict = full(strict=True)
    for t in range(6):
        strict.enter_keycode("*42345390564645", t)
    assert strict.enter_keycode("*42345390564645#", 10).outcome is APPLIED
