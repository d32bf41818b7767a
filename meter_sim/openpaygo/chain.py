"""The OpenPAYGO Token code chain: the code for count n+1 is a keyed hash of the code for n.

Standard (9-digit) and extended (12-digit) tokens differ only in how a code is packed for
SipHash, how the 64-bit hash is folded back into a code, and where the value lives; one
`TokenFormat` describes each so the validator has a single code path.

A token for count n is the chain code n with its low digits replaced by the encoded value,
so the validator compares only the high part (`code // value_modulus`) of each chain code.
Walking the chain is the whole cost of validation (one SipHash per count, `count + 65` of
them for an invalid token), so the high parts are memoised per (format, key, start): the
start depends on the typed value, and meters see the same few values again and again. A
memoised chain grows in place as a device's count grows (`Chain`), so the next token costs
the hashes of the new counts only, never a copy of the walk so far.
"""

from __future__ import annotations

import struct
import threading
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

_pack_high = struct.Struct("<I").pack
_unpack_high = struct.Struct("<I").unpack_from


class Chain:
    """One memoised chain: the high parts of the codes for counts 0..n, grown in place.

    High parts are below 2**20 in both formats and stored as packed u32s in a `bytearray`,
    so growing is an append (amortised O(1), never a copy of what was walked) and finding a
    high part is one C-speed `bytearray.find`. A chain only ever grows, under its own lock;
    readers see a prefix that never changes.
    """

    __slots__ = ("_code", "_lock", "_raw", "counted", "fmt", "key")

    def __init__(self, fmt: TokenFormat, key: bytes, start: int) -> None:
        self.fmt = fmt
        self.key = key
        self._raw = bytearray(_pack_high(start // fmt.value_modulus))
        self._code = start
        """The full code at the last walked count (the chain goes on from it)."""
        self._lock = threading.Lock()
        self.counted = 0
        """How many of its high parts the memo's bound has accounted for."""

    def __len__(self) -> int:
        """Counts walked: 0..len-1."""
        return len(self._raw) >> 2

    def high(self, count: int) -> int:
        """The high part (`code // value_modulus`) of the code at `count` (walked already)."""
        if not 0 <= count < len(self):
            raise IndexError(f"count {count} is not walked (0..{len(self) - 1})")
        value: int = _unpack_high(self._raw, count << 2)[0]
        return value

    def find(self, high: int, first: int, last: int) -> int:
        """The lowest count in first..last (walked already) with this high part, or -1."""
        raw, pattern, end = self._raw, _pack_high(high), (last + 1) << 2
        at = raw.find(pattern, first << 2, end)
        while at & 3 and at > 0:  # a match across two entries: look on from the next one
            at = raw.find(pattern, (at | 3) + 1, end)
        return at >> 2 if at >= 0 else -1

    def walk_to(self, last: int) -> None:
        """Walk on (one SipHash a count) until count `last` is known."""
        with self._lock:
            missing = last + 1 - len(self)
            if missing <= 0:
                return
            raw, code, key = self._raw, self._code, self.key
            step, modulus = self.fmt.step, self.fmt.value_modulus
            for _ in range(missing):
                code = step(key, code)
                raw += _pack_high(code // modulus)
            self._code = code


_ChainKey = tuple[str, bytes, int]
_chains: OrderedDict[_ChainKey, Chain] = OrderedDict()
_held = 0
_lock = threading.Lock()
"""Guards `_chains` and `_held` (a chain's own walk runs under the chain's lock only)."""


def code_chain(fmt: TokenFormat, key: bytes, start: int, last: int) -> Chain:
    """The memoised chain from `start` (count 0), walked at least to count `last`."""
    ident = (fmt.name, key, start)
    with _lock:
        found = _chains.get(ident)
        if found is None:
            found = _chains[ident] = Chain(fmt, key, start)
        else:
            _chains.move_to_end(ident)
    if len(found) > last and found.counted:
        return found
    found.walk_to(last)
    _account(ident, found)
    return found


def _account(ident: _ChainKey, found: Chain) -> None:
    """Count a chain's growth against the bound, evicting the least recently used."""
    global _held
    with _lock:
        if _chains.get(ident) is not found:
            return  # evicted meanwhile: nothing of it is held
        _held += len(found) - found.counted
        found.counted = len(found)
        while len(_chains) > 1 and (len(_chains) > CACHE_CHAINS or _held > CACHE_CODES):
            _, evicted = _chains.popitem(last=False)
            _held -= evicted.counted


def memoised_codes() -> int:
    """How many high parts the memo holds (tests and benchmarks read it)."""
    with _lock:
        return _held


def clear_chain_cache() -> None:
    """Forget every memoised chain (benchmarks use it to measure the cold cost)."""
    global _held
    with _lock:
        _chains.clear()
        _held = 0
