"""Handset operations: the three things an agent records, as positional, typed field tuples.

An operation's identity is (handset, seq); its content is (kind, at, fields). Field schemas are
data: one tuple of `Field` per kind. Schema evolution: fields are only ever appended (with a
default so older senders stay valid), never reordered or retyped, and decoders ignore trailing
fields they do not know.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import IntEnum
from typing import TypeGuard

import msgpack

from .errors import FrameError

U32 = 2**32 - 1
MAX_SEQ = 2**53
MAX_TIME = 2**40


class Kind(IntEnum):
    REGISTER_CUSTOMER = 0
    RECORD_SALE = 1
    RECORD_PAYMENT = 2


@dataclass(frozen=True)
class Field:
    """One positional field: its name, Python type and bounds (length for str)."""

    name: str
    type: type[int] | type[str]
    lo: int
    hi: int


FieldValue = int | str

SCHEMAS: dict[Kind, tuple[Field, ...]] = {
    Kind.REGISTER_CUSTOMER: (Field("name", str, 1, 64), Field("phone", str, 3, 20)),
    Kind.RECORD_SALE: (
        Field("customer", int, 1, MAX_SEQ),  # seq of this handset's register_customer op
        Field("device", int, 1, U32),
        Field("plan", int, 1, U32),
        Field("down_payment", int, 0, U32),
    ),
    Kind.RECORD_PAYMENT: (Field("account", int, 1, U32), Field("amount", int, 1, U32)),
}
"""The fields every operation of a kind carries."""

APPENDED: dict[Kind, tuple[Field, ...]] = {
    # an offline sale: the id/count of the escrowed code it released (absent: an online sale)
    Kind.RECORD_SALE: (Field("reserved_id", int, 0, U32),),
}
"""Fields appended later (schema evolution): optional, in order, each absent meaning the old
behaviour; an operation without them keeps its old canonical bytes."""


def schema(kind: Kind) -> tuple[Field, ...]:
    """Every field `kind` may carry: the required ones, then the appended ones."""
    return SCHEMAS[kind] + APPENDED.get(kind, ())


_SCHEMA = {kind: schema(kind) for kind in SCHEMAS}
_REQUIRED = {kind: len(SCHEMAS[kind]) for kind in SCHEMAS}
_LABELS = {kind: tuple(f"{kind.name.lower()}.{f.name}" for f in _SCHEMA[kind]) for kind in SCHEMAS}
"""kind -> each field's name in error messages (`check_fields` runs per decoded operation)"""
_POSITION = {kind: {f.name: i for i, f in enumerate(schema(kind))} for kind in SCHEMAS}
"""kind -> field name -> its position (`Operation.field` is on the platform's hot path)"""


def fits(value: object, lo: int, hi: int) -> TypeGuard[int]:
    """Whether `value` passes `check_int` (to format its message only when it fails)."""
    return type(value) is int and lo <= value <= hi


def check_int(value: object, lo: int, hi: int, what: str) -> int:
    """An int (not a bool) within [lo, hi], or a FrameError naming the field."""
    if type(value) is not int:
        raise FrameError(f"{what}: expected int, got {type(value).__name__}", code="bad_field")
    if not lo <= value <= hi:
        raise FrameError(f"{what}: {value} outside [{lo}, {hi}]", code="bad_field")
    return value


def check_field(spec: Field, value: object, what: str) -> FieldValue:
    if spec.type is int:
        return check_int(value, spec.lo, spec.hi, what)
    if not isinstance(value, str):
        raise FrameError(f"{what}: expected str, got {type(value).__name__}", code="bad_field")
    if not spec.lo <= len(value) <= spec.hi:
        raise FrameError(
            f"{what}: length {len(value)} outside [{spec.lo}, {spec.hi}]", code="bad_field"
        )
    return value


def check_fields(kind: Kind, values: tuple[object, ...] | list[object]) -> tuple[FieldValue, ...]:
    """Validate the fields of `kind` (the required ones, then any appended ones present);
    extra trailing fields (a newer schema) are dropped.

    Well-formed fields (the platform's hot path: every operation of every exchange) are
    checked without building a field name; the first doubt goes the slow way, which names the
    field it refuses."""
    specs = _SCHEMA[kind]
    if len(values) >= _REQUIRED[kind]:
        taken = values[: len(specs)]
        for spec, value in zip(specs, taken, strict=False):
            if spec.type is int:
                if not fits(value, spec.lo, spec.hi):
                    break
            elif type(value) is not str or not spec.lo <= len(value) <= spec.hi:
                break
        else:
            return tuple(taken)  # type: ignore[arg-type]  # each one checked just above
    return check_fields_slowly(kind, values)


def check_fields_slowly(
    kind: Kind, values: tuple[object, ...] | list[object]
) -> tuple[FieldValue, ...]:
    """`check_fields` one field at a time, naming the one it refuses (the reference the fast
    path is tested against)."""
    required = len(SCHEMAS[kind])
    if len(values) < required:
        raise FrameError(
            f"{kind.name.lower()}: {len(values)} fields, need {required}", code="bad_field"
        )
    # zip stops at the shorter: absent appended fields, or unknown trailing ones dropped
    return tuple(
        check_field(spec, value, label)
        for spec, value, label in zip(_SCHEMA[kind], values, _LABELS[kind], strict=False)
    )


@dataclass(frozen=True)
class Operation:
    """One outbox operation, keyed by its per-handset sequence number."""

    seq: int
    kind: Kind
    at: int  # handset clock, unix seconds, when the agent recorded it
    fields: tuple[FieldValue, ...]

    @classmethod
    def make(cls, seq: int, kind: Kind, at: int, *values: object) -> Operation:
        """Build a validated operation (raises FrameError naming the bad field)."""
        check_int(seq, 1, MAX_SEQ, "seq")
        check_int(at, 0, MAX_TIME, "at")
        kind = kind if type(kind) is Kind else Kind(kind)
        return cls(seq, kind, at, check_fields(kind, values))

    def field(self, name: str) -> FieldValue:
        at = _POSITION[self.kind][name]  # KeyError for a name not in the kind
        if at >= len(self.fields):  # an appended field this operation does not carry
            raise KeyError(name)
        return self.fields[at]

    def get(self, name: str) -> FieldValue | None:
        """An appended field's value, None when this operation does not carry it (without
        raising: every online sale asks for the offline one's ``reserved_id``)."""
        at = _POSITION[self.kind].get(name)
        return None if at is None or at >= len(self.fields) else self.fields[at]

    def named(self) -> dict[str, FieldValue]:
        """The fields it carries, by name."""
        return {s.name: v for s, v in zip(schema(self.kind), self.fields, strict=False)}

    def content(self) -> bytes:
        """Canonical bytes of everything but the key; what the outbox freezes and dedup compares."""
        return msgpack.packb([int(self.kind), self.at, *self.fields])

    def digest(self) -> bytes:
        return hashlib.sha256(self.content()).digest()[:16]

    @classmethod
    def from_content(cls, seq: int, content: bytes) -> Operation:
        """Inverse of `content()` (used to reload frozen payloads from the outbox)."""
        try:
            items = msgpack.unpackb(content)
        except Exception as exc:  # msgpack raises several unrelated types on bad input
            raise FrameError(f"stored payload does not decode: {exc}") from exc
        if not isinstance(items, list) or len(items) < 2:
            raise FrameError("stored payload is not [kind, at, *fields]")
        kind = check_int(items[0], 0, max(Kind), "kind")
        return cls.make(seq, Kind(kind), items[1], *items[2:])
