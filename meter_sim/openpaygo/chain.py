"""The OpenPAYGO Token code chain: the code for count n+1 is a keyed hash of the code for n.

Standard (9-digit) and extended (12-digit) tokens differ only in how a code is packed for
SipHash, how the 64-bit hash is folded back into a code, and where the value lives; one
`TokenFormat` describes each so the validator has a single code path.

A token for count n is the chain code n with its low digits replaced by the encoded value,
so the validator compares only the high part (`code // value_modulus`) of each chain code.
Walking the chain is the whole cost of validation (one SipHash per count, `count + 65` of
them for an invalid token), so the high parts are memoised per (format, key, start): the
start depends on the typed value, and meters see the same few values again and again.
"""

from __future__ import annotations

import struct
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from meter_sim.siphash import siphash24

_pack_twice = struct.Struct(">LL").pack
_pack_u64 = struct.Struct(">Q").pack


def _fold_standard(h: int) -> int:
    # 64 -> 32 bits by xor of the halves, drop the two low bits, squeeze into 9 digits.
    x = ((h >> 32) ^ (h & 0xFFFF_FFFF)) >> 2
    return x - 73_741_825 if x > 999_999_999 else x


def next_standard(key: bytes, code: int) -> int:
    """The 9-digit code after `code`: SipHash of the big-endian u32, written twice."""
    return _fold_standard(siphash24(key, _pack_twice(code, code)))


def next_extended(key: bytes, code: int) -> int:
    """The 12-digit code after `code`: SipHash of the big-endian u64, top 40 bits."""
    x = siphash24(key, _pack_u64(code)) >> 24
    return x - 99_511_627_777 if x > 999_999_999_999 else x


def derive_starting_code(key: bytes) -> int:
    """The starting code a server derives when none was provisioned: hash of the key itself."""
    return _fold_standard(siphash24(key, key))


@dataclass(frozen=True, slots=True)
class TokenFormat:
    """One token family: its typed lengths, value field and chain step."""

    name: str
    max_digits: int
    """Longest typed form on a 0-9 keypad (leading zeros may be missing)."""
    restricted_digits: int
    """Exact typed length on a 1-4 keypad: two bits per key."""
    value_modulus: int
    """The value is `(token - starting_code) mod value_modulus`, read from the low digits."""
    max_code: int
    step: Callable[[bytes, int], int]


STANDARD = TokenFormat("standard", 9, 15, 1_000, 999_999_999, next_standard)
EXTENDED = TokenFormat("extended", 12, 20, 1_000_000, 999_999_999_999, next_extended)

CACHE_CHAINS = 256
"""At most this many chains (one per format, key and start code) stay memoised..."""
CACHE_CODES = 1 << 21
"""...holding at most this many high parts in all (4 bytes each: 8 MiB)."""

_ChainKey = tuple[str, bytes, int]
# Each memoised chain: the high parts for counts 0..n, and the full code at count n to
# extend from. Entries are replaced whole, never mutated, so concurrent callers only ever
# see a complete chain.
_chains: OrderedDict[_ChainKey, tuple[array[int], int]] = OrderedDict()
_held = 0
_lock = threading.Lock()


def chain_highs(fmt: TokenFormat, key: bytes, start: int, last: int) -> array[int]:
    """High parts of the chain codes for counts 0..`last` (maybe more), from `start`.

    Count 0 is `start` itself; the result may be longer than asked for. Callers must not
    modify it.
    """
    global _held
    ident = (fmt.name, key, start)
    with _lock:
        cached = _chains.get(ident)
        if cached is not None:
            _chains.move_to_end(ident)
    if cached is None:
        highs = array("L", (start // fmt.value_modulus,))
        code = start
    else:
        old, code = cached
        if len(old) > last:
            return old
        highs = array("L", old)
    modulus = fmt.value_modulus
    step = fmt.step
    for _ in range(last + 1 - len(highs)):
        code = step(key, code)
        highs.append(code // modulus)
    with _lock:
        replaced = _chains.pop(ident, None)
        _held += len(highs) - (len(replaced[0]) if replaced else 0)
        _chains[ident] = (highs, code)
        while len(_chains) > 1 and (len(_chains) > CACHE_CHAINS or _held > CACHE_CODES):
            _, (evicted, _) = _chains.popitem(last=False)
            _held -= len(evicted)
    return highs


def clear_chain_cache() -> None:
    """Forget every memoised chain (benchmarks use it to measure the cold cost)."""
    global _held
    with _lock:
        _chains.clear()
        _held = 0
