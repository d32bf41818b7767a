"""Sync frame codecs: one uplink frame per request body, one downlink frame per response body.

Layout (msgpack arrays, positional; see docs/sync-protocol.md):

    uplink   [version, handset, cursor, base_seq, base_at, [[d_seq, kind, d_at, *fields], ...]]
    downlink [version, server_ms, done, rejected, first_entry, [[entry_kind, *fields], ...], more]

Keys travel as deltas (``d_seq`` from the previous op, ``d_at`` from ``base_at``); ``done`` is a
flat list of (gap, run-length) pairs of sequence numbers the server has finished with, and
``rejected`` a flat list of (seq, reason) pairs among them. A body is either the frame itself or,
when that is smaller, a msgpack ``bin`` holding the zlib-deflated frame.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TypeGuard

import msgpack

from .errors import FrameError
from .keycodes import LAYOUTS, KeycodeFormat, keycode_text
from .ops import (
    MAX_SEQ,
    MAX_TIME,
    U32,
    Field,
    Kind,
    Operation,
    check_field,
    check_int,
    fits,
)

VERSION = 1
MAX_BODY_BYTES = 256 * 1024
MAX_INFLATED_BYTES = 1024 * 1024
MIN_DEFLATE_BYTES = 64
"""Frames shorter than this go as they are, deflate not even tried: its 8 bytes of framing
leave next to nothing to win, and trying costs each side ~10 µs per exchange."""
MAX_OPS = 1024
MAX_ENTRIES = 1024
MAX_MS = 2**53
MAX_REASON = 127
MAX_ROW = 64
_REF = Field("ref", str, 1, 40)
_NAME = Field("name", str, 1, 64)


class Reason(IntEnum):
    """Why the server refused one operation (the rest of the batch is unaffected).

    Numbers are only ever appended (docs/sync-protocol.md, Schema evolution): a number this
    code does not know decodes as a pseudo-member named ``reason_N``, so an older handset
    parks the operation under that name instead of refusing the whole answer."""

    CONFLICT = 1  # same (handset, seq) was applied earlier with different content
    NOT_IN_STOCK = 2  # the device is not in this agent's stock
    UNKNOWN_CUSTOMER = 3
    UNKNOWN_PLAN = 4
    UNKNOWN_ACCOUNT = 5  # no sale of this device by this agent
    AMOUNT_TOO_LOW = 6  # a down payment that buys less than one day
    ALREADY_SOLD = 7
    UNKNOWN_KIND = 8  # an operation kind the platform does not know (a newer handset)
    BAD_FIELD = 9  # a field missing, of the wrong type or out of range (d_at included)
    ESCROW_RELEASED_TWICE = 10  # an offline sale's escrowed code was accounted for another sale
    ESCROW_REVOKED = 11  # an offline sale released a code revoked before it was released

    @classmethod
    def _missing_(cls, value: object) -> Reason | None:
        if type(value) is not int or not 1 <= value <= MAX_REASON:
            return None
        member = int.__new__(cls, value)
        member._name_ = f"REASON_{value}"
        member._value_ = value
        return member


class EntryKind(IntEnum):
    KEYCODE = 0
    PAYMENT = 1
    STOCK = 2
    PLAN = 3
    ESCROW = 4
    ESCROW_REVOKED = 5


@dataclass(frozen=True)
class Keycode:
    """A keycode for ``device``; ``op_seq`` is the operation that paid for it (0 if none)."""

    op_seq: int
    device: int
    format: KeycodeFormat
    number: int
    credit_s: int  # credit the meter grants when it applies this code

    @property
    def text(self) -> str:
        return keycode_text(self.format, self.number)


@dataclass(frozen=True)
class Payment:
    """A payment the platform confirmed for a device account (e.g. mobile money)."""

    device: int
    amount: int
    ref: str


@dataclass(frozen=True)
class Stock:
    """A device entering (``present``) or leaving the agent's stock."""

    device: int
    format: KeycodeFormat
    present: bool


@dataclass(frozen=True)
class Plan:
    plan: int
    name: str
    price_per_day: int


@dataclass(frozen=True)
class Escrow:
    """An activation code the handset keeps sealed for an offline sale of ``device``: an
    add-credit code at the device's reserved message id / count ``reserved_id``."""

    device: int
    reserved_id: int
    format: KeycodeFormat
    number: int
    credit_s: int


@dataclass(frozen=True)
class EscrowRevoked:
    """The escrowed code (``device``, ``reserved_id``) is revoked: the handset drops it."""

    device: int
    reserved_id: int


@dataclass(frozen=True)
class Unknown:
    """An entry of a kind newer than this code: kept in sequence, otherwise ignored."""

    kind: int


Entry = Keycode | Payment | Stock | Plan | Escrow | EscrowRevoked | Unknown


@dataclass(frozen=True)
class BadOperation:
    """An operation whose key decodes but whose kind or fields do not: the server refuses it
    alone (``reason``) and applies the rest of the batch. ``content`` is the canonical bytes of
    what was sent, so a replay gets the same answer and other content a ``conflict``."""

    seq: int
    kind: int  # as sent, or -1 when it was not an integer
    reason: Reason
    content: bytes
    detail: str


@dataclass(frozen=True)
class UplinkFrame:
    handset: int
    cursor: int  # number of the last downlink entry the handset has stored
    ops: tuple[Operation, ...]
    bad: tuple[BadOperation, ...] = ()  # decoded only; a handset never sends these


@dataclass(frozen=True)
class DownlinkFrame:
    server_ms: int
    acked: tuple[int, ...]
    rejected: tuple[tuple[int, Reason], ...]
    first_entry: int  # number of entries[0]; entries are consecutive
    entries: tuple[Entry, ...]
    more: bool  # the server holds further entries past this frame

    @property
    def last_entry(self) -> int:
        return self.first_entry + len(self.entries) - 1


# -- envelope ---------------------------------------------------------------------------------


def _seal(frame: list[object], compress: bool = True) -> bytes:
    raw = msgpack.packb(frame)
    if not compress or len(raw) < MIN_DEFLATE_BYTES:
        return raw
    packed = msgpack.packb(zlib.compress(raw, 9))
    return packed if len(packed) < len(raw) else raw


def _open(body: bytes, version: int) -> list[object]:
    if not isinstance(body, bytes | bytearray | memoryview):
        raise FrameError("body is not bytes")
    if len(body) > MAX_BODY_BYTES:
        raise FrameError(f"body of {len(body)} bytes exceeds {MAX_BODY_BYTES}", code="too_large")
    obj = _unpack(body)
    if isinstance(obj, bytes):
        inflater = zlib.decompressobj()
        try:
            raw = inflater.decompress(obj, MAX_INFLATED_BYTES)
        except zlib.error as exc:
            raise FrameError(f"compressed frame does not inflate: {exc}") from exc
        if inflater.unconsumed_tail or not inflater.eof:
            raise FrameError("compressed frame is truncated or inflates too far", code="too_large")
        obj = _unpack(raw)
    if not isinstance(obj, list) or not obj:
        raise FrameError("frame is not a msgpack array")
    if obj[0] != version or type(obj[0]) is not int:
        raise FrameError(f"frame version {obj[0]!r} is not {version}", code="unsupported_version")
    return obj


def _unpack(data: bytes | bytearray | memoryview) -> object:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises ValueError, ExtraData, FormatError, StackError...
        raise FrameError(f"body is not one msgpack object: {type(exc).__name__}: {exc}") from exc


def _list(value: object, what: str, limit: int, min_len: int = 0) -> list[object]:
    if not isinstance(value, list):
        raise FrameError(f"{what}: expected array, got {type(value).__name__}", code="bad_field")
    if not min_len <= len(value) <= limit:
        raise FrameError(
            f"{what}: {len(value)} items outside [{min_len}, {limit}]", code="bad_field"
        )
    return value


def _fields(frame: list[object], count: int, what: str) -> list[object]:
    if len(frame) < count:
        raise FrameError(f"{what} has {len(frame)} fields, needs {count}")
    return frame[:count]  # trailing fields are a newer minor schema: ignored


# -- uplink -----------------------------------------------------------------------------------


_Encoded = tuple[tuple[Operation, ...], int, int, bool, int, bytes]
_last_uplink: _Encoded | None = None
"""The last uplink body made, with what it was made of: a handset's sync sizes its batch
(`SyncCore.fit`) and its adapter then encodes the same frame to send it (two deflates a poll,
a third of its sync core). The same ops tuple (`is`: immutable) with the same header gives
the same bytes."""


def encode_uplink(frame: UplinkFrame, *, compress: bool = True, version: int = VERSION) -> bytes:
    """The body; deflated when that is strictly smaller, unless `compress` is False."""
    global _last_uplink
    ops = frame.ops
    last = _last_uplink
    if (
        last is not None
        and last[0] is ops
        and last[1] == frame.handset
        and last[2] == frame.cursor
        and last[3] is compress
        and last[4] == version
    ):
        return last[5]
    base_seq = ops[0].seq if ops else 0
    base_at = min((op.at for op in ops), default=0)
    rows: list[object] = []
    prev = base_seq
    for op in ops:
        rows.append([op.seq - prev, int(op.kind), op.at - base_at, *op.fields])
        prev = op.seq
    body = _seal([version, frame.handset, frame.cursor, base_seq, base_at, rows], compress)
    _last_uplink = (ops, frame.handset, frame.cursor, compress, version, body)
    return body


def decode_uplink(body: bytes, version: int = VERSION) -> UplinkFrame:
    """The frame, or FrameError for a frame-level fault (envelope, header fields, an op row
    that is not an array or whose ``d_seq`` breaks the key order). A fault inside one
    operation (kind, ``d_at``, fields) refuses that operation only: it lands in ``bad``."""
    _, handset, cursor, base_seq, base_at, rows = _fields(_open(body, version), 6, "uplink")
    handset = check_int(handset, 1, U32, "handset")
    cursor = check_int(cursor, 0, MAX_SEQ, "cursor")
    seq = check_int(base_seq, 0, MAX_SEQ, "base_seq")
    base = check_int(base_at, 0, MAX_TIME, "base_at")
    ops: list[Operation] = []
    bad: list[BadOperation] = []
    for i, row in enumerate(_list(rows, "ops", MAX_OPS)):
        if not isinstance(row, list) or not row:
            raise FrameError(f"ops[{i}] is not a non-empty array [d_seq, kind, d_at, ...]")
        lo, hi = (0, 0) if i == 0 else (1, MAX_SEQ)  # messages formatted only to refuse
        d_seq = row[0]
        seq += d_seq if fits(d_seq, lo, hi) else check_int(d_seq, lo, hi, f"ops[{i}].d_seq")
        if not 1 <= seq <= MAX_SEQ:
            check_int(seq, 1, MAX_SEQ, f"ops[{i}] seq (base_seq + d_seq)")
        try:
            ops.append(_operation(seq, base, row, i))
        except _Refused as refused:
            kind = row[1] if len(row) > 1 and type(row[1]) is int and row[1] <= MAX_SEQ else -1
            at = base + row[2] if len(row) > 2 and type(row[2]) is int else None
            if at is not None and not 0 <= at <= MAX_TIME:
                at = None  # past any time msgpack can carry: refused as bad_field all the same
            content = msgpack.packb([*row[1:2], at, *row[3:]])
            bad.append(BadOperation(seq, kind, refused.reason, content, refused.detail))
    return UplinkFrame(handset, cursor, tuple(ops), tuple(bad))


_KINDS = {int(k): k for k in Kind}


class _Refused(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _operation(seq: int, base_at: int, row: list[object], i: int) -> Operation:
    """One op row (``ops[i]``) past its key; _Refused names the reason the server refuses it
    with. Each check's message is formatted only when it fails (this runs per operation)."""
    try:
        if len(row) < 3 or len(row) > MAX_ROW:
            raise FrameError(f"ops[{i}]: {len(row)} items, need 3..{MAX_ROW}")
        number, d_at, most = row[1], row[2], MAX_TIME - base_at
        if not fits(number, 0, MAX_SEQ):
            number = check_int(number, 0, MAX_SEQ, f"ops[{i}].kind")
        kind = _KINDS.get(number)
        if kind is None:
            raise _Refused(Reason.UNKNOWN_KIND, f"ops[{i}]: unknown operation kind {number}")
        d_at = d_at if fits(d_at, 0, most) else check_int(d_at, 0, most, f"ops[{i}].d_at")
        return Operation.make(seq, kind, base_at + d_at, *row[3:])
    except FrameError as exc:
        raise _Refused(Reason.BAD_FIELD, exc.detail) from exc


# -- downlink ---------------------------------------------------------------------------------


def runs(seqs: Iterable[int]) -> list[int]:
    """Sorted distinct seqs as flat (gap from previous run end, length) pairs."""
    out: list[int] = []
    end = 0
    for seq in sorted(set(seqs)):
        if out and seq == end + 1:
            out[-1] += 1
        else:
            out += [seq - end, 1]
        end = seq
    return out


def unruns(flat: Sequence[object], what: str) -> list[int]:
    if len(flat) % 2:
        raise FrameError(f"{what}: odd length run list", code="bad_field")
    seqs: list[int] = []
    end = 0
    for i in range(0, len(flat), 2):
        start = end + check_int(flat[i], 1, MAX_SEQ, f"{what}[{i}]")
        length = check_int(flat[i + 1], 1, MAX_OPS, f"{what}[{i + 1}]")
        seqs.extend(range(start, start + length))
        end = start + length - 1
        if end > MAX_SEQ:
            raise FrameError(f"{what}: seq beyond {MAX_SEQ}", code="bad_field")
    if len(seqs) > MAX_OPS:
        raise FrameError(f"{what}: more than {MAX_OPS} seqs", code="bad_field")
    return seqs


def entry_to_row(entry: Entry) -> list[object]:
    match entry:
        case Keycode():
            return [
                EntryKind.KEYCODE,
                entry.op_seq,
                entry.device,
                int(entry.format),
                entry.number,
                entry.credit_s,
            ]
        case Payment():
            return [EntryKind.PAYMENT, entry.device, entry.amount, entry.ref]
        case Stock():
            return [EntryKind.STOCK, entry.device, int(entry.format), int(entry.present)]
        case Plan():
            return [EntryKind.PLAN, entry.plan, entry.name, entry.price_per_day]
        case Escrow():
            return [
                EntryKind.ESCROW,
                entry.device,
                entry.reserved_id,
                int(entry.format),
                entry.number,
                entry.credit_s,
            ]
        case EscrowRevoked():
            return [EntryKind.ESCROW_REVOKED, entry.device, entry.reserved_id]
        case Unknown():
            return [entry.kind]


_MAX_FORMAT = max(KeycodeFormat)
_MAX_ENTRY_KIND = max(EntryKind)  # both read per entry decoded: an Enum's max() walks it


def _fmt(value: object, what: str) -> KeycodeFormat:
    return KeycodeFormat(check_int(value, 0, _MAX_FORMAT, what))


def _code(fmt: object, number: object, credit: object, what: str) -> tuple[KeycodeFormat, int, int]:
    """A code's format, wire number (within its layout) and credit seconds, checked."""
    keycode_format = _fmt(fmt, f"{what}.format")
    return (
        keycode_format,
        check_int(number, 0, LAYOUTS[keycode_format].limit - 1, f"{what}.number"),
        check_int(credit, 0, MAX_TIME, f"{what}.credit_s"),
    )


_FORMATS = {int(f): f for f in KeycodeFormat}
_LIMITS = {f: LAYOUTS[f].limit - 1 for f in KeycodeFormat}


def _text_fits(value: object, spec: Field) -> TypeGuard[str]:
    return type(value) is str and spec.lo <= len(value) <= spec.hi


def _entry_fast(row: object) -> Entry | None:
    """The usual entries (keycode, payment, stock, plan), well formed, decoded without building
    field names (a handset decodes every entry of every sync); None: ask `entry_from_row`,
    which decodes the rest and names what it refuses."""
    if type(row) is not list or not 1 <= len(row) <= MAX_ROW or type(row[0]) is not int:
        return None
    kind = row[0]
    if kind == EntryKind.KEYCODE and len(row) >= 6:
        op_seq, device, fmt, number, credit = row[1:6]
        f = _FORMATS.get(fmt) if type(fmt) is int else None
        if (
            f is not None
            and fits(op_seq, 0, MAX_SEQ)
            and fits(device, 1, U32)
            and fits(number, 0, _LIMITS[f])
            and fits(credit, 0, MAX_TIME)
        ):
            return Keycode(op_seq, device, f, number, credit)
    elif kind == EntryKind.STOCK and len(row) >= 4:
        device, fmt, present = row[1:4]
        f = _FORMATS.get(fmt) if type(fmt) is int else None
        if f is not None and fits(device, 1, U32) and fits(present, 0, 1):
            return Stock(device, f, bool(present))
    elif kind == EntryKind.PAYMENT and len(row) >= 4:
        device, amount, ref = row[1:4]
        if fits(device, 1, U32) and fits(amount, 0, U32) and _text_fits(ref, _REF):
            return Payment(device, amount, ref)
    elif kind == EntryKind.PLAN and len(row) >= 4:
        plan, name, price = row[1:4]
        if fits(plan, 1, U32) and _text_fits(name, _NAME) and fits(price, 1, U32):
            return Plan(plan, name, price)
    return None


def entry_from_row(row: object, what: str = "entry") -> Entry:
    """An entry from its row (a stored or received one), or FrameError naming `what`."""
    return _entry_fast(row) or entry_from_row_slowly(row, what)


def entry_from_row_slowly(row: object, what: str = "entry") -> Entry:
    """`entry_from_row` field by field, naming the one it refuses (the reference the fast
    path is tested against)."""
    items = _list(row, what, MAX_ROW, 1)
    kind = check_int(items[0], 0, 127, f"{what}.kind")
    if kind > _MAX_ENTRY_KIND:
        return Unknown(kind)  # schema evolution: a newer server's entry kind
    match EntryKind(kind):
        case EntryKind.KEYCODE:
            op_seq, device, fmt, number, credit = _fields(items[1:], 5, what)
            return Keycode(
                check_int(op_seq, 0, MAX_SEQ, f"{what}.op_seq"),
                check_int(device, 1, U32, f"{what}.device"),
                *_code(fmt, number, credit, what),
            )
        case EntryKind.PAYMENT:
            device, amount, ref = _fields(items[1:], 3, what)
            return Payment(
                check_int(device, 1, U32, f"{what}.device"),
                check_int(amount, 0, U32, f"{what}.amount"),
                str(check_field(_REF, ref, f"{what}.ref")),
            )
        case EntryKind.STOCK:
            device, fmt, present = _fields(items[1:], 3, what)
            return Stock(
                check_int(device, 1, U32, f"{what}.device"),
                _fmt(fmt, f"{what}.format"),
                bool(check_int(present, 0, 1, f"{what}.present")),
            )
        case EntryKind.PLAN:
            plan, name, price = _fields(items[1:], 3, what)
            return Plan(
                check_int(plan, 1, U32, f"{what}.plan"),
                str(check_field(_NAME, name, f"{what}.name")),
                check_int(price, 1, U32, f"{what}.price_per_day"),
            )
        case EntryKind.ESCROW:
            device, reserved, fmt, number, credit = _fields(items[1:], 5, what)
            return Escrow(
                check_int(device, 1, U32, f"{what}.device"),
                check_int(reserved, 0, U32, f"{what}.reserved_id"),
                *_code(fmt, number, credit, what),
            )
        case EntryKind.ESCROW_REVOKED:
            device, reserved = _fields(items[1:], 2, what)
            return EscrowRevoked(
                check_int(device, 1, U32, f"{what}.device"),
                check_int(reserved, 0, U32, f"{what}.reserved_id"),
            )


def encode_downlink(
    frame: DownlinkFrame, *, compress: bool = True, version: int = VERSION
) -> bytes:
    """The body; deflated when that is strictly smaller, unless `compress` is False."""
    rejected: list[int] = []
    for seq, reason in sorted(frame.rejected):
        rejected += [seq, int(reason)]
    done = runs([*frame.acked, *(seq for seq, _ in frame.rejected)])
    rows = [entry_to_row(entry) for entry in frame.entries]
    return _seal(
        [version, frame.server_ms, done, rejected, frame.first_entry, rows, int(frame.more)],
        compress,
    )


def decode_downlink(body: bytes, version: int = VERSION) -> DownlinkFrame:
    fields = _fields(_open(body, version), 7, "downlink")
    _, server_ms, done_runs, rejected_flat, first_entry, rows, more = fields
    done = unruns(_list(done_runs, "done", 2 * MAX_OPS), "done")
    flat = _list(rejected_flat, "rejected", 2 * MAX_OPS)
    if len(flat) % 2:
        raise FrameError("rejected: odd length", code="bad_field")
    rejected: dict[int, Reason] = {}
    for i in range(0, len(flat), 2):
        seq = check_int(flat[i], 1, MAX_SEQ, f"rejected[{i}]")
        code = check_int(flat[i + 1], 1, MAX_REASON, f"rejected[{i + 1}]")
        rejected[seq] = Reason(code)
    if not set(rejected) <= set(done):
        raise FrameError("rejected seqs missing from done", code="bad_field")
    entries = tuple(
        _entry_fast(row) or entry_from_row_slowly(row, f"entries[{i}]")
        for i, row in enumerate(_list(rows, "entries", MAX_ENTRIES))
    )
    return DownlinkFrame(
        check_int(server_ms, 0, MAX_MS, "server_ms"),
        tuple(seq for seq in done if seq not in rejected),
        tuple(sorted(rejected.items())),
        check_int(first_entry, 1, MAX_SEQ, "first_entry"),
        entries,
        bool(check_int(more, 0, 1, "more")),
    )
