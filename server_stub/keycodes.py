"""Keycode issuing with the project's encoders (`meter_sim.nexus.encode`, `.openpaygo.encode`).

They are proven identical to the field's reference encoders (nexus-keycode, openpaygo) on
random messages by the test suite and `make equivalence`, and run on a C SipHash: a Nexus code
costs tens of microseconds instead of nexus-keycode's ~4 ms, and an OpenPAYGO token walks only
the counts its device's chain has not walked before.

One function per question: how many days of credit a protocol can express without granting
more than was paid for (`creditable_days`), and the keycode that adds them (`issue`). Message
ids (Nexus) and counts (OpenPAYGO) come in and the next one goes out, so the caller can keep
them strictly in order per device inside its transaction. An OpenPAYGO token may skip a count
(about once in a million): one whose token an earlier count also makes would be read by the
device as that earlier count (`meter_sim.openpaygo.encode`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from agent_client.protocol.keycodes import KeycodeFormat, pack_keycode
from meter_sim.nexus.encode import full_add_credit, small_add_credit
from meter_sim.openpaygo.encode import Kind, issue_token

from .errors import SetupError

DAY_S = 86_400
FULL_MAX_HOURS = 99_999
FULL_MAX_DAYS = FULL_MAX_HOURS // 24
SMALL_EXACT_DAYS = 180
SMALL_MAX_DAYS = 405
OPENPAYGO_MAX_VALUE = 995


@dataclass(frozen=True)
class DeviceSecret:
    format: KeycodeFormat
    key: bytes  # 16 bytes
    starting_code: int = 0  # OpenPAYGO only
    time_divider: int = 1  # OpenPAYGO only

    def __post_init__(self) -> None:
        if len(self.key) != 16:
            raise SetupError(f"device key must be 16 bytes, got {len(self.key)}")
        if not 1 <= self.time_divider <= 255:
            raise SetupError(f"time divider {self.time_divider} outside 1..255")
        opaygo = self.format in (KeycodeFormat.OPENPAYGO, KeycodeFormat.OPENPAYGO_RESTRICTED)
        # openpaygo treats a starting code of 0 as "derive one from the key"; devices do not
        lowest = 1 if opaygo else 0
        if not lowest <= self.starting_code < 10**9:
            raise SetupError(f"starting code {self.starting_code} outside {lowest}..999999999")


class Issued(NamedTuple):
    text: str
    number: int  # the wire form (agent_client.protocol.keycodes)
    days: int
    credit_s: int
    next_id: int  # message id (Nexus) or count (OpenPAYGO) for the device's next keycode


def creditable_days(fmt: KeycodeFormat, days: int, time_divider: int = 1) -> int:
    """The most days <= `days` one add-credit keycode of `fmt` can grant exactly."""
    if days <= 0:
        return 0
    match fmt:
        case KeycodeFormat.NEXUS_FULL:
            return min(days, FULL_MAX_DAYS)
        case KeycodeFormat.NEXUS_SMALL:
            # 1..180 exact; then 183, 186, ... 405 (the device credits the bucket's top value)
            if days <= SMALL_EXACT_DAYS:
                return days
            capped = min(days, SMALL_MAX_DAYS)
            return SMALL_EXACT_DAYS + (capped - SMALL_EXACT_DAYS) // 3 * 3
        case KeycodeFormat.OPENPAYGO | KeycodeFormat.OPENPAYGO_RESTRICTED:
            return min(days, OPENPAYGO_MAX_VALUE // time_divider)


def issue(secret: DeviceSecret, next_id: int, days: int) -> Issued:
    """An add-credit keycode for exactly `days` (which must be creditable)."""
    if secret.format is KeycodeFormat.NEXUS_FULL and 1 <= days <= FULL_MAX_DAYS:
        text = full_add_credit(secret.key, next_id, days * 24)
        # `*` 14 decimal digits `#`: the wire number is the digits (what pack_keycode
        # computes, without checking the frame of a code this encoder just made)
        return Issued(text, int(text[1:-1]), days, days * DAY_S, next_id + 1)
    if days < 1 or creditable_days(secret.format, days, secret.time_divider) != days:
        raise ValueError(f"{days} days is not creditable by one {secret.format.name} keycode")
    if secret.format is KeycodeFormat.NEXUS_SMALL:
        text, following = small_add_credit(secret.key, next_id, days), next_id + 1
    else:
        following, text = issue_token(
            secret.key,
            secret.starting_code,
            next_id,
            Kind.ADD,
            days * secret.time_divider,
            restricted=secret.format is KeycodeFormat.OPENPAYGO_RESTRICTED,
            unambiguous=True,  # a count sharing an earlier one's token would be read as that
        )
    return Issued(text, pack_keycode(secret.format, text), days, days * DAY_S, following)
