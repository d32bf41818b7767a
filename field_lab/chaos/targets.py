"""The fuzz targets: every decoder of the field's input, each taking bytes and answering with a
short label of what it made of them (the outcome, counted per target).

A target may refuse its input only with its own package's error; anything else is a crash.
Where one byte steers the device or policy it is the first (`_head`), so seeds and mutations
reach every configuration. Meters are built fresh per input at an advancing virtual time, so
each input meets a device whose rate limiter has budget left and validation is really reached.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from agent_client.protocol.errors import ProtocolError
from agent_client.protocol.frames import decode_downlink, decode_uplink
from meter_sim.errors import ConfigError
from meter_sim.line_protocol import LineSession
from meter_sim.meter import Result
from meter_sim.nexus.full import process_full
from meter_sim.nexus.policy import FIRMWARE, NexusPolicy
from meter_sim.nexus.small import process_small
from meter_sim.nexus.state import NexusState
from meter_sim.nv import Kind as NVKind
from meter_sim.nv import NVStore
from meter_sim.openpaygo.state import TokenState
from meter_sim.openpaygo.token import process_token
from meter_sim.outcomes import PaygState
from meter_sim.storage import MemoryStorage
from meter_sim.trace.errors import TraceFormatError
from meter_sim.trace.format import loads
from server_stub.callbacks import parse_callback
from server_stub.errors import RequestError
from server_stub.reports import REPORTS, parse_query

from . import seeds
from .seeds import MAX_CODES, MAX_KEYS, WAIT_BASE, Golden, golden

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|b'[^']*'")
_NUMBER = re.compile(r"-?\d+(\.\d+)?(e[+-]?\d+)?")


def label(text: str) -> str:
    """A message with its data (numbers, quoted input) elided: one label per kind of answer."""
    return _NUMBER.sub("N", _QUOTED.sub("'…'", text))[:90]


def refusal(exc: Exception) -> str:
    code = getattr(exc, "code", None)
    detail = getattr(exc, "detail", None) or str(exc)
    return f"refused {code or type(exc).__name__}: {label(detail)}"


@dataclass(frozen=True)
class Target:
    """One decoder: `call` answers a label; `refusals` are the errors that are its answer."""

    call: Callable[[bytes], str]
    refusals: tuple[type[Exception], ...] = ()
    seeds: Callable[[], Sequence[bytes]] = field(default=lambda: ())
    what: str = ""


def one_input(target: Target, data: bytes) -> str:
    """The outcome label of one input; a crash (any other exception) propagates."""
    try:
        return target.call(data)
    except target.refusals as exc:
        return refusal(exc)


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _head(data: bytes) -> tuple[int, bytes]:
    return (data[0], data[1:]) if data else (0, b"")


def _result(r: Result) -> str:
    return f"{r.outcome.value}: {label(r.reason)}"


_PAYG = tuple(PaygState)
_STRICT = NexusPolicy(strict=True)


def nexus(g: Golden, protocol: str) -> Callable[[bytes], str]:
    """[flags] + a frame's content keys. Flags bit 0: strict policy; bits 1-2: the meter's
    PAYG state when the code arrives."""
    device = g.device(protocol)
    key = device.key or b""

    def call(data: bytes) -> str:
        flags, frame = _head(data)
        text, state = frame.decode("latin-1"), NexusState()
        payg = _PAYG[(flags >> 1) % len(_PAYG)]
        policy = _STRICT if flags & 1 else FIRMWARE
        if protocol == "nexus-small":
            verdict = process_small(text, secret_key=key, state=state, payg=payg, policy=policy)
        else:
            verdict = process_full(
                text, secret_key=key, state=state, payg=payg, payg_id=device.payg_id, policy=policy
            )
        return f"{verdict.outcome.value}: {label(verdict.reason)}"

    return call


def openpaygo(g: Golden) -> Callable[[bytes], str]:
    device = g.device("openpaygo")

    def call(data: bytes) -> str:
        flags, digits = _head(data)
        decision = process_token(
            digits.decode("latin-1"),
            secret_key=device.key or b"",
            starting_code=device.starting_code or 0,
            state=TokenState.initial(device.count),
            restricted_digits=bool(flags & 1),
        )
        return f"{decision.outcome.value}: {label(decision.reason)}"

    return call


class Clock:
    """Virtual time for fresh meters: every input starts later than the one before."""

    def __init__(self, step: float = 7.0) -> None:
        self._ticks = itertools.count()
        self.step = step

    def next(self) -> float:
        return next(self._ticks) * self.step


def keypad(g: Golden, clock: Clock) -> Callable[[bytes], str]:
    """[device][mode][payload] on a fresh meter: mode even types each line as a whole code,
    odd presses each byte as a key (bytes >= WAIT_BASE wait instead)."""
    devices = g.devices

    def call(data: bytes) -> str:
        index, rest = _head(data)
        mode, payload = _head(rest)
        now = clock.next()
        meter = devices[index % len(devices)].build(now=now)
        outcomes: list[str] = []
        if mode % 2 == 0:
            for line in payload.split(b"\n")[:MAX_CODES]:
                now += 1.0
                outcomes.append(_result(meter.enter_keycode(line.decode("latin-1"), now)))
        else:
            for byte in payload[:MAX_KEYS]:
                if byte >= WAIT_BASE:
                    now += byte - WAIT_BASE + 1
                    continue
                reply = meter.press_key(chr(byte), now)
                if reply.result is not None:
                    outcomes.append(_result(reply.result))
        last = outcomes[-1] if outcomes else "no code finished"
        return f"{meter.protocol} {last}"

    return call


def line_protocol(g: Golden) -> Callable[[bytes], str]:
    devices = g.devices

    def call(data: bytes) -> str:
        index, payload = _head(data)
        session = LineSession(devices[index % len(devices)].build())
        answers = session.feed(payload).splitlines()
        verbs = sorted({a.split(b" ", 2)[1].decode() for a in answers if b" " in a})
        return " ".join(verbs) or "no answer"

    return call


_NV_KINDS = {"nexus-full": NVKind.NEXUS_FULL, "nexus-small": NVKind.NEXUS_SMALL}


def nv_image(g: Golden) -> Callable[[bytes], str]:
    """[device] + a storage medium: the meter boots from it. A garbage image resets it; an
    image of another kind of meter is refused (`ConfigError`: the storage is not its own)."""
    devices = g.devices

    def call(data: bytes) -> str:
        index, medium = _head(data)
        device = devices[index % len(devices)]
        kind = _NV_KINDS.get(device.protocol, NVKind.OPENPAYGO)
        loaded = NVStore(MemoryStorage(medium), kind, device.nv_fingerprint).load()
        meter = device.build(storage=MemoryStorage(medium), now=100.0)
        # the image carries the device clock it was written at; time goes on from there
        later = 200.0 + (loaded.snapshot.clock if loaded.snapshot else 0.0)
        meter.power_cycle(later)
        problems = "; ".join(label(p) for p in loaded.problems)
        return f"{loaded.status.value} {meter.state(later)} {problems}"

    return call


def _query(data: bytes) -> str:
    index, rest = _head(data)
    parse_query(REPORTS[index % len(REPORTS)], dict(parse_qsl(_text(rest))))
    return "accepted"


def _trace(data: bytes) -> str:
    trace = loads(_text(data))
    return f"parsed {trace.header.device.protocol} ({min(len(trace.events), 3)}+ events)"


def _uplink(data: bytes) -> str:
    frame = decode_uplink(data)
    return f"decoded {sorted({op.kind.name for op in frame.ops})}"


def _downlink(data: bytes) -> str:
    frame = decode_downlink(data)
    return f"decoded {sorted({type(e).__name__ for e in frame.entries})} more={frame.more}"


def _callback(data: bytes) -> str:
    return f"parsed {parse_callback(data).status}"


def targets(g: Golden | None = None, clock: Clock | None = None) -> dict[str, Target]:
    """Every byte-level target, seeded from `g` (the golden traces by default)."""
    g = g or golden()
    clock = clock or Clock()
    return {
        "nexus_full": Target(
            nexus(g, "nexus-full"), (), lambda: seeds.frames(g, "nexus-full", "*#"), "Nexus full"
        ),
        "nexus_small": Target(
            nexus(g, "nexus-small"), (), lambda: seeds.frames(g, "nexus-small", "1"), "Nexus small"
        ),
        "openpaygo": Target(
            openpaygo(g), (), lambda: seeds.frames(g, "openpaygo", "*#"), "OpenPAYGO token"
        ),
        "keypad": Target(
            keypad(g, clock), (), lambda: seeds.keypad(g), "keys or codes on a fresh meter"
        ),
        "line_protocol": Target(
            line_protocol(g), (), lambda: seeds.lines(g), "line-protocol bytes"
        ),
        "trace": Target(_trace, (TraceFormatError,), lambda: seeds.traces(g), "trace file"),
        "nv_image": Target(
            nv_image(g), (ConfigError,), lambda: seeds.images(g), "meter NV image at boot"
        ),
        "sync_uplink": Target(_uplink, (ProtocolError,), seeds.uplinks, "uplink sync frame"),
        "sync_downlink": Target(
            _downlink, (ProtocolError,), lambda: seeds.downlinks(g), "downlink sync frame"
        ),
        "callback": Target(_callback, (RequestError,), seeds.callbacks, "mobile-money callback"),
        "report_query": Target(_query, (RequestError,), seeds.queries, "report query string"),
    }
