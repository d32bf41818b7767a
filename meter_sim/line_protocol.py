"""The meter's line protocol: ASCII request lines in, one response line out.

Simple enough for a microcontroller test jig: one command per line, space-separated words,
one answer per command. The full grammar is in docs/line-protocol.md. This module is the
sans-I/O core: a `Device` is the one meter a server stands for, on one device clock; each
connection is a `LineSession` on it (`feed(bytes) -> bytes`); the shells in `serve` move the
bytes. Connections share everything but their half-received line and their line ending.

The device clock is virtual by default: it moves only on TIME/WAIT, so a session is
deterministic and replayable. A shell may pass a wall clock instead.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from meter_sim.errors import ClockError
from meter_sim.framing import Frame, Framed, LineFramer, Overlong
from meter_sim.meter import KeyResult, Meter, Result

MAX_LINE = 256
"""Longest accepted request line in bytes, line end excluded."""

PROTOCOL_VERSION = 1
MAX_SECONDS = 1e12
"""Largest device time or wait accepted (about 31,700 years): answers stay short words."""
_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
"""Number syntax for seconds: decimal digits with an optional fraction; no sign, exponent,
`inf`, `nan`, `_` or hex."""


class ErrorCode:
    """The `ERR <code>` words; stable, for jigs to match on."""

    UNKNOWN_COMMAND = "unknown-command"
    BAD_ARGUMENT = "bad-argument"
    LINE_TOO_LONG = "line-too-long"
    BAD_ENCODING = "bad-encoding"
    STRAY_CR = "stray-cr"
    CLOCK = "clock-backwards"


def format_seconds(value: float) -> str:
    if math.isinf(value):
        return "inf"
    return f"{value:.3f}".rstrip("0").rstrip(".")


def describe(result: Result) -> str:
    words = [
        result.outcome.value,
        f"credit={format_seconds(result.credit_remaining)}",
        f"state={result.state.value}",
    ]
    if result.payg_id is not None:
        words.append(f"id={result.payg_id or '-'}")
    return " ".join(words)


_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")


def check_word(name: str, value: str) -> str:
    """`value` if it can stand as one word of an answer (`id=<payg id>`), else ValueError
    naming `name`: a letter or digit, then up to 31 of A-Z a-z 0-9 . _ -."""
    if not isinstance(value, str) or not _WORD.fullmatch(value):
        raise ValueError(
            f"{name} must be one word: a letter or digit, then up to 31 letters, digits,"
            f" '.', '_' or '-'; got {value!r}"
        )
    return value


def blank(raw: bytes) -> bool:
    """A line that gets no answer: ASCII whitespace only (or nothing)."""
    return raw.isascii() and not raw.decode("ascii").strip()


def parse_seconds(word: str) -> float:
    """A number of seconds as the protocol writes it; ValueError otherwise."""
    if not _NUMBER.fullmatch(word) or len(word) > 24:
        raise ValueError(word)
    value = float(word)
    if value > MAX_SECONDS:
        raise ValueError(word)
    return value


@dataclass
class VirtualClock:
    """A clock that moves only when told to."""

    now: float = 0.0

    def __call__(self) -> float:
        return self.now


class Device:
    """The one meter a server stands for, on one device clock, whichever connection speaks.

    `clock` None gives a virtual clock (moved by TIME/WAIT, set back to 0 by RESET); any other
    callable is a wall clock that TIME/WAIT may not move.
    """

    def __init__(self, meter: Meter, clock: Callable[[], float] | None = None) -> None:
        self.meter = meter
        self.virtual = clock is None
        self.clock: Callable[[], float] = clock if clock is not None else VirtualClock()

    def set_time(self, now: float) -> None:
        """Move the virtual clock to `now`; ClockError (nothing moved) if that is backwards."""
        if not isinstance(self.clock, VirtualClock):
            raise ClockError("this meter runs on the wall clock: TIME and WAIT are refused")
        self.meter.advance(now)  # raises ClockError before the clock moves
        self.clock.now = now

    def reset(self) -> None:
        """Factory state: a new meter's state and, on a virtual clock, time 0 again."""
        if isinstance(self.clock, VirtualClock):
            self.clock.now = 0.0
        self.meter.factory_reset(self.clock())


@dataclass(frozen=True, slots=True)
class Command:
    """One verb: what runs it and how many words it takes after the verb."""

    run: Callable[[list[str]], str]
    least: int
    most: int | None
    usage: str


class LineSession:
    """One connection to a device over the line protocol.

    Give it the shared `Device`, or a bare `Meter` (and clock) for a device of its own.
    """

    def __init__(self, meter: Meter | Device, clock: Callable[[], float] | None = None) -> None:
        self.device = meter if isinstance(meter, Device) else Device(meter, clock)
        self._framer = LineFramer(MAX_LINE)
        self._commands: dict[str, Command] = {
            "HELLO": Command(self._hello, 0, 0, "HELLO takes no arguments"),
            "KEY": Command(self._key, 1, 1, "KEY takes exactly one key"),
            "CODE": Command(self._code, 1, None, "CODE takes the keycode text"),
            "TIME": Command(self._time, 1, 1, "TIME takes one number of seconds"),
            "WAIT": Command(self._wait, 1, 1, "WAIT takes one number of seconds"),
            "STATUS": Command(self._status, 0, 0, "STATUS takes no arguments"),
            "POWER": Command(self._power, 0, 0, "POWER takes no arguments"),
            "RESET": Command(self._reset, 0, 0, "RESET takes no arguments"),
        }

    @property
    def meter(self) -> Meter:
        return self.device.meter

    @property
    def clock(self) -> Callable[[], float]:
        return self.device.clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:
        self.device.clock = clock

    @property
    def virtual(self) -> bool:
        return self.device.virtual

    # -- bytes in, bytes out ------------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        """Take any chunk of bytes; return the responses to every line it completed."""
        out: list[bytes] = []
        for item in self._framer.feed(data):
            if isinstance(item, Frame):
                response = self.handle_bytes(item.raw)
            elif isinstance(item, Overlong):
                response = self._err(ErrorCode.LINE_TOO_LONG, f"lines are at most {MAX_LINE}")
            else:
                response = self._err(
                    ErrorCode.STRAY_CR,
                    "a CR inside a line (this connection ends lines with LF or CRLF);"
                    " the line was not run",
                )
            self.exchanged(item, response)
            if response is not None:
                out.append(response)
        return b"".join(out)

    def exchanged(self, item: Framed, response: bytes | None) -> None:
        """Called for every framed line with its answer (None for a blank line); a hook for
        recorders."""

    def handle_bytes(self, raw: bytes) -> bytes | None:
        """Answer one line (without its line end); blank lines get no answer."""
        raw = raw.rstrip(b"\r")
        if len(raw) > MAX_LINE:
            return self._err(ErrorCode.LINE_TOO_LONG, f"lines are at most {MAX_LINE}")
        if blank(raw):
            return None
        try:
            line = raw.decode("ascii")
        except UnicodeDecodeError:
            return self._err(ErrorCode.BAD_ENCODING, "lines are ASCII")
        return (self.handle_line(line) + "\n").encode("ascii", "replace")

    def handle_line(self, line: str) -> str:
        words = line.split()
        verb, args = words[0].upper(), words[1:]
        command = self._commands.get(verb)
        if command is None:
            known = " ".join(sorted(self._commands))
            return f"ERR {ErrorCode.UNKNOWN_COMMAND} {verb[:16]!r} is not one of: {known}"
        if len(args) < command.least or (command.most is not None and len(args) > command.most):
            return f"ERR {ErrorCode.BAD_ARGUMENT} {command.usage} (got {len(args)})"
        try:
            return command.run(args)
        except ClockError as exc:
            return f"ERR {ErrorCode.CLOCK} {exc}"

    @staticmethod
    def _err(code: str, message: str) -> bytes:
        return f"ERR {code} {message}\n".encode("ascii")

    # -- commands -----------------------------------------------------------------------

    def _hello(self, args: list[str]) -> str:
        pad = self.meter.keypad
        clock = "virtual" if self.virtual else "wall"
        return (
            f"OK HELLO meter-sim line-protocol={PROTOCOL_VERSION} protocol={pad.name}"
            f" keys={pad.keys} clock={clock}"
        )

    def _key(self, args: list[str]) -> str:
        if len(args[0]) != 1:
            return f"ERR {ErrorCode.BAD_ARGUMENT} KEY takes exactly one key, got {args[0][:16]!r}"
        reply: KeyResult = self.meter.press_key(args[0], self.clock())
        if reply.result is None:
            return f"OK KEY {reply.feedback.value}"
        return f"OK KEY {describe(reply.result)}"

    def _code(self, args: list[str]) -> str:
        return f"OK CODE {describe(self.meter.enter_keycode(''.join(args), self.clock()))}"

    def _set_time(self, now: float) -> str:
        if not self.virtual:
            return f"ERR {ErrorCode.BAD_ARGUMENT} this meter runs on the wall clock"
        if now > MAX_SECONDS:
            return f"ERR {ErrorCode.BAD_ARGUMENT} the device clock stops at {MAX_SECONDS:.0f} s"
        self.device.set_time(now)
        return f"OK TIME {format_seconds(now)}"

    def _time(self, args: list[str]) -> str:
        try:
            now = parse_seconds(args[0])
        except ValueError:
            return f"ERR {ErrorCode.BAD_ARGUMENT} TIME takes one non-negative number of seconds"
        return self._set_time(now)

    def _wait(self, args: list[str]) -> str:
        try:
            delta = parse_seconds(args[0])
        except ValueError:
            return f"ERR {ErrorCode.BAD_ARGUMENT} WAIT takes one non-negative number of seconds"
        return self._set_time(self.clock() + delta)

    def _status(self, args: list[str]) -> str:
        now, m = self.clock(), self.meter
        return (
            f"OK STATUS time={format_seconds(now)} credit={format_seconds(m.credit_remaining(now))}"
            f" state={m.state(now)} output={'on' if m.output_on(now) else 'off'}"
            f" restricted={int(m.restricted)} limited={int(m.is_rate_limited(now))}"
            f" protocol={m.protocol}"
        )

    def _power(self, args: list[str]) -> str:
        self.meter.power_cycle(self.clock())
        return f"OK POWER nv={self.meter.nv_status.value}"

    def _reset(self, args: list[str]) -> str:
        self.device.reset()
        return f"OK RESET time={format_seconds(self.clock())}"
