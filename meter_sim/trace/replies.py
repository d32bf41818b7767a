"""Device answers as data: parse a line-protocol answer, print it back, compare two.

The schema is a table (which words are positional, which fields are seconds or integers, which
are informational and never compared), so a meter, a trace file and a diff all agree on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from meter_sim.line_protocol import format_seconds

Value = str | int | float
"""A field value: seconds are floats (`math.inf` while unlocked), flags are ints."""

POSITIONAL: Mapping[str, tuple[str, ...]] = {
    "HELLO": ("device",),
    "KEY": ("outcome",),
    "CODE": ("outcome",),
    "TIME": ("time",),
    "STATUS": (),
    "POWER": (),
    "RESET": (),
}
"""Per verb, the names of the words before the `name=value` fields."""

SECONDS = frozenset({"time", "credit"})
INTEGERS = frozenset({"line-protocol", "restricted", "limited"})
INFORMATIONAL = frozenset({("HELLO", "device"), ("ERR", "message")})
"""(verb, field) pairs that describe rather than decide: firmware may word them differently."""

MAX_NAME, MAX_WORD, MAX_MESSAGE = 32, 64, 200
MAX_INTEGER = 2**31
"""Bounds a trace file holds a field to; an answer beyond them is not well formed."""

ERR = "ERR"
RESERVED = frozenset({"verb", "error"})
"""Names a field may not take: the trace format uses them to say what kind of answer it is."""


class ReplyError(ValueError):
    """A line that is not a well-formed answer; the message says which word is wrong."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer: `OK <verb> ...` or `ERR <code> <message>` (then `verb` is "ERR")."""

    verb: str
    fields: tuple[tuple[str, Value], ...] = ()

    @property
    def ok(self) -> bool:
        return self.verb != ERR

    def get(self, name: str) -> Value | None:
        return dict(self.fields).get(name)

    def compared(self) -> dict[str, Value]:
        return {k: v for k, v in self.fields if (self.verb, k) not in INFORMATIONAL}


@dataclass(frozen=True, slots=True)
class FieldDiff:
    field: str
    expected: Value | None
    got: Value | None


def _seconds(word: str, name: str) -> float:
    if word == "inf":
        return math.inf
    try:
        value = float(word)
    except ValueError:
        raise ReplyError(f"{name}={word!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise ReplyError(f"{name}={word!r} is not a number of seconds")
    return value


def typed(name: str, word: str) -> Value:
    """The typed value of field `name` written as `word` on the wire."""
    if len(name) > MAX_NAME or len(word) > MAX_WORD:
        raise ReplyError(f"field {name[:20]!r} is longer than a trace carries")
    if not word:
        raise ReplyError(f"field {name[:20]!r} has no value ({name[:20]}= and nothing after)")
    if name in SECONDS:
        return _seconds(word, name)
    if name in INTEGERS:
        if not word.isdigit() or len(word) > 10 or int(word) > MAX_INTEGER:
            raise ReplyError(f"{name}={word[:20]!r} is not an integer in 0..{MAX_INTEGER}")
        return int(word)
    return word


def parse_reply(line: str) -> Reply:
    """Parse one answer line (without its newline); `ReplyError` says what is wrong."""
    words = line.split()
    if not words or words[0] not in ("OK", ERR):
        raise ReplyError(f"an answer starts with OK or ERR, got {line[:40]!r}")
    if len(words) < 2:
        raise ReplyError(f"{words[0]} without a verb or code")
    if words[0] == ERR:
        if len(words[1]) > MAX_WORD:
            raise ReplyError("an ERR code longer than a trace carries")
        message = " ".join(words[2:])[:MAX_MESSAGE].rstrip()  # informational, not compared
        return Reply(ERR, (("error", words[1]), ("message", message)))
    verb = words[1].upper()
    if verb not in POSITIONAL:
        raise ReplyError(f"unknown verb {verb[:16]!r} in an OK answer")
    names = POSITIONAL[verb]
    fields: list[tuple[str, Value]] = []
    positional = 0
    for word in words[2:]:
        name, eq, text = word.partition("=")
        if not eq:
            if positional >= len(names):
                raise ReplyError(f"unexpected word {word[:20]!r} in an OK {verb} answer")
            name, text = names[positional], word
            positional += 1
        elif not name or name in RESERVED or any(k == name for k, _ in fields):
            raise ReplyError(f"bad or repeated field {word[:20]!r} in an OK {verb} answer")
        fields.append((name, typed(name, text)))
    if positional < len(names):
        raise ReplyError(f"OK {verb} answer lacks its {names[positional]!r}")
    return Reply(verb, tuple(fields))


def _word(value: Value) -> str:
    if isinstance(value, float):
        return format_seconds(value)
    return str(value)


def format_reply(reply: Reply) -> str:
    """The wire form of `reply`, as the line protocol writes it."""
    if not reply.ok:
        return f"ERR {reply.get('error')} {reply.get('message') or ''}".rstrip()
    names = POSITIONAL.get(reply.verb, ())
    words = ["OK", reply.verb]
    for name, value in reply.fields:
        words.append(_word(value) if name in names else f"{name}={_word(value)}")
    return " ".join(words)


def diff(expected: Reply, got: Reply) -> tuple[FieldDiff, ...]:
    """The compared fields that differ; empty when the answers are the same for a replay."""
    if expected.verb != got.verb:
        return (FieldDiff("verb", expected.verb, got.verb),)
    want, have = expected.compared(), got.compared()
    names = list(want) + [k for k in have if k not in want]
    return tuple(
        FieldDiff(name, want.get(name), have.get(name))
        for name in names
        if want.get(name) != have.get(name)
    )


def show(value: Value | None) -> str:
    return "(absent)" if value is None else _word(value)
