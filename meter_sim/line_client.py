"""A jig's side of the line protocol: send one request, get its answer, as text or typed.

    from meter_sim.line_client import LineClient
    from meter_sim.trace.targets import open_target
    with LineClient(open_target("tcp://127.0.0.1:7700")) as meter:
        meter.reset()
        meter.code("*747 951 838 274 41#").outcome    # "applied"
        meter.wait(3600)
        meter.status().credit                          # 601200.0

It runs over any `Link` (TCP, a serial port or pyserial URL, the simulator in-process). What
arrives is kept in a buffer that `expect` consumes up to a match, as pytest-embedded and
labgrid consoles do, so lines that are not answers (an echo, a boot banner) never derail it.
Typed calls raise `Refused` on an `ERR` answer; `request` returns it as data. Every wait is
bounded (`timeout`, default 5 s): `AnswerTimeout` names what was awaited and the last lines.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from meter_sim.errors import MeterError
from meter_sim.line_protocol import MAX_LINE, MAX_SECONDS, format_seconds
from meter_sim.trace.errors import TargetError
from meter_sim.trace.replies import Reply, ReplyError, parse_reply
from meter_sim.trace.targets import Link

DEFAULT_TIMEOUT = 5.0
KEPT_LINES = 20
"""Lines of device output kept for error messages."""
ANSWER = re.compile(r"^(?:OK|ERR) [^\r\n]*(?=\r?\n)", re.MULTILINE)
"""One answer line of the line protocol."""
READ_SLICE = 0.2
"""Longest single read; a wait is made of these up to its deadline."""

Pattern = str | re.Pattern[str]


class LineClientError(MeterError):
    """Root of the client's errors."""


class BadRequest(LineClientError, ValueError):
    """The caller asked to send what is not one ASCII request line (the caller's fault)."""


class LinkDown(LineClientError, ConnectionError):
    """The link to the device failed as a medium: closed, unplugged, refused."""


class AnswerTimeout(LineClientError, TimeoutError):
    """Nothing matching arrived in time; the message shows the last lines seen."""


class Refused(LineClientError):
    """The device answered `ERR <code> <message>`; `code` is the stable word to match on."""

    def __init__(self, request: str, code: str, message: str) -> None:
        self.request, self.code, self.message = request, code, message
        super().__init__(f"{request!r} refused: ERR {code} {message}".rstrip())


@dataclass(frozen=True, slots=True)
class Hello:
    device: str
    line_protocol: int
    protocol: str
    """`nexus-full`, `nexus-small`, `openpaygo` or `openpaygo-restricted`."""
    keys: str
    clock: str
    """`virtual` (moved by TIME/WAIT) or `wall`."""


@dataclass(frozen=True, slots=True)
class CodeAnswer:
    """The answer to a finished code (`CODE`, or the `KEY` that ended one)."""

    outcome: str
    """`applied`, `duplicate`, `invalid`, `rate_limited` or `display_id`."""
    credit: float
    """Seconds of credit left (`math.inf` while unlocked)."""
    state: str
    """`disabled`, `enabled` or `unlocked`."""
    payg_id: str | None = None
    """With `display_id`: the id shown (`-` when the device has none)."""


@dataclass(frozen=True, slots=True)
class KeyAnswer:
    feedback: str
    """`accepted` or `rejected`, or the code's outcome when this key finished one."""
    code: CodeAnswer | None = None


@dataclass(frozen=True, slots=True)
class Status:
    time: float
    credit: float
    state: str
    output: bool
    restricted: bool
    """The product's restricted flag (Nexus)."""
    limited: bool
    """Keycode entry is refused now (Nexus rate limit, OpenPAYGO entry block)."""
    protocol: str


class LineClient:
    """Speak the line protocol to one device over `link`; see the module docstring."""

    def __init__(self, link: Link, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        if not timeout > 0:
            raise BadRequest(f"timeout must be > 0, got {timeout!r}")
        self.link = link
        self.name = link.name
        self.timeout = timeout
        self._buffer = ""
        self._partial = ""
        self._lines: deque[str] = deque(maxlen=KEPT_LINES)

    # -- the wire: lines out, a consumable buffer in -------------------------------------

    def write(self, line: str) -> None:
        """Send one line (LF is added unless it ends with one); ASCII only."""
        if not line.endswith("\n"):
            line += "\n"
        try:
            data = line.encode("ascii")
        except UnicodeEncodeError:
            raise BadRequest(f"write ASCII only, got {line.rstrip()!r}") from None
        try:
            self.link.write(data)
        except TargetError as exc:
            raise LinkDown(str(exc)) from exc

    def expect(
        self, pattern: Pattern | Sequence[Pattern], timeout: float | None = None
    ) -> re.Match[str]:
        """Wait for `pattern` (a regex, or several: the earliest match wins) in what the device
        said since the last match; consume up to the match's end and return it."""
        patterns = [pattern] if isinstance(pattern, str | re.Pattern) else list(pattern)
        if not patterns:
            raise BadRequest("expect: give at least one pattern")
        compiled = [re.compile(p, re.MULTILINE) if isinstance(p, str) else p for p in patterns]
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        while True:  # bounded: each turn reads until the deadline at most
            found = [m for m in (c.search(self._buffer) for c in compiled) if m is not None]
            if found:
                match = min(found, key=lambda m: m.start())
                self._buffer = self._buffer[match.end() :]
                return match
            left = deadline - time.monotonic()
            if left <= 0:
                shown = " or ".join(repr(c.pattern) for c in compiled)
                seen = "\n".join(f"    {line}" for line in self.lines) or "    (nothing)"
                raise AnswerTimeout(
                    f"{self.name}: expected {shown} within {wait:g} s; last lines seen:\n{seen}"
                )
            self._receive(left)

    @property
    def lines(self) -> list[str]:
        """The last complete lines the device sent (at most KEPT_LINES), oldest first."""
        return list(self._lines)

    # -- one request, one answer -----------------------------------------------------------

    def command(self, line: str, timeout: float | None = None) -> str:
        """Send one request and return its answer line (`OK ...` or `ERR <code> ...`)."""
        if "\n" in line.rstrip("\n") or "\r" in line or not line.strip():
            raise BadRequest(f"one non-blank request line, got {line!r}")
        if len(line.rstrip("\n")) > MAX_LINE:
            raise BadRequest(f"a request is at most {MAX_LINE} characters")
        self.write(line)
        return self.expect(ANSWER, timeout).group(0)

    def request(self, line: str, timeout: float | None = None) -> Reply:
        """Send one request and return its answer as data (an `ERR` too)."""
        text = self.command(line, timeout)
        try:
            return parse_reply(text)
        except ReplyError as exc:
            raise LinkDown(f"{self.name}: not a well-formed answer: {exc}") from None

    def _ok(self, line: str, verb: str) -> Reply:
        reply = self.request(line)
        if not reply.ok:
            raise Refused(line, str(reply.get("error")), str(reply.get("message") or ""))
        if reply.verb != verb:
            raise LinkDown(f"{self.name}: OK {reply.verb} cannot answer {line!r}")
        return reply

    # -- typed commands (docs/line-protocol.md) ----------------------------------------------

    def hello(self) -> Hello:
        r = self._ok("HELLO", "HELLO")
        return Hello(
            device=str(r.get("device")),
            line_protocol=int(r.get("line-protocol") or 0),
            protocol=str(r.get("protocol")),
            keys=str(r.get("keys")),
            clock=str(r.get("clock")),
        )

    def key(self, key: str) -> KeyAnswer:
        r = self._ok(f"KEY {key}", "KEY")
        outcome = str(r.get("outcome"))
        if r.get("credit") is None:
            return KeyAnswer(outcome)
        return KeyAnswer(outcome, _code_answer(r))

    def code(self, text: str) -> CodeAnswer:
        return _code_answer(self._ok(f"CODE {text}", "CODE"))

    def time(self, seconds: float) -> float:
        """Set the device clock; returns the time it answers."""
        return _seconds(self._ok(f"TIME {_number(seconds)}", "TIME"), "time")

    def wait(self, seconds: float) -> float:
        """Move the device clock on; returns the new time."""
        return _seconds(self._ok(f"WAIT {_number(seconds)}", "TIME"), "time")

    def status(self) -> Status:
        r = self._ok("STATUS", "STATUS")
        return Status(
            time=_seconds(r, "time"),
            credit=_seconds(r, "credit"),
            state=str(r.get("state")),
            output=r.get("output") == "on",
            restricted=r.get("restricted") == 1,
            limited=r.get("limited") == 1,
            protocol=str(r.get("protocol")),
        )

    def power(self) -> str:
        """Power cycle; returns what the device found in storage (`ok`, `recovered`...)."""
        return str(self._ok("POWER", "POWER").get("nv"))

    def reset(self) -> float:
        """Back to a factory meter; returns the device time after it."""
        return _seconds(self._ok("RESET", "RESET"), "time")

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        self.link.close()

    def __enter__(self) -> LineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _receive(self, timeout: float) -> None:
        try:
            data = self.link.read(min(timeout, READ_SLICE))
        except TargetError as exc:
            raise LinkDown(str(exc)) from exc
        if not data:
            return
        text = data.decode("ascii", errors="replace")
        self._buffer += text
        self._partial += text
        *complete, self._partial = self._partial.split("\n")
        self._lines.extend(line.rstrip("\r") for line in complete)


def _number(seconds: float) -> str:
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not 0 <= seconds <= MAX_SECONDS
    ):
        raise BadRequest(f"seconds must be a number 0..{MAX_SECONDS:.0f}, got {seconds!r}")
    return format_seconds(float(seconds))


def _seconds(reply: Reply, name: str) -> float:
    value = reply.get(name)
    if not isinstance(value, float):
        raise LinkDown(f"OK {reply.verb} answer without {name}=")
    return value


def _code_answer(reply: Reply) -> CodeAnswer:
    payg_id = reply.get("id")
    return CodeAnswer(
        outcome=str(reply.get("outcome")),
        credit=_seconds(reply, "credit"),
        state=str(reply.get("state")),
        payg_id=None if payg_id is None else str(payg_id),
    )
