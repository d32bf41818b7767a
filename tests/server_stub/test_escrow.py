"""The platform's escrow book: exposure within the bound whatever happens, each released code
reconciled exactly once, abuse refused and flagged, later ids continuing after reserved ones."""

from __future__ import annotations

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from server_stub.errors import SetupError
from server_stub.escrow import EscrowBook, EscrowPolicy, Flag, State

AGENTS = ("ama", "kofi")
DEVICES = tuple(range(1, 9))


class Book(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.book = EscrowBook(EscrowPolicy(devices=3, days=2))
        self.owner = {d: AGENTS[d % 2] for d in DEVICES}
        self.next_id = dict.fromkeys(DEVICES, 0)
        self.accepted: dict[tuple[int, int], str] = {}

    @rule(agent=st.sampled_from(AGENTS))
    def sync_grants(self, agent: str) -> None:
        stock = {d: self.next_id[d] for d in DEVICES if self.owner[d] == agent}
        for r in self.book.grant(agent, stock):
            assert r.reserved_id == self.next_id[r.device]
            self.next_id[r.device] = r.next_id  # later codes continue after it

    @rule(device=st.sampled_from(DEVICES), agent=st.sampled_from(AGENTS), sale=st.integers(1, 4))
    def reconcile(self, device: int, agent: str, sale: int) -> None:
        held = [r for r in self.book.reservations.values() if r.device == device]
        reserved = held[-1].reserved_id if held else 0
        found = self.book.reservations.get((device, reserved))
        out = self.book.reconcile(agent, device, reserved, f"{agent}:{sale}")
        key = (device, reserved)
        if out.ok and not out.replay:
            assert key not in self.accepted
            self.accepted[key] = f"{agent}:{sale}"
        elif out.replay:
            assert self.accepted[key] == f"{agent}:{sale}"
        elif found is None or found.agent != agent:
            assert out.flag is Flag.NOT_IN_STOCK
        elif found.state is State.RECONCILED:
            assert out.flag is Flag.RELEASED_TWICE
        else:
            assert out.flag is Flag.AFTER_REVOCATION

    @rule(device=st.sampled_from(DEVICES), to=st.sampled_from(AGENTS))
    def move(self, device: int, to: str) -> None:
        self.book.revoke(device)
        self.owner[device] = to

    @rule(device=st.sampled_from(DEVICES), agent=st.sampled_from(AGENTS))
    def handset_hears(self, device: int, agent: str) -> None:
        self.book.heard(agent, device)

    @invariant()
    def exposure_within_the_bound(self) -> None:
        for agent in AGENTS:
            assert self.book.exposure(agent) <= self.book.policy.bound_days

    @invariant()
    def at_most_one_held_code_per_device(self) -> None:
        held = [r.device for a in AGENTS for r in self.book.held(a)]
        assert len(held) == len(set(held))


TestBook = Book.TestCase


def test_the_policy_is_checked_and_a_reused_id_is_refused() -> None:
    with pytest.raises(SetupError, match="escrow devices"):
        EscrowPolicy(devices=-1)
    book = EscrowBook(EscrowPolicy(devices=2, days=1))
    (r,) = book.grant("ama", {5: 10})
    assert (r.reserved_id, r.next_id, r.days) == (10, 11, 1)
    assert book.exposure("ama") == 1
    book.revoke(5)
    assert book.exposure("ama") == 1  # the handset may still hold it until it syncs
    with pytest.raises(SetupError, match="reserved already"):
        book.grant("ama", {5: 10})  # the caller forgot to move the next id
    assert book.reconcile("ama", 5, 10, "1:2").flag is Flag.AFTER_REVOCATION
    book.heard("ama", 5)
    assert book.exposure("ama") == 0
    assert book.flags == [("ama", 5, Flag.AFTER_REVOCATION)]
