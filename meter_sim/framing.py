"""Request framing for the line protocol: bytes in, whole request lines out (sans-I/O).

A jig may end its lines with LF, CRLF, or CR alone (a serial terminal whose Enter sends CR).
A CR must be answered at once, before the next byte shows whether an LF follows, so the first
line ending a connection sends decides how it frames from then on:

- CR alone first: CR ends a line, an LF right after a CR is dropped, and a bare LF also ends
  a line. Every CR is a line end, so none can be stray.
- LF or CRLF first: LF ends a line and a CR must come right before it. A CR followed by
  anything else is a stray CR inside the line: the whole line is refused (`Stray`), never split.

The serve shells, the recorder and the serial tap all frame with this, so they agree on
where every line ends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

CR, LF = 0x0D, 0x0A
_ENDS = re.compile(rb"[\r\n]")


class Ending(Enum):
    """How a connection ends its lines, learnt from the first line end it sends."""

    UNKNOWN = "unknown"
    CR = "cr"
    LF = "lf"
    """LF, with or without a CR before it."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One request line, without its line end (possibly blank)."""

    raw: bytes


@dataclass(frozen=True, slots=True)
class Overlong:
    """A line longer than the limit; its bytes were discarded as they came."""


@dataclass(frozen=True, slots=True)
class Stray:
    """A line with a CR inside it on a connection that ends lines with LF."""


Framed = Frame | Overlong | Stray


class LineFramer:
    """Split a request byte stream into lines; holds at most `limit` bytes of a line."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.ending = Ending.UNKNOWN
        self._buffer = bytearray()
        self._overlong = False
        self._stray = False
        self._after_cr = False
        """The last byte was a CR that ended a line; an LF right after it belongs to it."""
        self._held_cr = False
        """LF framing: a CR arrived; the next byte says whether it ends the line."""

    def feed(self, data: bytes) -> list[Framed]:
        out: list[Framed] = []
        i, n = 0, len(data)
        while i < n:
            if self._after_cr:
                self._after_cr = False
                if data[i] == LF:
                    if self.ending is Ending.UNKNOWN:
                        self.ending = Ending.LF
                    i += 1
                    continue
                if self.ending is Ending.UNKNOWN:
                    self.ending = Ending.CR
            if self._held_cr:
                self._held_cr = False
                if data[i] == LF:
                    out.append(self._finish())
                    i += 1
                    continue
                self._stray = True
            found = _ENDS.search(data, i)
            end = n if found is None else found.start()
            self._take(data[i:end])
            if found is None:
                break
            i = end + 1
            if data[end] == LF:
                if self.ending is Ending.UNKNOWN:
                    self.ending = Ending.LF
                out.append(self._finish())
            elif self.ending is Ending.LF:
                self._held_cr = True
            else:
                out.append(self._finish())
                self._after_cr = True
        return out

    def _take(self, chunk: bytes) -> None:
        if self._overlong or not chunk:
            return
        self._buffer += chunk
        if len(self._buffer) > self.limit:
            self._buffer.clear()
            self._overlong = True

    def _finish(self) -> Framed:
        frame: Framed
        if self._overlong:
            frame = Overlong()
        elif self._stray:
            frame = Stray()
        else:
            frame = Frame(bytes(self._buffer))
        self._buffer.clear()
        self._overlong = self._stray = False
        return frame
