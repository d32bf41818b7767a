"""The escrow on the platform's tables: granted at sync within the bound, an offline sale
reconciled once (its escrowed days out of the down payment, later codes after the reserved
id), revoked when stock moves, and abuse refused and flagged. Then a Hypothesis state machine
drives exchanges, offline sales (honest and not), moves and syncs in any order."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from agent_client.protocol.auth import Claim, HandsetKey
from agent_client.protocol.frames import DownlinkFrame, Escrow, EscrowRevoked, Reason, Stock
from agent_client.protocol.keycodes import keycode_text
from agent_client.protocol.ops import Kind, Operation
from meter_sim import Outcome
from server_stub.escrow import EscrowPolicy
from server_stub.store import Store

from .fixtures import PRICE_PER_DAY, Seeded, meter_for, seed_platform

DAY_S = 86_400


class Phone:
    """One provisioned handset talking to the store directly (stamps, seqs, cursor)."""

    def __init__(self, store: Store, agent: str) -> None:
        self.store = store
        key = HandsetKey.generate().public
        self.handset = store.provision(agent, f"code-{agent}-7f3a9c", key, 1)
        self.ts = 1000
        self.seq = 0
        self.cursor = 0
        self.escrow: dict[int, Escrow] = {}

    def op(self, kind: Kind, *fields: object) -> Operation:
        self.seq += 1
        return Operation.make(self.seq, kind, 1_790_000_000, *fields)

    def sync(self, *ops: Operation, now_ms: int = 1_790_000_000_000) -> DownlinkFrame:
        self.ts += 1
        answer = self.store.exchange(Claim(self.handset, self.ts, b""), ops, self.cursor, now_ms)
        for entry in answer.entries:
            if isinstance(entry, Escrow):
                self.escrow[entry.device] = entry
            elif isinstance(entry, EscrowRevoked):
                held = self.escrow.get(entry.device)
                if held is not None and held.reserved_id == entry.reserved_id:
                    del self.escrow[entry.device]
        self.cursor = answer.last_entry if answer.entries else self.cursor
        return answer

    def offline_sale(self, device: int, reserved: int, down: int, plan: int) -> list[Operation]:
        customer = self.op(Kind.REGISTER_CUSTOMER, "Esi", "+233200000001")
        sale = self.op(Kind.RECORD_SALE, customer.seq, device, plan, down, reserved)
        return [customer, sale]


@pytest.fixture
def seeded(tmp_path: Path) -> Seeded:
    return seed_platform(tmp_path / "s.db")


@pytest.fixture
def store(tmp_path: Path, seeded: Seeded) -> Iterator[Store]:
    opened = Store.open(tmp_path / "s.db", escrow=EscrowPolicy(devices=2, days=1))
    yield opened
    opened.close()


def exposure(store: Store, agent: int) -> int:
    (days,) = store._one(
        "SELECT coalesce(sum(days), 0) FROM escrow"
        " WHERE agent = ? AND state IN ('held', 'revoked')",
        agent,
    )
    return int(days)


def events(store: Store) -> list[tuple[str, int, str | None]]:
    rows = store.db.execute("SELECT kind, device, flag FROM escrow_events ORDER BY event")
    return [(k, d, f) for k, d, f in rows.fetchall()]


def test_a_sync_grants_the_bound_and_no_more(store: Store, seeded: Seeded) -> None:
    phone = Phone(store, "ama")
    phone.sync()
    assert sorted(phone.escrow) == seeded.stock["ama"][:2]  # lowest serials first
    phone.sync()
    phone.sync()
    assert len(phone.escrow) == 2  # topped up to the bound, never past it
    assert exposure(store, seeded.agents["ama"][0]) == 2
    for code in phone.escrow.values():  # the device's next id moved past the reserved one
        (next_id,) = store._one("SELECT next_id FROM devices WHERE device = ?", code.device)
        assert next_id > code.reserved_id


def test_the_default_platform_grants_nothing(tmp_path: Path, seeded: Seeded) -> None:
    plain = Store.open(tmp_path / "s.db")
    phone = Phone(plain, "ama")
    phone.sync()
    assert phone.escrow == {}
    assert events(plain) == []
    plain.close()


def test_an_offline_sale_is_accounted_once(store: Store, seeded: Seeded) -> None:
    phone = Phone(store, "ama")
    phone.sync()
    device = seeded.stock["ama"][0]
    code = phone.escrow.pop(device)
    meter = meter_for(seeded.secrets[device])
    text = keycode_text(code.format, code.number)
    assert meter.enter_keycode(text, 10.0).outcome is Outcome.APPLIED  # no link needed
    ops = phone.offline_sale(device, code.reserved_id, 3 * PRICE_PER_DAY, seeded.plan)
    answer = phone.sync(*ops)
    assert answer.acked == (1, 2)
    again = phone.sync(*ops)  # the same sale again (a lost answer): a replay
    assert again.acked == (1, 2)
    rows = store.keycodes_for_op(phone.handset, 2)
    assert [r["days"] for r in rows] == [2]  # 3 days paid, 1 of them escrowed
    (message_id,) = store._one(
        "SELECT message_id FROM keycodes WHERE handset = ? AND op_seq = 2", phone.handset
    )
    assert message_id > code.reserved_id  # later codes continue after the reserved one
    assert meter.enter_keycode(rows[0]["keycode"], 800.0).outcome is Outcome.APPLIED
    assert meter.credit_remaining(800.0) == pytest.approx(3 * DAY_S - 790, abs=60)
    assert [e for e in events(store) if e[0] == "reconciled"] == [("reconciled", device, None)]
    sales = store._one("SELECT down_payment FROM sales WHERE device = ?", device)
    assert sales == (3 * PRICE_PER_DAY,)
    assert len(phone.escrow) == 2  # the agent was topped up again at that sync


def test_abuse_is_refused_and_flagged(store: Store, seeded: Seeded) -> None:
    ama, sibling, kofi = Phone(store, "ama"), Phone(store, "ama"), Phone(store, "kofi")
    ama.sync()
    sibling.sync()
    kofi.sync()
    first, second = seeded.stock["ama"][:2]
    code = ama.escrow[first]
    assert ama.sync(*ama.offline_sale(first, code.reserved_id, 100, seeded.plan)).acked
    twice = sibling.sync(*sibling.offline_sale(first, code.reserved_id, 100, seeded.plan))
    assert twice.rejected == ((2, Reason.ESCROW_RELEASED_TWICE),)
    stolen = kofi.sync(*kofi.offline_sale(second, ama.escrow[second].reserved_id, 100, 1))
    assert stolen.rejected == ((2, Reason.NOT_IN_STOCK),)
    unknown = ama.sync(*ama.offline_sale(seeded.stock["ama"][5], 999, 100, seeded.plan))
    assert unknown.rejected == ((4, Reason.NOT_IN_STOCK),)
    kept = ama.escrow[second]
    store.move_device(second, seeded.agents["kofi"][0], 5)
    moved = ama.sync(*ama.offline_sale(second, kept.reserved_id, 100, seeded.plan))
    assert moved.rejected == ((6, Reason.ESCROW_REVOKED),)
    assert second not in ama.escrow  # the revocation came down with that answer
    assert Stock(second, seeded.secrets[second].format, True) in kofi.sync().entries
    flags = [(d, f) for k, d, f in events(store) if k == "flagged"]
    assert flags == [
        (first, "released_twice"),
        (second, "not_in_stock"),
        (seeded.stock["ama"][5], "not_in_stock"),
        (second, "after_revocation"),
    ]
    assert store._one("SELECT customer FROM devices WHERE device = ?", second) == (None,)


def test_a_revoked_code_counts_until_every_handset_heard(store: Store, seeded: Seeded) -> None:
    ama, sibling = Phone(store, "ama"), Phone(store, "ama")
    ama.sync()
    sibling.sync()
    agent = seeded.agents["ama"][0]
    device = seeded.stock["ama"][0]
    store.move_device(device, None, 5)  # back to the warehouse
    assert exposure(store, agent) == 2
    ama.sync()  # pulls the revocation; the platform learns it at the next cursor
    ama.sync()
    assert exposure(store, agent) == 2  # the sibling still holds it
    sibling.sync()
    sibling.sync()  # the sibling heard it too: no longer exposure, the agent is topped up
    assert exposure(store, agent) == 2
    assert ("dropped", device, None) in events(store)
    assert device not in ama.escrow


# -- the state machine -------------------------------------------------------------------------


class EscrowOnTheStore(RuleBasedStateMachine):
    """Two agents (ama with two handsets, kofi with one) over one store with a small bound;
    offline sales honest or abusive, stock moves and syncs in any order. After every step: no
    agent's exposure passes its bound, a device has at most one held code, no code is
    reconciled twice, and every released code was accounted or refused, never both."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.dir = tempfile.TemporaryDirectory()
        path = Path(self.dir.name) / "s.db"
        self.seeded = seed_platform(path, per_format=2)
        self.policy = EscrowPolicy(devices=2, days=2)
        self.store = Store.open(path, escrow=self.policy)
        self.phones = [
            Phone(self.store, "ama"),
            Phone(self.store, "ama"),
            Phone(self.store, "kofi"),
        ]
        self.outcomes: dict[tuple[int, int], list[bool]] = {}

    def teardown(self) -> None:
        self.store.close()
        self.dir.cleanup()

    @rule(phone=st.integers(0, 2))
    def sync(self, phone: int) -> None:
        self.phones[phone].sync()

    @rule(phone=st.integers(0, 2), pick=st.integers(0, 50), forged=st.booleans())
    def sell_offline(self, phone: int, pick: int, forged: bool) -> None:
        p = self.phones[phone]
        held = sorted(p.escrow.values(), key=lambda e: e.device)
        others = [e for q in self.phones if q is not p for e in q.escrow.values()]
        pool = others if forged or not held else held
        if not pool:
            return
        code = pool[pick % len(pool)]
        answer = p.sync(*p.offline_sale(code.device, code.reserved_id, 400, self.seeded.plan))
        self.outcomes.setdefault((code.device, code.reserved_id), []).append(p.seq in answer.acked)

    @rule(device=st.integers(0, 23), to=st.sampled_from(["ama", "kofi", None]))
    def move(self, device: int, to: str | None) -> None:
        serial = (self.seeded.stock["ama"] + self.seeded.stock["kofi"])[device % 16]
        (customer,) = self.store._one("SELECT customer FROM devices WHERE device = ?", serial)
        if customer is None:
            self.store.move_device(serial, None if to is None else self.seeded.agents[to][0], 9)

    @invariant()
    def bound_held(self) -> None:
        for agent, _ in self.seeded.agents.values():
            assert exposure(self.store, agent) <= self.policy.bound_days
        held = self.store.db.execute(
            "SELECT device, count(*) FROM escrow WHERE state = 'held' GROUP BY device"
            " HAVING count(*) > 1"
        ).fetchall()
        assert held == []

    @invariant()
    def accounted_once(self) -> None:
        reconciled = self.store.db.execute(
            "SELECT device, reserved_id, count(*) FROM escrow_events WHERE kind = 'reconciled'"
            " GROUP BY device, reserved_id"
        ).fetchall()
        assert all(n == 1 for _, _, n in reconciled)
        for code, accepted in self.outcomes.items():
            assert accepted.count(True) <= 1, code
        sold_offline = {(d, r) for d, r, _ in reconciled}
        assert sold_offline == {c for c, ok in self.outcomes.items() if True in ok}


TestEscrowOnTheStore = EscrowOnTheStore.TestCase
TestEscrowOnTheStore.settings = settings(
    max_examples=8,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
