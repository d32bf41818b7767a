"""Nexus SMALL protocol (5-key keypad `1 2 3 4 5`): decide one finished 14-symbol frame.

After the start key `1`, fourteen symbols from `2345` carry 28 bits, `cid:6 type:2 body:8
MAC:12`, the first 16 obscured with a PRNG seeded by the MAC. Type 1 (passthrough) carries the
"extended small" SET-and-clear-restricted message, whose 2-bit id is found by trying the (at
most 16) unused window ids with those low bits.

By default the device's leniencies hold (nexus-embedded v2.0.1): maintenance and test codes
carry their id field into the MAC rather than requiring 0, and reserved SET increments set
credit to 0. Under `STRICT` those forms, which the backend never emits, are refused.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import replace
from enum import IntEnum
from functools import lru_cache

from meter_sim.actions import Action, AddCredit, SetCredit, Unlock
from meter_sim.nexus import rules
from meter_sim.nexus.increments import (
    ADD_DAYS,
    SET_CLEAR_RESTRICTED,
    SET_DAYS,
    SET_LOCK,
    SET_RESERVED,
    UNLOCK,
    days_for,
)
from meter_sim.nexus.mac import KEY_00, KEY_FF, check_secret_key, extended_mac, small_mac
from meter_sim.nexus.policy import FIRMWARE, NexusPolicy
from meter_sim.nexus.rules import Verdict, WipeTarget, applied, invalid
from meter_sim.nexus.state import (
    MAX_MESSAGE_ID,
    NexusState,
    infer_id,
    is_set,
    mask_below,
    window_bounds,
)
from meter_sim.outcomes import PaygState
from meter_sim.siphash import siphash24

FRAME_SYMBOLS = 14
ALPHABET = "2345"
"""Keys 2..5 carry two bits each, MSB first (2 -> 00 ... 5 -> 11)."""
SECONDS_PER_DAY = 86400
_SYMBOLS = frozenset(ALPHABET)
_AS_BASE4 = str.maketrans(ALPHABET, "0123")


class SmallType(IntEnum):
    ADD_CREDIT = 0
    PASSTHROUGH = 1
    SET_CREDIT = 2
    MAINTENANCE_OR_TEST = 3


_SMALL_TYPES = tuple(SmallType)
"""By value (a tuple index is cheaper than the enum's lookup by value)."""
_ADD_CREDIT, _SET_CREDIT, _MAINTENANCE_OR_TEST = _SMALL_TYPES[0], _SMALL_TYPES[2], _SMALL_TYPES[3]
"""Members read once (an enum attribute costs ~900 instructions on 3.11: `credit._UNLOCKED`)."""
EXTENDED_SET_CREDIT_CLEAR_RESTRICTED = 0
"""The only extended-small type: SET credit and clear the restricted flag."""
MAINTENANCE_BIT = 0x80
"""Type-3 body >= 128 is maintenance (secret key); below is a test code (fixed FF key)."""
TEST_SHORT, TEST_OQC = 0, 1


def process_small(
    symbols: str,
    *,
    secret_key: bytes,
    state: NexusState,
    payg: PaygState,
    policy: NexusPolicy = FIRMWARE,
) -> Verdict:
    """Decide the 14 symbols after the start key. Never raises on input."""
    check_secret_key(secret_key)
    key = secret_key if type(secret_key) is bytes else bytes(secret_key)
    return decide_small(symbols, key, state, payg, policy)


def decide_small(
    symbols: str, key: bytes, state: NexusState, payg: PaygState, policy: NexusPolicy
) -> Verdict:
    """`process_small` for a key already checked to be 16 `bytes`: a meter's per-code path."""
    if len(symbols) != FRAME_SYMBOLS:
        return invalid(state, f"frame of {len(symbols)} symbols, expected {FRAME_SYMBOLS}")
    if not _SYMBOLS.issuperset(symbols):
        return invalid(state, f"frame holds a key outside {ALPHABET}")
    cid, kind, body, mac = decode(symbols)
    if kind is _ADD_CREDIT:
        return _add(key, state, payg, cid, body, mac, policy)
    if kind is _SET_CREDIT:
        return _set(key, state, cid, body, mac, policy)
    if kind is _MAINTENANCE_OR_TEST:
        return _maintenance_or_test(key, state, payg, cid, body, mac, policy)
    return _extended(key, state, cid, body, mac, policy)


def decode(symbols: str) -> tuple[int, SmallType, int, int]:
    """(cid, type, body, mac) of a well-formed frame, with the obfuscation removed."""
    bits = int(symbols.translate(_AS_BASE4), 4)  # each key its 2-bit value, read in C
    mac = bits & 0xFFF
    # prng(mac as 2 big-endian bytes)'s first two bytes, read big-endian: the PRNG's 64-bit
    # value is little-endian, so they are its low byte, then its second byte.
    pad = siphash24(KEY_00, _u16_seed_message(mac))
    head = bits >> 12 ^ ((pad & 0xFF) << 8 | pad >> 8 & 0xFF)
    return head >> 10, _SMALL_TYPES[head >> 8 & 3], head & 0xFF, mac


_u16_seed_message = struct.Struct(">xH").pack
"""The PRNG's message for the small protocol's seed: a zero byte and the MAC, big-endian."""


def _mac_check(key: bytes, kind: SmallType, body: int, mac: int) -> Callable[[int], bool]:
    return lambda id_: small_mac(key, id_, kind, body) == mac


def _add(
    key: bytes,
    state: NexusState,
    payg: PaygState,
    cid: int,
    body: int,
    mac: int,
    policy: NexusPolicy,
) -> Verdict:
    id_, refused = rules.admit(state, cid, mac, small_mac, key, _ADD_CREDIT, body, policy)
    if refused is not None:
        return refused
    action, what = _add_action(body)
    return rules.add_credit(state, payg, id_, action, what, policy)


@lru_cache(maxsize=256)
def _add_action(increment: int) -> tuple[Action, str]:
    """A small ADD's action and description by increment (256 of them; actions are values)."""
    if increment == UNLOCK:
        # Increment 255 of the ADD type unlocks, with ADD's id rules (UnlockSmallMessage).
        return Unlock(), "unlock"
    days = days_for(ADD_DAYS, increment)
    assert days is not None  # every ADD increment below 255 has a row
    return AddCredit(days * SECONDS_PER_DAY), f"add {days} d"


def _set_action(increment: int) -> tuple[Action | None, str]:
    """What a SET increment asks of the credit (None: only the restricted flag changes)."""
    if increment == UNLOCK:
        return Unlock(), "unlock"
    if increment == SET_LOCK:
        return SetCredit(0), "lock"
    if increment == SET_CLEAR_RESTRICTED:
        return None, "clear restricted flag"
    days = days_for(SET_DAYS, increment)
    if days is None:
        # A reserved increment: the firmware's day table answers 0, so credit goes to 0.
        return SetCredit(0), f"reserved increment {increment}: set 0 d"
    return SetCredit(days * SECONDS_PER_DAY), f"set {days} d"


def _set(
    key: bytes, state: NexusState, cid: int, body: int, mac: int, policy: NexusPolicy
) -> Verdict:
    if policy.strict and body in SET_RESERVED:
        return invalid(state, f"reserved SET increment {body}")
    id_ = infer_id(state, cid)
    refused = rules.gate(state, id_, _mac_check(key, _SET_CREDIT, body, mac), policy)
    if refused is not None:
        return refused
    action, what = _set_action(body)
    clear = body == SET_CLEAR_RESTRICTED
    return rules.set_credit(state, id_, action, what, clear_restricted=clear, policy=policy)


def _maintenance_or_test(
    key: bytes,
    state: NexusState,
    payg: PaygState,
    cid: int,
    body: int,
    mac: int,
    policy: NexusPolicy,
) -> Verdict:
    # These codes are not replay-protected: the same code is valid for the device's whole
    # life. The id field is not inferred; it enters the MAC as sent (the backend sends 0).
    if policy.strict and cid != 0:
        return invalid(state, f"maintenance/test code with id {cid}, the backend sends 0")
    function = body & ~MAINTENANCE_BIT
    maintenance = body & MAINTENANCE_BIT != 0
    if maintenance and function > WipeTarget.IDS:
        return invalid(state, f"maintenance function {function} does not exist")
    if not maintenance and function > TEST_OQC:
        return invalid(state, f"test function {function} does not exist")
    mac_key = key if maintenance else KEY_FF
    if small_mac(mac_key, cid, SmallType.MAINTENANCE_OR_TEST, body) != mac:
        return invalid(state, "mac mismatch")
    if maintenance:
        return rules.wipe(state, WipeTarget(function), "maintenance")
    if function == TEST_SHORT:
        return rules.short_test(state, payg)
    return rules.qc_test(state, payg, rules.QC_LONG_SECONDS, policy)


def _extended(
    key: bytes, state: NexusState, cid: int, body: int, mac: int, policy: NexusPolicy
) -> Verdict:
    # 26 passthrough bits = cid:6 + body:8 + mac:12 = app:1 ext_type:3 trunc_id:2 inc:8 mac:12.
    app, ext_type, trunc_id, increment = cid >> 5, cid >> 2 & 7, cid & 3, body
    if app != 1:
        return invalid(state, "passthrough application not supported")
    if ext_type != EXTENDED_SET_CREDIT_CLEAR_RESTRICTED:
        return invalid(state, f"extended type {ext_type} does not exist")
    reserved = increment in SET_RESERVED or increment == SET_CLEAR_RESTRICTED
    if policy.strict and reserved:
        return invalid(state, f"reserved SET increment {increment}")
    low, high = window_bounds(state)
    first = low + (trunc_id - low) % 4
    for id_ in range(first, min(high, MAX_MESSAGE_ID) + 1, 4):
        if is_set(state, id_):
            continue
        if extended_mac(key, id_, ext_type, increment, trunc_id) == mac:
            action, what = _set_action(increment)
            if increment == SET_CLEAR_RESTRICTED:
                # The extended path has no special case for 253: the day table answers 0.
                action, what = SetCredit(0), f"reserved increment {increment}: set 0 d"
            masked = replace(mask_below(state, id_ + 1), restricted=False)
            return applied(masked, action, f"extended {what} and clear restricted flag, id {id_}")
    # A replay lands here too: its id is used, so the device answers INVALID, not DUPLICATE.
    return invalid(state, "no unused window id matches the extended mac")
