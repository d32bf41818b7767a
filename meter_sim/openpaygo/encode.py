"""OpenPAYGO tokens as a server issues them, on the validator's memoised code chain.

A token for count n is chain code n with its low digits replaced by the value's base, where
the chain starts at the starting code with those digits replaced: so issuing is a walk of n
hashes from a start that depends on the value. `openpaygo.generate_token` walks it from 0 on
every call; this walks only the counts not yet memoised for that (key, start) (`chain`), so
a device's next token costs a hash or two however high its count has grown. The test suite
proves the tokens identical to `openpaygo` 0.6.3's.

A token carries only the high digits of its chain code, so two counts of one chain can share
a token (about one pair in a million). A device takes the lowest count that matches, so a
token whose count shares its high digits with an earlier count is read as that count: an ADD
at count 6 sharing count 5's digits is a SET there (the credit left is lost), one sharing an
earlier ADD's digits is the same token twice. A platform asks for `unambiguous` tokens: such
counts are skipped (the next count of the same kind is used; a device accepts jumps).
"""

from __future__ import annotations

from meter_sim.errors import EncodeError
from meter_sim.openpaygo.chain import (
    EXTENDED,
    STANDARD,
    Chain,
    TokenFormat,
    code_chain,
    derive_starting_code,
)
from meter_sim.openpaygo.token import DISABLE_VALUE, SYNC_VALUE, Kind

__all__ = ["Kind", "issue_token", "next_count"]

MAX_STANDARD_VALUE = 995
"""996..999 are reserved, DISABLE and SYNC."""
MAX_EXTENDED_VALUE = 999_999
MAX_SKIPS = 8
"""Ambiguous counts skipped for one token at most (each happens about once in a million)."""


def next_count(count: int, kind: Kind) -> int:
    """The count a token of `kind` takes after the device's `count`: ADD even, the rest odd."""
    odd = count % 2 == 1
    if kind is Kind.ADD:
        return count + 1 if odd else count + 2
    return count + 2 if odd else count + 1


def issue_token(
    secret_key: bytes,
    starting_code: int,
    count: int,
    kind: Kind,
    value: int = 0,
    *,
    restricted: bool = False,
    extended: bool = False,
    unambiguous: bool = False,
) -> tuple[int, str]:
    """(the new count, the token as typed) for the device whose last count is `count`.

    With `unambiguous`, the new count is the first of its kind (parity) whose token no lower
    count of the chain also makes, so a device reads it at that count and nowhere else.

    `value` is in the device's units (days times its time divider) for ADD and SET; DISABLE
    and SYNC take none. A starting code of 0 is derived from the key, as `openpaygo` does.
    Restricted tokens are written with keys 1-4, two bits a key.
    """
    if not isinstance(secret_key, bytes) or len(secret_key) != 16:
        raise EncodeError("OpenPAYGO secret_key must be 16 bytes")
    fmt = EXTENDED if extended else STANDARD
    if not isinstance(starting_code, int) or not 0 <= starting_code <= fmt.max_code:
        raise EncodeError(f"starting code must be 0..{fmt.max_code}, got {starting_code!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise EncodeError(f"count must be a non-negative integer, got {count!r}")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise EncodeError(f"value must be a non-negative integer, got {value!r}")
    if kind in (Kind.ADD, Kind.SET):
        top = MAX_EXTENDED_VALUE if extended else MAX_STANDARD_VALUE
        if value > top:
            raise EncodeError(f"value {value} is above the {fmt.name} maximum of {top}")
    elif value:
        raise EncodeError(f"a {kind.value} token carries no value, got {value}")
    elif extended:
        raise EncodeError(f"extended tokens have no {kind.value}")
    else:
        value = DISABLE_VALUE if kind is Kind.DISABLE else SYNC_VALUE
    start = starting_code or derive_starting_code(secret_key)
    modulus = fmt.value_modulus
    base = (start % modulus + value) % modulus
    new = next_count(count, kind)
    origin = start - start % modulus + base
    walked = code_chain(fmt, secret_key, origin, new)
    if unambiguous:
        new, walked = _first_unambiguous(fmt, secret_key, origin, new, walked)
    code = walked.high(new) * modulus + base
    if restricted:
        keys = fmt.restricted_digits
        return new, "".join(str((code >> shift & 3) + 1) for shift in range(2 * keys - 2, -1, -2))
    return new, f"{code:0{fmt.max_digits}d}"


def _first_unambiguous(
    fmt: TokenFormat, key: bytes, origin: int, count: int, walked: Chain
) -> tuple[int, Chain]:
    """`count`, or the next count of its parity, whose high digits no lower count shares."""
    for _ in range(MAX_SKIPS):
        if walked.find(walked.high(count), 0, count - 1) < 0:
            return count, walked
        count += 2
        walked = code_chain(fmt, key, origin, count)
    raise EncodeError(f"{MAX_SKIPS} ambiguous counts in a row up to {count}: is the chain short?")
