"""Exceptions raised by meter_sim.trace, named for whose fault they are.

    TraceError (MeterError)
    ├── TraceFormatError     the trace or device file is malformed (the file's fault)
    ├── RecordError          the caller asked for something a trace cannot carry (caller's fault)
    └── TargetError          the device under test could not be used (the target's fault)
        ├── TargetUnreachable    it could not be opened or connected to
        └── TargetTimeout        it stopped answering within the bounded waits

A device that answers wrongly is not an error: that is a mismatch, reported as data.
"""

from __future__ import annotations

from meter_sim.errors import MeterError


class TraceError(MeterError):
    """Root of the trace package's errors."""


class TraceFormatError(TraceError, ValueError):
    """A trace (or device file) failed validation; says where and what."""

    def __init__(self, message: str, *, source: str = "<trace>", line: int | None = None) -> None:
        self.source = source
        self.line = line
        self.message = message
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {message}")


class RecordError(TraceError):
    """The recorder was asked to record something the line protocol cannot express."""


class TargetError(TraceError):
    """The replay target failed as a medium (not as a meter)."""


class TargetUnreachable(TargetError):
    """The target could not be opened: no such port, connection refused, bad URL."""


class TargetTimeout(TargetError):
    """The target stayed silent past every bounded wait, even after resynchronising."""
