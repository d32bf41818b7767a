"""The count of one fuzz run: inputs, outcomes by label, crashes (the first few kept with
their input so they can be replayed) and, over HTTP, 5xx answers."""

from __future__ import annotations

import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .targets import Target, one_input

MAX_LABELS = 400
"""Distinct outcome labels kept; later new ones are counted as `(more)`."""
MAX_EXAMPLES = 5


@dataclass
class Tally:
    inputs: int = 0
    crashes: int = 0
    server_errors: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    examples: list[dict[str, str]] = field(default_factory=list)

    def count(self, outcome: str) -> bool:
        """Count one answer; whether it is one not seen before."""
        if outcome not in self.outcomes and len(self.outcomes) >= MAX_LABELS:
            outcome = "(more)"
        new = outcome not in self.outcomes
        self.outcomes[outcome] += 1
        return new

    def keep(self, data: bytes, error: str, at: str) -> None:
        """Keep a failing input (the first few) to replay."""
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append({"input": data[:1024].hex(), "error": error[:300], "at": at})

    def feed(self, target: Target, data: bytes) -> bool:
        """Run one input through `target`; whether its outcome is new. A crash (anything but
        the target's own refusal) is counted and kept, and fuzzing goes on."""
        self.inputs += 1
        try:
            outcome = one_input(target, data)
        except Exception as exc:
            self.crashes += 1
            where = traceback.extract_tb(exc.__traceback__)[-1]
            self.keep(data, f"{type(exc).__name__}: {exc}", f"{where.filename}:{where.lineno}")
            outcome = f"CRASH {type(exc).__name__}"
        return self.count(outcome)

    def summary(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "crashes": self.crashes,
            "server_errors": self.server_errors,
            "crash_examples": self.examples,
            "outcomes": len(self.outcomes),
            "top_outcomes": dict(self.outcomes.most_common(8)),
        }
