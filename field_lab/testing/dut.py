"""The device under test: a meter on a serial port, a pty, TCP, or the simulator started here,
driven with `expect` as pytest-embedded and labgrid drive consoles.

`Dut` reads through `meter_sim.trace.targets` (the replay tool's links: `tcp://HOST:PORT`, or
any pyserial port or URL: `/dev/ttyUSB0`, `/dev/pts/3`, `socket://`, `rfc2217://`, `loop://`)
with `meter_sim.line_client.LineClient`, which keeps what arrived in a buffer that `expect`
consumes up to the first match. `command` speaks the line protocol of docs/line-protocol.md:
one request line, one `OK`/`ERR` answer; `status()`, `code()`, `reset()`... are its typed calls.
`simulator` starts `meter-sim serve` as a child process so the same tests run without hardware.
"""

from __future__ import annotations

import contextlib
import re
import selectors
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO

from field_lab.net import LOOPBACK
from field_lab.testing.errors import DutTimeout, DutUnreachable, FixtureError
from meter_sim.line_client import (
    AnswerTimeout,
    BadRequest,
    CodeAnswer,
    Hello,
    KeyAnswer,
    LineClient,
    LinkDown,
    Pattern,
    Status,
)
from meter_sim.trace.errors import TargetError
from meter_sim.trace.targets import Link, SerialLink, SerialSettings, open_target

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_BAUD = 115_200
START_TIMEOUT_S = 15.0
"""How long the simulator may take to say where it serves."""
PROTOCOLS = ("nexus-full", "nexus-small", "openpaygo")


class Dut:
    """A device under test behind a byte link; see the module docstring.

    The line protocol is spoken by `client` (`meter_sim.line_client.LineClient`): its typed
    calls (`status()`, `code(text)`, `reset()`...) are here too, with the link's failures as
    `DutUnreachable` and `DutTimeout`; an `ERR` answer raises `LineClient`'s `Refused`.
    """

    def __init__(self, link: Link, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if not timeout_s > 0:
            raise FixtureError(f"payg_dut: timeout must be > 0, got {timeout_s!r}")
        self.link = link
        self.name = link.name
        self.timeout_s = timeout_s
        self.client = LineClient(link, timeout=timeout_s)

    def write(self, line: str) -> None:
        """Send one line (a newline is added unless it ends with one); ASCII only."""
        with _as_dut_errors():
            self.client.write(line)

    def expect(
        self, pattern: Pattern | Sequence[Pattern], timeout: float | None = None
    ) -> re.Match[str]:
        """Wait for `pattern` (a regex, or a list of them: the earliest match wins) in what the
        device said since the last match; consume up to the match's end and return it.
        Raises DutTimeout, naming the pattern and the last lines seen, after `timeout` s."""
        with _as_dut_errors():
            return self.client.expect(pattern, timeout)

    def command(self, line: str, timeout: float | None = None) -> str:
        """Send one line-protocol request and return its answer line (``OK ...`` or
        ``ERR <code> <message>``), without the newline."""
        with _as_dut_errors():
            return self.client.command(line, timeout)

    def hello(self) -> Hello:
        with _as_dut_errors():
            return self.client.hello()

    def key(self, key: str) -> KeyAnswer:
        with _as_dut_errors():
            return self.client.key(key)

    def code(self, text: str) -> CodeAnswer:
        with _as_dut_errors():
            return self.client.code(text)

    def time(self, seconds: float) -> float:
        with _as_dut_errors():
            return self.client.time(seconds)

    def wait(self, seconds: float) -> float:
        with _as_dut_errors():
            return self.client.wait(seconds)

    def status(self) -> Status:
        with _as_dut_errors():
            return self.client.status()

    def power(self) -> str:
        with _as_dut_errors():
            return self.client.power()

    def reset(self) -> float:
        """Back to a factory meter (the simulator's RESET), for test isolation."""
        with _as_dut_errors():
            return self.client.reset()

    @property
    def lines(self) -> list[str]:
        """The last complete lines the device sent (at most KEPT_LINES), oldest first."""
        return self.client.lines

    def close(self) -> None:
        self.client.close()


@contextlib.contextmanager
def _as_dut_errors() -> Iterator[None]:
    """The client's failures as the fixture's: whose fault, in field_lab's hierarchy."""
    try:
        yield
    except BadRequest as exc:
        raise FixtureError(f"payg_dut: {exc}") from exc
    except AnswerTimeout as exc:
        raise DutTimeout(str(exc)) from exc
    except LinkDown as exc:
        raise DutUnreachable(str(exc)) from exc


def open_dut(
    url: str,
    *,
    baud: int = DEFAULT_BAUD,
    serial: SerialSettings | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Dut:
    """A `Dut` on `tcp://HOST:PORT` or any pyserial port or URL, at `baud` (or with all of
    `serial`'s framing: parity, data and stop bits, flow control) where that means something."""
    if not url:
        raise FixtureError("payg_dut: the device URL is empty")
    if not isinstance(baud, int) or isinstance(baud, bool) or baud <= 0:
        raise FixtureError(f"payg_dut: baud must be a positive int, got {baud!r}")
    try:
        settings = serial if serial is not None else SerialSettings(baudrate=baud)
    except ValueError as exc:
        raise FixtureError(f"payg_dut: {exc}") from exc
    try:
        link = open_target(url) if url.startswith("tcp://") else SerialLink(url, settings=settings)
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
