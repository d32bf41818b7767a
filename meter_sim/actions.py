"""Effects a validated code asks of the PAYG layer.

Protocol validators are pure: they decide an outcome and, for applied codes, one action.
The meter applies the action to its credit; no validator touches credit directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

from meter_sim.outcomes import Outcome


@dataclass(frozen=True, slots=True)
class AddCredit:
    """Add seconds of credit; an unlocked unit stays unlocked."""

    seconds: int


@dataclass(frozen=True, slots=True)
class SetCredit:
    """Replace credit with exactly this many seconds; relocks an unlocked unit."""

    seconds: int


@dataclass(frozen=True, slots=True)
class Unlock:
    """Unlock for good (Nexus SET 99999 / small 255, OpenPAYGO DISABLE_PAYG)."""


Action = AddCredit | SetCredit | Unlock

S = TypeVar("S")


class Decision(NamedTuple, Generic[S]):
    """A validator's verdict on one finished code.

    `state` is the protocol state after the code (the input state itself unless the code
    consumed an id, count or QC allowance); `reason` says why, for logs and mismatches.
    A named tuple, not a frozen dataclass: every code makes one, and a tuple is built in C
    (a frozen dataclass sets each field through a descriptor call, ~900 instructions each).
    """

    outcome: Outcome
    state: S
    action: Action | None = None
    reason: str = ""
