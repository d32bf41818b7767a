"""The meter's non-volatile image: what survives a power cut, and how it survives one.

The medium holds two slots of at most 32 bytes; each save goes to the slot not holding the
current image, so a write torn at any byte only spoils the slot being written and loading
(the valid slot with the newer sequence number) gives the old image or the new one. A slot:

    u8   0xB2           magic (high nibble 0xB) and format version 2 (low nibble)
    u8   kind << 4 | seq    which meter (`Kind`) and a 2-bit sequence number (the two valid
                            slots always differ by one, so it orders them, wrapping)
    u16  key fingerprint    low 16 bits of SipHash(device key, "meter-sim nv" [+ starting
                            code]): an image never loads into a meter with another key
    ...  payload            per kind, below
    u16  CRC-16/CCITT-FALSE over everything before it (`binascii.crc_hqx`, init 0xFFFF)

Every slot is 32 bytes, so a slot of another kind sits where it would and is named as such.
Nexus payload (26 bytes): pd u32, received mask u24, QC counts u8 (long << 4 | short), flags
u8 (bit0 restricted, bit1 unlocked), grace attempts u8, credit until and the clock as i48
milliseconds, 4 reserved zero bytes. OpenPAYGO payload (26 bytes): count u32,
a u32 of used counts (bits 0..16: count-d used), unlocked (bit 17) and consecutive invalid
tokens (bits 18..31, saturating at 16383, past any entry block's growth), then credit until,
blocked-until and the clock as i48 milliseconds. The clock comes last in both: a save whose
state (everything before it) equals the stored one is skipped.

Times are kept to the millisecond, rounded the safe way: credit-until and the clock down
(never more credit, never a clock ahead of the device), blocked-until up (never a shorter
block). Version-1 images (62-byte slots, PGNV magic, before meter-sim 0.1.0 had this layout)
are recognised and refused with a message, never read as something else.
"""

from __future__ import annotations

import binascii
import math
import struct
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from meter_sim.credit import Credit
from meter_sim.errors import ConfigError, CorruptStateError
from meter_sim.nexus.state import NexusState
from meter_sim.openpaygo.state import OLDER_WINDOW, TokenState
from meter_sim.ratelimit import EntryBlock
from meter_sim.siphash import siphash24
from meter_sim.storage import Storage

MAGIC = 0xB0
VERSION = 2
_HEAD = struct.Struct("<BBH")
_CRC = struct.Struct("<H")
_NEXUS_STATE = struct.Struct("<IIBB6s")
"""pd, then the 24-bit mask and the QC byte as one u32 (the same bytes as u24 + u8, one
pack instead of a `to_bytes` more per save), flags, grace, credit until."""
_OPENPAYGO_STATE = struct.Struct("<II6s6s")
_PAYLOAD = 26
LEGACY_MAGIC = b"PGNV"
"""Version-1 images start each 62-byte slot with this."""
_INVALID_MAX = (1 << 14) - 1
_UNLOCKED_BIT = 1 << (OLDER_WINDOW + 1)
_USED_MASK = _UNLOCKED_BIT - 1
_MS = 1000
_TIME_LIMIT = 1 << 47
_TIME_LIMIT_S = _TIME_LIMIT / _MS
_TIME_FLOOR_S = -_TIME_LIMIT_S
_floor = math.floor


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


def key_fingerprint(secret_key: bytes, starting_code: int | None = None) -> int:
    """16 bits that tell one device's image from another's without revealing the key.

    OpenPAYGO devices include their starting code: another code is another token chain.
    """
    message = b"meter-sim nv"
    if starting_code is not None:
        message += starting_code.to_bytes(8, "little")
    return siphash24(bytes(secret_key), message) & 0xFFFF


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), the checksum of the Nexus NV blocks."""
    return binascii.crc_hqx(data, 0xFFFF)


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
        return other is not None and encode_state(self) == encode_state(other)


def _ms(seconds: float, *, up: bool = False) -> bytes:
    """Seconds as i48 milliseconds, rounded down (or up), saturating past ±4,000 years.

    A time read back from storage (a whole millisecond, give or take the last bit of the
    float) stays that millisecond, so a snapshot encodes the same however often it goes
    round.
    """
    if _TIME_FLOOR_S < seconds < _TIME_LIMIT_S:  # the usual case first (saves are hot)
        scaled = seconds * _MS
        value = _floor(scaled)  # a C call; `int(scaled)` goes through the type's constructor
        if value != scaled:
            nearest = round(scaled)
            if abs(scaled - nearest) <= math.ulp(scaled):
                value = nearest
            elif up:
                value = math.ceil(scaled)
        return value.to_bytes(6, "little", signed=True)
    value = _TIME_LIMIT - 1 if seconds > 0 else -_TIME_LIMIT
    return value.to_bytes(6, "little", signed=True)


def _seconds(raw: bytes) -> float:
    return int.from_bytes(raw, "little", signed=True) / _MS


def quantized(snap: Snapshot) -> Snapshot:
    """`snap` as it reads back from storage (times to the millisecond, the safe way round)."""
    kind = Kind.OPENPAYGO if snap.token is not None else Kind.NEXUS_FULL
    return decode_payload(encode_payload(snap), kind)


def encode_state(snap: Snapshot) -> bytes:
    """The payload without the clock: what decides whether a save needs a write."""
    if snap.nexus is not None:
        return encode_nexus_state(snap.nexus, snap.credit, snap.grace)
    assert snap.token is not None, "a snapshot holds Nexus or OpenPAYGO state"
    return encode_token_state(snap.token, snap.credit, snap.block)


def encode_nexus_state(n: NexusState, c: Credit, grace: int) -> bytes:
    """`encode_state` of a Nexus snapshot, from its parts (a meter saves without building one)."""
    flags = n.restricted | c.unlocked << 1
    word = n.received | n.qc_long << 28 | n.qc_short << 24
    return _NEXUS_STATE.pack(n.pd, word, flags, grace, _ms(c.until))


def encode_token_state(t: TokenState, c: Credit, block: EntryBlock | None) -> bytes:
    """`encode_state` of an OpenPAYGO snapshot, from its parts."""
    used = 0
    for x in t.used:
        d = t.count - x
        if 0 <= d <= OLDER_WINDOW:
            used |= 1 << d
    block = block or EntryBlock()
    invalid = min(block.invalid_count, _INVALID_MAX)
    word = used | c.unlocked * _UNLOCKED_BIT | invalid << (OLDER_WINDOW + 2)
    blocked = _ms(block.blocked_until, up=True)
    return _OPENPAYGO_STATE.pack(t.count, word, _ms(c.until), blocked)


def encode_payload(snap: Snapshot, clock: float | None = None) -> bytes:
    """The state, then the clock (the device time of the write), then padding to 26 bytes."""
    return _payload(encode_state(snap), snap.clock if clock is None else clock)


def _payload(state: bytes, clock: float) -> bytes:
    return state + _ms(clock) + _PADDING[len(state)]


_PADDING = tuple(bytes(max(0, _PAYLOAD - 6 - n)) for n in range(_PAYLOAD - 5))
"""The zeros after a state of n bytes and the 6-byte clock, made once (saves are hot)."""


def decode_payload(payload: bytes, kind: Kind) -> Snapshot:
    """Parse a payload for a device of `kind`; raise CorruptStateError saying what is wrong."""
    nexus_kind = kind in (Kind.NEXUS_FULL, Kind.NEXUS_SMALL)
    if len(payload) != _PAYLOAD:
        raise CorruptStateError(
            f"a {kind.label} payload is {_PAYLOAD} bytes, this one {len(payload)}"
        )
    if nexus_kind:
        pd, word, flags, grace, until = _NEXUS_STATE.unpack_from(payload)
        received, qc = word & 0xFFFFFF, word >> 24
        clock = payload[_NEXUS_STATE.size : _NEXUS_STATE.size + 6]
        if flags > 3:
            raise CorruptStateError(f"unknown flag bits {flags:#x}")
        if payload[_NEXUS_STATE.size + 6 :].strip(b"\x00"):
            raise CorruptStateError("reserved bytes are not zero")
        try:
            nexus = NexusState(
                pd=pd,
                received=received,
                qc_long=qc >> 4,
                qc_short=qc & 0x0F,
                restricted=bool(flags & 1),
            )
        except ConfigError as exc:
            raise CorruptStateError(f"the Nexus state is impossible: {exc}") from exc
        credit = Credit(until=_seconds(until), unlocked=bool(flags & 2))
        return Snapshot(credit=credit, clock=_seconds(clock), nexus=nexus, grace=grace)
    count, word, until, blocked = _OPENPAYGO_STATE.unpack_from(payload)
    clock = payload[_OPENPAYGO_STATE.size :]
    used = frozenset(count - d for d in range(OLDER_WINDOW + 1) if word >> d & 1 and d <= count)
    return Snapshot(
        credit=Credit(until=_seconds(until), unlocked=bool(word & _UNLOCKED_BIT)),
        clock=_seconds(clock),
        token=TokenState(count=count, used=used),
        block=EntryBlock(invalid_count=word >> (OLDER_WINDOW + 2), blocked_until=_seconds(blocked)),
    )


class ForeignImage(ConfigError):
    """A slot belongs to another meter (kind or key) or an older format: never load it."""

    def __init__(self, message: str, image: Image) -> None:
        super().__init__(message)
        self.image = image


SLOT_SIZE = _HEAD.size + _PAYLOAD + _CRC.size
assert SLOT_SIZE == 32


def encode_slot(snap: Snapshot, kind: Kind, seq: int, fingerprint: int) -> bytes:
    return _sealed(_head(kind, seq, fingerprint), encode_state(snap), snap.clock)


def _head(kind: Kind, seq: int, fingerprint: int) -> bytes:
    return _HEAD.pack(MAGIC | VERSION, int(kind) << 4 | seq & 3, fingerprint)


def _sealed(head: bytes, state: bytes, clock: float) -> bytes:
    """A whole slot: header, payload (`state`, then the clock, padded) and the CRC."""
    body = head + state + _ms(clock) + _PADDING[len(state)]  # head + _payload(...), inline
    return body + _CRC.pack(binascii.crc_hqx(body, 0xFFFF))


def decode_slot(raw: bytes, kind: Kind, fingerprint: int) -> tuple[int, Snapshot]:
    """Return (sequence number, snapshot) of one slot, or raise CorruptStateError.

    A valid slot of another kind, key or format raises `ForeignImage` instead.
    """
    if len(raw) < SLOT_SIZE:
        raise CorruptStateError(f"slot is {len(raw)} bytes, shorter than {SLOT_SIZE}")
    magic, kind_seq, stored_key = _HEAD.unpack_from(raw)
    if magic != MAGIC | VERSION:
        raise CorruptStateError(f"slot does not start with the image magic {MAGIC | VERSION:#x}")
    (crc,) = _CRC.unpack_from(raw, SLOT_SIZE - _CRC.size)
    if crc != crc16(raw[: SLOT_SIZE - _CRC.size]):
        raise CorruptStateError("slot fails its CRC")
    slot_kind = kind_seq >> 4
    if slot_kind != kind:
        raise ForeignImage(
            f"stored state belongs to a meter of kind {kind_label(slot_kind)}, not {kind.label}:"
            " use a separate storage per meter",
            Image.OTHER_KIND,
        )
    if stored_key != fingerprint:
        raise ForeignImage(
            "stored state was written for another device key (or starting code):"
            " use a separate storage per meter",
            Image.OTHER_KEY,
        )
    return kind_seq & 3, decode_payload(raw[_HEAD.size : SLOT_SIZE - _CRC.size], kind)


_LEGACY_HEADER = struct.Struct("<4sBBHI")


def is_legacy(medium: bytes) -> bool:
    """Whether `medium` starts with a valid slot of format version 1 (magic, header and CRC)."""
    if len(medium) < _LEGACY_HEADER.size + _CRC.size or not medium.startswith(LEGACY_MAGIC):
        return False
    _, version, _, length, _ = _LEGACY_HEADER.unpack_from(medium)
    end = _LEGACY_HEADER.size + length
    if version != 1 or len(medium) < end + _CRC.size:
        return False
    return bool(_CRC.unpack_from(medium, end)[0] == crc16(medium[:end]))


def _refuse_legacy(medium: bytes) -> None:
    if is_legacy(medium):
        raise ForeignImage(
            "stored state is a format-1 meter image (62-byte slots, written by an older"
            " meter-sim), which this one does not read: start it again from factory defaults",
            Image.OLD_FORMAT,
        )


def slot_size(kind: Kind) -> int:
    """Every kind's slot is `SLOT_SIZE` bytes (kept as a function for callers by kind)."""
    return SLOT_SIZE


def _newer(a: int, b: int) -> bool:
    """The 2-bit sequence numbers of two valid slots differ by one, wrapping."""
    return (a - b) & 3 == 1


@dataclass(frozen=True, slots=True)
class Loaded:
    snapshot: Snapshot | None
    status: NVStatus
    problems: tuple[str, ...] = ()
    seq: int = 0
    slot: int = -1


class NVStore:
    """Two-slot image store over a `Storage`: load the newest valid slot, save to the other.

    `fingerprint` (`key_fingerprint`) marks the images as this device's; loading another
    kind's, another key's or an older format's image raises `ForeignImage`.
    """

    def __init__(self, storage: Storage, kind: Kind, fingerprint: int) -> None:
        self.storage = storage
        self.kind = kind
        self.fingerprint = fingerprint
        self.size = SLOT_SIZE
        self._seq = 0
        self._slot = -1
        self._state: bytes | None = None
        self._heads = tuple(_head(kind, seq, fingerprint) for seq in range(4))
        """The four slot headers (one per sequence number), made once: saves are hot."""

    def load(self) -> Loaded:
        medium = self.storage.read()
        if not medium.strip(b"\x00\xff"):
            self._seq, self._slot, self._state = 0, -1, None
            return Loaded(None, NVStatus.FRESH)
        _refuse_legacy(medium)
        found: list[tuple[int, int, Snapshot]] = []
        problems: list[str] = []
        for index in (0, 1):
            raw = medium[index * self.size : (index + 1) * self.size]
            if not raw.strip(b"\x00\xff"):
                continue
            try:
                seq, snap = decode_slot(raw, self.kind, self.fingerprint)
            except CorruptStateError as exc:
                problems.append(f"slot {index}: {exc}")
                continue
            found.append((seq, index, snap))
        if not found:
            self._seq, self._slot, self._state = 0, -1, None
            return Loaded(None, NVStatus.CORRUPT, tuple(problems))
        seq, index, snap = found[0]
        for other in found[1:]:
            if _newer(other[0], seq):
                seq, index, snap = other
        self._seq, self._slot, self._state = seq, index, encode_state(snap)
        status = NVStatus.RECOVERED if problems else NVStatus.OK
        return Loaded(snap, status, tuple(problems), seq, index)

    def save(self, snap: Snapshot) -> bool:
        """Persist `snap` unless it equals what is stored; return whether a write happened."""
        return self.save_state(encode_state(snap), snap.clock)

    def save_state(self, state: bytes, clock: float) -> bool:
        """`save` of an encoded state (`encode_state`) written at device time `clock`."""
        if state == self._state:
            return False
        seq = (self._seq + 1) & 3
        index = 1 - self._slot if self._slot >= 0 else 0  # the other slot (0 when none)
        body = self._heads[seq] + state + _ms(clock) + _PADDING[len(state)]  # _sealed, inline
        self.storage.write(index * self.size, body + _CRC.pack(binascii.crc_hqx(body, 0xFFFF)))
        self._seq, self._slot, self._state = seq, index, state
        return True


class Image(StrEnum):
    """What a medium holds, judged before a meter may write to it (`classify`)."""

    EMPTY = "empty"
    """Nothing, or only erased bytes: a new meter may start here."""
    VALID = "valid"
    """This device's image with at least one valid slot."""
    CORRUPT = "corrupt"
    """A meter image, but no slot survives its checks."""
    OTHER_KIND = "other-kind"
    """A meter image of another kind of meter."""
    OTHER_KEY = "other-key"
    """A meter image of this kind written for another device key (or starting code)."""
    OLD_FORMAT = "old-format"
    """A meter image in a format this meter-sim no longer reads (version 1)."""
    FOREIGN = "foreign"
    """Not a meter image at all (no image magic where a slot starts, or too long)."""


def classify(medium: bytes, kind: Kind, fingerprint: int) -> tuple[Image, str]:
    """Say what `medium` holds for the device (`kind`, `fingerprint`), with a reason.

    A meter boots over corrupt data with factory defaults, as firmware must; a tool that is
    handed a file uses this first, so it never overwrites a file that is not its own image.
    """
    if not medium.strip(b"\x00\xff"):
        return Image.EMPTY, "empty"
    if is_legacy(medium):
        return Image.OLD_FORMAT, "a format-1 meter image (62-byte slots) from an older meter-sim"
    if len(medium) > 2 * SLOT_SIZE:
        return Image.FOREIGN, f"{len(medium)} bytes, longer than any meter image"
    slots = [medium[i * SLOT_SIZE : (i + 1) * SLOT_SIZE] for i in (0, 1)]
    if not any(raw[:1] == bytes([MAGIC | VERSION]) for raw in slots):
        return Image.FOREIGN, f"no image magic {MAGIC | VERSION:#x} at the start of a slot"
    valid = False
    for raw in slots:
        try:
            decode_slot(raw, kind, fingerprint)
        except ForeignImage as exc:  # the meter would refuse to boot from it
            return exc.image, str(exc)
        except CorruptStateError:
            continue
        valid = True
    if valid:
        return Image.VALID, "ok"
    problems = NVStore(_Bytes(medium), kind, fingerprint).load().problems
    return Image.CORRUPT, "; ".join(problems) or "no valid slot"


class _Bytes:
    """A read-only medium for `classify`: it must never write."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self) -> bytes:
        return self.data

    def write(self, offset: int, data: bytes) -> None:
        raise AssertionError("classify never writes")
