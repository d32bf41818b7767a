"""Keycode factories for meter tests: the backends' reference encoders."""

from __future__ import annotations

from nexus_keycode.protocols.full import FullMessage, FullMessageWipeFlags
from nexus_keycode.protocols.small import AddCreditSmallMessage, SetCreditSmallMessage
from openpaygo import TokenType, generate_token

KEY = bytes.fromhex("deadbeef1020304004030201feebdaed")
OTHER_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
OPAYGO_KEY_HEX = "a29ab82edc5fbbc41ec9530f6dac86b1"
OPAYGO_KEY = bytes.fromhex(OPAYGO_KEY_HEX)
OPAYGO_SC = 123456789
HOUR = 3600
DAY = 86400


def full_add(id_: int, hours: int, key: bytes = KEY) -> str:
    return str(FullMessage.add_credit(id_=id_, hours=hours, secret_key=key).to_keycode())


def full_set(id_: int, hours: int, key: bytes = KEY) -> str:
    return str(FullMessage.set_credit(id_=id_, hours=hours, secret_key=key).to_keycode())


def full_unlock(id_: int, key: bytes = KEY) -> str:
    return str(FullMessage.unlock(id_=id_, secret_key=key).to_keycode())


def full_wipe_ids(id_: int, key: bytes = KEY) -> str:
    flags = FullMessageWipeFlags.WIPE_IDS_ALL
    return str(FullMessage.wipe_state(id_=id_, flags=flags, secret_key=key).to_keycode())


def small_add(id_: int, days: int, key: bytes = KEY) -> str:
    return str(AddCreditSmallMessage(id_=id_, days=days, secret_key=key).to_keycode())


def small_set(id_: int, days: int, key: bytes = KEY) -> str:
    return str(SetCreditSmallMessage(id_=id_, days=days, secret_key=key).to_keycode())


def opaygo_token(count: int, value: int | None, kind: str = "ADD_TIME") -> tuple[int, str]:
    """Return (new server count, token) for the docs' sample device."""
    new_count, token = generate_token(
        secret_key=OPAYGO_KEY_HEX,
        count=count,
        value=value,
        token_type=getattr(TokenType, kind),
        starting_code=OPAYGO_SC,
    )
    return int(new_count), str(token)
