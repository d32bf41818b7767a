"""Structure-aware fuzzing of ``POST /v1/sync`` over HTTP, signed with a provisioned handset's
key so every mutated frame gets past the signature to the decoder and the business rules.

Frames start as real ones (the handsets' own encoder, ops on devices the agent stocks and some
it does not); mutation works on the decoded structure: operation kinds, numbers at and past
their caps, string lengths at their limits, field types, counts of ops and fields, handset and
cursor, sequence numbers (fresh, replayed, duplicated), and the envelope (plain, deflated,
corrupt or bomb-sized deflate, trailing bytes, oversized). Every answer is counted by status
and error code; a 5xx or a failed exchange is a failure. Coverage comes from replaying the
first inputs again on a fresh platform under the line tracer.
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgpack

from agent_client.protocol.auth import HandsetKey
from agent_client.protocol.errors import ProtocolError
from agent_client.protocol.frames import (
    MAX_BODY_BYTES,
    MAX_INFLATED_BYTES,
    MAX_OPS,
    UplinkFrame,
    decode_downlink,
    encode_uplink,
)
from agent_client.protocol.ops import MAX_SEQ, MAX_TIME, U32
from field_lab.world.fixture import Fixture, Stocking, seed
from field_lab.world.platform import serving

from .coverage import LineCoverage
from .seeds import operations
from .tally import Tally
from .targets import label
from .world import CONFIG

Serve = Callable[[Path], AbstractAsyncContextManager[str]]
HANDSETS = 4
"""Handsets fuzzing at once, each its own stream of strictly newer timestamps."""
REPLAY = 600
"""Inputs replayed under the tracer for coverage."""
MIX = {"nexus-full": 0.4, "nexus-small": 0.3, "openpaygo": 0.3}
"""The platform's devices: every keycode format, so issuing reaches each encoder."""
CAPS = (U32, MAX_SEQ, MAX_TIME, 2**63, 2**64 - 1)
INTS: tuple[int, ...] = (0, 1, 2, 255, -1, -(2**63), *CAPS, *(c - 1 for c in CAPS[:3]))
INTS += tuple(c + 1 for c in CAPS[:3])
"""Numbers at, just under and just past every cap a field has, and the msgpack extremes."""
OTHERS: tuple[object, ...] = (None, True, False, 1.5, float("nan"), "", "7", b"", b"\x00", [], {})
STRINGS: tuple[str, ...] = ("", "A", "A" * 3, "A" * 20, "A" * 21, "A" * 40, "A" * 41)
STRINGS += ("A" * 64, "A" * 65, "\x00", "é" * 64, "\U0001f4a1" * 10, "+233 24\n")
"""Lengths at and past each string field's limits (name 1-64, phone 3-20, ref 1-40)."""


BOMB = msgpack.packb(zlib.compress(b"\x00" * (MAX_INFLATED_BYTES + 1)))
"""A deflated frame that inflates past the limit."""


def _serve(db: Path) -> AbstractAsyncContextManager[str]:
    return serving(db, config=CONFIG)


@dataclass
class Handset:
    """A provisioned handset: its id, key and the last timestamp it signed."""

    id: int
    key: HandsetKey
    seq: int = 0
    last_ms: int = 0
    cursor: int = 0
    """The last downlink entry this handset has: a real handset sends it, so downlinks stay
    small (a cursor stuck at 0 would fetch every entry the agent ever got, every time)."""

    def headers(self, body: bytes) -> dict[str, str]:
        self.last_ms = max(int(time.time() * 1000), self.last_ms + 1)
        signed = self.key.headers("POST", "/v1/sync", body, self.id, self.last_ms)
        return {**signed, "Content-Type": "application/msgpack"}


class FrameMutator:
    """Real frames for one handset, mutated as structures; `devices` are the agent's stock
    and `strangers` devices it does not hold."""

    def __init__(
        self, rng: random.Random, handset: Handset, devices: list[int], strangers: list[int]
    ) -> None:
        self.rng, self.handset = rng, handset
        self.devices, self.strangers = devices, strangers

    def frame(self) -> list[Any]:
        """A real frame of 0..40 fresh (or, a quarter of the time, replayed) operations."""
        rng = self.rng
        count = rng.choice((0, 1, 2, 3, 3, 5, 40))
        device = rng.choice(self.devices if rng.random() < 0.7 else self.strangers)
        first = self.handset.seq + 1
        if rng.random() < 0.25 and self.handset.seq > 3:
            first = rng.randint(1, self.handset.seq)
        ops = operations(count, first, device)
        self.handset.seq = max(self.handset.seq, first + count)
        body = encode_uplink(UplinkFrame(self.handset.id, self.handset.cursor, ops))
        obj = msgpack.unpackb(body)
        if isinstance(obj, bytes):
            obj = msgpack.unpackb(zlib.decompress(obj))
        assert isinstance(obj, list)
        return obj

    def mutate(self, frame: list[Any]) -> list[Any]:
        edits = (
            self._scalar,
            self._kind,
            self._string,
            self._drop,
            self._extend,
            self._many_ops,
            self._header,
            self._seq,
        )
        for _ in range(self.rng.choice((0, 1, 1, 2, 3))):
            self.rng.choice(edits)(frame)
        return frame

    def _lists(self, frame: list[Any]) -> list[list[Any]]:
        found = [frame]
        rows = frame[5] if len(frame) > 5 and isinstance(frame[5], list) else []
        found += [row for row in rows if isinstance(row, list)]
        return found

    def _scalar(self, frame: list[Any]) -> None:
        node = self.rng.choice(self._lists(frame))
        if node:
            i = self.rng.randrange(len(node))
            node[i] = self.rng.choice(INTS + OTHERS)

    def _kind(self, frame: list[Any]) -> None:
        rows = self._lists(frame)[1:]
        if rows:
            row = self.rng.choice(rows)
            if len(row) > 1:
                row[1] = self.rng.choice((0, 1, 2, 3, 127, -1))

    def _string(self, frame: list[Any]) -> None:
        rows = [r for r in self._lists(frame)[1:] if len(r) > 3]
        if rows:
            row = self.rng.choice(rows)
            row[self.rng.randrange(3, len(row))] = self.rng.choice(STRINGS)

    def _drop(self, frame: list[Any]) -> None:
        node = self.rng.choice(self._lists(frame))
        if node:
            del node[self.rng.randrange(len(node)) :]

    def _extend(self, frame: list[Any]) -> None:
        node = self.rng.choice(self._lists(frame))
        node.extend(self.rng.choice(INTS + OTHERS) for _ in range(self.rng.choice((1, 2, 60))))

    def _many_ops(self, frame: list[Any]) -> None:
        rows = self._lists(frame)[1:]
        if rows and len(frame) > 5:
            row = [1, *self.rng.choice(rows)[1:]]
            frame[5] = [rows[0], *[list(row) for _ in range(self.rng.choice((MAX_OPS, 1025)))]]

    def _header(self, frame: list[Any]) -> None:
        if len(frame) > 4:
            i = self.rng.randrange(5)
            choices = {0: (0, 2, "1", 1.0), 1: (self.handset.id + 1, 0, U32, U32 + 1)}
            frame[i] = self.rng.choice(choices.get(i, INTS))

    def _seq(self, frame: list[Any]) -> None:
        rows = self._lists(frame)[1:]
        if rows:
            row = self.rng.choice(rows)
            if row:
                row[0] = self.rng.choice((0, 0, 1, MAX_SEQ, -1))

    def body(self, frame: list[Any]) -> bytes:
        """The frame as sent: plain, deflated, or a broken envelope."""
        rng = self.rng
        try:
            raw = msgpack.packb(frame)
        except (OverflowError, ValueError, TypeError):  # e.g. an int past 64 bits
            raw = msgpack.packb([frame[0], str(frame[1:])[:200]])
        pick = rng.random()
        if pick < 0.7:
            return raw
        if pick < 0.85:
            return msgpack.packb(zlib.compress(raw, 9))
        broken = (
            lambda: msgpack.packb(zlib.compress(raw)[:-3]),
            lambda: msgpack.packb(b"not zlib" + raw),
            lambda: BOMB,
            lambda: raw + b"\xc0",
            lambda: raw[: rng.randrange(len(raw) + 1)],
            lambda: msgpack.packb({"v": 1, "ops": frame}),
            lambda: b"\x00" * (MAX_BODY_BYTES + 1),
        )
        return rng.choice(broken)()

    def next_body(self) -> bytes:
        return self.body(self.mutate(self.frame()))


def _verdicts(raw: bytes, handset: Handset) -> str:
    """A 200's label: whether ops were acknowledged, and why any were refused."""
    try:
        reply = decode_downlink(raw)
    except ProtocolError as exc:
        return f"200 undecodable: {exc.code}"
    handset.cursor = max(handset.cursor, reply.last_entry)
    reasons = sorted({reason.name.lower() for _, reason in reply.rejected})
    return f"200 acked {min(len(reply.acked), 1)}+ rejected {','.join(reasons) or 'none'}"


async def _exchange(
    http: aiohttp.ClientSession, url: str, handset: Handset, body: bytes, tally: Tally
) -> None:
    tally.inputs += 1
    try:
        async with http.post(url, data=body, headers=handset.headers(body)) as response:
            raw = await response.read()
            status = response.status
            if status == 200:
                outcome = _verdicts(raw, handset)
            else:
                doc = json.loads(raw) if raw.startswith(b"{") else {}
                outcome = f"{status} {doc.get('error', label(raw[:60].decode(errors='replace')))}"
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        tally.crashes += 1
        tally.keep(body, f"{type(exc).__name__}: {exc}", "POST /v1/sync")
        tally.count(f"CRASH {type(exc).__name__}")
        return
    if status >= 500:
        tally.server_errors += 1
        tally.keep(body, f"{status}: {raw[:200].decode(errors='replace')}", "POST /v1/sync")
    tally.count(outcome)


async def _provision(
    http: aiohttp.ClientSession, url: str, fixture: Fixture, seed_: int
) -> list[Handset]:
    agent = fixture.agents[0]
    handsets = []
    for i in range(HANDSETS):
        key = HandsetKey.from_seed(random.Random(f"{seed_}:handset:{i}").randbytes(32))
        doc = {"agent": agent.name, "code": agent.code, "public_key": key.public.hex()}
        async with http.post(url + "/v1/provision", json=doc) as response:
            answer = await response.json()
            if response.status != 201:
                raise RuntimeError(f"provisioning a fuzz handset failed: {answer}")
        handsets.append(Handset(answer["handset"], key))
    return handsets


@asynccontextmanager
async def _platform(
    serve: Serve, seed_: int
) -> AsyncIterator[tuple[str, Fixture, aiohttp.ClientSession]]:
    with tempfile.TemporaryDirectory(prefix="payg-syncfuzz-") as tmp:
        db = Path(tmp) / "platform.db"
        stocking = Stocking(2, 12, MIX, seed=seed_)
        fixture = await asyncio.to_thread(seed, db, stocking)
        async with serve(db) as url, aiohttp.ClientSession() as http:
            yield url, fixture, http


async def fuzz_sync(
    runs: int, seed_: int = 1, *, serve: Serve = _serve, handsets: int = HANDSETS
) -> Tally:
    """`runs` signed, mutated frames from `handsets` handsets at once on a fresh platform."""
    tally = Tally()
    async with _platform(serve, seed_) as (url, fixture, http):
        provisioned = (await _provision(http, url, fixture, seed_))[:handsets]
        mine = list(fixture.agents[0].devices)
        strangers = [d for a in fixture.agents[1:] for d in a.devices] + [99_999_999]

        async def stream(index: int, handset: Handset) -> None:
            rng = random.Random(f"{seed_}:stream:{index}")
            mutator = FrameMutator(rng, handset, mine, strangers)
            for _ in range(index, runs, len(provisioned)):
                await _exchange(http, url + "/v1/sync", handset, mutator.next_body(), tally)

        await asyncio.gather(*(stream(i, h) for i, h in enumerate(provisioned)))
    return tally


async def sync_campaign(runs: int, seed_: int = 1, *, serve: Serve = _serve) -> dict[str, Any]:
    """The whole `POST /v1/sync` campaign, then its coverage from a traced replay."""
    began = time.monotonic()
    tally = await fuzz_sync(runs, seed_, serve=serve)
    seconds = time.monotonic() - began
    replayed = min(runs, REPLAY)
    with LineCoverage() as cov:
        await fuzz_sync(replayed, seed_, serve=serve, handsets=1)
    statuses = Counter(o.split(" ", 1)[0] for o in tally.outcomes.elements())
    return {
        "engine": "structure-aware",
        "input": "signed uplink frame over HTTP",
        **tally.summary(),
        "by_status": dict(sorted(statuses.items())),
        "coverage": {**cov.summary(), "replayed": replayed, "corpus": runs},
        "edges": None,
        "seconds": round(seconds, 1),
    }
