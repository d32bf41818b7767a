"""Keycode text formats: how a keycode travels as one small integer and is shown to the customer.

Each format is an alphabet, a length and a frame (prefix/suffix). On the wire a keycode is
``(format, n)`` where ``n`` is its digits read as a base-``len(alphabet)`` number, so a 14-digit
Nexus full keycode costs 9 bytes instead of 16 and a 14-key small keycode 5 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from .errors import FrameError


class KeycodeFormat(IntEnum):
    NEXUS_FULL = 0
    NEXUS_SMALL = 1
    OPENPAYGO = 2
    OPENPAYGO_RESTRICTED = 3


@dataclass(frozen=True)
class Layout:
    alphabet: str
    length: int
    prefix: str
    suffix: str
    symbols: frozenset[str] = field(init=False, repr=False, compare=False)
    as_digits: dict[int, int] = field(init=False, repr=False, compare=False)
    """`str.translate` table: each symbol to the digit of its value (base <= 10)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbols", frozenset(self.alphabet))
        object.__setattr__(
            self, "as_digits", str.maketrans(self.alphabet, "0123456789"[: len(self.alphabet)])
        )

    @property
    def limit(self) -> int:
        limit: int = len(self.alphabet) ** self.length
        return limit


LAYOUTS: dict[KeycodeFormat, Layout] = {
    KeycodeFormat.NEXUS_FULL: Layout("0123456789", 14, "*", "#"),
    KeycodeFormat.NEXUS_SMALL: Layout("2345", 14, "1", ""),
    KeycodeFormat.OPENPAYGO: Layout("0123456789", 9, "", ""),
    KeycodeFormat.OPENPAYGO_RESTRICTED: Layout("1234", 15, "", ""),
}


def pack_keycode(fmt: KeycodeFormat, text: str) -> int:
    """Keycode text (spaces allowed) to its wire integer; FrameError if it does not fit `fmt`."""
    layout = LAYOUTS[fmt]
    body = text.replace(" ", "")
    if not (body.startswith(layout.prefix) and body.endswith(layout.suffix)):
        raise FrameError(f"{fmt.name}: keycode {text!r} lacks its frame", code="bad_keycode")
    digits = body[len(layout.prefix) : len(body) - len(layout.suffix)]
    if len(digits) != layout.length or not layout.symbols.issuperset(digits):
        raise FrameError(f"{fmt.name}: keycode {text!r} has wrong digits", code="bad_keycode")
    # Each symbol as the digit of its value, read by int() in the alphabet's base (C speed).
    return int(digits.translate(layout.as_digits), len(layout.alphabet))


def keycode_text(fmt: KeycodeFormat, value: int) -> str:
    """The text a customer types (no spaces), from the wire integer."""
    layout = LAYOUTS[fmt]
    if not 0 <= value < layout.limit:
        raise FrameError(f"{fmt.name}: keycode number {value} out of range", code="bad_keycode")
    base = len(layout.alphabet)
    digits = []
    for _ in range(layout.length):
        value, digit = divmod(value, base)
        digits.append(layout.alphabet[digit])
    return layout.prefix + "".join(reversed(digits)) + layout.suffix


def display(text: str, group: int = 3) -> str:
    """Group a keycode in threes for reading aloud (``*747 951 838 274 41#``)."""
    head = text[:1] if text.startswith("*") else ""
    tail = text[-1:] if text.endswith("#") else ""
    core = text[len(head) : len(text) - len(tail)]
    return head + " ".join(core[i : i + group] for i in range(0, len(core), group)) + tail
