"""Upstream's device acceptance procedure (G1-G12, U1-U3) run through the validator.

The steps transcribe EnAccess/OpenPAYGO-python `test/full_test_procedure.py` as data (the
upstream script itself no longer runs against openpaygo 0.6.3, see the reference §3): the
server issues tokens with the reference encoder, the device enters them, and after each
entry the outcome and the credit left are checked. Credit is kept by the small PAYG model
below, which applies the validator's actions as the §2.5 device actions say.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from meter_sim.actions import Action, AddCredit, SetCredit, Unlock
from meter_sim.openpaygo import Kind, TokenState, process_token
from meter_sim.outcomes import Outcome
from tests.meter_sim.openpaygo.encoder import (
    PROCEDURE_KEY,
    PROCEDURE_STARTING_CODE,
    Device,
    encode,
)

DAY = 86_400
UNLOCKED = -1
"""Expected credit for an unlocked device ("infinite" upstream)."""


@dataclass(frozen=True)
class Issue:
    """The server issues a token; `skip` moves its count on first (G8 jumps 30 counts)."""

    label: str
    kind: Kind
    value: int
    skip: int = 0


@dataclass(frozen=True)
class Enter:
    """The customer types a token (by label, or literally); then credit left is `days`."""

    step: str
    token: str
    outcome: Outcome
    days: int
    wait_hours: int = 0


A, S = Kind.ADD, Kind.SET
APPLIED, DUPLICATE, INVALID = Outcome.APPLIED, Outcome.DUPLICATE, Outcome.INVALID

CORE: list[Issue | Enter] = [
    Enter("G1", "123456789", INVALID, 0),
    Issue("g2", S, 1),
    Enter("G2", "g2", APPLIED, 1),
    Issue("g3", A, 1),
    Enter("G3", "g3", APPLIED, 2),
    Enter("G4A", "g3", DUPLICATE, 2),
    Enter("G4B", "g2", DUPLICATE, 2),
    Issue("g5", S, 30),
    Enter("G5", "g5", APPLIED, 30),
    Issue("g6", S, 0),
    Enter("G6", "g6", APPLIED, 0),
    *[
        step
        for i in range(1, 4)
        for step in (
            Issue(f"g7{i}", A, 995),
            Enter(f"G7{'ABC'[i - 1]}", f"g7{i}", APPLIED, 995 * i),
        )
    ],
    *[
        step
        for i in range(1, 22)
        for step in (Issue(f"g8{i}", S, i, skip=29), Enter(f"G8-{i}", f"g8{i}", APPLIED, i))
    ],
    Issue("g9", S, 998),
    Enter("G9", "g9", APPLIED, UNLOCKED),
    Issue("g10", S, 0),
    Enter("G10", "g10", APPLIED, 0),
    Issue("g11a", S, 998),
    Enter("G11A", "g11a", APPLIED, UNLOCKED),
    Issue("g11b", A, 0),
    Enter("G11B", "g11b", APPLIED, UNLOCKED),  # ADD 0 does not relock
    Issue("g12a", S, 0),
    Enter("G12A", "g12a", APPLIED, 0),
    Issue("g12b", A, 1),
    Enter("G12B", "g12b", APPLIED, 1, wait_hours=48),  # days late are not owed
]

UNORDERED: list[Issue | Enter] = [
    Issue("u1a", S, 60),
    Enter("U1A", "u1a", APPLIED, 60),
    Issue("u1b", A, 10),
    Issue("u1c", A, 5),
    Issue("u1d", A, 1),
    Enter("U1B", "u1d", APPLIED, 61),
    Enter("U1C", "u1b", APPLIED, 71),
    Enter("U1D", "u1c", APPLIED, 76),
    Issue("u2a", A, 5),
    Issue("u2b", S, 10),
    Issue("u2c", A, 3),
    Enter("U2A", "u2b", APPLIED, 10),
    Enter("U2B", "u2a", DUPLICATE, 10),  # issued before the SET: refused
    Enter("U2C", "u2c", APPLIED, 13),
    Issue("u3a", A, 1),
    Issue("u3b", A, 998),  # upstream issues this DISABLE with ADD parity
    Enter("U3A", "u3b", APPLIED, UNLOCKED),
    Enter("U3B", "u3a", DUPLICATE, UNLOCKED),
]


@dataclass
class Payg:
    """Just enough of a PAYG meter to read "days left" as the procedure does."""

    now: int = 0
    until: int = 0
    unlocked: bool = False

    def apply(self, action: Action | None) -> None:
        match action:
            case SetCredit(seconds):
                self.until, self.unlocked = self.now + seconds, False
            case AddCredit(seconds):
                self.until = max(self.until, self.now) + seconds
            case Unlock():
                self.unlocked = True

    def days(self) -> int:
        return UNLOCKED if self.unlocked else max(0, self.until - self.now) // DAY


@pytest.mark.parametrize("restricted", [False, True])
def test_full_procedure(restricted: bool) -> None:
    device = Device(PROCEDURE_KEY, PROCEDURE_STARTING_CODE, restricted)
    server_count = 1
    state = TokenState.initial(1)
    payg = Payg()
    tokens: dict[str, str] = {}
    checked = []
    for step in [*CORE, *UNORDERED]:
        if isinstance(step, Issue):
            server_count, tokens[step.label] = encode(
                device, step.kind, step.value, server_count + step.skip
            )
            continue
        payg.now += step.wait_hours * 3600
        typed = tokens.get(step.token, step.token)
        if restricted and step.token not in tokens:
            typed = "1" * 15  # G1's literal, on a 1-4 keypad: a well-formed wrong token
        decision = process_token(
            typed,
            secret_key=device.key,
            starting_code=device.starting_code,
            state=state,
            restricted_digits=restricted,
        )
        assert decision.outcome is step.outcome, f"{step.step}: {decision.reason}"
        if decision.outcome is not Outcome.APPLIED:
            assert decision.state == state, step.step
        state = decision.state
        payg.apply(decision.action)
        assert payg.days() == step.days, step.step
        checked.append(step.step)
    assert len(checked) == 37 + 9  # every G entry (G8 is 21 of them) and every U entry
    assert state.count == server_count
