"""The Nexus MACs and the obfuscation PRNG, all SipHash-2-4 over little-endian packed fields.

One call of `siphash24` each: a validation costs a handful of these, never a search over ids
(except the extended-small code, which tries at most 16).
"""

from __future__ import annotations

import struct

from meter_sim.errors import ConfigError
from meter_sim.siphash import siphash24

_BYTES = (bytes, bytearray)
KEY_00 = bytes(16)
"""Fixed key of the obfuscation PRNG and of the universal full-protocol factory codes."""
KEY_FF = b"\xff" * 16
"""Fixed key of the universal small-protocol test codes."""


def check_secret_key(secret_key: bytes) -> None:
    """A device key is exactly 16 bytes; anything else is a configuration error, not input."""
    if not isinstance(secret_key, _BYTES) or len(secret_key) != 16:
        raise ConfigError("Nexus secret_key must be 16 bytes")


def prng(seed: bytes) -> bytes:
    """Eight pseudorandom bytes from a seed of at most 4 bytes (iteration 0 only)."""
    return siphash24(KEY_00, b"\x00" + seed).to_bytes(8, "little")


_full_message = struct.Struct("<IBI").pack
_small_message = struct.Struct("<IBB").pack
"""Compiled once: `struct.pack(format, ...)` looks its format up in a cache on every call."""


u32_seed_message = struct.Struct("<xI").pack
"""The PRNG's message for a u32 seed: a zero byte (iteration 0) and the seed."""


def prng_u32(seed: int) -> bytes:
    """`prng(seed.to_bytes(4, "little"))` with its message made by one pack (a zero byte and
    the seed): the full protocol seeds the PRNG with its MAC on every code."""
    return siphash24(KEY_00, u32_seed_message(seed)).to_bytes(8, "little")


def full_mac(key: bytes, full_id: int, type_code: int, value: int) -> int:
    """The 6-digit full-protocol MAC: low 32 bits of SipHash, last six decimal digits."""
    return (siphash24(key, _full_message(full_id, type_code, value)) & 0xFFFFFFFF) % 1_000_000


def small_mac(key: bytes, full_id: int, type_code: int, body: int) -> int:
    """The 12-bit small-protocol MAC: the top 12 bits of SipHash."""
    return siphash24(key, _small_message(full_id, type_code, body)) >> 52


def extended_mac(key: bytes, full_id: int, ext_type: int, increment: int, trunc_id: int) -> int:
    """The 12-bit extended-small MAC over the id, type and the 10-bit body (trunc id, increment)."""
    return siphash24(key, struct.pack("<IBBB", full_id, ext_type, increment, trunc_id)) >> 52
