"""How much of our code a set of fuzz inputs reached: distinct lines and arcs (line-to-line
transitions, which count branches taken) in the named packages, traced with `sys.settrace`.

Python 3.11 has no `sys.monitoring`, and tracing every one of a million inputs would cost
ten times the fuzzing itself, so a campaign replays a sample (its corpus) under `LineCoverage`.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

PACKAGES = ("meter_sim", "agent_client", "server_stub")
"""The code under test: the decoders and the platform, never the lab that drives them."""

Tracer = Any  # sys.settrace's callback type is not spelled in typeshed for 3.11


class LineCoverage:
    """Records (file, from line, to line) arcs in `packages` while the block runs, in this
    thread and in threads started inside it (the platform's store thread)."""

    def __init__(self, packages: Iterable[str] = PACKAGES) -> None:
        root = Path(__file__).resolve().parents[2]
        self._roots = tuple(str(root / p) + "/" for p in packages)
        self._wanted: dict[str, bool] = {}
        self.arcs: set[tuple[str, int, int]] = set()

    def _want(self, filename: str) -> bool:
        hit = self._wanted.get(filename)
        if hit is None:
            hit = self._wanted[filename] = filename.startswith(self._roots)
        return hit

    def _call(self, frame: FrameType, event: str, arg: object) -> Tracer:
        code = frame.f_code
        if event != "call" or not self._want(code.co_filename):
            return None
        arcs, name = self.arcs, code.co_filename
        last = -code.co_firstlineno

        def local(frame: FrameType, event: str, arg: object) -> Tracer:
            nonlocal last
            if event == "line":
                arcs.add((name, last, frame.f_lineno))
                last = frame.f_lineno
            elif event == "return":
                arcs.add((name, last, -code.co_firstlineno))
            return local

        return local

    def __enter__(self) -> LineCoverage:
        threading.settrace(self._call)
        sys.settrace(self._call)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        sys.settrace(None)
        threading.settrace(None)  # type: ignore[arg-type,unused-ignore]  # typeshed versions differ

    @property
    def lines(self) -> int:
        return len({(name, to) for name, _, to in self.arcs if to > 0})

    @property
    def files(self) -> int:
        return len({name for name, _, _ in self.arcs})

    def summary(self) -> dict[str, int]:
        return {"lines": self.lines, "arcs": len(self.arcs), "files": self.files}
