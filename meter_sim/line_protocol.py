"""The meter's line protocol: ASCII request lines in, one response line out.

Simple enough for a microcontroller test jig: one command per line, space-separated words,
one answer per command. The full grammar is in docs/line-protocol.md. This module is the
sans-I/O core: `LineSession.feed(bytes) -> bytes`; the shells in `serve` move the bytes.

The device clock is virtual by default: it moves only on TIME/WAIT, so a session is
deterministic and replayable. A shell may pass a wall clock instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from meter_sim.errors import ClockError
from meter_sim.meter import KeyResult, Meter, Result

MAX_LINE = 256
"""Longest accepted request line in bytes, newline excluded."""

PROTOCOL_VERSION = 1


class ErrorCode:
    """The `ERR <code>` words; stable, for jigs to match on."""

    UNKNOWN_COMMAND = "unknown-command"
    BAD_ARGUMENT = "bad-argument"
    LINE_TOO_LONG = "line-too-long"
    BAD_ENCODING = "bad-encoding"
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


@dataclass
class VirtualClock:
    """A clock that moves only when told to."""

    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def _parse_seconds(word: str) -> float:
    value = float(word)
    if not math.isfinite(value) or value < 0:
        raise ValueError(word)
    return value


class LineSession:
    """One conversation with a meter over the line protocol."""

    def __init__(self, meter: Meter, clock: Callable[[], float] | None = None) -> None:
        self.meter = meter
        self.virtual = clock is None
        self.clock: Callable[[], float] = clock if clock is not None else VirtualClock()
        self._buffer = bytearray()
        self._discarding = False
        self._commands: dict[str, Callable[[list[str]], str]] = {
            "HELLO": self._hello,
            "KEY": self._key,
            "CODE": self._code,
            "TIME": self._time,
            "WAIT": self._wait,
            "STATUS": self._status,
            "POWER": self._power,
        }

    # -- bytes in, bytes out ------------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        """Take any chunk of bytes; return the responses to every line it completed."""
        out: list[bytes] = []
        for byte in data:
            if byte == 0x0A:  # \n ends a line; a \r before it is dropped below
                if self._discarding:
                    out.append(self._err(ErrorCode.LINE_TOO_LONG, f"lines are at most {MAX_LINE}"))
                else:
                    response = self.handle_bytes(bytes(self._buffer))
                    if response is not None:
                        out.append(response)
                self._buffer.clear()
                self._discarding = False
            elif not self._discarding:
                self._buffer.append(byte)
                if len(self._buffer) > MAX_LINE + 1:
                    self._buffer.clear()
                    self._discarding = True
        return b"".join(out)

    def handle_bytes(self, raw: bytes) -> bytes | None:
        """Answer one line (without its newline); blank lines get no answer."""
        raw = raw.rstrip(b"\r")
        if len(raw) > MAX_LINE:
            return self._err(ErrorCode.LINE_TOO_LONG, f"lines are at most {MAX_LINE}")
        try:
            line = raw.decode("ascii")
        except UnicodeDecodeError:
            return self._err(ErrorCode.BAD_ENCODING, "lines are ASCII")
        if not line.strip():
            return None
        return (self.handle_line(line) + "\n").encode("ascii", "replace")

    def handle_line(self, line: str) -> str:
        words = line.split()
        verb, args = words[0].upper(), words[1:]
        command = self._commands.get(verb)
        if command is None:
            known = " ".join(sorted(self._commands))
            return f"ERR {ErrorCode.UNKNOWN_COMMAND} {verb[:16]!r} is not one of: {known}"
        try:
            return command(args)
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
        if len(args) != 1 or len(args[0]) != 1:
            return f"ERR {ErrorCode.BAD_ARGUMENT} KEY takes exactly one key"
        reply: KeyResult = self.meter.press_key(args[0], self.clock())
        if reply.result is None:
            return f"OK KEY {reply.feedback.value}"
        return f"OK KEY {describe(reply.result)}"

    def _code(self, args: list[str]) -> str:
        if not args:
            return f"ERR {ErrorCode.BAD_ARGUMENT} CODE takes the keycode text"
        return f"OK CODE {describe(self.meter.enter_keycode(''.join(args), self.clock()))}"

    def _set_time(self, now: float) -> str:
        if not isinstance(self.clock, VirtualClock):
            return f"ERR {ErrorCode.BAD_ARGUMENT} this meter runs on the wall clock"
        self.meter.advance(now)  # raises ClockError before the clock moves
        self.clock.now = now
        return f"OK TIME {format_seconds(now)}"

    def _time(self, args: list[str]) -> str:
        try:
            (now,) = (_parse_seconds(a) for a in args)
        except ValueError:
            return f"ERR {ErrorCode.BAD_ARGUMENT} TIME takes one non-negative number of seconds"
        return self._set_time(now)

    def _wait(self, args: list[str]) -> str:
        try:
            (delta,) = (_parse_seconds(a) for a in args)
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
