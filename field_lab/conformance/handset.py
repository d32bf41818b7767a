"""The kit's handset: an identity, a clock estimate, a seq counter and a cursor, sending frames
it builds itself (so it can also send the wrong ones) through a `Wire`.

Frames are built from raw rows ``(seq, kind, at, *fields)`` with msgpack directly, not from
validated `Operation`s: a conformance kit must be able to send what no correct handset
would. Answers are read with the contract's own decoder (`agent_client.protocol.frames`).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import msgpack

from agent_client.protocol.auth import HandsetKey
from agent_client.protocol.errors import FrameError
from agent_client.protocol.frames import (
    MIN_DEFLATE_BYTES,
    VERSION,
    DownlinkFrame,
    Entry,
    decode_downlink,
)

from .wire import JSON, MSGPACK, Answer, Auth, Forgery, Wire

MAX_PAGES = 64


@dataclass(frozen=True)
class Row:
    """One operation as sent (possibly wrong on purpose): its key, kind, time and fields."""

    seq: int
    kind: object
    at: int
    fields: tuple[object, ...] = ()


def row(seq: int, kind: object, at: int, *fields: object) -> Row:
    return Row(seq, kind, at, fields)


class Failed(Exception):
    """The platform did not do what the clause's doc section says."""


def expect(condition: object, message: str) -> None:
    if not condition:
        raise Failed(message)


def uplink(handset: int, cursor: int, ops: Sequence[Row], compress: bool | None = None) -> bytes:
    """An uplink body; `compress` None deflates only when smaller, and never a frame under
    `MIN_DEFLATE_BYTES` (the rule), True always."""
    base_seq = ops[0].seq if ops else 0
    base_at = min((op.at for op in ops), default=0)
    rows: list[list[object]] = []
    prev = base_seq
    for op in ops:
        rows.append([op.seq - prev, op.kind, op.at - base_at, *op.fields])
        prev = op.seq
    raw = msgpack.packb([VERSION, handset, cursor, base_seq, base_at, rows])
    return envelope(raw, compress)


def envelope(raw: bytes, compress: bool | None = None) -> bytes:
    """`raw` as a body: the frame itself, or a msgpack bin holding it deflated."""
    if compress is None and len(raw) < MIN_DEFLATE_BYTES:
        return raw
    packed = msgpack.packb(zlib.compress(raw, 9))
    if compress or (compress is None and len(packed) < len(raw)):
        return packed
    return raw


def expect_refusal(answer: Answer, status: int, code: str) -> dict[str, object]:
    """A refusal of the whole request: this status, a JSON body with this error code, a
    detail and the server time (docs/sync-protocol.md, Errors)."""
    got, detail = answer.refusal()
    expect(
        (answer.status, got) == (status, code),
        f"expected {status} {code}, got {answer.status} {got}: {detail}",
    )
    expect(answer.content_type == JSON, f"refusal content type {answer.content_type!r}")
    doc = answer.json() or {}
    expect(isinstance(doc.get("detail"), str), f"{code}: refusal body lacks a detail string")
    expect(type(doc.get("server_ms")) is int, f"{code}: refusal body lacks integer server_ms")
    return doc


@dataclass
class KitHandset:
    wire: Wire
    key: HandsetKey
    handset: int
    offset_ms: int
    clock: Callable[[], float] = time.time
    last_ms: int = 0
    next_seq: int = 1
    cursor: int = 0
    seen: list[bytes] = field(default_factory=list)
    """Downlink bodies received (the compression clause looks at them)."""

    def stamp(self) -> int:
        """Server time as estimated, strictly above the last stamp used."""
        self.last_ms = max(int(self.clock() * 1000) + self.offset_ms, self.last_ms + 1)
        return self.last_ms

    def seqs(self, n: int) -> list[int]:
        first = self.next_seq
        self.next_seq += n
        return list(range(first, first + n))

    async def send(
        self, body: bytes, *, ts_ms: int | None = None, forgery: Forgery = Forgery.NONE
    ) -> Answer:
        ts = self.stamp() if ts_ms is None else ts_ms
        answer = await self.wire.sync(body, Auth(self.handset, self.key, ts, forgery))
        expect(answer.status < 500, f"server answered {answer.status} to a client request")
        return answer

    def downlink(self, answer: Answer) -> DownlinkFrame:
        if answer.status != 200:
            code, detail = answer.refusal()
            raise Failed(f"expected 200 and a downlink frame, got {answer.status} {code}: {detail}")
        expect(answer.content_type == MSGPACK, f"downlink content type {answer.content_type!r}")
        try:
            frame = decode_downlink(answer.body)
        except FrameError as exc:
            raise Failed(f"200 body is not a downlink frame: {exc.code}: {exc.detail}") from exc
        self.seen = [*self.seen[-31:], answer.body]
        return frame

    async def exchange(
        self, ops: Sequence[Row] = (), *, cursor: int | None = None, compress: bool | None = None
    ) -> DownlinkFrame:
        """Send `ops` with the cursor (ours by default); the answer, without taking entries."""
        at = self.cursor if cursor is None else cursor
        return self.downlink(await self.send(uplink(self.handset, at, ops, compress)))

    async def pull(self) -> list[tuple[int, Entry]]:
        """Take every entry past our cursor, page by page, checking the numbering."""
        taken: list[tuple[int, Entry]] = []
        for _ in range(MAX_PAGES):
            frame = await self.exchange()
            if frame.entries:
                expect(
                    frame.first_entry == self.cursor + 1,
                    f"cursor {self.cursor}: page starts at entry {frame.first_entry}",
                )
            taken += list(enumerate(frame.entries, start=frame.first_entry))
            self.cursor = max(self.cursor, frame.last_entry)
            if not frame.more:
                return taken
            expect(frame.entries, "more = 1 on a page with no entries")
        raise Failed(f"still more entries after {MAX_PAGES} pages")
