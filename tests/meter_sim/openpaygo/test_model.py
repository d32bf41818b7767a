"""Stateful model test: random issue/entry sessions against a plain reference model.

The model does not hash: it knows each issued token's count and kind from the server
side and says what the device must answer, from the spec's rules written as sets
(applied counts, and the highest count of a window-closing token). Independently of the
model, the machine checks the safety properties: every token is credited at most once,
no ADD older than an accepted SET/DISABLE/SYNC is ever credited, the count never goes
down, and a refused token changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from meter_sim.openpaygo import Kind, TokenState, process_token
from meter_sim.outcomes import Outcome
from tests.meter_sim.openpaygo.encoder import RAW_VALUE, Device, action_for, encode

OLDER = 16
FLAVOURS = [(kind, False) for kind in Kind] + [(Kind.ADD, True), (Kind.SET, True)]
"""(kind, extended) a server issues: extended tokens are ADD or SET only."""
SKIPS = st.sampled_from([0] * 12 + [1, 2, 3, 10, 30, 62, 63, 64, 66, 98, 100])
"""How far the server's count moves before a token: mostly in order, sometimes to the edges."""
VALUES = st.sampled_from([0, 1, 7, 30, 995]) | st.integers(0, 999_999)


@dataclass(frozen=True)
class Issued:
    token: str
    count: int
    kind: Kind
    value: int


class ValidatorMachine(RuleBasedStateMachine):
    issued = Bundle("issued")

    @initialize(start=st.integers(1, 20), restricted=st.booleans(), divider=st.sampled_from([1, 3]))
    def provision(self, start: int, restricted: bool, divider: int) -> None:
        self.device = Device(restricted=restricted)
        self.divider = divider
        self.state = TokenState.initial(start)
        self.server = start
        # The model.
        self.count = start
        self.applied_counts = {start}
        self.closed_at = -1
        # Safety bookkeeping, from the decisions only.
        self.credited: set[str] = set()
        self.highest_close = -1

    @rule(target=issued, flavour=st.sampled_from(FLAVOURS), value=VALUES, skip=SKIPS)
    def issue(self, flavour: tuple[Kind, bool], value: int, skip: int) -> Issued:
        kind, extended = flavour
        value = RAW_VALUE.get(kind, value if extended else value % 996)
        self.server, token = encode(self.device, kind, value, self.server + skip, extended=extended)
        if extended:  # the device reads an extended token's kind from its parity
            kind = Kind.SET if self.server % 2 else Kind.ADD
        return Issued(token, self.server, kind, value)

    def model(self, t: Issued) -> Outcome:
        reach = 100 if t.kind is Kind.SYNC else 64
        if t.count > self.count + reach:
            return Outcome.INVALID
        if t.count > self.count:
            return Outcome.APPLIED
        older_ok = self.count - OLDER < t.count and t.count > self.closed_at
        if t.kind is Kind.ADD and older_ok and t.count not in self.applied_counts:
            return Outcome.APPLIED
        return Outcome.DUPLICATE

    @rule(t=issued)
    def enter(self, t: Issued) -> None:
        decision = process_token(
            t.token,
            secret_key=self.device.key,
            starting_code=self.device.starting_code,
            state=self.state,
            restricted_digits=self.device.restricted,
            time_divider=self.divider,
        )
        assert decision.outcome is self.model(t), decision.reason
        if decision.outcome is not Outcome.APPLIED:
            assert decision.state == self.state
            assert decision.action is None
            return
        assert decision.action == action_for(t.kind, t.value, self.divider)
        assert t.token not in self.credited, "credited twice"
        self.credited.add(t.token)
        if t.kind is Kind.ADD:
            assert t.count > self.highest_close, "an ADD older than a SET got through"
        else:
            self.highest_close = t.count
            self.closed_at = t.count
        assert decision.state.count >= self.state.count
        self.state = decision.state
        self.count = max(self.count, t.count)
        self.applied_counts.add(t.count)

    @invariant()
    def state_matches_the_model(self) -> None:
        if not hasattr(self, "state"):
            return
        assert self.state.count == self.count
        assert self.count in self.state.used
        assert all(self.count - OLDER <= c <= self.count for c in self.state.used)


ValidatorMachine.TestCase.settings = settings(stateful_step_count=25)
TestValidatorMachine = ValidatorMachine.TestCase
