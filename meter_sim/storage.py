"""Where a meter's non-volatile image lives: the I/O shell around `nv`.

A storage is a small byte-addressed medium, like the flash page a product gives Nexus.
Writes may be torn by a power cut at any byte; `nv` makes that safe, these only move bytes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from meter_sim.errors import NVError


class Storage(Protocol):
    def read(self) -> bytes:
        """The whole medium (empty when never written)."""
        ...

    def write(self, offset: int, data: bytes) -> None:
        """Write `data` at `offset`, growing the medium if needed."""
        ...


class MemoryStorage:
    """A medium in RAM: survives `Meter.power_cycle`, not the process."""

    def __init__(self, initial: bytes = b"") -> None:
        self.data = bytearray(initial)

    def read(self) -> bytes:
        return bytes(self.data)

    def write(self, offset: int, data: bytes) -> None:
        end = offset + len(data)
        if end > len(self.data):
            self.data.extend(b"\x00" * (end - len(self.data)))
        self.data[offset:end] = data


class FileStorage:
    """A medium in a file, each write flushed and fsynced before it returns."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def read(self) -> bytes:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return b""
        except OSError as exc:
            raise NVError(f"cannot read meter state {self.path}: {exc.strerror}") from exc

    def write(self, offset: int, data: bytes) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                os.pwrite(fd, data, offset)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise NVError(f"cannot write meter state {self.path}: {exc.strerror}") from exc
