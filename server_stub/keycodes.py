"""Keycode issuing through the field's reference encoders (nexus-keycode, openpaygo).

One function per question: how many days of credit a protocol can express without granting
more than was paid for (`creditable_days`), and the keycode that adds them (`issue`). Message
ids (Nexus) and counts (OpenPAYGO) come in and the next one goes out, so the caller can keep
them strictly in order per device inside its transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from nexus_keycode.protocols.full import FullMessage
from nexus_keycode.protocols.small import AddCreditSmallMessage
from openpaygo import TokenType, generate_token

from agent_client.protocol.keycodes import KeycodeFormat, pack_keycode

from .errors import SetupError

DAY_S = 86_400
FULL_MAX_HOURS = 99_999
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


@dataclass(frozen=True)
class Issued:
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
            return min(days, FULL_MAX_HOURS // 24)
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
    if days < 1 or creditable_days(secret.format, days, secret.time_divider) != days:
        raise ValueError(f"{days} days is not creditable by one {secret.format.name} keycode")
    if secret.format is KeycodeFormat.NEXUS_FULL:
        message = FullMessage.add_credit(id_=next_id, hours=days * 24, secret_key=secret.key)
        text, following = message.to_keycode(separator=""), next_id + 1
    elif secret.format is KeycodeFormat.NEXUS_SMALL:
        small = AddCreditSmallMessage(id_=next_id, days=days, secret_key=secret.key)
        text, following = small.to_keycode(separator=""), next_id + 1
    else:
        following, text = generate_token(
            secret_key=secret.key.hex(),
            count=next_id,
            value=days,
            token_type=TokenType.ADD_TIME,
            starting_code=secret.starting_code,
            value_divider=secret.time_divider,
            restricted_digit_set=secret.format is KeycodeFormat.OPENPAYGO_RESTRICTED,
        )
    return Issued(text, pack_keycode(secret.format, text), days, days * DAY_S, following)
