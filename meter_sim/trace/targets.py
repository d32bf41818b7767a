"""Replay targets: thin byte links to a device, each read bounded by a timeout.

`sim` is the simulator in-process; `tcp://HOST:PORT` is a simulator (or bridge) on TCP;
anything else is a pyserial port or URL (`/dev/ttyUSB0`, `/dev/pts/3`, `socket://`,
`rfc2217://`, `loop://`). All meaning stays in the sans-I/O replayer.
"""

from __future__ import annotations

import socket
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import serial

from meter_sim.line_protocol import LineSession
from meter_sim.trace.device import DeviceConfig
from meter_sim.trace.errors import TargetUnreachable

DEFAULT_BAUD = 115200
CONNECT_TIMEOUT = 5.0
POLL = 0.02
"""Seconds one serial read may block; reads loop on it up to the caller's timeout."""
MAX_READ = 65536
"""Most bytes one `read` returns."""
PARITIES = {"none": "N", "even": "E", "odd": "O", "mark": "M", "space": "S"}


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """How a serial port is framed: 115200 8N1 without flow control unless told otherwise.

    pyserial applies them to device paths; URLs without a line (`socket://`, `loop://`) and
    pseudo-terminals accept and ignore what they cannot carry."""

    baudrate: int = DEFAULT_BAUD
    parity: str = "none"
    bytesize: int = 8
    stopbits: float = 1
    rtscts: bool = False
    xonxoff: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.baudrate, bool) or not isinstance(self.baudrate, int):
            raise ValueError(f"baud must be a whole number, got {self.baudrate!r}")
        if not 50 <= self.baudrate <= 4_000_000:
            raise ValueError(f"baud must be 50..4000000, got {self.baudrate}")
        if self.parity not in PARITIES:
            raise ValueError(f"parity must be one of {', '.join(PARITIES)}, got {self.parity!r}")
        if self.bytesize not in (5, 6, 7, 8):
            raise ValueError(f"bytesize must be 5, 6, 7 or 8, got {self.bytesize!r}")
        if self.stopbits not in (1, 1.5, 2):
            raise ValueError(f"stopbits must be 1, 1.5 or 2, got {self.stopbits!r}")

    def describe(self) -> str:
        """E.g. `115200 8N1`, `9600 7E1 rtscts`."""
        stop = f"{self.stopbits:g}"
        flow = "".join(f" {f}" for f in ("rtscts", "xonxoff") if getattr(self, f))
        return f"{self.baudrate} {self.bytesize}{PARITIES[self.parity]}{stop}{flow}"


class Link(ABC):
    """A byte pipe to a device. `read` returns b"" when `timeout` passes with nothing."""

    name: str = "link"

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    def read(self, timeout: float) -> bytes: ...

    def reconnect(self) -> None:
        """Start a new connection to the same device (a serial line has none: nothing)."""
        return None

    def close(self) -> None:
        return None

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SimLink(Link):
    """The simulator in-process, behind its own line-protocol session (virtual clock)."""

    def __init__(self, session: LineSession) -> None:
        self.session = session
        self.name = f"sim ({session.meter.protocol})"
        self._out = bytearray()

    @classmethod
    def for_device(cls, device: DeviceConfig) -> SimLink:
        return cls(LineSession(device.build()))

    def reconnect(self) -> None:
        self._out.clear()
        self.session = LineSession(self.session.device)

    def write(self, data: bytes) -> None:
        self._out += self.session.feed(data)

    def read(self, timeout: float) -> bytes:
        data = bytes(self._out)
        self._out.clear()
        return data


class TcpLink(Link):
    def __init__(self, host: str, port: int, *, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.name = f"tcp://{host}:{port}"
        self._address = (host, port)
        self._connect_timeout = connect_timeout
        self._sock = self._connect()

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection(self._address, timeout=self._connect_timeout)
        except OSError as exc:
            raise TargetUnreachable(f"{self.name}: {exc.strerror or exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def reconnect(self) -> None:
        self._sock.close()
        self._sock = self._connect()

    def write(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise TargetUnreachable(f"{self.name}: write failed: {exc.strerror or exc}") from None

    def read(self, timeout: float) -> bytes:
        self._sock.settimeout(max(timeout, 0.001))
        try:
            data = self._sock.recv(65536)
        except TimeoutError:
            return b""
        except OSError as exc:
            raise TargetUnreachable(f"{self.name}: read failed: {exc.strerror or exc}") from None
        if not data:
            raise TargetUnreachable(f"{self.name}: the connection was closed")
        return data

    def close(self) -> None:
        self._sock.close()


class SerialLink(Link):
    """A pyserial port or URL; settings are ignored where the medium has none (pty, socket)."""

    def __init__(
        self, url: str, *, baudrate: int | None = None, settings: SerialSettings | None = None
    ) -> None:
        self.name = url
        settings = settings or SerialSettings()
        if baudrate is not None:
            settings = SerialSettings(
                baudrate,
                settings.parity,
                settings.bytesize,
                settings.stopbits,
                settings.rtscts,
                settings.xonxoff,
            )
        self.settings = settings
        try:
            self._port: Any = serial.serial_for_url(
                url,
                baudrate=settings.baudrate,
                parity=PARITIES[settings.parity],
                bytesize=settings.bytesize,
                stopbits=settings.stopbits,
                rtscts=settings.rtscts,
                xonxoff=settings.xonxoff,
                timeout=POLL,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TargetUnreachable(f"{url}: {exc}") from None

    def write(self, data: bytes) -> None:
        try:
            self._port.write(data)
            self._port.flush()
        except (serial.SerialException, OSError) as exc:
            raise TargetUnreachable(f"{self.name}: write failed: {exc}") from None

    def read(self, timeout: float) -> bytes:
        # The port's own timeout stays fixed (changing it reconfigures the port every call);
        # the wait is bounded by polling up to `timeout`. Once a byte is in, everything
        # already waiting is taken without blocking: `socket://` reports only 0 or 1 byte
        # waiting, and reading 2 bytes a turn cost a tap about a second per answer.
        deadline = time.monotonic() + timeout
        try:
            while True:
                data: bytes = self._port.read(1)
                if data:
                    while len(data) < MAX_READ and (waiting := self._port.in_waiting):
                        data += self._port.read(min(waiting, MAX_READ - len(data)))
                    return data
                if time.monotonic() >= deadline:
                    return b""
        except (serial.SerialException, OSError) as exc:
            raise TargetUnreachable(f"{self.name}: read failed: {exc}") from None

    def close(self) -> None:
        self._port.close()


def parse_tcp(spec: str) -> tuple[str, int]:
    host, sep, port = spec.removeprefix("tcp://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(f"expected tcp://HOST:PORT, got {spec!r}")
    return host, int(port)


def open_target(
    spec: str, device: DeviceConfig | None = None, *, serial: SerialSettings | None = None
) -> Link:
    """Open `sim`, `tcp://HOST:PORT`, or any pyserial port/URL (with `serial` settings)."""
    if spec == "sim":
        if device is None:
            raise ValueError("the sim target needs the device configuration")
        return SimLink.for_device(device)
    if spec.startswith("tcp://"):
        return TcpLink(*parse_tcp(spec))
    return SerialLink(spec, settings=serial)
