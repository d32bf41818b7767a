"""The trace file: JSON Lines, a header line then one line per event, version 1.

An event is something done at the device (a key, a whole code, a clock advance, a power cycle,
a read) with the device's answer as parsed data. Each kind maps onto one line-protocol command,
so a trace replays against anything that speaks docs/line-protocol.md. See docs/trace-format.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from meter_sim.line_protocol import MAX_LINE, PROTOCOL_VERSION, format_seconds
from meter_sim.trace.device import DeviceConfig
from meter_sim.trace.errors import TraceFormatError
from meter_sim.trace.fields import Fields
from meter_sim.trace.replies import (
    ERR,
    INTEGERS,
    MAX_INTEGER,
    MAX_MESSAGE,
    MAX_NAME,
    MAX_WORD,
    POSITIONAL,
    RESERVED,
    SECONDS,
    Reply,
    Value,
)

FORMAT = "meter-sim-trace"
VERSION = 1
MAX_TRACE_LINE = 4096
"""Longest accepted trace line in characters."""


@dataclass(frozen=True, slots=True)
class Kind:
    """How one event kind travels: its command verb and the name of its argument, if any."""

    verb: str | None
    arg: str | None


KINDS: dict[str, Kind] = {
    "key": Kind("KEY", "key"),
    "code": Kind("CODE", "code"),
    "advance": Kind("TIME", "to"),
    "power": Kind("POWER", None),
    "status": Kind("STATUS", None),
    "hello": Kind("HELLO", None),
    "reset": Kind("RESET", None),
    "connect": Kind("HELLO", None),
    "line": Kind(None, "line"),
}
"""Event kinds. `line` carries any other request verbatim (what a jig sent on a tapped wire);
`connect` marks where a connection to the device started (replay opens a new one there and
asks HELLO)."""

Arg = str | float | None


@dataclass(frozen=True, slots=True)
class Event:
    """One thing done at the device, `t` seconds after the trace's clock origin."""

    kind: str
    t: float
    arg: Arg = None
    reply: Reply | None = None
    """The recorded answer; None when nothing was recorded (it is then not compared)."""

    def command(self) -> str:
        """The request line for this event, without its newline."""
        kind = KINDS[self.kind]
        if kind.verb is None:
            return str(self.arg)
        if self.arg is None:
            return kind.verb
        text = format_seconds(self.arg) if isinstance(self.arg, float) else self.arg
        return f"{kind.verb} {text}"

    def label(self) -> str:
        if self.kind == "connect":
            return "(new connection) HELLO"
        return self.command() if self.kind != "line" else f"(line) {self.arg}"


@dataclass(frozen=True, slots=True)
class Header:
    """What the trace was recorded on and how its times are counted."""

    device: DeviceConfig
    firmware: str = "unknown"
    """Simulator or firmware version of the recorded device."""
    recorder: str = "meter_sim.trace"
    origin: str | None = None
    """Wall-clock instant (ISO 8601, UTC) that event time 0 stands for, when known."""
    timebase: str = "wall"
    """`wall`: event times are real seconds; `device`: they are the device clock's seconds."""
    device_start: float = 0.0
    """Device clock when recording began; trace device times are counted from it."""
    line_protocol: int = PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class Trace:
    header: Header
    events: tuple[Event, ...] = field(default=())
    source: str = "<trace>"

    @staticmethod
    def line_of(index: int) -> int:
        """File line number of event `index` (the header is line 1)."""
        return index + 2


# -- encoding ----------------------------------------------------------------------------------


def _json_value(name: str, value: Value) -> Any:
    if name in SECONDS and isinstance(value, float):
        if value == float("inf"):
            return "inf"
        return int(value) if value.is_integer() else value
    return value


def reply_to_json(reply: Reply) -> dict[str, Any]:
    if not reply.ok:
        return {"error": reply.get("error"), "message": reply.get("message") or ""}
    out: dict[str, Any] = {"verb": reply.verb}
    out.update((name, _json_value(name, value)) for name, value in reply.fields)
    return out


def header_to_json(header: Header, *, include_secret: bool = False) -> dict[str, Any]:
    return {
        "type": "header",
        "format": FORMAT,
        "version": VERSION,
        "line_protocol": header.line_protocol,
        "device": header.device.to_json(include_secret=include_secret),
        "firmware": header.firmware,
        "recorder": header.recorder,
        "clock": {
            "origin": header.origin,
            "timebase": header.timebase,
            "device_start": _json_value("time", header.device_start),
        },
    }


def event_to_json(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = {"t": round(event.t, 6), "event": event.kind}
    name = KINDS[event.kind].arg
    if name is not None:
        out[name] = _json_value("time", event.arg) if isinstance(event.arg, float) else event.arg
    if event.reply is not None:
        out["reply"] = reply_to_json(event.reply)
    return out


def dumps_line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=True, allow_nan=False) + "\n"


# -- decoding ------------------------------------------------------------------------------------


def _word(f: Fields, name: str, limit: int = MAX_WORD) -> str:
    value = f.text(name, limit=limit)
    if not value or any(ch.isspace() for ch in value) or not value.isascii():
        raise f.error(f"{f.path}.{name} must be one ASCII word, got {value[:40]!r}")
    return value


def reply_from_fields(f: Fields) -> Reply:
    if f.has("error"):
        code = _word(f, "error")
        message = f.text("message", limit=MAX_MESSAGE) if f.has("message") else ""
        f.done()
        return Reply(ERR, (("error", code), ("message", message)))
    verb = f.text("verb", choices=POSITIONAL)
    fields: list[tuple[str, Value]] = []
    for name in POSITIONAL[verb]:
        if not f.has(name):
            raise f.error(f"{f.path}.{name} is missing (an OK {verb} answer has one)")
    for name in f.obj:  # in the file's order: what was written is read back as it was
        if name in RESERVED:
            continue
        if (
            not 0 < len(name) <= MAX_NAME
            or not name.isascii()
            or not name.isprintable()
            or any(ch in name for ch in " =\t")
        ):
            raise f.error(f"{f.path}: {name[:40]!r} is not a field name (one word, no '=')")
        if name in SECONDS:
            fields.append((name, f.number(name, allow_inf=True)))
        elif name in INTEGERS:
            fields.append((name, f.integer(name, 0, MAX_INTEGER)))
        else:
            fields.append((name, _word(f, name)))
    f.done()
    return Reply(verb, tuple(fields))


def _printable(f: Fields, name: str, limit: int) -> str:
    value = f.text(name, limit=limit)
    if not value.strip() or not value.isascii() or not value.isprintable():
        raise f.error(f"{f.path or 'event'}.{name} must be printable ASCII, got {value[:40]!r}")
    return value


def event_from_fields(f: Fields) -> Event:
    t = f.number("t")
    kind = f.text("event", choices=KINDS)
    name = KINDS[kind].arg
    arg: Arg = None
    if kind == "key":
        arg = _printable(f, "key", 1)
        if arg.isspace():
            raise f.error("key must be one key, not a space")
    elif kind == "advance":
        arg = f.number("to")
    elif name is not None:
        arg = _printable(f, name, MAX_LINE)
    reply = reply_from_fields(f.child("reply")) if f.has("reply") else None
    f.done()
    return Event(kind, t, arg, reply)


def header_from_fields(f: Fields) -> Header:
    if f.obj.get("type") != "header":
        raise f.error('the first line must be the header ({"type": "header", ...})')
    f.raw("type")
    if f.text("format") != FORMAT:
        raise f.error(f"format must be {FORMAT!r}")
    version = f.integer("version", 0, 2**31)
    if version != VERSION:
        raise f.error(f"trace format version {version} is not supported (this reads {VERSION})")
    line_protocol = f.integer("line_protocol", 1, PROTOCOL_VERSION)
    device = DeviceConfig.from_fields(f.child("device"))
    clock = f.child("clock")
    origin = None if clock.obj.get("origin") is None else clock.text("origin", limit=64)
    clock.raw("origin")
    header = Header(
        device=device,
        firmware=f.text("firmware", limit=128),
        recorder=f.text("recorder", limit=128),
        origin=origin,
        timebase=clock.text("timebase", choices=("wall", "device")),
        device_start=clock.number("device_start"),
        line_protocol=line_protocol,
    )
    clock.done()
    f.done()
    return header


def _json_line(text: str, source: str, number: int) -> object:
    if len(text) > MAX_TRACE_LINE:
        raise TraceFormatError(f"line longer than {MAX_TRACE_LINE}", source=source, line=number)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceFormatError(f"not JSON: {exc.msg}", source=source, line=number) from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise TraceFormatError(f"not usable JSON: {exc}", source=source, line=number) from None
    except RecursionError:
        raise TraceFormatError("JSON nested too deeply", source=source, line=number) from None


def parse_lines(lines: Iterable[str], source: str = "<trace>") -> Trace:
    """Validate a whole trace; the first problem raises `TraceFormatError` with its line."""
    header: Header | None = None
    events: list[Event] = []
    last = 0.0
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            raise TraceFormatError("blank line", source=source, line=number)
        obj = _json_line(text, source, number)
        f = Fields(obj, path="", source=source, line=number)
        if header is None:
            header = header_from_fields(f)
            continue
        event = event_from_fields(f)
        if event.t < last:
            raise TraceFormatError(
                f"t={event.t} is earlier than the previous event's t={last}",
                source=source,
                line=number,
            )
        last = event.t
        events.append(event)
    if header is None:
        raise TraceFormatError("empty trace: no header line", source=source, line=1)
    return Trace(header, tuple(events), source)


def loads(text: str, source: str = "<trace>") -> Trace:
    return parse_lines(text.splitlines(), source)


def load(path: str | Path) -> Trace:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TraceFormatError(f"not UTF-8 text: {exc.reason}", source=str(path)) from None
    except OSError as exc:
        raise TraceFormatError(f"cannot read: {exc.strerror}", source=str(path)) from None
    return loads(text, str(path))


def dumps(trace: Trace, *, include_secret: bool = False) -> str:
    return "".join(iter_lines(trace, include_secret=include_secret))


def iter_lines(trace: Trace, *, include_secret: bool = False) -> Iterator[str]:
    yield dumps_line(header_to_json(trace.header, include_secret=include_secret))
    for event in trace.events:
        yield dumps_line(event_to_json(event))


class TraceWriter:
    """Writes a trace line by line, flushing each, so a crash keeps what was recorded."""

    def __init__(self, stream: IO[str], header: Header, *, include_secret: bool = False) -> None:
        self._stream = stream
        self.header = header
        self.count = 0
        stream.write(dumps_line(header_to_json(header, include_secret=include_secret)))
        stream.flush()

    def write(self, event: Event) -> None:
        self._stream.write(dumps_line(event_to_json(event)))
        self._stream.flush()
        self.count += 1

    def close(self) -> None:
        self._stream.close()
