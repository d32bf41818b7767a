"""Split a device's byte stream into answer lines, setting aside what cannot be one.

Serial wires deliver partial lines, stray bytes after a reset, and noise. This sans-I/O
splitter never raises: it yields `Line`s and `Garbage`, and holds at most `limit` bytes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Line:
    text: str


@dataclass(frozen=True, slots=True)
class Garbage:
    data: bytes
    why: str


class LineSplitter:
    """Bytes in, complete lines out; `\\r` before `\\n` is dropped, blank lines are skipped."""

    def __init__(self, limit: int = 1024) -> None:
        self.limit = limit
        self._buffer = bytearray()
        self._overlong = False

    @property
    def pending(self) -> bytes:
        """A partial line received so far (no newline yet)."""
        return bytes(self._buffer)

    def clear(self) -> bytes:
        """Drop and return the partial line (after a timeout it is stale)."""
        held = bytes(self._buffer)
        self._buffer.clear()
        self._overlong = False
        return held

    def feed(self, data: bytes) -> list[Line | Garbage]:
        out: list[Line | Garbage] = []
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            self._take(data[start:end], out)
            out.extend(self._finish())
            start = end + 1
        self._take(data[start:], out)
        return out

    def _take(self, chunk: bytes, out: list[Line | Garbage]) -> None:
        if self._overlong:
            return
        self._buffer += chunk
        if len(self._buffer) > self.limit:
            out.append(Garbage(bytes(self._buffer[:64]), f"line longer than {self.limit} bytes"))
            self._buffer.clear()
            self._overlong = True

    def _finish(self) -> list[Line | Garbage]:
        raw = bytes(self._buffer).rstrip(b"\r")
        overlong = self._overlong
        self._buffer.clear()
        self._overlong = False
        if overlong or not raw.strip():
            return []
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            return [Garbage(raw[:64], "bytes outside ASCII")]
        text = text.replace("\t", " ")
        if not text.isprintable():
            return [Garbage(raw[:64], "control characters in a line")]
        return [Line(text)]
