"""The conformance kit: docs/sync-protocol.md as executable clauses, run against any platform.

wire.py      the HTTP framing and request signing of sync v1 (the one place that knows them)
handset.py   the kit's handset: frames built from raw rows, answers read by the contract
clauses.py   the clauses as data: name, doc section, check, prerequisites
runner.py    runs them in order into verdicts
command.py   ``field-lab conformance URL [--agent NAME --code CODE]``
"""

from __future__ import annotations

from .clauses import CLAUSES, Clause, Context, SetupProblem
from .runner import Unreachable, Verdict, run_clauses
from .wire import Answer, Auth, Forgery, HttpWire, Wire

__all__ = [
    "CLAUSES",
    "Answer",
    "Auth",
    "Clause",
    "Context",
    "Forgery",
    "HttpWire",
    "SetupProblem",
    "Unreachable",
    "Verdict",
    "Wire",
    "run_clauses",
]
