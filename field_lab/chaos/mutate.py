"""Our own byte mutator, for when atheris (libFuzzer) cannot be installed: stacked edits of a
corpus entry in the style of libFuzzer's (bit flips, interesting bytes and numbers, inserted,
erased and copied chunks, dictionary tokens, crossover), seeded so a run replays exactly.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

INTERESTING_BYTES = bytes([0, 1, 0x7F, 0x80, 0xFF, 0x20, 0x0A, 0x0D]) + b'0159*#"{}[],:'
INTERESTING_NUMBERS = (
    b"0",
    b"-1",
    b"1",
    b"255",
    b"65536",
    b"4294967295",
    b"4294967296",
    b"9007199254740993",
    b"18446744073709551616",
    b"1e309",
    b"-0.0",
    b"NaN",
    b"99999999999999999999999999999999",
)
TOKENS = (
    b"null",
    b"true",
    b"[]",
    b"{}",
    b'"',
    b"\\u0000",
    b"\xc0",  # msgpack nil
    b"\xc3",  # msgpack true
    b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff",  # msgpack u64 max
    b"\xd3\x80\x00\x00\x00\x00\x00\x00\x00",  # msgpack i64 min
    b"\xdd\x00\x01\x00\x00",  # msgpack array32 of 65536
    b"\xc4\x10",  # msgpack bin8 of 16
    b"\xd4\x01\x00",  # msgpack fixext1
    b"\xff\xfe",
    b"PGNV",
)
_DIGITS = re.compile(rb"-?[0-9]+")


class Mutator:
    """Mutates corpus entries; `max_len` bounds every result."""

    def __init__(self, rng: random.Random, max_len: int = 4096) -> None:
        self.rng = rng
        self.max_len = max_len
        self._ops: tuple[Callable[[bytearray, Sequence[bytes]], None], ...] = (
            self._flip,
            self._set_byte,
            self._interesting_byte,
            self._insert,
            self._erase,
            self._copy,
            self._number,
            self._token,
            self._crossover,
            self._truncate,
        )

    def mutate(self, data: bytes, corpus: Sequence[bytes]) -> bytes:
        out = bytearray(data)
        for _ in range(self.rng.randint(1, 4)):
            self.rng.choice(self._ops)(out, corpus)
        return bytes(out[: self.max_len])

    def _at(self, out: bytearray, extra: int = 0) -> int:
        return self.rng.randrange(len(out) + extra) if out or extra else 0

    def _flip(self, out: bytearray, _: Sequence[bytes]) -> None:
        if out:
            i = self._at(out)
            out[i] ^= 1 << self.rng.randrange(8)

    def _set_byte(self, out: bytearray, _: Sequence[bytes]) -> None:
        if out:
            out[self._at(out)] = self.rng.randrange(256)

    def _interesting_byte(self, out: bytearray, _: Sequence[bytes]) -> None:
        if out:
            out[self._at(out)] = self.rng.choice(INTERESTING_BYTES)

    def _insert(self, out: bytearray, _: Sequence[bytes]) -> None:
        i = self._at(out, 1)
        out[i:i] = self.rng.randbytes(self.rng.randint(1, 8))

    def _erase(self, out: bytearray, _: Sequence[bytes]) -> None:
        if out:
            i = self._at(out)
            del out[i : i + self.rng.randint(1, max(1, len(out) // 4))]

    def _copy(self, out: bytearray, _: Sequence[bytes]) -> None:
        if out:
            i = self._at(out)
            chunk = out[i : i + self.rng.randint(1, 32)]
            j = self._at(out, 1)
            out[j:j] = chunk * self.rng.choice((1, 1, 2, 8))

    def _number(self, out: bytearray, _: Sequence[bytes]) -> None:
        found = list(_DIGITS.finditer(out))
        if found:
            m = self.rng.choice(found)
            out[m.start() : m.end()] = self.rng.choice(INTERESTING_NUMBERS)

    def _token(self, out: bytearray, _: Sequence[bytes]) -> None:
        i = self._at(out, 1)
        token = self.rng.choice(TOKENS)
        if self.rng.random() < 0.5:
            out[i:i] = token
        else:
            out[i : i + len(token)] = token

    def _crossover(self, out: bytearray, corpus: Sequence[bytes]) -> None:
        other = self.rng.choice(corpus) if corpus else b""
        if other:
            i, j = self._at(out, 1), self.rng.randrange(len(other))
            out[i:] = other[j : j + self.rng.randint(1, len(other))]

    def _truncate(self, out: bytearray, _: Sequence[bytes]) -> None:
        if out:
            del out[self._at(out) :]
