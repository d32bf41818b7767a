"""The meter's non-volatile image: what survives a power cut, and how it survives one.

An image is a run of blocks in the Nexus reference layout, `[u16 id LE][inner][u16 CRC LE]`
with CRC-16/CCITT-FALSE over id and inner:

    block 0x0000  KEYCODE_MAS   grace attempts u8, pad[3]                         (8 B)
    block 0x0001  KEYCODE_PRO   received[5], qc u8 (long<<4|short), pd u32,
                                custom flags u8 (bit0 restricted), pad u8          (16 B)
    block 0x0100  PAYG          credit-until f64, flags u8 (bit0 unlocked), pad[3],
                                clock f64 (device time of the write)               (24 B)
    block 0x0200  OPENPAYGO     count u32, used u32 (bit d = count-d used),
                                invalid count u16, pad u16, blocked-until f64      (24 B)

A Nexus meter stores MAS, PRO and PAYG; an OpenPAYGO meter stores OPENPAYGO and PAYG.

Atomicity comes from two slots: each save goes to the slot not holding the current image,
framed as `[b"PGNV"][u8 version][u8 kind][u16 payload len][u32 seq][payload][u16 CRC]`.
A write torn at any byte only spoils the slot being written; loading takes the valid slot
with the highest sequence number, so the result is the old image or the new one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from meter_sim.crc import crc16_ccitt_false
from meter_sim.credit import Credit
from meter_sim.errors import ConfigError, CorruptStateError
from meter_sim.nexus.state import NexusState
from meter_sim.openpaygo.state import TokenState
from meter_sim.ratelimit import EntryBlock
from meter_sim.storage import Storage

MAGIC = b"PGNV"
VERSION = 1
_HEADER = struct.Struct("<4sBBHI")
_CRC = struct.Struct("<H")

BLOCK_MAS = 0x0000
BLOCK_PRO = 0x0001
BLOCK_PAYG = 0x0100
BLOCK_OPENPAYGO = 0x0200

_MAS = struct.Struct("<B3x")
_PRO = struct.Struct("<5sBIBx")
_PAYG = struct.Struct("<dB3xd")
_OPENPAYGO = struct.Struct("<IIH2xd")
_USED_SPAN = 31


class Kind(IntEnum):
    """Which device an image belongs to; an image never loads into another kind."""

    NEXUS_FULL = 1
    NEXUS_SMALL = 2
    OPENPAYGO = 3

    @property
    def label(self) -> str:
        """The name a user types (`--protocol`), so messages never show a bare number."""
        return self.name.lower().replace("_", "-")


def kind_label(value: int) -> str:
    """`Kind.label` for a byte read from a medium, which may name no kind at all."""
    try:
        return Kind(value).label
    except ValueError:
        return f"unknown kind {value}"


class NVStatus(StrEnum):
    FRESH = "fresh"
    """Nothing stored yet: factory defaults."""
    OK = "ok"
    """Both slots readable, or one slot never written."""
    RECOVERED = "recovered"
    """One slot was torn or corrupt; the other one was used."""
    CORRUPT = "corrupt"
    """Data present but no valid slot: factory defaults apply (replay protection is lost)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a meter persists."""

    credit: Credit
    clock: float
    nexus: NexusState | None = None
    grace: int = 0
    token: TokenState | None = None
    block: EntryBlock | None = None

    def same_state(self, other: Snapshot | None) -> bool:
        """Equal apart from the clock reading: writes are skipped when nothing changed."""
        return other is not None and encode_payload(self, 0.0) == encode_payload(other, 0.0)


def _block(block_id: int, inner: bytes) -> bytes:
    head = struct.pack("<H", block_id) + inner
    return head + _CRC.pack(crc16_ccitt_false(head))


def encode_payload(snap: Snapshot, clock: float | None = None) -> bytes:
    out = []
    if snap.nexus is not None:
        n = snap.nexus
        out.append(_block(BLOCK_MAS, _MAS.pack(snap.grace)))
        flags = n.received.to_bytes(3, "little") + b"\x00\x00"
        qc = (n.qc_long << 4) | n.qc_short
        out.append(_block(BLOCK_PRO, _PRO.pack(flags, qc, n.pd, int(n.restricted))))
    c = snap.credit
    when = snap.clock if clock is None else clock
    out.append(_block(BLOCK_PAYG, _PAYG.pack(c.until, int(c.unlocked), when)))
    if snap.token is not None:
        t = snap.token
        used = 0
        for x in t.used:
            d = t.count - x
            if 0 <= d < _USED_SPAN:
                used |= 1 << d
        block = snap.block or EntryBlock()
        inner = _OPENPAYGO.pack(t.count, used, block.invalid_count, block.blocked_until)
        out.append(_block(BLOCK_OPENPAYGO, inner))
    return b"".join(out)


def _read_blocks(payload: bytes) -> dict[int, bytes]:
    sizes = {
        BLOCK_MAS: _MAS.size,
        BLOCK_PRO: _PRO.size,
        BLOCK_PAYG: _PAYG.size,
        BLOCK_OPENPAYGO: _OPENPAYGO.size,
    }
    blocks: dict[int, bytes] = {}
    pos = 0
    while pos < len(payload):
        if pos + 2 > len(payload):
            raise CorruptStateError(f"truncated block header at byte {pos}")
        (block_id,) = struct.unpack_from("<H", payload, pos)
        size = sizes.get(block_id)
        if size is None:
            raise CorruptStateError(f"unknown block id 0x{block_id:04x} at byte {pos}")
        end = pos + 2 + size
        if end + 2 > len(payload):
            raise CorruptStateError(f"block 0x{block_id:04x} truncated")
        (crc,) = _CRC.unpack_from(payload, end)
        if crc != crc16_ccitt_false(payload[pos:end]):
            raise CorruptStateError(f"block 0x{block_id:04x} fails its CRC")
        if block_id in blocks:
            raise CorruptStateError(f"block 0x{block_id:04x} appears twice")
        blocks[block_id] = payload[pos + 2 : end]
        pos = end + 2
    return blocks


def decode_payload(payload: bytes, kind: Kind) -> Snapshot:
    """Parse a payload for a device of `kind`; raise CorruptStateError saying what is wrong."""
    blocks = _read_blocks(payload)
    nexus_kind = kind in (Kind.NEXUS_FULL, Kind.NEXUS_SMALL)
    expected = {BLOCK_MAS, BLOCK_PRO, BLOCK_PAYG} if nexus_kind else {BLOCK_PAYG, BLOCK_OPENPAYGO}
    if set(blocks) != expected:
        have = ", ".join(f"0x{b:04x}" for b in sorted(blocks))
        raise CorruptStateError(f"a {kind.name} image needs blocks {sorted(expected)}, has {have}")
    until, flags, clock = _PAYG.unpack(blocks[BLOCK_PAYG])
    credit = Credit(until=until, unlocked=bool(flags & 1))
    if nexus_kind:
        (grace,) = _MAS.unpack(blocks[BLOCK_MAS])
        received, qc, pd, custom = _PRO.unpack(blocks[BLOCK_PRO])
        if pd < 23:
            raise CorruptStateError(f"Pd index {pd} is below its floor of 23")
        try:
            nexus = NexusState(
                pd=pd,
                received=int.from_bytes(received[:3], "little"),
                qc_long=qc >> 4,
                qc_short=qc & 0x0F,
                restricted=bool(custom & 1),
            )
        except ConfigError as exc:
            raise CorruptStateError(f"block 0x0001 holds an impossible state: {exc}") from exc
        return Snapshot(credit=credit, clock=clock, nexus=nexus, grace=grace)
    count, used_bits, invalid, blocked_until = _OPENPAYGO.unpack(blocks[BLOCK_OPENPAYGO])
    used = frozenset(count - d for d in range(_USED_SPAN) if used_bits >> d & 1)
    return Snapshot(
        credit=credit,
        clock=clock,
        token=TokenState(count=count, used=used),
        block=EntryBlock(invalid_count=invalid, blocked_until=blocked_until),
    )


def encode_slot(snap: Snapshot, kind: Kind, seq: int) -> bytes:
    payload = encode_payload(snap)
    head = _HEADER.pack(MAGIC, VERSION, int(kind), len(payload), seq & 0xFFFFFFFF) + payload
    return head + _CRC.pack(crc16_ccitt_false(head))


def decode_slot(raw: bytes, kind: Kind) -> tuple[int, Snapshot]:
    """Return (sequence number, snapshot) of one slot, or raise CorruptStateError."""
    if len(raw) < _HEADER.size + _CRC.size:
        raise CorruptStateError(f"slot is {len(raw)} bytes, shorter than its header")
    magic, version, slot_kind, length, seq = _HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise CorruptStateError("slot does not start with the PGNV magic")
    end = _HEADER.size + length
    if len(raw) < end + _CRC.size:
        raise CorruptStateError(f"slot payload of {length} bytes is truncated")
    (crc,) = _CRC.unpack_from(raw, end)
    if crc != crc16_ccitt_false(raw[:end]):
        raise CorruptStateError("slot fails its CRC")
    if version != VERSION:
        raise CorruptStateError(f"image format version {version}; this simulator reads {VERSION}")
    if slot_kind != kind:
        raise ConfigError(
            f"stored state belongs to a meter of kind {kind_label(slot_kind)}, not {kind.label}:"
            " use a separate storage per meter"
        )
    return seq, decode_payload(raw[_HEADER.size : end], kind)


def slot_size(kind: Kind) -> int:
    """Slots have a fixed size per kind, so both fit side by side on the medium."""
    nexus = kind in (Kind.NEXUS_FULL, Kind.NEXUS_SMALL)
    probe = Snapshot(
        credit=Credit(),
        clock=0.0,
        nexus=NexusState() if nexus else None,
        token=None if nexus else TokenState(count=1, used=frozenset({1})),
        block=None if nexus else EntryBlock(),
    )
    return len(encode_slot(probe, kind, 0))


def _newer(a: int, b: int) -> bool:
    """Serial-number order, so the sequence may wrap around 2**32."""
    return 0 < ((a - b) & 0xFFFFFFFF) < 0x80000000


@dataclass(frozen=True, slots=True)
class Loaded:
    snapshot: Snapshot | None
    status: NVStatus
    problems: tuple[str, ...] = ()
    seq: int = 0
    slot: int = -1


class NVStore:
    """Two-slot image store over a `Storage`: load the newest valid slot, save to the other."""

    def __init__(self, storage: Storage, kind: Kind) -> None:
        self.storage = storage
        self.kind = kind
        self.size = slot_size(kind)
        self._seq = 0
        self._slot = -1
        self._last: Snapshot | None = None

    def load(self) -> Loaded:
        medium = self.storage.read()
        if not medium.strip(b"\x00\xff"):
            self._seq, self._slot, self._last = 0, -1, None
            return Loaded(None, NVStatus.FRESH)
        found: list[tuple[int, int, Snapshot]] = []
        problems: list[str] = []
        for index in (0, 1):
            raw = medium[index * self.size : (index + 1) * self.size]
            if not raw.strip(b"\x00\xff"):
                continue
            try:
                seq, snap = decode_slot(raw, self.kind)
            except CorruptStateError as exc:
                problems.append(f"slot {index}: {exc}")
                continue
            found.append((seq, index, snap))
        if not found:
            self._seq, self._slot, self._last = 0, -1, None
            return Loaded(None, NVStatus.CORRUPT, tuple(problems))
        seq, index, snap = found[0]
        for other in found[1:]:
            if _newer(other[0], seq):
                seq, index, snap = other
        self._seq, self._slot, self._last = seq, index, snap
        status = NVStatus.RECOVERED if problems else NVStatus.OK
        return Loaded(snap, status, tuple(problems), seq, index)

    def save(self, snap: Snapshot) -> bool:
        """Persist `snap` unless it equals what is stored; return whether a write happened."""
        if snap.same_state(self._last):
            return False
        seq = (self._seq + 1) & 0xFFFFFFFF
        index = 1 - self._slot if self._slot in (0, 1) else 0
        self.storage.write(index * self.size, encode_slot(snap, self.kind, seq))
        self._seq, self._slot, self._last = seq, index, snap
        return True


class Image(StrEnum):
    """What a medium holds, judged before a meter may write to it (`classify`)."""

    EMPTY = "empty"
    """Nothing, or only erased bytes: a new meter may start here."""
    VALID = "valid"
    """A meter image of the expected kind with at least one valid slot."""
    CORRUPT = "corrupt"
    """A meter image of the expected kind, but no slot survives its checks."""
    OTHER_KIND = "other-kind"
    """A meter image of another kind of meter."""
    FOREIGN = "foreign"
    """Not a meter image at all (no PGNV magic where a slot starts, or too long)."""


def classify(medium: bytes, kind: Kind) -> tuple[Image, str]:
    """Say what `medium` holds for a meter of `kind`, with a reason fit for a message.

    A meter boots over corrupt data with factory defaults, as firmware must; a tool that is
    handed a file uses this first, so it never overwrites a file that is not its own image.
    """
    if not medium.strip(b"\x00\xff"):
        return Image.EMPTY, "empty"
    size = slot_size(kind)
    if len(medium) > 2 * slot_size(Kind.NEXUS_FULL) and len(medium) > 2 * size:
        return Image.FOREIGN, f"{len(medium)} bytes, longer than any meter image"
    starts = [medium[i * size : i * size + len(MAGIC)] == MAGIC for i in (0, 1)]
    if not starts[0] and not starts[1]:
        return Image.FOREIGN, f"no {MAGIC.decode()} magic at the start of a slot"
    if starts[0] and len(medium) > _HEADER.size:
        stored = medium[len(MAGIC) + 1]
        if stored != kind and stored in set(Kind):
            return Image.OTHER_KIND, f"a meter image of kind {kind_label(stored)}"
    try:
        loaded = NVStore(_Bytes(medium), kind).load()
    except ConfigError as exc:
        return Image.OTHER_KIND, str(exc)
    if loaded.status is NVStatus.CORRUPT:
        return Image.CORRUPT, "; ".join(loaded.problems) or "no valid slot"
    return Image.VALID, loaded.status.value


class _Bytes:
    """A read-only medium for `classify`: it must never write."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self) -> bytes:
        return self.data

    def write(self, offset: int, data: bytes) -> None:
        raise AssertionError("classify never writes")
