"""Checked reading of one JSON object: every wrong field gets an error naming its path.

Trace lines, headers and device files all come from outside, so each field is read through
here; a `TraceFormatError` carries the file, the line and the dotted field path.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

from meter_sim.trace.errors import TraceFormatError


class Fields:
    """Read typed fields out of a JSON object; `done()` refuses any field nobody read."""

    def __init__(self, obj: object, *, path: str, source: str, line: int | None) -> None:
        self.source, self.line, self.path = source, line, path
        if not isinstance(obj, dict):
            raise self.error(f"{path or 'the line'} must be a JSON object")
        self.obj: dict[str, Any] = obj
        self._seen: set[str] = set()

    def error(self, message: str) -> TraceFormatError:
        return TraceFormatError(message, source=self.source, line=self.line)

    def _where(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def has(self, name: str) -> bool:
        return name in self.obj

    def raw(self, name: str) -> object:
        self._seen.add(name)
        if name not in self.obj:
            raise self.error(f"{self._where(name)} is missing")
        return self.obj[name]

    def text(self, name: str, *, choices: Collection[str] | None = None, limit: int = 256) -> str:
        value = self.raw(name)
        if not isinstance(value, str):
            raise self.error(f"{self._where(name)} must be a string, got {_kind(value)}")
        if len(value) > limit:
            raise self.error(f"{self._where(name)} is longer than {limit} characters")
        if choices is not None and value not in choices:
            options = ", ".join(sorted(choices))
            raise self.error(f"{self._where(name)} is {value[:40]!r}; expected one of: {options}")
        return value

    def integer(self, name: str, lo: int, hi: int) -> int:
        value = self.raw(name)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.error(f"{self._where(name)} must be an integer in {lo}..{hi}")
        return value

    def number(self, name: str, *, allow_inf: bool = False) -> float:
        """A non-negative finite number; with `allow_inf` also the string "inf"."""
        value = self.raw(name)
        if allow_inf and value == "inf":
            return math.inf
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(f"{self._where(name)} must be a number, got {_kind(value)}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number) or number < 0:
            raise self.error(f"{self._where(name)} must be a finite number >= 0")
        return number

    def flag(self, name: str) -> bool:
        value = self.raw(name)
        if not isinstance(value, bool):
            raise self.error(f"{self._where(name)} must be true or false")
        return value

    def child(self, name: str) -> Fields:
        return Fields(self.raw(name), path=self._where(name), source=self.source, line=self.line)

    def done(self) -> None:
        extra = sorted(set(self.obj) - self._seen)
        if extra:
            raise self.error(f"unknown field {self._where(extra[0])!r}")


def _kind(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )
