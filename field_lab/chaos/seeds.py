"""Seed corpora for the fuzz targets: the golden keypad sessions, and frames, images and bodies
made by the real encoders, so mutation starts from input that reaches deep validation.

The golden traces (tests/meter_sim/golden, recorded with their keys) give the devices and the
keycodes that are valid for them; everything else is encoded from those and from a seeded
fixture's shape (agent stock, plan), never written by hand as bytes.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, replace
from pathlib import Path

from agent_client.protocol.frames import (
    DownlinkFrame,
    Entry,
    Keycode,
    Payment,
    Plan,
    Reason,
    Stock,
    Unknown,
    UplinkFrame,
    encode_downlink,
    encode_uplink,
)
from agent_client.protocol.keycodes import KeycodeFormat, pack_keycode
from agent_client.protocol.ops import Kind, Operation
from meter_sim.line_protocol import LineSession
from meter_sim.storage import MemoryStorage
from meter_sim.trace.device import DeviceConfig
from meter_sim.trace.format import Trace, load
from server_stub.callbacks import MoneyCallback
from server_stub.reports import REPORTS, encode_cursor

from . import ChaosError

GOLDEN = Path(__file__).resolve().parents[2] / "tests" / "meter_sim" / "golden"
WAIT_BASE = 0x80
"""Keypad inputs: a byte at or above this waits (byte - WAIT_BASE + 1) seconds."""
MAX_WAIT_BYTES = 3
MAX_KEYS = 64
"""The keypad target presses at most this many keys per input (a fresh meter each costs)."""
MAX_CODES = 3


@dataclass(frozen=True)
class Golden:
    """The recorded sessions: what each device was and what was typed at it."""

    traces: tuple[Trace, ...]
    texts: tuple[str, ...]

    @property
    def devices(self) -> tuple[DeviceConfig, ...]:
        """Every recorded device, plus the OpenPAYGO one on a 1-4 keypad (no golden trace)."""
        found = tuple(t.header.device for t in self.traces)
        opaygo = [d for d in found if d.protocol == "openpaygo"]
        return found + tuple(replace(d, protocol="openpaygo-restricted") for d in opaygo[:1])

    def device(self, protocol: str) -> DeviceConfig:
        return next(d for d in self.devices if d.protocol == protocol)

    def codes(self, protocol: str) -> list[str]:
        """Whole keycodes typed at `protocol` devices, in recorded order, without spaces."""
        return [
            str(e.arg).replace(" ", "")
            for t in self.traces
            if t.header.device.protocol == protocol
            for e in t.events
            if e.kind == "code"
        ]


@functools.cache
def golden(directory: Path = GOLDEN) -> Golden:
    paths = sorted(directory.glob("*.jsonl"))
    if not paths:
        raise ChaosError(
            f"no golden traces in {directory}: the fuzz seeds need the source checkout's"
            " tests/meter_sim/golden (make them with tests/meter_sim/golden/make_golden.py)"
        )
    return Golden(tuple(load(p) for p in paths), tuple(p.read_text() for p in paths))


def _waits(seconds: float) -> bytes:
    """Wait bytes for a clock advance, at most MAX_WAIT_BYTES (long waits are cut short)."""
    out = bytearray()
    left = int(seconds)
    while left > 0 and len(out) < MAX_WAIT_BYTES:
        step = min(left, 0x100 - WAIT_BASE)
        out.append(WAIT_BASE + step - 1)
        left -= step
    return bytes(out)


def _session_keys(trace: Trace) -> bytes:
    """A recorded session as keypad-target key bytes: keys, codes typed key by key, waits."""
    out = bytearray()
    clock = 0.0
    for event in trace.events:
        if event.kind == "code":
            out += str(event.arg).replace(" ", "").encode()
        elif event.kind == "key":
            out += str(event.arg).encode()
        elif event.kind == "advance" and isinstance(event.arg, float):
            out += _waits(event.arg - clock)
            clock = event.arg
    return bytes(out)


def keypad(g: Golden) -> list[bytes]:
    """[device][mode][payload]: mode 0 types whole codes (one per line), 1 presses keys."""
    seeds: list[bytes] = []
    for index, device in enumerate(g.devices):
        codes = g.codes(device.protocol)
        seeds += [bytes([index, 0]) + code.encode() for code in codes]
        if codes:
            seeds.append(bytes([index, 0]) + "\n".join(codes[:MAX_CODES]).encode())
        seeds += [
            bytes([index, 1]) + _session_keys(t)[:MAX_KEYS]
            for t in g.traces
            if t.header.device.protocol == device.protocol
        ]
    return seeds


def frames(g: Golden, protocol: str, strip: str) -> list[bytes]:
    """[policy byte] + the frame content of each golden code (its framing keys stripped)."""
    return [
        bytes([flags]) + code.strip(strip).encode()
        for code in g.codes(protocol)
        for flags in (0, 1)
    ]


def lines(g: Golden) -> list[bytes]:
    """[device] + line-protocol requests: each golden session whole, and each request."""
    seeds: list[bytes] = []
    for trace in g.traces:
        index = g.devices.index(trace.header.device)
        requests = ["HELLO", *(e.command() for e in trace.events)]
        seeds.append(bytes([index]) + "\n".join(requests).encode() + b"\n")
        seeds += [bytes([index]) + r.encode() + b"\r\n" for r in dict.fromkeys(requests)]
    return seeds


def traces(g: Golden) -> list[bytes]:
    """Each golden file, and its header with each single event (short inputs mutate fast)."""
    seeds = [text.encode() for text in g.texts]
    for text in g.texts:
        header, *events = text.splitlines()
        seeds += [f"{header}\n{event}\n".encode() for event in events]
    return seeds


def images(g: Golden) -> list[bytes]:
    """[device] + the NV image each golden session leaves in its meter's storage."""
    seeds: list[bytes] = []
    for trace in g.traces:
        index = g.devices.index(trace.header.device)
        storage = MemoryStorage()
        session = LineSession(trace.header.device.build(storage=storage))
        for event in trace.events:
            session.feed(event.command().encode() + b"\n")
            seeds.append(bytes([index]) + storage.read())
    return list(dict.fromkeys(seeds))


SERIAL = 20_000_001
"""The first device a seeded fixture stocks (field_lab.world.fixture.FIRST_SERIAL)."""


def operations(count: int, first_seq: int = 1, device: int = SERIAL) -> tuple[Operation, ...]:
    """A realistic batch: register a customer, sell a device, take payments."""
    ops = [
        Operation.make(first_seq, Kind.REGISTER_CUSTOMER, 1_790_000_000, "Ama Mensah", "+2332400"),
        Operation.make(first_seq + 1, Kind.RECORD_SALE, 1_790_000_060, first_seq, device, 1, 500),
    ]
    for i in range(max(0, count - 2)):
        at = 1_790_000_120 + 60 * i
        ops.append(Operation.make(first_seq + 2 + i, Kind.RECORD_PAYMENT, at, device, 100 + i))
    return tuple(ops[:count])


def uplinks(handset: int = 1) -> list[bytes]:
    """Real uplink frames: empty, each kind alone, a batch, and one big enough to compress."""
    batch = operations(40)
    frames = [UplinkFrame(handset, 0, ())]
    frames += [UplinkFrame(handset, 3, (op,)) for op in batch[:3]]
    frames += [UplinkFrame(handset, 0, batch[:3]), UplinkFrame(handset, 12, batch)]
    return [encode_uplink(f) for f in frames]


_KEYCODE_FORMATS = {
    "nexus-full": KeycodeFormat.NEXUS_FULL,
    "nexus-small": KeycodeFormat.NEXUS_SMALL,
    "openpaygo": KeycodeFormat.OPENPAYGO,
}


def downlinks(g: Golden) -> list[bytes]:
    """Real downlink frames carrying the golden keycodes and every other entry kind."""
    keycodes = tuple(
        Keycode(2, SERIAL, fmt, pack_keycode(fmt, code), 86_400)
        for protocol, fmt in _KEYCODE_FORMATS.items()
        for code in dict.fromkeys(g.codes(protocol))
    )
    others: tuple[Entry, ...] = (
        Payment(SERIAL, 1000, "MM-TXN-1"),
        Stock(SERIAL, KeycodeFormat.NEXUS_FULL, True),
        Plan(1, "solar-home", 500),
        Unknown(9),
    )
    rejected = ((4, Reason.NOT_IN_STOCK), (7, Reason.CONFLICT))
    frames = [
        DownlinkFrame(1_790_000_000_000, (), (), 1, (), False),
        DownlinkFrame(1_790_000_000_000, (1, 2, 3), rejected, 1, others, True),
        DownlinkFrame(1_790_000_000_000, tuple(range(1, 41)), (), 5, keycodes, False),
    ]
    frames += [DownlinkFrame(1, (1,), (), 1, (entry,), False) for entry in keycodes + others]
    return [encode_downlink(f) for f in frames]


def callbacks() -> list[bytes]:
    """Mobile-money callback bodies as the operator simulator sends them."""
    bodies = [
        MoneyCallback("MMX1", str(SERIAL), 1000, "+233240000001", "success", 1_790_000_000_000),
        MoneyCallback("MMX2", str(SERIAL + 1), 1, "233240000002", "failed", 1),
    ]
    return [json.dumps(b.to_json()).encode() for b in bodies]


def queries() -> list[bytes]:
    """[report] + a query string with every parameter, its cursor made by the real encoder."""
    cursors = {
        "sales": ("2026-11-26", 5),
        "collections": ("2026-11-26", 3),
        "devices": (SERIAL,),
        "activation": ("2026-11-26",),
        "usage": (SERIAL,),
    }
    seeds: list[bytes] = []
    for index, report in enumerate(REPORTS):
        cursor = encode_cursor(report, cursors[report])
        query = f"limit=50&cursor={cursor}&from=2026-11-01&to=2026-11-30&agent=1"
        seeds += [bytes([index]) + query.encode(), bytes([index]) + b"limit=1"]
    return seeds
