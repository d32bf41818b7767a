"""Small protocol against the reference document and nexus-embedded's C scenarios.

Frames and struct-level vectors from angaza/nexus-embedded v2.0.1
`nexus/test/test_nexus_keycode_pro_small.c` and `test_nexus_keycode_pro_extended.c` (MIT).
Upstream frames use the alphabet `0123` without the start key (`small_keys` maps them);
struct-level vectors (id, type, increment, check) are rendered with `small_frame`, which sends
only `id & 0x3F`, so the device infers the id from its window exactly as it would in the field.
"""

from __future__ import annotations

import pytest
from nexus_keycode.protocols.small import (
    AddCreditSmallMessage,
    MaintenanceSmallMessage,
    MaintenanceSmallMessageType,
    SetCreditSmallMessage,
    SmallMessage,
    UnlockSmallMessage,
)

from meter_sim.actions import AddCredit, SetCredit, Unlock
from meter_sim.nexus import NexusState, infer_id, is_set, set_flag, used_ids
from meter_sim.nexus.increments import ADD_DAYS, SET_DAYS, days_for
from meter_sim.nexus.mac import small_mac
from meter_sim.nexus.policy import STRICT
from meter_sim.nexus.small import SmallType, decode
from meter_sim.outcomes import Outcome, PaygState

from .harness import DAY, KEY_00, KEY_EXTENDED, KEY_FF, KEY_SAMPLE, Unit, small_frame, small_keys

A, D, I = Outcome.APPLIED, Outcome.DUPLICATE, Outcome.INVALID  # noqa: E741


def small_code(message: SmallMessage) -> str:
    return str(message.to_keycode())


def test_reference_doc_section3_exact_keycodes() -> None:
    wipe = MaintenanceSmallMessageType.WIPE_IDS_ALL
    assert [
        small_code(AddCreditSmallMessage(id_=1, days=7, secret_key=KEY_SAMPLE)),
        small_code(SetCreditSmallMessage(id_=2, days=30, secret_key=KEY_SAMPLE)),
        small_code(UnlockSmallMessage(id_=3, secret_key=KEY_SAMPLE)),
        small_code(MaintenanceSmallMessage(type_=wipe, secret_key=KEY_SAMPLE)),
    ] == [
        "135 253 543 544 243",
        "143 224 222 444 244",
        "154 522 342 455 334",
        "152 222 253 544 522",
    ]


def test_reference_doc_section3_worked_decode() -> None:
    assert decode("35253543544243") == (1, SmallType.ADD_CREDIT, 6, 0xE89)
    assert small_mac(KEY_SAMPLE, 1, 0, 6) == 3721


def test_reference_doc_section3_outcomes() -> None:
    unit = Unit(KEY_SAMPLE, payg_override=PaygState.ENABLED)
    assert unit.small("135 253 543 544 243").action == AddCredit(7 * DAY)
    assert unit.small("143 224 222 444 244").action == SetCredit(30 * DAY)
    assert unit.small("154 522 342 455 334").action == Unlock()
    assert used_ids(unit.nexus) == {0, 1, 2, 3}
    wiped = unit.small("152 222 253 544 522")
    assert (wiped.outcome, wiped.action) == (A, None)
    assert unit.nexus == NexusState()


# test_nexus_keycode_pro_process__various_messages_pending__messages_applied_feedback_started
PROCESS = [
    ("30211130301021", A),  # id 12
    ("30211130301021", D),
    ("10210203303303", A),  # id 13
    ("30123220313102", A),  # id 14
    ("10210203303303", D),
    ("33020121210023", A),  # WIPE_IDS_ALL
    ("30123220313102", A),  # id 14 again after the wipe
]


def test_process_scenario() -> None:
    unit = Unit(KEY_00, payg_override=PaygState.ENABLED)
    assert unit.small("1234567").outcome is I
    for frame, outcome in PROCESS:
        assert unit.small(small_keys(frame)).outcome is outcome, frame
    assert used_ids(unit.nexus) == {14}


@pytest.mark.parametrize(
    ("frame", "alphabet", "key", "fields"),
    [
        ("32110323221113", "0123", KEY_FF, (30, SmallType.ADD_CREDIT, 1, 0x0A57)),
        ("02022022213121", "0123", KEY_00, (17, SmallType.ADD_CREDIT, 4, 0x09D9)),
        ("13133133324232", "1234", KEY_00, (17, SmallType.ADD_CREDIT, 4, 0x09D9)),
        ("32023320110033", "0123", b"\xfe" * 16, (0, SmallType.MAINTENANCE_OR_TEST, 0x82, 0x050F)),
        ("21031000211022", "0123", KEY_00, (0, SmallType.MAINTENANCE_OR_TEST, 0, 0x094A)),
    ],
)
def test_parse_vectors_decode_and_validate(
    frame: str, alphabet: str, key: bytes, fields: tuple[int, SmallType, int, int]
) -> None:
    symbols = small_keys(frame, alphabet)
    assert decode(symbols) == fields
    assert small_frame(*fields) == symbols
    assert Unit(key).small(symbols).outcome is A


@pytest.mark.parametrize(
    "symbols", ["", "3435354553342", "325455342534535", "33323344332244", "x" * 14]
)
def test_malformed_frames_invalid(symbols: str) -> None:
    assert Unit(KEY_00).small(symbols).outcome is I


def test_add_then_duplicate() -> None:
    unit = Unit(KEY_00)
    frame = small_frame(17, 0, 5, 0x03AB)
    assert unit.small(frame).action == AddCredit(6 * DAY)
    assert unit.small(frame).outcome is D
    assert used_ids(unit.nexus) == {17}


def test_large_increment_add() -> None:
    unit = Unit(KEY_00)
    assert unit.small(small_frame(5, 0, 196, 0x0CD8)).action == AddCredit(231 * DAY)
    assert used_ids(unit.nexus) == {5}


def test_add_type_unlock_and_foreign_id() -> None:
    unit = Unit(KEY_00)
    assert unit.small(small_frame(45, 0, 255, 0x0BD3)).action == Unlock()
    assert (unit.nexus.pd, used_ids(unit.nexus)) == (45, {45})
    refused = unit.small(small_frame(28, 0, 255, 0x0C4F))  # check of id 92 sent with id 28
    assert refused.outcome is I
    assert unit.nexus.pd == 45


def test_add_after_unlock_is_duplicate() -> None:
    unit = Unit(KEY_00)
    unlock, add = small_frame(51, 0, 255, 0x0EBE), small_frame(52, 0, 143, 0x09AE)
    assert unit.small(unlock).outcome is A
    assert unit.small(add).outcome is D
    assert unit.small(unlock).outcome is D
    assert unit.small(add).outcome is D
    assert used_ids(unit.nexus) == {51, 52}


@pytest.mark.parametrize(
    ("id_", "increment", "check", "days"),
    [
        (1, 0, 0x0D31, 1),
        (2, 0, 0x0927, 1),
        (5, 90, 0x09A4, 92),
        (10, 167, 0x0144, 312),
        (21, 196, 0x0FB1, 496),
        (23, 239, 0x0125, 960),
    ],
)
def test_set_credit_vectors(id_: int, increment: int, check: int, days: int) -> None:
    unit = Unit(KEY_00)
    assert unit.small(small_frame(id_, 2, increment, check)).action == SetCredit(days * DAY)
    assert used_ids(unit.nexus) == set(range(id_ + 1))


# test_nexus_keycode_pro_small_process__custom_command_reset_restricted_flag (key 00).
RESTRICTED = [
    ("03033330201032", False, A, False),  # id 30
    ("03033330201032", True, D, True),
    ("11001021103212", False, A, False),  # id 31
    ("33020121210023", True, A, True),  # WIPE_IDS_ALL keeps the flag
    ("03033330201032", False, A, False),  # id 30 again
]


def test_restricted_flag_scenario() -> None:
    unit = Unit(KEY_00, payg_override=PaygState.ENABLED)
    for frame, set_first, outcome, flag_after in RESTRICTED:
        if set_first:
            unit.set_restricted()
        decision = unit.small(small_keys(frame))
        assert decision.outcome is outcome, frame
        assert decision.action is None
        assert unit.nexus.restricted is flag_after, frame
    assert unit.nexus.pd == 30


@pytest.mark.parametrize(
    ("cid", "pd", "expected"),
    [
        (0, 23, 0),
        (1, 23, 1),
        (2, 23, 2),
        (23, 23, 23),
        (24, 23, 24),
        (63, 23, 63),
        (0, 24, 64),
        (1, 24, 1),
        (2, 24, 2),
        (23, 24, 23),
        (24, 24, 24),
        (63, 24, 63),
        (0, 25, 64),
        (1, 25, 65),
        (2, 25, 2),
        (23, 25, 23),
        (24, 25, 24),
        (63, 25, 63),
        (0, 8623, 8640),
        (1, 8623, 8641),
        (23, 8623, 8663),
        (24, 8623, 8600),
    ],
)
def test_infer_id_table(cid: int, pd: int, expected: int) -> None:
    assert infer_id(NexusState(pd=pd), cid) == expected


def test_unlock_then_lock_then_add() -> None:
    unit = Unit(KEY_00)
    assert unit.small(small_frame(10, 2, 255, 0x0010)).action == Unlock()
    assert used_ids(unit.nexus) == set(range(11))
    assert unit.small(small_frame(63, 2, 254, 0x0138)).action == SetCredit(0)
    assert used_ids(unit.nexus) == set(range(40, 64))
    unit.payg_override = PaygState.DISABLED
    assert unit.small(small_frame(78, 0, 14, 0x0CCB)).action == AddCredit(15 * DAY)
    assert used_ids(unit.nexus) == set(range(55, 64)) | {78}


def test_wrong_id_with_same_low_bits() -> None:
    unit = Unit(KEY_00)
    a, b, c = (
        small_frame(14, 0, 14, 0x0CCB),
        small_frame(55, 0, 0, 0x0D34),
        small_frame(78, 0, 14, 0x0CCB),
    )
    refused = unit.small(a)  # the check of id 78, inferred as 14 at pd 23
    assert (refused.outcome, refused.reason) == (I, "above window (code for id 78)")
    assert unit.nexus == NexusState()
    assert unit.small(b).action == AddCredit(DAY)
    assert (unit.nexus.pd, used_ids(unit.nexus)) == (55, {55})
    unit.payg_override = PaygState.ENABLED
    assert unit.small(c).action == AddCredit(15 * DAY)
    assert (unit.nexus.pd, used_ids(unit.nexus)) == (78, {55, 78})
    # Upstream applied `a` as a struct with id 14 (INVALID); over the keypad only `id & 63`
    # travels, so at pd 78 the device infers 78 and reports the code as already used.
    assert unit.small(a).outcome is D
    assert unit.small(b).outcome is D
    assert unit.small(c).outcome is D
    assert unit.nexus.pd == 78


WIPE_IDS = small_frame(0, 3, 0x82, 0x090B)
WIPE_CREDIT_AND_IDS = small_frame(0, 3, 0x81, 0x0289)
WIPE_CREDIT = small_frame(0, 3, 0x80, 0x063B)
SHORT_TEST = small_frame(0, 3, 0, 0x094A)
OQC = small_frame(0, 3, 1, 0x0C22)


def test_maintenance_wipe_ids() -> None:
    unit = Unit(KEY_00, nexus=set_flag(set_flag(set_flag(NexusState(), 23), 4), 0))
    decision = unit.small(WIPE_IDS)
    assert (decision.outcome, decision.action) == (A, None)
    assert unit.nexus == NexusState()


def test_high_pd_then_test_and_wipe() -> None:
    unit = Unit(KEY_00)
    assert unit.small(small_frame(63, 0, 1, 0x0566)).action == AddCredit(2 * DAY)
    assert (unit.nexus.pd, used_ids(unit.nexus)) == (63, {63})
    assert unit.small(SHORT_TEST).outcome is D  # already enabled
    assert unit.small(WIPE_IDS).outcome is A
    assert unit.nexus == NexusState()


def test_wipe_credit_and_ids_reopens_old_ids() -> None:
    unit = Unit(KEY_00, nexus=set_flag(NexusState(), 4), payg_override=PaygState.ENABLED)
    add_24, add_0 = small_frame(24, 0, 1, 0x00E1), small_frame(0, 0, 1, 0x0DD9)
    assert unit.small(add_24).outcome is A
    assert (unit.nexus.pd, used_ids(unit.nexus)) == (24, {4, 24})
    refused = unit.small(add_0)  # at pd 24, cid 0 means id 64
    assert (refused.outcome, refused.reason) == (I, "below window (code for id 0)")
    assert unit.small(WIPE_CREDIT_AND_IDS).action == SetCredit(0)
    assert unit.nexus == NexusState()
    assert unit.small(add_0).outcome is A
    assert (unit.nexus.pd, used_ids(unit.nexus)) == (23, {0})
    assert unit.small(add_24).outcome is A
    assert (unit.nexus.pd, used_ids(unit.nexus)) == (24, {24})


def test_wipe_credit_keeps_ids() -> None:
    start = set_flag(set_flag(set_flag(NexusState(), 23), 4), 0)
    unit = Unit(KEY_00, nexus=start)
    assert unit.small(WIPE_CREDIT).action == SetCredit(0)
    assert unit.nexus == start


def test_small_short_test() -> None:
    unit = Unit(KEY_00, payg_override=PaygState.DISABLED)
    assert {unit.small(SHORT_TEST).action for _ in range(256)} == {AddCredit(127)}
    assert unit.nexus == NexusState()


def test_small_oqc_lifetime_limit_and_wipe() -> None:
    unit = Unit(KEY_00, payg_override=PaygState.ENABLED)
    assert [unit.small(OQC).outcome for _ in range(6)] == [A] * 5 + [D]
    assert unit.small(WIPE_IDS).outcome is A
    unit.payg_override = PaygState.DISABLED
    assert unit.small(OQC).action == AddCredit(3600)


def test_small_oqc_refused_when_unlocked() -> None:
    unit = Unit(KEY_00)
    assert unit.small(small_frame(45, 0, 255, 0x0BD3)).action == Unlock()
    assert unit.small(OQC).outcome is D


def test_short_test_then_add() -> None:
    unit = Unit(KEY_00)
    assert unit.small(SHORT_TEST).action == AddCredit(127)
    assert unit.small(small_frame(2, 0, 0, 0x0467)).action == AddCredit(DAY)
    assert unit.credit == 127 + DAY


def test_wrong_check_invalid() -> None:
    assert Unit(KEY_00).small(small_frame(17, 0, 5, 0x03DD)).outcome is I


@pytest.mark.parametrize(
    ("id_", "body", "key", "check"),
    [
        (0, 0, KEY_00, 0x056B),
        (0, 0, b"\xd1" * 16, 0x0277),
        (5, 17, b"\x33" * 16, 0x09B6),
        (15, 120, b"\xd1" * 16, 0x0539),
    ],
)
def test_compute_check_vectors(id_: int, body: int, key: bytes, check: int) -> None:
    assert small_mac(key, id_, 0, body) == check


@pytest.mark.parametrize(
    ("requested", "credited"),
    [(181, 183), (182, 183), (183, 183), (184, 186), (405, 405), (1, 1), (180, 180)],
)
def test_add_table_floor_then_credit(requested: int, credited: int) -> None:
    message = AddCreditSmallMessage(id_=1, days=requested, secret_key=KEY_SAMPLE)
    assert Unit(KEY_SAMPLE).small(small_code(message)).action == AddCredit(credited * DAY)


@pytest.mark.parametrize(
    ("requested", "credited"),
    [
        (1, 1),
        (90, 90),
        (91, 92),
        (92, 92),
        (180, 180),
        (181, 184),
        (360, 360),
        (361, 368),
        (720, 720),
        (721, 736),
        (736, 736),
        (737, 752),
        (960, 960),
    ],
)
def test_set_table_floor_then_credit(requested: int, credited: int) -> None:
    message = SetCreditSmallMessage(id_=1, days=requested, secret_key=KEY_SAMPLE)
    assert Unit(KEY_SAMPLE).small(small_code(message)).action == SetCredit(credited * DAY)


def test_table_edges() -> None:
    assert [days_for(ADD_DAYS, i) for i in (0, 179, 180, 181, 254, 255)] == [
        1,
        180,
        183,
        186,
        405,
        None,
    ]
    edges = (0, 89, 90, 134, 135, 179, 180, 224, 225, 239, 240)
    assert [days_for(SET_DAYS, i) for i in edges] == [
        1,
        90,
        92,
        180,
        184,
        360,
        368,
        720,
        736,
        960,
        None,
    ]


@pytest.mark.parametrize("increment", range(240, 253))
def test_strict_reserved_set_increments_rejected(increment: int) -> None:
    frame = small_frame(1, 2, increment, small_mac(KEY_00, 1, 2, increment))
    decision = Unit(KEY_00, policy=STRICT).small(frame)
    assert (decision.outcome, decision.state) == (I, NexusState())
    assert "reserved" in decision.reason


def test_strict_maintenance_with_nonzero_id_rejected() -> None:
    frame = small_frame(5, 3, 0x80, small_mac(KEY_00, 5, 3, 0x80))
    assert Unit(KEY_00, policy=STRICT).small(frame).outcome is I


@pytest.mark.parametrize("increment", range(240, 253))
def test_firmware_reserved_set_increments_set_credit_zero(increment: int) -> None:
    frame = small_frame(1, 2, increment, small_mac(KEY_00, 1, 2, increment))
    unit = Unit(KEY_00, credit=5 * DAY)
    decision = unit.small(frame)
    assert (decision.outcome, decision.action, unit.credit) == (A, SetCredit(0), 0)
    assert is_set(unit.nexus, 1)


def test_firmware_maintenance_with_nonzero_id_keeps_the_id_in_its_mac() -> None:
    unit = Unit(KEY_00)
    assert unit.small(small_frame(5, 3, 0x80, small_mac(KEY_00, 5, 3, 0x80))).outcome is A
    assert unit.small(small_frame(5, 3, 0x80, small_mac(KEY_00, 0, 3, 0x80))).outcome is I


# test_smallpad_apply_message_end_to_end__set_credit_wipe_restricted__interacts_correctly...
# (frame, id, action); every step answers APPLIED except the replay, which is INVALID.
EXTENDED = [
    ("33000012201122", 0, SetCredit(928 * DAY)),  # extended, 915 days -> 928
    ("02333110231231", 13, SetCredit(5 * DAY)),  # regular SET
    ("31102212233323", 15, SetCredit(0)),  # extended, 0 days (lock)
    ("31102212233323", 15, None),  # replay: INVALID
    ("01023000313003", 60, Unlock()),  # extended unlock
    ("20001020011102", 63, SetCredit(200 * DAY)),  # regular SET
    ("21233203303010", 78, None),  # custom: clear restricted flag
    ("22211113110021", 80, SetCredit(33 * DAY)),  # regular SET
    ("10001333120332", 90, SetCredit(368 * DAY)),  # extended, 365 days -> 368
    ("12320000120222", 105, Unlock()),  # extended unlock
    ("22211231010122", 136, SetCredit(90 * DAY)),  # extended, 90 days
]


def test_extended_end_to_end_11_steps() -> None:
    unit = Unit(KEY_EXTENDED, payg_override=PaygState.ENABLED)
    assert used_ids(unit.nexus) == frozenset()
    for step, (frame, id_, action) in enumerate(EXTENDED):
        unit.set_restricted()
        decision = unit.small(small_keys(frame))
        expected = I if step == 3 else A
        assert (decision.outcome, decision.action) == (expected, action), (step, decision.reason)
        assert unit.nexus.restricted is (expected is I or id_ in (13, 63, 80)), step
        assert all(is_set(unit.nexus, i) for i in range(max(0, id_ - 23), id_ + 1)), step
    assert len(EXTENDED) == 11


def _extended_msg5(mac: int = 0b101101111110, ext_type: int = 0) -> str:
    # app 1, type, trunc id 0b01, increment 105 (0b01101001), 12 MAC bits; type bits = 1.
    cid = 1 << 5 | ext_type << 2 | 0b01
    return small_frame(cid, 1, 105, mac)


def test_extended_bitstream_message_5() -> None:
    unit = Unit(KEY_EXTENDED)
    decision = unit.small(_extended_msg5())
    assert (decision.outcome, decision.action) == (A, SetCredit(10540800))  # 122 days
    assert used_ids(unit.nexus) == set(range(6))
    assert unit.small(_extended_msg5()).outcome is I  # replay


def test_extended_unsupported_type_and_bad_mac() -> None:
    unit = Unit(KEY_EXTENDED)
    assert unit.small(_extended_msg5(ext_type=5)).outcome is I
    assert unit.small(_extended_msg5(mac=0b101101111111)).outcome is I
    assert unit.nexus == NexusState()


def test_extended_app_bit_zero_rejected() -> None:
    decision = Unit(KEY_EXTENDED).small(small_frame(0b000001, 1, 105, 0b101101111110))
    assert (decision.outcome, decision.reason) == (I, "passthrough application not supported")


def test_reference_unlock_flag_is_not_a_day_count() -> None:
    message = SetCreditSmallMessage(id_=3, days=SmallMessage.UNLOCK_FLAG, secret_key=KEY_SAMPLE)
    assert Unit(KEY_SAMPLE).small(small_code(message)).action == Unlock()
