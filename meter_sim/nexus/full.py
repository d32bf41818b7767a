"""Nexus FULL protocol (12-key keypad): parse, authenticate and decide one finished frame.

A frame is the digits between `*` and `#`. Fourteen digits are an obscured activation message
`T II BBBBB MMMMMM`; other lengths are factory or passthrough messages keyed by their first
digit. By default it does what nexus-embedded v2.0.1 does (reserved digits ignored, 7-digit
short activation forms, demo and no-MAC codes accepted, a WIPE with an unknown target still
masking its ids); under `STRICT` it accepts only what the backend (nexus-keycode) emits.
Passthrough codes are refused either way: they belong to the product, not to Nexus.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from enum import IntEnum
from functools import lru_cache

from meter_sim.actions import AddCredit, Decision, SetCredit, Unlock
from meter_sim.nexus import rules
from meter_sim.nexus.mac import KEY_00, check_secret_key, full_mac, u32_seed_message
from meter_sim.nexus.policy import FIRMWARE, NexusPolicy
from meter_sim.nexus.rules import Verdict, WipeTarget, applied, duplicate, invalid
from meter_sim.nexus.state import NexusState
from meter_sim.outcomes import Outcome, PaygState
from meter_sim.siphash import siphash24

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
    policy: NexusPolicy = FIRMWARE,
    allow_demo: bool | None = None,
    allow_nomac_id: bool | None = None,
) -> Verdict:
    """Decide one full-protocol frame. Never raises on input; a bad key is a `ConfigError`.

    `allow_demo` and `allow_nomac_id` override the policy's own setting when given.
    """
    check_secret_key(secret_key)
    if allow_demo is not None or allow_nomac_id is not None:
        policy = replace(
            policy,
            allow_demo=policy.allow_demo if allow_demo is None else allow_demo,
            allow_nomac_id=policy.allow_nomac_id if allow_nomac_id is None else allow_nomac_id,
        )
    key = secret_key if type(secret_key) is bytes else bytes(secret_key)
    return decide_full(frame, key, state, payg, payg_id, policy)


def decide_full(
    frame: str, key: bytes, state: NexusState, payg: PaygState, payg_id: str, policy: NexusPolicy
) -> Verdict:
    """`process_full` for a key already checked to be 16 `bytes`: a meter's per-code path."""
    if len(frame) == ACTIVATION_DIGITS and _DIGITS.issuperset(frame):
        return _activation(frame, key, state, payg, policy)
    if not frame:
        return invalid(state, "empty frame")
    if len(frame) > MAX_FRAME_KEYS:
        return invalid(state, f"frame of {len(frame)} keys is longer than {MAX_FRAME_KEYS}")
    if not _DIGITS.issuperset(frame):
        return invalid(state, "frame holds a key that is not a digit")
    return _factory(frame, key, state, payg, payg_id, policy)


_ACTIVATION_TYPES = (FullType.ADD_CREDIT, FullType.SET_CREDIT, FullType.WIPE_STATE, FullType.DEMO)
_ADD_CREDIT, _DEMO, _WIPE_STATE = FullType.ADD_CREDIT, FullType.DEMO, FullType.WIPE_STATE
"""Members read once (an enum attribute costs ~900 instructions on 3.11: `credit._UNLOCKED`)."""
_MOD10 = bytes(b % 10 for b in range(256))
_ASCII_MOD10 = bytes(48 + b % 10 for b in range(256))
_ASCII_ZERO_MINUS_TEN = int.from_bytes(b"\x26" * 8, "little")
"""Per byte: ord("0") - 10, so each byte of `typed - this - pad` is its digit + 10 - pad."""


def _clear_number(frame: str) -> tuple[int, int]:
    """The 8 deobscured digits `T II BBBBB` of a 14-digit activation frame as one number, and
    its MAC.

    Digit i is (typed digit - PRNG byte i) mod 10. All eight at once: with each pad byte
    reduced mod 10, byte i of `typed + 10 - pad` is 1..19 (no carry between bytes), and one
    more mod-10 table lookup per byte (`bytes.translate`) gives the digit.
    """
    mac = int(frame[8:])
    # prng_u32(mac), inline: the PRNG is seeded with the MAC on every code
    pad = siphash24(KEY_00, u32_seed_message(mac)).to_bytes(8, "little").translate(_MOD10)
    typed = int.from_bytes(frame[:8].encode(), "little")
    clear = typed - _ASCII_ZERO_MINUS_TEN - int.from_bytes(pad, "little")
    return int(clear.to_bytes(8, "little").translate(_ASCII_MOD10)), mac


def deobscure(frame: str) -> str:
    """The cleartext of a 14-digit activation frame (the MAC digits travel in the clear)."""
    number, _ = _clear_number(frame)
    return f"{number:08d}{frame[8:]}"


def _activation(
    frame: str, key: bytes, state: NexusState, payg: PaygState, policy: NexusPolicy
) -> Verdict:
    n, mac = _clear_number(frame)  # T II BBBBB
    type_digit, cid, body = n // 10_000_000, n // 100_000 % 100, n % 100_000
    if type_digit > _DEMO:
        return invalid(state, f"activation type {type_digit} does not exist")
    if cid > 63:
        return invalid(state, f"id field {cid} out of range 0..63")
    kind = _ACTIVATION_TYPES[type_digit]
    value = body
    if kind is _WIPE_STATE:
        # The MAC covers only the target digit; the firmware discards the 4 reserved ones.
        if policy.strict and body // 10 != 0:
            return invalid(state, "reserved digits non-zero")
        if policy.strict and body % 10 > max(WipeTarget):
            return invalid(state, f"wipe target {body % 10} does not exist")
        value = body % 10
    if kind is _DEMO and not policy.demo:
        return invalid(state, "demo codes not accepted")
    id_, refused = rules.admit(state, cid, mac, full_mac, key, type_digit, value, policy)
    if refused is not None:
        return refused
    if kind is _ADD_CREDIT:  # _APPLY[kind], the commonest code without the dictionary
        return _add(state, payg, id_, value, policy)
    return _APPLY[kind](state, payg, id_, value, policy)


@lru_cache(maxsize=1024)
def _add_action(hours: int) -> tuple[AddCredit, str]:
    """A full ADD's action and description by hours: a few amounts recur (actions are values)."""
    return AddCredit(hours * 3600), f"add {hours} h"


def _add(state: NexusState, payg: PaygState, id_: int, hours: int, policy: NexusPolicy) -> Verdict:
    action, what = _add_action(hours)
    return rules.add_credit(state, payg, id_, action, what, policy)


def _set(state: NexusState, payg: PaygState, id_: int, hours: int, policy: NexusPolicy) -> Verdict:
    action = Unlock() if hours == UNLOCK_HOURS else SetCredit(hours * 3600)
    what = "unlock" if hours == UNLOCK_HOURS else f"set {hours} h"
    return rules.set_credit(state, id_, action, what, clear_restricted=False, policy=policy)


def _wipe(
    state: NexusState, payg: PaygState, id_: int, target: int, policy: NexusPolicy
) -> Verdict:
    # The window is masked up to the wipe's own id before the target acts, so a genuine
    # code with an unknown target still voids those ids although the device answers INVALID.
    masked = rules.mask_through(state, id_, policy)
    if target > max(WipeTarget):
        return invalid(masked, f"wipe target {target} does not exist (ids up to {id_} masked)")
    return rules.wipe(masked, WipeTarget(target), f"id {id_}")


def _demo(state: NexusState, payg: PaygState, id_: int, minutes: int, _: NexusPolicy) -> Verdict:
    # Demo codes are reusable: the id is checked but never marked.
    if payg is PaygState.UNLOCKED:
        return applied(state, None, f"demo {minutes} min: no effect on an unlocked unit")
    return applied(state, AddCredit(minutes * 60), f"demo {minutes} min, id {id_}")


_APPLY: dict[FullType, Callable[[NexusState, PaygState, int, int, NexusPolicy], Verdict]] = {
    FullType.ADD_CREDIT: _add,
    FullType.SET_CREDIT: _set,
    FullType.WIPE_STATE: _wipe,
    FullType.DEMO: _demo,
}


def _factory(
    frame: str, key: bytes, state: NexusState, payg: PaygState, payg_id: str, policy: NexusPolicy
) -> Verdict:
    kind = int(frame[0])
    if kind <= FullType.DEMO:
        if len(frame) != 7:
            return invalid(state, f"activation frame of {len(frame)} digits, expected 14")
        if policy.strict:
            return invalid(state, "short activation form is never emitted by the backend")
        return _short_activation(FullType(kind), int(frame[1:]), key, state, payg, policy)
    if kind in (FullType.ALLOW_TEST, FullType.DISPLAY_PAYG_ID):
        if len(frame) != 7:
            return invalid(state, f"factory frame of {len(frame)} digits, expected 7")
        if full_mac(KEY_00, 0, kind, 0) != int(frame[1:]):
            return invalid(state, "mac mismatch")
        if kind == FullType.ALLOW_TEST:
            return rules.short_test(state, payg)
        return Decision(Outcome.DISPLAY_ID, state, None, "display payg id")
    if kind == FullType.QC_TEST:
        return _qc(frame, state, payg, policy)
    if kind == FullType.NOMAC_PAYG_ID:
        return _confirm_payg_id(frame, state, payg_id, policy.nomac_id)
    if kind == FullType.PASSTHROUGH:
        return invalid(state, "passthrough not supported")
    return invalid(state, f"factory type {kind} does not exist")


def _short_activation(
    kind: FullType, mac: int, key: bytes, state: NexusState, payg: PaygState, policy: NexusPolicy
) -> Verdict:
    """`T MMMMMM`: the firmware reads it as type T with id 0 and an all-zero body.

    So it is ADD 0 h, SET 0 h (credit to 0), WIPE target 0 or DEMO 0 min, MAC'd with the
    device key at id 0 and subject to id 0's flag, as a 14-digit code would be.
    """
    if kind is FullType.DEMO and not policy.demo:
        return invalid(state, "demo codes not accepted")

    def mac_ok(id_: int) -> bool:
        return full_mac(key, id_, kind, 0) == mac

    if not mac_ok(0):
        return invalid(state, "mac mismatch")
    refused = rules.gate(state, 0, mac_ok, policy)
    if refused is not None:
        return refused
    return _APPLY[kind](state, payg, 0, 0, policy)


def _qc(frame: str, state: NexusState, payg: PaygState, policy: NexusPolicy) -> Verdict:
    # `5 RRR mm MMMMMM`; the 1.5.1 encoder's 7-digit `5 MMMMMM` form fails here, as on the device.
    if len(frame) != 12:
        return invalid(state, f"QC frame of {len(frame)} digits, expected 12")
    if policy.strict and frame[1:4] != "000":
        return invalid(state, "reserved digits non-zero")
    minutes = int(frame[4:6])
    if full_mac(KEY_00, 0, FullType.QC_TEST, minutes) != int(frame[6:]):
        return invalid(state, "mac mismatch")
    return rules.qc_test(state, payg, minutes * 60, policy)


def _confirm_payg_id(frame: str, state: NexusState, payg_id: str, allowed: bool) -> Verdict:
    if not allowed:
        return invalid(state, "payg-id confirmation codes not accepted")
    if not 9 <= len(frame) <= 11:
        return invalid(state, f"payg-id confirmation of {len(frame)} digits, expected 9..11")
    if payg_id.isascii() and payg_id.isdigit() and int(frame[1:]) == int(payg_id):
        return applied(state, None, "payg id confirmed")
    return duplicate(state, "payg id does not match")
