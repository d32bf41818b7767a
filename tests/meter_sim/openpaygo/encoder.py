"""The server side for the tests: tokens issued by the reference `openpaygo` encoder.

Only the tests import `openpaygo`; the validator under test never does.
"""

from __future__ import annotations

from dataclasses import dataclass

from openpaygo import TokenType
from openpaygo.token_encode import OpenPAYGOTokenEncoder

from meter_sim.actions import Action, AddCredit, SetCredit, Unlock
from meter_sim.openpaygo import Kind

DOCS_KEY = bytes.fromhex("a29ab82edc5fbbc41ec9530f6dac86b1")
"""The key of the OpenPAYGO docs' quick test and the C example (never for production)."""
DOCS_STARTING_CODE = 123456789
PROCEDURE_KEY = bytes.fromhex("bc41ec9530f6dac86b1a29ab82edc5fb")
"""The key of upstream's full test procedure (device `XXX`)."""
PROCEDURE_STARTING_CODE = 516959010

MODE = {
    Kind.ADD: TokenType.ADD_TIME,
    Kind.SET: TokenType.SET_TIME,
    Kind.DISABLE: TokenType.DISABLE_PAYG,
    Kind.SYNC: TokenType.COUNTER_SYNC,
}
RAW_VALUE = {Kind.DISABLE: 998, Kind.SYNC: 999}
"""The value DISABLE and SYNC tokens carry; ADD and SET carry days."""


@dataclass(frozen=True, slots=True)
class Device:
    key: bytes = DOCS_KEY
    starting_code: int = DOCS_STARTING_CODE
    restricted: bool = False


def encode(
    device: Device, kind: Kind, value: int, count: int, *, extended: bool = False
) -> tuple[int, str]:
    """Issue a token as a server at `count` would: `(new_count, token)`.

    `kind` picks the count's parity (the encoder's mode) and `value` is the raw value, so a
    DISABLE token is `encode(d, Kind.DISABLE, 998, n)` and upstream's U3 "ADD 998" is
    `encode(d, Kind.ADD, 998, n)`.
    """
    generate = (
        OpenPAYGOTokenEncoder.generate_extended_token
        if extended
        else OpenPAYGOTokenEncoder.generate_standard_token
    )
    new_count, token = generate(
        starting_code=device.starting_code,
        key=device.key,
        value=value,
        count=count,
        mode=MODE[kind],
        restricted_digit_set=device.restricted,
    )
    return int(new_count), str(token)


def token_at(device: Device, kind: Kind, value: int, n: int, *, extended: bool = False) -> str:
    """The token of `kind` at exactly count `n` (its parity must suit the kind)."""
    new_count, token = encode(device, kind, value, n - 1, extended=extended)
    assert new_count == n, f"{kind} cannot land on count {n}"
    return token


def action_for(kind: Kind, value: int, divider: int = 1) -> Action | None:
    """What the spec says an accepted token does (§2.5 device actions)."""
    seconds = value * 86_400 // divider
    return {
        Kind.ADD: AddCredit(seconds),
        Kind.SET: SetCredit(seconds),
        Kind.DISABLE: Unlock(),
        Kind.SYNC: None,
    }[kind]
