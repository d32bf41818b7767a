"""Full protocol against the reference document's examples and nexus-embedded's C scenarios.

Frames from angaza/nexus-embedded v2.0.1 `nexus/test/test_nexus_keycode_pro_full.c` (MIT) and
the desktop sample's expect script; the exact keycodes of docs §3 are regenerated with the
backend encoder here so the table and the library cannot drift apart unnoticed.
"""

from __future__ import annotations

import pytest
from nexus_keycode.protocols.full import FactoryFullMessage, FullMessage, FullMessageWipeFlags

from meter_sim.actions import AddCredit, SetCredit, Unlock
from meter_sim.nexus import NexusState, is_set, set_flag, used_ids
from meter_sim.nexus.full import deobscure, process_full
from meter_sim.nexus.mac import full_mac
from meter_sim.nexus.policy import STRICT
from meter_sim.outcomes import Outcome, PaygState

from .harness import DAY, KEY_00, KEY_FF, KEY_MIXED, KEY_SAMPLE, Unit, full_frame

A, D, I = Outcome.APPLIED, Outcome.DUPLICATE, Outcome.INVALID  # noqa: E741


def test_reference_doc_section3_exact_keycodes() -> None:
    rendered = {
        "add": FullMessage.add_credit(id_=1, hours=24 * 7, secret_key=KEY_SAMPLE).to_keycode(),
        "set": FullMessage.set_credit(id_=2, hours=24 * 10, secret_key=KEY_SAMPLE).to_keycode(),
        "unlock": FullMessage.unlock(id_=3, secret_key=KEY_SAMPLE).to_keycode(),
        "wipe0": FullMessage.wipe_state(
            id_=4, flags=FullMessageWipeFlags.TARGET_FLAGS_0, secret_key=KEY_SAMPLE
        ).to_keycode(),
        "wipe_ids": FullMessage.wipe_state(
            id_=5, flags=FullMessageWipeFlags.WIPE_IDS_ALL, secret_key=KEY_SAMPLE
        ).to_keycode(),
        "allow_test": FactoryFullMessage.allow_test().to_keycode(),
        "oqc_151": FactoryFullMessage.oqc_test().to_keycode(),
        "display": FactoryFullMessage.display_payg_id().to_keycode(),
    }
    assert rendered == {
        "add": "*747 951 838 274 41#",
        "set": "*438 507 462 347 21#",
        "unlock": "*040 671 421 882 51#",
        "wipe0": "*602 465 641 216 43#",
        "wipe_ids": "*067 324 133 974 22#",
        "allow_test": "*406 498 3#",
        "oqc_151": "*577 043 3#",
        "display": "*634 776 5#",
    }


def test_reference_doc_section3_worked_decode() -> None:
    assert deobscure("74795183827441") == "00100168827441"
    assert full_mac(KEY_SAMPLE, 1, 0, 168) == 827441


@pytest.mark.parametrize(
    ("keycode", "payg", "outcome", "action"),
    [
        ("*747 951 838 274 41#", PaygState.ENABLED, A, AddCredit(168 * 3600)),
        ("*438 507 462 347 21#", PaygState.ENABLED, A, SetCredit(240 * 3600)),
        ("*040 671 421 882 51#", PaygState.ENABLED, A, Unlock()),
        ("*602 465 641 216 43#", PaygState.ENABLED, A, SetCredit(0)),
        ("*067 324 133 974 22#", PaygState.ENABLED, A, None),
        ("*406 498 3#", PaygState.DISABLED, A, AddCredit(127)),
        ("*406 498 3#", PaygState.ENABLED, D, None),
        ("*577 043 3#", PaygState.DISABLED, I, None),  # nexus-keycode 1.5.1's OQC form
        ("*500 060 694 509#", PaygState.DISABLED, A, AddCredit(3600)),  # corrected OQC
        ("*500 010 494 931#", PaygState.DISABLED, A, AddCredit(600)),
        ("*634 776 5#", PaygState.ENABLED, Outcome.DISPLAY_ID, None),
    ],
)
def test_reference_doc_section3_outcomes(
    keycode: str, payg: PaygState, outcome: Outcome, action: object
) -> None:
    unit = Unit(KEY_SAMPLE, payg_override=payg)
    decision = unit.full(keycode)
    assert (decision.outcome, decision.action) == (outcome, action), decision.reason


def test_section3_sequence_masks_each_set_and_wipe() -> None:
    unit = Unit(KEY_SAMPLE)
    unit.full("*747 951 838 274 41#")
    assert used_ids(unit.nexus) == {1}
    unit.full("*438 507 462 347 21#")  # SET id 2 voids ids 0..2
    assert used_ids(unit.nexus) == {0, 1, 2}
    unit.full("*040 671 421 882 51#")
    assert used_ids(unit.nexus) == {0, 1, 2, 3}
    unit.full("*602 465 641 216 43#")  # WIPE target 0 masks up to its id, keeps them
    assert used_ids(unit.nexus) == {0, 1, 2, 3, 4}
    unit.full("*067 324 133 974 22#")  # WIPE ids: factory window again
    assert unit.nexus == NexusState()
    # After a wipe of ids, the old codes apply again.
    assert unit.full("*747 951 838 274 41#").outcome is A


def test_desktop_sample_program_session() -> None:
    unit = Unit(KEY_SAMPLE)
    assert unit.full("*10029054295608#").outcome is A
    assert unit.credit == 86400
    again = unit.full("*10029054295608#")
    assert again.outcome is D
    assert "already used" in again.reason
    assert unit.credit == 86400
    assert unit.full("*47700886956615#").outcome is A
    assert unit.credit == 172800


# test_nexus_keycode_pro_full_apply__messages_shift_window__application_correct (key_mixed).
# (frame, outcome, action, id the device must have consumed or None)
WINDOW_SHIFT = [
    ("17512175671270", A, AddCredit(DAY), 0),
    ("54351282878335", A, AddCredit(DAY), 18),
    ("54351282878335", D, None, 18),
    ("16661656430865", A, SetCredit(DAY), 17),
    ("18741480856587", D, None, 16),  # the SET at 17 voided 16
    ("37812659533400", A, AddCredit(DAY), 63),
    ("58409523890468", A, AddCredit(DAY), 85),
    ("84961300121900", A, AddCredit(DAY), 125),
    ("90216400698647", A, AddCredit(DAY), 165),
    ("27843005971327", A, AddCredit(DAY), 205),
    ("27843005971327", D, None, 205),
    ("23815985837906", A, AddCredit(7 * DAY), 245),
    ("23815985837906", D, None, 245),
    ("74837625389313", A, AddCredit(30 * DAY), 285),
    ("74837625389313", D, None, 285),
    ("80226322507031", A, SetCredit(DAY), 275),
    ("74745234263745", D, None, 274),
    ("97120210121779", A, SetCredit(365 * DAY), 300),
    ("80226322507031", I, None, None),  # id 275 is now below the window (re-inferred as 339)
    ("16008638417832", A, AddCredit(DAY), 325),
    ("57297667770280", I, None, None),  # id 400 is above the window
    ("21096794406802", A, Unlock(), 350),
]


def test_window_shift_scenario_22_steps() -> None:
    unit = Unit(KEY_MIXED, payg_override=PaygState.ENABLED)
    for step, (frame, outcome, action, id_) in enumerate(WINDOW_SHIFT):
        before = unit.nexus
        decision = unit.full(frame)
        assert (decision.outcome, decision.action) == (outcome, action), (step, decision.reason)
        if id_ is None:
            assert decision.state == before, step
        else:
            assert is_set(decision.state, id_), step
    assert unit.nexus.pd == 350
    assert len(WINDOW_SHIFT) == 22


def test_window_shift_reasons_name_the_window() -> None:
    unit = Unit(KEY_MIXED, payg_override=PaygState.ENABLED)
    reasons = [unit.full(frame).reason for frame, *_ in WINDOW_SHIFT]
    assert reasons[18] == "below window (code for id 275)"
    assert reasons[20] == "above window (code for id 400)"


# ..._apply__various_valid_inputs__expected_responses_returned (key 00; demo enabled so the
# foreign-key demo code is refused by its MAC, as in the C test).
VALID_INPUTS = [
    ("4064983", PaygState.DISABLED, A),
    ("13777794160692", PaygState.ENABLED, A),  # add id 16
    ("63530515961148", PaygState.ENABLED, A),  # set id 63
    ("13777794160692", PaygState.ENABLED, I),  # id 16 is now below the window
    ("63530515961148", PaygState.ENABLED, D),
    ("4064983", PaygState.ENABLED, D),
    ("33579266365784", PaygState.ENABLED, I),  # demo for another key
]


def test_valid_inputs_scenario() -> None:
    unit = Unit(KEY_00)
    for frame, payg, outcome in VALID_INPUTS:
        unit.payg_override = payg
        assert unit.full(frame, allow_demo=True).outcome is outcome, frame
    assert unit.nexus.pd == 63


# ..._custom_command_reset_restricted_flag (key 00; WIPE target 3 codes with ids 30 and 31).
# (frame, set the flag first, outcome, flag after)
RESTRICTED = [
    ("22023260278852", False, A, False),
    ("22023260278852", True, D, True),
    ("30017672361669", False, A, False),
    ("93906354634621", True, A, True),  # WIPE target 1 (id 32) leaves the flag alone
    ("22023260278852", False, A, False),  # ids were wiped: id 30 applies again
]


def test_restricted_flag_scenario() -> None:
    unit = Unit(KEY_00, payg_override=PaygState.ENABLED)
    for frame, set_first, outcome, flag_after in RESTRICTED:
        if set_first:
            unit.set_restricted()
        assert unit.full(frame).outcome is outcome, frame
        assert unit.nexus.restricted is flag_after, frame
    assert unit.nexus.pd == 30


@pytest.mark.parametrize(
    "frame", ["4064981", "80294339379322", "77273638195162", "13777794160692", "4064984"]
)
def test_invalid_inputs_for_mixed_key(frame: str) -> None:
    decision = Unit(KEY_MIXED, payg_override=PaygState.DISABLED).full(frame)
    assert decision.outcome is I
    assert decision.state == NexusState()


def test_wipe_state_targets_scenario() -> None:
    unit = Unit(KEY_00, credit=5 * DAY)
    decision = unit.full("27854061048455")  # WIPE target 0, id 0 (key 00)
    assert (decision.outcome, decision.action) == (A, SetCredit(0))
    assert is_set(unit.nexus, 0)
    assert not is_set(unit.nexus, 23)
    # These two are FF-key codes (the C test applied them with the MAC check bypassed).
    unit = Unit(KEY_FF, nexus=set_flag(NexusState(), 301))
    decision = unit.full("19469685968779")  # WIPE target 1, id 303
    assert (decision.outcome, decision.action) == (A, SetCredit(0))
    assert unit.nexus == NexusState()
    unit.nexus = set_flag(unit.nexus, 301)
    decision = unit.full("45299993090378")  # WIPE ids only, id 303
    assert (decision.outcome, decision.action) == (A, None)
    assert unit.nexus == NexusState()


def test_long_qc_limit_and_wipe_resets_it() -> None:
    unit = Unit(KEY_FF)
    for count in range(1, 6):
        unit.payg_override = PaygState.ENABLED if count % 2 == 0 else PaygState.DISABLED
        decision = unit.full("500060694509")
        assert (decision.outcome, decision.action) == (A, AddCredit(3600))
        assert unit.nexus.qc_long == count
        assert used_ids(unit.nexus) == frozenset()
    refused = unit.full("500060694509")
    assert refused.outcome is D
    assert "limit" in refused.reason
    assert unit.full("65765292553198").outcome is A  # WIPE ids (FF key), id 0
    assert unit.nexus.qc_long == 0
    assert unit.full("500060694509").outcome is A


def test_ten_minute_qc_does_not_stack() -> None:
    unit = Unit(KEY_00, payg_override=PaygState.DISABLED)
    assert unit.full("500010494931").action == AddCredit(600)
    unit.payg_override = PaygState.ENABLED
    assert unit.full("500010494931").outcome is D
    assert unit.nexus.qc_short == 1


def test_short_qc_lifetime_limit() -> None:
    unit = Unit(KEY_00, payg_override=PaygState.DISABLED)
    outcomes = [unit.full("500010494931").outcome for _ in range(7)]
    assert outcomes == [A] * 5 + [D] * 2


def test_qc_refused_on_unlocked_unit() -> None:
    decision = Unit(KEY_00, payg_override=PaygState.UNLOCKED).full("500060694509")
    assert decision.outcome is D
    assert decision.state == NexusState()


def test_strict_qc_reserved_digits_must_be_zero() -> None:
    mac = full_mac(KEY_00, 0, 5, 60)
    decision = Unit(KEY_00, policy=STRICT).full(f"510060{mac:06d}")
    assert (decision.outcome, decision.reason) == (I, "reserved digits non-zero")


def test_short_test_is_unlimited() -> None:
    unit = Unit(KEY_00, payg_override=PaygState.DISABLED)
    assert {unit.full("4064983").action for _ in range(300)} == {AddCredit(127)}


def test_display_payg_id() -> None:
    decision = Unit(KEY_00).full("6347765")
    assert (decision.outcome, decision.action) == (Outcome.DISPLAY_ID, None)


@pytest.mark.parametrize(
    ("frame", "payg_id", "outcome"),
    [
        ("712345678", "12345678", A),
        ("7123456789", "123456789", A),
        ("71234567890", "1234567890", A),
        ("712345678", "87654321", D),
        ("79999999999", "3523384905", D),
        ("712345678901", "12345678901", I),  # 11-digit id: too long
        ("71234567", "1234567", I),  # 7-digit id: too short
        ("712345678", "", D),
    ],
)
def test_nomac_payg_id_confirmation(frame: str, payg_id: str, outcome: Outcome) -> None:
    unit = Unit(KEY_FF)
    assert unit.full(frame, allow_nomac_id=True, payg_id=payg_id).outcome is outcome
    assert Unit(KEY_FF).full(frame, payg_id=payg_id).outcome is outcome  # firmware: on
    strict = Unit(KEY_FF, policy=STRICT)
    assert strict.full(frame, payg_id=payg_id).outcome is I  # strict: off unless enabled


@pytest.mark.parametrize(
    "frame", ["8412345678902", "810", "841234567890281", "81", "8", "84123456789028"]
)
def test_passthrough_frames_are_invalid(frame: str) -> None:
    assert Unit(KEY_FF).full(frame).outcome is I


def test_passthrough_reason() -> None:
    assert Unit(KEY_FF).full("810").reason == "passthrough not supported"


def test_demo_codes_accepted_by_default_and_reusable() -> None:
    # nexus-embedded accepts demo codes unless the product configures them out.
    unit = Unit(KEY_FF, payg_override=PaygState.DISABLED)
    assert unit.full("56022601917455").action == AddCredit(600)
    assert unit.full("56022601917455", allow_demo=False).outcome is I
    assert Unit(KEY_FF, policy=STRICT).full("56022601917455").outcome is I


def test_demo_codes_only_when_enabled_and_reusable() -> None:
    unit = Unit(KEY_FF, payg_override=PaygState.DISABLED, policy=STRICT)
    assert unit.full("56022601917455").outcome is I  # strict: not enabled by default
    assert unit.full("56022601917455", allow_demo=True).action == AddCredit(600)
    unit.payg_override = PaygState.ENABLED
    decision = unit.full("06944198907301", allow_demo=True)  # same id 15: demo ids stay unused
    assert decision.action == AddCredit(1800)
    assert unit.nexus == NexusState()
    assert unit.full("37447047416988", allow_demo=True).outcome is I  # another key


@pytest.mark.parametrize(
    ("frame", "key"),
    [
        ("33217306036264", KEY_FF),  # add id 1, 168 h
        ("32857330049677", KEY_FF),  # set id 63, 500 h
        ("29015288972919", KEY_MIXED),  # demo id 20, 20 min
        ("94922693472577", KEY_MIXED),  # wipe target 0, id 45
        ("97024027550801", KEY_FF),  # add id 63, 42 h
        ("67015827134571", KEY_FF),  # set id 0, 5012 h
        ("92312722802585", KEY_00),  # wipe restricted flag, id 45
    ],
)
def test_upstream_check_vectors_validate(frame: str, key: bytes) -> None:
    decision = Unit(key, payg_override=PaygState.ENABLED).full(frame, allow_demo=True)
    assert decision.outcome is A, decision.reason


@pytest.mark.parametrize(
    ("clear", "obscured"),
    [
        ("00000000524232", "57396884524232"),
        ("12345678901241", "05094833901241"),
        ("12345678901250", "57458927901250"),
        ("00000000445755", "03605158445755"),
    ],
)
def test_deinterleave_vectors(clear: str, obscured: str) -> None:
    assert deobscure(obscured) == clear
    assert full_frame(clear) == obscured


@pytest.mark.parametrize(
    ("frame", "type_digit"),
    [
        ("96264378143903", 0),
        ("67777637770920", 1),
        ("61339720531363", 2),
        ("61225288652186", 2),
        ("40724795036413", 3),
        ("96476769603431", 1),
    ],
)
def test_type_digit_vectors(frame: str, type_digit: int) -> None:
    assert int(deobscure(frame)[0]) == type_digit


def test_add_to_unlocked_unit_consumes_id_and_answers_duplicate() -> None:
    unit = Unit(KEY_00, payg_override=PaygState.UNLOCKED)
    frame = full_frame("04000024303072")  # add id 40, 24 h
    first = unit.full(frame)
    assert (first.outcome, first.action) == (D, None)
    assert is_set(unit.nexus, 40)
    assert unit.full(frame).outcome is D


def test_set_relocks_an_unlocked_unit() -> None:
    unit = Unit(KEY_SAMPLE)
    unit.full("*040 671 421 882 51#")
    assert unit.unlocked
    code = FullMessage.set_credit(id_=4, hours=10, secret_key=KEY_SAMPLE).to_keycode()
    assert unit.full(code).action == SetCredit(36000)
    assert not unit.unlocked


@pytest.mark.parametrize("frame", ["0123456", "1234567", "2000000", "3999999"])
def test_strict_seven_digit_activation_forms_rejected(frame: str) -> None:
    decision = Unit(KEY_00, policy=STRICT).full(frame)
    assert decision.outcome is I
    assert "short activation form" in decision.reason


def test_strict_seven_digit_form_rejected_even_with_valid_mac() -> None:
    mac = full_mac(KEY_00, 0, 0, 0)
    decision = process_full(
        f"0{mac:06d}", secret_key=KEY_00, state=NexusState(), payg=PaygState.ENABLED, policy=STRICT
    )
    assert decision.outcome is I
