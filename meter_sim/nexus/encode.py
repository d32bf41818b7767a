"""Nexus keycodes as the backend issues them: the inverse of `full` and `small`.

The platform issues with these functions and the demo shows them; the test suite proves every
one identical to Angaza's reference encoder (`nexus-keycode` 1.5.1) on random messages, and
`make equivalence` does so on 100,000 of them. They share the MAC and PRNG formulas in `mac`
with the validator, nothing else: framing, obfuscation and the day tables run the other way.

Each function returns the code as typed, without separators: `*` 14 digits `#` (full) or `1`
and 14 keys of `2345` (small). Arguments a protocol cannot carry raise `EncodeError`, where
`nexus-keycode` raises (the equivalence checks that too).
"""

from __future__ import annotations

import struct

from meter_sim.errors import EncodeError
from meter_sim.nexus.full import ACTIVATION_DIGITS, UNLOCK_HOURS, FullType
from meter_sim.nexus.increments import (
    ADD_DAYS,
    SET_CLEAR_RESTRICTED,
    SET_DAYS,
    SET_LOCK,
    UNLOCK,
    increment_for,
)
from meter_sim.nexus.mac import (
    KEY_00,
    KEY_FF,
    check_secret_key,
    full_mac,
    prng,
    prng_u32,
    small_mac,
)
from meter_sim.nexus.rules import WipeTarget
from meter_sim.nexus.small import ALPHABET, MAINTENANCE_BIT, TEST_OQC, TEST_SHORT, SmallType

MAX_ID = 0xFFFF_FFFF
"""Both encoders take a 32-bit message id (the device infers it from its low 6 bits)."""
MAX_FULL_HOURS = 99_999
"""Five body digits; 99999 is the unlock flag of a SET."""
_pack_small_seed = struct.Struct(">H").pack


def _check_id(id_: int) -> int:
    if isinstance(id_, bool) or not isinstance(id_, int) or not 0 <= id_ <= MAX_ID:
        raise EncodeError(f"message id must be an integer 0..{MAX_ID}, got {id_!r}")
    return id_


def _key(secret_key: bytes) -> bytes:
    try:
        check_secret_key(secret_key)
    except ValueError as exc:
        raise EncodeError(str(exc)) from exc
    return bytes(secret_key)


# -- full protocol (12-key keypad) ------------------------------------------------------------


def full_activation(secret_key: bytes, id_: int, kind: FullType, body: int) -> str:
    """An obscured 14-digit activation code `T II BBBBB MMMMMM` (ADD, SET or WIPE).

    For WIPE the body is the target digit, which is also all the MAC covers.
    """
    key = _key(secret_key)
    _check_id(id_)
    if kind not in (FullType.ADD_CREDIT, FullType.SET_CREDIT, FullType.WIPE_STATE):
        raise EncodeError(f"the backend issues no activation code of type {kind!r}")
    if isinstance(body, bool) or not isinstance(body, int) or not 0 <= body <= MAX_FULL_HOURS:
        raise EncodeError(f"body must be an integer 0..{MAX_FULL_HOURS}, got {body!r}")
    mac = full_mac(key, id_, kind, body)
    clear = f"{int(kind)}{id_ & 0x3F:02d}{body:05d}"
    pad = prng_u32(mac)
    # each of the 8 clear digits plus its pad byte (8 bytes), mod 10, as ASCII (48 is "0")
    obscured = bytes(
        [48 + (c - 48 + p) % 10 for c, p in zip(clear.encode(), pad, strict=True)]
    ).decode()
    code = f"{obscured}{mac:06d}"
    assert len(code) == ACTIVATION_DIGITS
    return f"*{code}#"


def full_add_credit(secret_key: bytes, id_: int, hours: int) -> str:
    """ADD `hours` (0..99999) of credit."""
    return full_activation(secret_key, id_, FullType.ADD_CREDIT, hours)


def full_set_credit(secret_key: bytes, id_: int, hours: int) -> str:
    """SET the credit to `hours` (0..99999; 99999 unlocks, as `full_unlock`)."""
    return full_activation(secret_key, id_, FullType.SET_CREDIT, hours)


def full_unlock(secret_key: bytes, id_: int) -> str:
    """Unlock for good: a SET of 99999 hours."""
    return full_activation(secret_key, id_, FullType.SET_CREDIT, UNLOCK_HOURS)


def full_wipe(secret_key: bytes, id_: int, target: WipeTarget) -> str:
    """WIPE_STATE with a target digit (credit, credit and ids, ids, restricted flag)."""
    if not isinstance(target, WipeTarget):
        raise EncodeError(f"wipe target must be a WipeTarget, got {target!r}")
    return full_activation(secret_key, id_, FullType.WIPE_STATE, int(target))


def full_factory(kind: FullType) -> str:
    """A universal factory code: ALLOW_TEST (`*4 MMMMMM#`) or DISPLAY_PAYG_ID (`*6 MMMMMM#`)."""
    if kind not in (FullType.ALLOW_TEST, FullType.DISPLAY_PAYG_ID):
        raise EncodeError(f"no universal 7-digit factory code of type {kind!r}")
    return f"*{int(kind)}{full_mac(KEY_00, 0, kind, 0):06d}#"


def full_qc_test(minutes: int) -> str:
    """The universal factory QC code `*5 000 mm MMMMMM#` the firmware reads (0..99 minutes).

    nexus-keycode 1.5.1 emits a 7-digit form that no firmware accepts; its GitHub HEAD emits
    this one (`*500 060 694 509#` for 60 minutes).
    """
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 0 <= minutes <= 99:
        raise EncodeError(f"QC minutes must be an integer 0..99, got {minutes!r}")
    return f"*5000{minutes:02d}{full_mac(KEY_00, 0, FullType.QC_TEST, minutes):06d}#"


# -- small protocol (5-key keypad) ------------------------------------------------------------


def small_message(secret_key: bytes, id_: int, kind: SmallType, body: int) -> str:
    """`1` and 14 keys: `cid:6 type:2 body:8 MAC:12` with cid = `id_ & 0x3F`, 16 bits obscured."""
    key = _key(secret_key)
    _check_id(id_)
    if kind is SmallType.PASSTHROUGH:
        raise EncodeError("passthrough small messages carry no MAC; this encoder issues none")
    if isinstance(body, bool) or not isinstance(body, int) or not 0 <= body <= 0xFF:
        raise EncodeError(f"small body must be an integer 0..255, got {body!r}")
    mac = small_mac(key, id_, kind, body)
    head = ((id_ & 0x3F) << 10) | (int(kind) << 8) | body
    head ^= int.from_bytes(prng(_pack_small_seed(mac))[:2], "big")
    bits = head << 12 | mac
    return "1" + "".join(ALPHABET[bits >> shift & 3] for shift in range(26, -1, -2))


def _days(table_name: str, days: int) -> int:
    if isinstance(days, bool) or not isinstance(days, int):
        raise EncodeError(f"days must be an integer, got {days!r}")
    increment = increment_for(ADD_DAYS if table_name == "ADD" else SET_DAYS, days)
    if increment is None:
        limit = "1..405" if table_name == "ADD" else "0..960"
        raise EncodeError(f"a small {table_name} code carries {limit} days, not {days}")
    return increment


def small_add_credit(secret_key: bytes, id_: int, days: int) -> str:
    """ADD `days` (1..180 exact, 181..405 floored to a bucket of 3 the device rounds up)."""
    return small_message(secret_key, id_, SmallType.ADD_CREDIT, _days("ADD", days))


def small_unlock(secret_key: bytes, id_: int) -> str:
    """Unlock for good: ADD increment 255 (UnlockSmallMessage)."""
    return small_message(secret_key, id_, SmallType.ADD_CREDIT, UNLOCK)


def small_set_credit(secret_key: bytes, id_: int, days: int) -> str:
    """SET the credit to `days` (0 locks; 1..960 floored to the table's buckets).

    Refuses SET 1 day at an id whose low six bits are 63, as the backend does: that code would
    collide with a legacy test code; issue it at the next id instead.
    """
    increment = SET_LOCK if days == 0 and not isinstance(days, bool) else _days("SET", days)
    if id_ & 0x3F == 63 and days == 1:
        raise EncodeError(f"SET 1 day at id {id_} collides with a legacy test code; use id+1")
    return small_message(secret_key, id_, SmallType.SET_CREDIT, increment)


def small_set_unlock(secret_key: bytes, id_: int) -> str:
    """Unlock for good with a SET (increment 255)."""
    return small_message(secret_key, id_, SmallType.SET_CREDIT, UNLOCK)


def small_clear_restricted(secret_key: bytes, id_: int) -> str:
    """Clear the restricted flag: SET increment 253 (CustomCommandSmallMessage)."""
    return small_message(secret_key, id_, SmallType.SET_CREDIT, SET_CLEAR_RESTRICTED)


def small_maintenance(secret_key: bytes, target: WipeTarget) -> str:
    """Wipe credit, credit and ids, or ids; the same code for the device's whole life."""
    if not isinstance(target, WipeTarget) or target > WipeTarget.IDS:
        raise EncodeError(f"maintenance target must be CREDIT, CREDIT_AND_IDS or IDS: {target!r}")
    body = MAINTENANCE_BIT | int(target)
    return small_message(secret_key, 0, SmallType.MAINTENANCE_OR_TEST, body)


def small_test(function: int) -> str:
    """A universal test code: 0 the short test, 1 the OQC test (fixed FF key)."""
    if function not in (TEST_SHORT, TEST_OQC) or isinstance(function, bool):
        raise EncodeError(f"test function must be {TEST_SHORT} or {TEST_OQC}, got {function!r}")
    return small_message(KEY_FF, 0, SmallType.MAINTENANCE_OR_TEST, function)
