"""What was typed, as a token number: format by length, restricted keypads by two bits a key.

The reference library routes by `len(str(int(token)))` and decodes keys 5-9 and 0 on a
1-4 keypad as if they were 1-4; a device only ever sees keys it has, so anything else here
is simply not a token.
"""

from __future__ import annotations

from dataclasses import dataclass

from meter_sim.openpaygo.chain import EXTENDED, STANDARD, TokenFormat

_DECIMAL = frozenset("0123456789")
_RESTRICTED = frozenset("1234")


@dataclass(frozen=True, slots=True)
class Typed:
    """A well-formed token: its family and its number (the 9- or 12-digit code)."""

    fmt: TokenFormat
    code: int


def parse_digits(digits: object, *, restricted: bool) -> Typed | str:
    """The token typed as `digits`, or the reason it cannot be one. Never raises.

    On a 0-9 keypad up to 9 keys are a standard token and 10-12 an extended one (a leading
    zero may be missing: servers did not always pad). On a 1-4 keypad a standard token is
    exactly 15 keys and an extended one exactly 20, each key carrying two bits, MSB first.
    """
    if not isinstance(digits, str):
        return f"not text: {type(digits).__name__}"
    digits = digits.replace(" ", "")
    if not digits:
        return "empty token"
    if restricted:
        return _parse_restricted(digits)
    if not _DECIMAL.issuperset(digits):
        return "not a token: only keys 0-9 are valid"
    if len(digits) <= STANDARD.max_digits:
        return Typed(STANDARD, int(digits))
    if len(digits) <= EXTENDED.max_digits:
        return Typed(EXTENDED, int(digits))
    return f"{len(digits)} digits: a token has at most {EXTENDED.max_digits}"


def _parse_restricted(digits: str) -> Typed | str:
    if not _RESTRICTED.issuperset(digits):
        return "not a token: only keys 1-4 are valid on this keypad"
    for fmt in (STANDARD, EXTENDED):
        if len(digits) == fmt.restricted_digits:
            code = 0
            for key in digits:
                code = code << 2 | (ord(key) - ord("1"))
            if code > fmt.max_code:
                return f"not a token: {code} is beyond the {fmt.name} code range"
            return Typed(fmt, code)
    return (
        f"{len(digits)} keys: a token on this keypad has "
        f"{STANDARD.restricted_digits} or {EXTENDED.restricted_digits}"
    )
