"""The device under test: a meter on a serial port, a pty, TCP, or the simulator started here,
driven with `expect` as pytest-embedded and labgrid drive consoles.

`Dut` reads through `meter_sim.trace.targets` (the replay tool's links: `tcp://HOST:PORT`, or
any pyserial port or URL: `/dev/ttyUSB0`, `/dev/pts/3`, `socket://`, `rfc2217://`, `loop://`),
keeps what arrived in a buffer, and `expect` consumes it up to the first match. `command`
speaks the line protocol of docs/line-protocol.md: one request line, one `OK`/`ERR` answer.
`simulator` starts `meter-sim serve` as a child process so the same tests run without hardware.
"""

from __future__ import annotations

import contextlib
import re
import selectors
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO

from field_lab.net import LOOPBACK
from field_lab.testing.errors import DutTimeout, DutUnreachable, FixtureError
from meter_sim.trace.errors import TargetError
from meter_sim.trace.targets import Link, SerialLink, open_target

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_BAUD = 115_200
START_TIMEOUT_S = 15.0
"""How long the simulator may take to say where it serves."""
KEPT_LINES = 20
"""Lines of device output kept for error messages."""
ANSWER = re.compile(r"^(?:OK|ERR) [^\r\n]*(?=\r?\n)", re.MULTILINE)
"""One answer line of the line protocol."""
PROTOCOLS = ("nexus-full", "nexus-small", "openpaygo")

Pattern = str | re.Pattern[str]


class Dut:
    """A device under test behind a byte link; see the module docstring."""

    def __init__(self, link: Link, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if not timeout_s > 0:
            raise FixtureError(f"payg_dut: timeout must be > 0, got {timeout_s!r}")
        self.link = link
        self.name = link.name
        self.timeout_s = timeout_s
        self._buffer = ""
        self._lines: deque[str] = deque(maxlen=KEPT_LINES)
        self._partial = ""

    def write(self, line: str) -> None:
        """Send one line (a newline is added unless it ends with one); ASCII only."""
        if not line.endswith("\n"):
            line += "\n"
        try:
            data = line.encode("ascii")
        except UnicodeEncodeError as exc:
            raise FixtureError(f"payg_dut: write ASCII only, got {line!r}") from exc
        try:
            self.link.write(data)
        except TargetError as exc:
            raise DutUnreachable(str(exc)) from exc

    def expect(
        self, pattern: Pattern | Sequence[Pattern], timeout: float | None = None
    ) -> re.Match[str]:
        """Wait for `pattern` (a regex, or a list of them: the earliest match wins) in what the
        device said since the last match; consume up to the match's end and return it.
        Raises DutTimeout, naming the pattern and the last lines seen, after `timeout` s."""
        patterns = [pattern] if isinstance(pattern, str | re.Pattern) else list(pattern)
        if not patterns:
            raise FixtureError("expect: give at least one pattern")
        compiled = [re.compile(p, re.MULTILINE) if isinstance(p, str) else p for p in patterns]
        wait = self.timeout_s if timeout is None else timeout
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
                raise DutTimeout(
                    f"{self.name}: expected {shown} within {wait:g} s; last lines seen:\n{seen}"
                )
            self._receive(left)

    def command(self, line: str, timeout: float | None = None) -> str:
        """Send one line-protocol request and return its answer line (``OK ...`` or
        ``ERR <code> <message>``), without the newline."""
        if "\n" in line.rstrip("\n") or not line.strip():
            raise FixtureError(f"command: one non-blank request line, got {line!r}")
        self.write(line)
        return self.expect(ANSWER, timeout).group(0)

    @property
    def lines(self) -> list[str]:
        """The last complete lines the device sent (at most KEPT_LINES), oldest first."""
        return list(self._lines)

    def close(self) -> None:
        self.link.close()

    def _receive(self, timeout: float) -> None:
        try:
            data = self.link.read(min(timeout, 0.2))
        except TargetError as exc:
            raise DutUnreachable(str(exc)) from exc
        if not data:
            return
        text = data.decode("ascii", errors="replace")
        self._buffer += text
        self._partial += text
        *complete, self._partial = self._partial.split("\n")
        self._lines.extend(line.rstrip("\r") for line in complete)


def open_dut(url: str, *, baud: int = DEFAULT_BAUD, timeout_s: float = DEFAULT_TIMEOUT_S) -> Dut:
    """A `Dut` on `tcp://HOST:PORT` or any pyserial port or URL, at `baud` where that means
    something."""
    if not url:
        raise FixtureError("payg_dut: the device URL is empty")
    if not isinstance(baud, int) or baud <= 0:
        raise FixtureError(f"payg_dut: baud must be a positive int, got {baud!r}")
    try:
        link = open_target(url) if url.startswith("tcp://") else SerialLink(url, baudrate=baud)
    except (TargetError, ValueError) as exc:
        raise DutUnreachable(f"payg_dut: cannot open {url}: {exc}") from exc
    return Dut(link, timeout_s=timeout_s)


@dataclass(frozen=True, kw_only=True)
class SimulatorSpec:
    """The simulated device `payg_dut` starts when no `--payg-dut-url` is given."""

    protocol: str = "nexus-full"
    key: str | bytes | None = None
    """16 bytes or 32 hex digits; None: meter-sim's public sample key."""
    starting_code: int | None = None
    """OpenPAYGO only."""
    pty: bool = False
    """Serve on a pseudo-terminal (the serial path) instead of TCP."""

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise FixtureError(
                f"payg_dut: protocol must be one of {PROTOCOLS}, got {self.protocol!r}"
            )
        key = self.key
        if key is not None:
            raw = bytes.fromhex(key) if isinstance(key, str) and _hex(key) else key
            if not isinstance(raw, bytes) or len(raw) != 16:
                raise FixtureError(f"payg_dut: key must be 16 bytes or 32 hex digits, got {key!r}")
        code = self.starting_code
        if code is not None and (
            not isinstance(code, int) or isinstance(code, bool) or not 0 <= code <= 999_999_999
        ):
            raise FixtureError(f"payg_dut: starting_code must be 0..999999999, got {code!r}")
        if code is not None and self.protocol != "openpaygo":
            raise FixtureError("payg_dut: starting_code is for the openpaygo protocol only")
        if not isinstance(self.pty, bool):
            raise FixtureError(f"payg_dut: pty must be True or False, got {self.pty!r}")

    def argv(self) -> list[str]:
        """`meter-sim serve` with these device options."""
        argv = [sys.executable, "-m", "meter_sim.cli", "serve", "--protocol", self.protocol]
        if self.key is not None:
            key = self.key.hex() if isinstance(self.key, bytes) else self.key
            argv += ["--key", key]
        if self.starting_code is not None:
            argv += ["--starting-code", str(self.starting_code)]
        return [*argv, "--pty"] if self.pty else [*argv, "--tcp", f"{LOOPBACK}:0"]


def _hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


@contextlib.contextmanager
def simulator(
    spec: SimulatorSpec, *, baud: int = DEFAULT_BAUD, timeout_s: float = DEFAULT_TIMEOUT_S
) -> Iterator[Dut]:
    """Start `meter-sim serve` (TCP on 127.0.0.1, or a pty opened through pyserial), connect
    a `Dut` to it, and stop the process when the block ends."""
    process = subprocess.Popen(
        spec.argv(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        where = _announced(process)
        # tcp:// rather than pyserial's socket://, whose close sleeps 0.3 s (for reconnects)
        url = where if spec.pty else f"tcp://{where}"
        dut = open_dut(url, baud=baud, timeout_s=timeout_s)
        try:
            yield dut
        finally:
            dut.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def _announced(process: subprocess.Popen[str]) -> str:
    """What follows ``serving on`` in the simulator's first line (bounded wait)."""
    stdout: IO[str] | None = process.stdout
    assert stdout is not None
    line = _first_line(stdout, START_TIMEOUT_S)
    prefix = "serving on "
    if not line.startswith(prefix):
        process.kill()
        _, err = process.communicate(timeout=5)
        raise DutUnreachable(
            f"payg_dut: meter-sim serve did not start (said {line!r}, exit"
            f" {process.returncode}): {err.strip()[-500:]}"
        )
    return line[len(prefix) :].strip()


def _first_line(stream: IO[str], timeout_s: float) -> str:
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout_s):
            raise DutUnreachable(f"payg_dut: meter-sim serve said nothing in {timeout_s:g} s")
    return stream.readline()
