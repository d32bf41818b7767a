"""The Metrics reporter's own non-volatile record, beside the meter's image (not inside it).

Same discipline as the meter's image (`meter_sim.nv`), on a medium of its own: two slots
of `SLOT_BYTES`, each `[b"PGMX"][u32 seq][u16 len][payload][u16 CRC-16/CCITT-FALSE]`; a
save goes to the slot not holding the newest record, a load takes the valid slot with the
higher sequence number. A write torn at any byte leaves the previous record readable.
The payload is compact JSON of the reporter's state (`state.encode`).
"""

from __future__ import annotations

import struct

from meter_sim.errors import CorruptStateError, NVError
from meter_sim.nv import crc16
from meter_sim.storage import Storage

MAGIC = b"PGMX"
SLOT_BYTES = 16_384
_HEAD = struct.Struct("<4sIH")
_CRC = struct.Struct("<H")
MAX_PAYLOAD = SLOT_BYTES - _HEAD.size - _CRC.size


def frame(payload: bytes, seq: int) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise NVError(f"metrics record of {len(payload)} bytes exceeds its {MAX_PAYLOAD}")
    head = _HEAD.pack(MAGIC, seq & 0xFFFFFFFF, len(payload)) + payload
    return head + _CRC.pack(crc16(head))


def unframe(raw: bytes) -> tuple[int, bytes]:
    """(sequence number, payload) of one slot, or CorruptStateError saying what is wrong."""
    if len(raw) < _HEAD.size + _CRC.size:
        raise CorruptStateError("metrics slot shorter than its header")
    magic, seq, length = _HEAD.unpack_from(raw)
    if magic != MAGIC:
        raise CorruptStateError("metrics slot does not start with PGMX")
    end = _HEAD.size + length
    if end + _CRC.size > len(raw):
        raise CorruptStateError("metrics slot payload truncated")
    if _CRC.unpack_from(raw, end)[0] != crc16(raw[:end]):
        raise CorruptStateError("metrics slot fails its CRC")
    return seq, raw[_HEAD.size : end]


class RecordStore:
    """Two-slot store of one payload over a `Storage`."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._seq = 0
        self._slot = -1
        self._last: bytes | None = None
        self.problems: tuple[str, ...] = ()

    def load(self) -> bytes | None:
        """The newest valid payload; None when nothing valid is stored (see `problems`)."""
        medium = self.storage.read()
        best: tuple[int, int, bytes] | None = None
        problems = []
        for index in (0, 1):
            raw = medium[index * SLOT_BYTES : (index + 1) * SLOT_BYTES]
            if not raw.strip(b"\x00\xff"):
                continue
            try:
                seq, payload = unframe(raw)
            except CorruptStateError as exc:
                problems.append(f"slot {index}: {exc}")
                continue
            if best is None or 0 < ((seq - best[0]) & 0xFFFFFFFF) < 0x80000000:
                best = (seq, index, payload)
        self.problems = tuple(problems)
        if best is None:
            self._seq, self._slot, self._last = 0, -1, None
            return None
        self._seq, self._slot, self._last = best
        return best[2]

    def save(self, payload: bytes) -> bool:
        """Write `payload` unless it is what is stored; return whether a write happened."""
        if payload == self._last:
            return False
        seq = (self._seq + 1) & 0xFFFFFFFF
        index = 1 - self._slot if self._slot in (0, 1) else 0
        self.storage.write(index * SLOT_BYTES, frame(payload, seq))
        self._seq, self._slot, self._last = seq, index, payload
        return True
