"""Nexus FULL protocol (12-key keypad): parse, authenticate and decide one finished frame.

A frame is the digits between `*` and `#`. Fourteen digits are an obscured activation message
`T II BBBBB MMMMMM`; other lengths are factory or passthrough messages keyed by their first
digit. The validator accepts what the backend (nexus-keycode) emits and refuses the rest,
including device leniencies the backend never relies on (reserved digits, short activation
forms, demo and no-MAC codes unless the product enables them, passthrough).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from enum import IntEnum

from meter_sim.actions import AddCredit, Decision, SetCredit, Unlock
from meter_sim.nexus import rules
from meter_sim.nexus.mac import KEY_00, check_secret_key, full_mac, prng
from meter_sim.nexus.rules import Verdict, WipeTarget, applied, duplicate, invalid
from meter_sim.nexus.state import NexusState, infer_id, mask_below
from meter_sim.outcomes import Outcome, PaygState

MAX_FRAME_KEYS = 30
"""NEXUS_KEYCODE_MAX_MESSAGE_LENGTH."""
ACTIVATION_DIGITS = 14
UNLOCK_HOURS = 99999
_DIGITS = frozenset("0123456789")


class FullType(IntEnum):
    """The type digit: 0-3 are activation types (obscured), 4-8 factory/passthrough."""

    ADD_CREDIT = 0
    SET_CREDIT = 1
    WIPE_STATE = 2
    DEMO = 3
    ALLOW_TEST = 4
    QC_TEST = 5
    DISPLAY_PAYG_ID = 6
    NOMAC_PAYG_ID = 7
    PASSTHROUGH = 8


def process_full(
    frame: str,
    *,
    secret_key: bytes,
    state: NexusState,
    payg: PaygState,
    payg_id: str = "",
    allow_demo: bool = False,
    allow_nomac_id: bool = False,
) -> Verdict:
    """Decide one full-protocol frame. Never raises on input; a bad key is a `ConfigError`."""
    check_secret_key(secret_key)
    if not frame:
        return invalid(state, "empty frame")
    if len(frame) > MAX_FRAME_KEYS:
        return invalid(state, f"frame of {len(frame)} keys is longer than {MAX_FRAME_KEYS}")
    if not _DIGITS.issuperset(frame):
        return invalid(state, "frame holds a key that is not a digit")
    if len(frame) == ACTIVATION_DIGITS:
        return _activation(frame, bytes(secret_key), state, payg, allow_demo)
    return _factory(frame, state, payg, payg_id, allow_nomac_id)


def deobscure(frame: str) -> str:
    """The cleartext of a 14-digit activation frame (the MAC digits travel in the clear)."""
    mac = int(frame[8:])
    pad = prng(struct.pack("<I", mac))
    body = "".join(str((int(frame[i]) - pad[i]) % 10) for i in range(8))
    return body + frame[8:]


def _activation(
    frame: str, key: bytes, state: NexusState, payg: PaygState, allow_demo: bool
) -> Verdict:
    clear = deobscure(frame)
    type_digit, cid, body, mac = int(clear[0]), int(clear[1:3]), int(clear[3:8]), int(clear[8:])
    if type_digit > FullType.DEMO:
        return invalid(state, f"activation type {type_digit} does not exist")
    if cid > 63:
        return invalid(state, f"id field {cid} out of range 0..63")
    kind = FullType(type_digit)
    value = body
    if kind is FullType.WIPE_STATE:
        if body // 10 != 0:
            return invalid(state, "reserved digits non-zero")
        if body % 10 > max(WipeTarget):
            return invalid(state, f"wipe target {body % 10} does not exist")
        value = body % 10
    if kind is FullType.DEMO and not allow_demo:
        return invalid(state, "demo codes not accepted")

    def mac_ok(id_: int) -> bool:
        return full_mac(key, id_, kind, value) == mac

    id_ = infer_id(state, cid)
    refused = rules.gate(state, id_, mac_ok)
    if refused is not None:
        return refused
    return _APPLY[kind](state, payg, id_, value)


def _add(state: NexusState, payg: PaygState, id_: int, hours: int) -> Verdict:
    return rules.add_credit(state, payg, id_, AddCredit(hours * 3600), f"add {hours} h")


def _set(state: NexusState, payg: PaygState, id_: int, hours: int) -> Verdict:
    if hours == UNLOCK_HOURS:
        return rules.set_credit(state, id_, Unlock(), "unlock", clear_restricted=False)
    return rules.set_credit(
        state, id_, SetCredit(hours * 3600), f"set {hours} h", clear_restricted=False
    )


def _wipe(state: NexusState, payg: PaygState, id_: int, target: int) -> Verdict:
    # The window is masked up to the wipe's own id before the target acts.
    return rules.wipe(mask_below(state, id_ + 1), WipeTarget(target), f"id {id_}")


def _demo(state: NexusState, payg: PaygState, id_: int, minutes: int) -> Verdict:
    # Demo codes are reusable: the id is checked but never marked.
    if payg is PaygState.UNLOCKED:
        return applied(state, None, f"demo {minutes} min: no effect on an unlocked unit")
    return applied(state, AddCredit(minutes * 60), f"demo {minutes} min, id {id_}")


_APPLY: dict[FullType, Callable[[NexusState, PaygState, int, int], Verdict]] = {
    FullType.ADD_CREDIT: _add,
    FullType.SET_CREDIT: _set,
    FullType.WIPE_STATE: _wipe,
    FullType.DEMO: _demo,
}


def _factory(
    frame: str, state: NexusState, payg: PaygState, payg_id: str, allow_nomac_id: bool
) -> Verdict:
    kind = int(frame[0])
    if kind <= FullType.DEMO:
        if len(frame) == 7:
            return invalid(state, "short activation form is never emitted by the backend")
        return invalid(state, f"activation frame of {len(frame)} digits, expected 14")
    if kind in (FullType.ALLOW_TEST, FullType.DISPLAY_PAYG_ID):
        if len(frame) != 7:
            return invalid(state, f"factory frame of {len(frame)} digits, expected 7")
        if full_mac(KEY_00, 0, kind, 0) != int(frame[1:]):
            return invalid(state, "mac mismatch")
        if kind == FullType.ALLOW_TEST:
            return rules.short_test(state, payg)
        return Decision(Outcome.DISPLAY_ID, state, None, "display payg id")
    if kind == FullType.QC_TEST:
        return _qc(frame, state, payg)
    if kind == FullType.NOMAC_PAYG_ID:
        return _confirm_payg_id(frame, state, payg_id, allow_nomac_id)
    if kind == FullType.PASSTHROUGH:
        return invalid(state, "passthrough not supported")
    return invalid(state, f"factory type {kind} does not exist")


def _qc(frame: str, state: NexusState, payg: PaygState) -> Verdict:
    # `5 RRR mm MMMMMM`; the 1.5.1 encoder's 7-digit `5 MMMMMM` form fails here, as on the device.
    if len(frame) != 12:
        return invalid(state, f"QC frame of {len(frame)} digits, expected 12")
    if frame[1:4] != "000":
        return invalid(state, "reserved digits non-zero")
    minutes = int(frame[4:6])
    if full_mac(KEY_00, 0, FullType.QC_TEST, minutes) != int(frame[6:]):
        return invalid(state, "mac mismatch")
    return rules.qc_test(state, payg, minutes * 60)


def _confirm_payg_id(frame: str, state: NexusState, payg_id: str, allowed: bool) -> Verdict:
    if not allowed:
        return invalid(state, "payg-id confirmation codes not accepted")
    if not 9 <= len(frame) <= 11:
        return invalid(state, f"payg-id confirmation of {len(frame)} digits, expected 9..11")
    if payg_id.isascii() and payg_id.isdigit() and int(frame[1:]) == int(payg_id):
        return applied(state, None, "payg id confirmed")
    return duplicate(state, "payg id does not match")
