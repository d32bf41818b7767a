"""Recording: a `Meter` wrapper for programs, and a wire recorder for jig traffic.

`TraceRecorder` has the Meter's method names, so a program (the field lab, the interactive
session) records by wrapping its meter. Each call becomes the line-protocol command that would
have the same effect, with the answer that command gets, so the trace replays over any target.

`WireRecorder` is sans-I/O: it pairs request lines seen going to a device with the answer lines
coming back, for `serve --record` and the serial tap.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from meter_sim.framing import Frame, Framed, LineFramer
from meter_sim.keypad import Keypad
from meter_sim.line_protocol import (
    MAX_LINE,
    Device,
    LineSession,
    blank,
    describe,
    format_seconds,
)
from meter_sim.meter import KeyResult, Meter, Result
from meter_sim.nv import NVStatus, Snapshot
from meter_sim.storage import Storage
from meter_sim.trace.device import DeviceConfig, simulator_version
from meter_sim.trace.errors import RecordError
from meter_sim.trace.format import Arg, Event, Header, TraceWriter
from meter_sim.trace.lines import Line, LineSplitter
from meter_sim.trace.replies import Reply, ReplyError, parse_reply

EventSink = Callable[[Event], None]


def quantise(seconds: float) -> float:
    """Seconds as the line protocol carries them (milliseconds); `inf` stays."""
    return float(format_seconds(seconds)) if math.isfinite(seconds) else math.inf


def _ok(verb: str, text: str) -> Reply:
    return parse_reply(f"OK {verb} {text}")


def _printable_ascii(text: str) -> bool:
    return text.isascii() and text.isprintable()


class MeterLike(Protocol):
    """What `Meter` and `TraceRecorder` share: type a program's meter as this to record it."""

    @property
    def protocol(self) -> str: ...
    @property
    def keypad(self) -> Keypad: ...
    @property
    def nv_status(self) -> NVStatus: ...
    def enter_keycode(self, text: str, now: float) -> Result: ...
    def press_key(self, key: str, now: float) -> KeyResult: ...
    def advance(self, now: float) -> None: ...
    def power_cycle(self, now: float) -> None: ...
    def credit_remaining(self, now: float) -> float: ...
    def state(self, now: float) -> str: ...
    def output_on(self, now: float) -> bool: ...
    def is_rate_limited(self, now: float) -> bool: ...
    def snapshot(self, now: float) -> Snapshot: ...


class TraceRecorder:
    """A `Meter` that records what is done to it. Device times are written relative to `start`.

    `stamp` gives event times (e.g. wall seconds since recording began); without it event times
    are the device clock's, and the header should say `timebase: device`. Device time is
    quantised to the millisecond, as the line protocol carries it.
    """

    def __init__(
        self,
        meter: Meter,
        sink: EventSink,
        *,
        start: float = 0.0,
        stamp: Callable[[], float] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.meter = meter
        self._sink = sink
        self._start = start
        self._stamp = stamp
        self._clock = 0.0
        self._on_close = on_close

    @classmethod
    def open(
        cls,
        path: str | Path,
        device: DeviceConfig,
        *,
        now: float = 0.0,
        include_secret: bool = False,
        stamp: Callable[[], float] | None = None,
        storage: Storage | None = None,
    ) -> TraceRecorder:
        """A new meter built from `device` at device time `now`, recording into `path`.

        Use it as a context manager (or call `close`). Event times are device seconds unless
        `stamp` gives them (then the header says `timebase: wall`).
        """
        header = Header(
            device,
            firmware=simulator_version(),
            recorder="meter_sim.trace.TraceRecorder",
            timebase="device" if stamp is None else "wall",
            device_start=now,
        )
        meter = device.build(storage=storage, now=now)
        stream = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()
        writer = TraceWriter(stream, header, include_secret=include_secret)
        return cls(meter, writer.write, start=now, stamp=stamp, on_close=writer.close)

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close()
            self._on_close = None

    def __enter__(self) -> TraceRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- recorded calls (the Meter's mutating API) -----------------------------------------

    def enter_keycode(self, text: str, now: float) -> Result:
        code = " ".join(str(text).split())
        if not code or not _printable_ascii(code) or len(code) > MAX_LINE - 8:
            raise RecordError(f"a keycode must be printable ASCII, 1..{MAX_LINE - 8} characters")
        at = self._at(now)
        result = self.meter.enter_keycode(code, at)
        self._emit("code", code, _ok("CODE", describe(result)))
        return result

    def press_key(self, key: str, now: float) -> KeyResult:
        if len(key) != 1 or not _printable_ascii(key) or key.isspace():
            raise RecordError(f"a key is one printable ASCII character, got {key!r}")
        at = self._at(now)
        reply = self.meter.press_key(key, at)
        text = reply.feedback.value if reply.result is None else describe(reply.result)
        self._emit("key", key, _ok("KEY", text))
        return reply

    def advance(self, now: float) -> None:
        self._at(now, always=True)

    def power_cycle(self, now: float) -> None:
        at = self._at(now)
        self.meter.power_cycle(at)
        self._emit("power", None, _ok("POWER", f"nv={self.meter.nv_status.value}"))

    def status(self, now: float) -> Reply:
        """Read the device as the line protocol's STATUS does, and record the read."""
        at = self._at(now)
        m = self.meter
        reply = Reply(
            "STATUS",
            (
                ("time", self._clock),
                ("credit", quantise(m.credit_remaining(at))),
                ("state", m.state(at)),
                ("output", "on" if m.output_on(at) else "off"),
                ("restricted", int(m.restricted)),
                ("limited", int(m.is_rate_limited(at))),
                ("protocol", m.protocol),
            ),
        )
        self._emit("status", None, reply)
        return reply

    def set_restricted(self, flag: bool, now: float) -> None:
        raise RecordError("set_restricted has no line-protocol command, so no trace can carry it")

    # -- queries (not recorded: they do not touch the device) ------------------------------

    @property
    def protocol(self) -> str:
        return self.meter.protocol

    @property
    def keypad(self) -> Keypad:
        return self.meter.keypad

    @property
    def restricted(self) -> bool:
        return self.meter.restricted

    @property
    def nv_status(self) -> NVStatus:
        return self.meter.nv_status

    def credit_remaining(self, now: float) -> float:
        return self.meter.credit_remaining(now)

    def state(self, now: float) -> str:
        return self.meter.state(now)

    def output_on(self, now: float) -> bool:
        return self.meter.output_on(now)

    def is_rate_limited(self, now: float) -> bool:
        return self.meter.is_rate_limited(now)

    def snapshot(self, now: float) -> Snapshot:
        return self.meter.snapshot(now)

    # -- internals ----------------------------------------------------------------------------

    def _at(self, now: float, *, always: bool = False) -> float:
        """Bring the device clock to `now` as a TIME command would; return the device time."""
        relative = quantise(now - self._start)
        if relative != self._clock or always:
            at = self._start + relative
            self.meter.advance(at)  # raises ClockError, recording nothing, if time went back
            self._clock = relative
            self._emit("advance", relative, _ok("TIME", format_seconds(relative)))
        return self._start + self._clock

    def _emit(self, kind: str, arg: Arg, reply: Reply) -> None:
        t = self._stamp() if self._stamp is not None else self._clock
        self._sink(Event(kind, t, arg, reply))


# -- the wire ----------------------------------------------------------------------------------


def classify(line: str) -> tuple[str, Arg]:
    """The event kind and argument a request line stands for (WAIT is settled by its answer)."""
    verb, _, rest = line.strip().partition(" ")
    verb, rest = verb.upper(), rest.strip()
    if verb == "KEY" and len(rest) == 1 and not rest.isspace():
        return "key", rest
    if verb == "CODE" and rest:
        return "code", rest
    if verb == "TIME":
        try:
            value = float(rest)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return "advance", quantise(value)
    if verb == "WAIT":
        return "wait", line
    if verb in ("POWER", "STATUS", "HELLO", "RESET") and not rest:
        return verb.lower(), None
    return "line", line


@dataclass(frozen=True, slots=True)
class _Pending:
    t: float
    kind: str
    arg: Arg


class WireRecorder:
    """Pair requests with answers on a line-protocol wire and emit events (sans-I/O)."""

    def __init__(self, sink: EventSink) -> None:
        self._sink = sink
        self._requests = LineFramer(MAX_LINE)
        self._answers = LineSplitter()
        self._pending: deque[_Pending | None] = deque()
        self.unanswered = 0
        self.unsolicited = 0
        self.skipped = 0
        """Requests that cannot be carried in a trace (too long, not ASCII)."""

    def request(self, data: bytes, now: float) -> None:
        """Requests framed as the device frames them: each non-blank line gets one answer."""
        for item in self._requests.feed(data):
            if isinstance(item, Frame) and blank(item.raw):
                continue  # a blank line: the device answers nothing
            text = _carried(item)
            if text is None:
                self._pending.append(None)
                self.skipped += 1
            else:
                kind, arg = classify(text)
                self._pending.append(_Pending(now, kind, arg))

    def answer(self, data: bytes, now: float) -> None:
        for item in self._answers.feed(data):
            if not self._pending:
                self.unsolicited += 1
                continue
            pending = self._pending.popleft()
            if pending is None:
                continue
            reply: Reply | None = None
            if isinstance(item, Line):
                try:
                    reply = parse_reply(item.text)
                except ReplyError:
                    reply = None
            self._sink(_settle(pending, reply))

    def close(self) -> None:
        """Write requests that never got an answer, without one (replay will not compare)."""
        while self._pending:
            pending = self._pending.popleft()
            if pending is not None:
                self.unanswered += 1
                self._sink(_settle(pending, None))


def _settle(pending: _Pending, reply: Reply | None) -> Event:
    kind, arg = pending.kind, pending.arg
    if kind == "wait":
        time = reply.get("time") if reply is not None and reply.verb == "TIME" else None
        if isinstance(time, float):
            kind, arg = "advance", time
        else:
            kind = "line"
    return Event(kind, pending.t, arg, reply)


class RecordingSession(LineSession):
    """A line-protocol session that records every exchange (for `meter-sim serve --record`).

    It records each line as the session framed it, with the answer it got, so CR-ended lines
    and refused ones pair exactly; its first event marks the connection's start (`connect`).
    Lines a trace cannot carry (too long, not printable ASCII) are counted in `skipped`.
    """

    def __init__(
        self,
        meter: Meter | Device,
        clock: Callable[[], float] | None,
        sink: EventSink,
        stamp: Callable[[], float],
    ) -> None:
        super().__init__(meter, clock)
        self._sink = sink
        self._stamp = stamp
        self.skipped = 0
        sink(Event("connect", stamp()))

    def exchanged(self, item: Framed, response: bytes | None) -> None:
        if response is None:
            return
        text = _carried(item)
        if text is None:
            self.skipped += 1
            return
        kind, arg = classify(text)
        try:
            reply: Reply | None = parse_reply(response.decode("ascii", "replace").rstrip("\n"))
        except ReplyError:
            reply = None
        self._sink(_settle(_Pending(self._stamp(), kind, arg), reply))


def _carried(item: Framed) -> str | None:
    """The request line as a trace carries it, or None when it cannot be carried."""
    if not isinstance(item, Frame) or len(item.raw) > MAX_LINE:
        return None
    try:
        text = item.raw.decode("ascii").replace("\t", " ")
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() else None


def _both_are_meters(meter: Meter, recorder: TraceRecorder) -> tuple[MeterLike, MeterLike]:
    """Never called: mypy checks here that the Meter and the recorder stay interchangeable."""
    return meter, recorder
