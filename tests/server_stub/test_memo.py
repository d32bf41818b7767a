"""The store's memo (server_stub/memo.py) never disagrees with the database: after any sequence
of exchanges, refusals, replays, rolled-back operations, group commits, mobile-money payments
and writes by another connection (the CLI on the same file), every page, downlink number,
handset stamp and sibling list the store would use from memory equals what SQL holds. Two
broken memos (one that keeps what a rollback undid, one blind to another connection's writes)
are caught."""

from __future__ import annotations

import random
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_client.protocol.auth import Claim, HandsetKey
from agent_client.protocol.frames import entry_from_row
from agent_client.protocol.keycodes import KeycodeFormat
from agent_client.protocol.ops import Kind, Operation
from server_stub.callbacks import MoneyCallback
from server_stub.errors import RequestError
from server_stub.faults import PlatformFaults
from server_stub.memo import Memo
from server_stub.store import _PAID as PAID
from server_stub.store import DeviceRecord, Store

from .fixtures import PRICE_PER_DAY, Seeded, secret_for, seed_platform


class KeepsRolledBack(Memo):
    """Broken: a rollback does not forget what it undid."""

    def clear(self) -> None:
        pass


class Blind(Memo):
    """Broken: never notices another connection's writes."""

    def seen(self, data_version: int) -> None:
        self.data_version = data_version


@dataclass
class Fleet:
    """Three handsets: two of agent ama (siblings), one of kofi; what each has sent."""

    store: Store
    path: Path
    seeded: Seeded
    handsets: list[int]
    agents: list[str]
    seq: list[int] = field(default_factory=lambda: [0, 0, 0])
    ts: list[int] = field(default_factory=lambda: [1000, 1000, 1000])
    cursor: list[int] = field(default_factory=lambda: [0, 0, 0])
    sold: list[int] = field(default_factory=list)
    txns: int = 0
    writes: int = 0  # by another connection

    def claim(self, i: int, stale: bool = False) -> Claim:
        """A fresh claim, or a replay of the last one accepted (0 before any)."""
        if stale:
            return Claim(self.handsets[i], self.ts[i] if self.ts[i] > 1000 else 0, b"")
        self.ts[i] += 1
        return Claim(self.handsets[i], self.ts[i], b"")

    def sale(self, i: int, device: int | None = None) -> list[Operation]:
        stock = self.seeded.stock[self.agents[i]]
        unsold = [d for d in stock if d not in self.sold]
        self.seq[i] += 2
        customer, sale = self.seq[i] - 1, self.seq[i]
        if device is None and unsold:
            device = unsold[0]
            self.sold.append(device)
        return [
            Operation.make(customer, Kind.REGISTER_CUSTOMER, 1, "Esi", "+233200000001"),
            Operation.make(
                sale, Kind.RECORD_SALE, 1, customer, device or 99, self.seeded.plan, 700
            ),
        ]

    def sync(self, i: int, ops: list[Operation], cursor: int | None = None) -> None:
        at = self.cursor[i] if cursor is None else cursor
        reply = self.store.exchange(self.claim(i), ops, at, 5)
        if reply.entries:
            self.cursor[i] = max(self.cursor[i], reply.last_entry)


def open_fleet(tmp_path: Path, memo: Memo | None = None, lose_ack: int = 0) -> Fleet:
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "memo.db"
    seeded = seed_platform(path, per_format=2)
    setup = Store.open(path)
    agents = ["ama", "ama", "kofi"]
    handsets = [
        setup.provision(a, seeded.agents[a][1], HandsetKey.generate().public, 1) for a in agents
    ]
    setup.close()
    store = Store.open(path, memo=memo, faults=PlatformFaults(lose_ack_every=lose_ack))
    return Fleet(store, path, seeded, handsets, agents)


def agree(fleet: Fleet) -> None:
    """What the store would serve from memory equals what is committed in SQL, as a
    transaction starts (where the memo learns of other connections' writes)."""
    with fleet.store.transaction():
        agree_now(fleet)


def agree_now(fleet: Fleet) -> None:
    truth = sqlite3.connect(fleet.path)
    try:
        memo = fleet.store.memo
        for i, h in enumerate(fleet.handsets):
            rows = truth.execute("SELECT n, body FROM downlink WHERE handset = ? ORDER BY n", (h,))
            entries = {int(n): entry_from_row(msgpack.unpackb(b)) for n, b in rows}
            last = max(entries, default=0)
            if h in memo.last_n:
                assert memo.last_n[h] == last, f"handset {h}: next downlink number is wrong"
            for cursor in (fleet.cursor[i], last, last + 3):
                page = memo.page(h, cursor, 256)
                if page is not None:
                    want = tuple(entries[n] for n in sorted(entries) if n > cursor)
                    assert page == (want, False), f"handset {h} page past {cursor} differs"
            (agent, key, last_ms) = truth.execute(
                "SELECT agent, public_key, last_ms FROM handsets WHERE handset = ?", (h,)
            ).fetchone()
            if h in memo.handsets:  # the stamp a lower bound: stamps only grow
                remembered = memo.handsets[h]
                assert remembered[:2] == (agent, key)
                assert remembered[2] <= last_ms
        for agent, handsets in memo.siblings.items():
            rows = truth.execute(
                "SELECT handset FROM handsets WHERE agent = ? ORDER BY handset", (agent,)
            )
            assert handsets == tuple(h for (h,) in rows)
        if memo.unsynced is not None:
            rows = truth.execute(
                "SELECT DISTINCT handset FROM mm_txns"
                " WHERE synced_ms IS NULL AND downlink_n IS NOT NULL"
            )
            assert memo.unsynced == {h for (h,) in rows}
        for (h, seq), customer in memo.customers.items():
            row = truth.execute(
                "SELECT customer FROM customers WHERE handset = ? AND seq = ?", (h, seq)
            ).fetchone()
            assert row == (customer,), f"customer ({h}, {seq}) is remembered wrongly"
        for device, s in memo.secrets.items():
            row = truth.execute(
                "SELECT format, key, starting_code, time_divider FROM devices WHERE device = ?",
                (device,),
            ).fetchone()
            assert row == (int(s.format), s.key, s.starting_code, s.time_divider)
        for device, paid in memo.paid.items():
            row = truth.execute(PAID, (device,)).fetchone()
            assert row == paid, f"device {device}'s credit state is remembered wrongly"
        if memo.escrow_held is not None:
            held = truth.execute("SELECT 1 FROM escrow WHERE state = 'held'").fetchone()
            assert memo.escrow_held == (held is not None)
    finally:
        truth.close()


def cli_write(fleet: Fleet, what: int) -> None:
    """Another connection writes, as `server-stub add-plan` / `add-devices` would."""
    other = Store.open(fleet.path)
    fleet.writes += 1
    try:
        if what == 0:
            other.add_plan(f"plan-{fleet.writes}", PRICE_PER_DAY)
        else:
            serial = 20_000_000 + fleet.writes
            secret = secret_for(random.Random(serial), KeycodeFormat.NEXUS_FULL)
            record = DeviceRecord(serial, secret)
            other.add_devices(fleet.seeded.agents["ama"][0], [record])
            fleet.seeded.stock["ama"].append(serial)
    finally:
        other.close()


def pay(fleet: Fleet) -> None:
    if not fleet.sold:
        return
    fleet.txns += 1
    device = fleet.sold[fleet.txns % len(fleet.sold)]
    cb = MoneyCallback(f"T{fleet.txns}", str(device), 300, "+233200000001", "success", 1000)
    fleet.store.mobile_money(cb, 6, sms=False)


ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(["sync", "empty", "refused", "stale", "cli", "mm", "group", "behind"]),
        st.integers(0, 2),
    ),
    max_size=14,
)


def act(fleet: Fleet, action: str, i: int) -> None:
    store = fleet.store
    if action == "sync":
        fleet.sync(i, fleet.sale(i))
    elif action == "empty":
        fleet.sync(i, [])
    elif action == "refused":  # a device nobody stocks: that op's savepoint is rolled back
        fleet.sync(i, fleet.sale(i, device=99))
    elif action == "stale":  # refused before anything is written; the transaction rolls back
        with pytest.raises(RequestError, match="timestamp"):
            store.exchange(fleet.claim(i, stale=True), fleet.sale(i), fleet.cursor[i], 5)
    elif action == "cli":
        cli_write(fleet, i % 2)
    elif action == "mm":
        pay(fleet)
    elif action == "behind":  # a handset that lost its inbox asks from the start
        fleet.sync(i, [], cursor=0)
    else:  # a group commit in which one request fails (its savepoint alone rolls back)
        with store.group():
            fleet.sync(i, fleet.sale(i))
            with pytest.raises(RequestError):
                store.exchange(fleet.claim((i + 1) % 3, stale=True), [], 0, 5)
            fleet.sync((i + 2) % 3, fleet.sale((i + 2) % 3))


def run(fleet: Fleet, actions: list[tuple[str, int]]) -> None:
    for action, i in actions:
        act(fleet, action, i)
        agree(fleet)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(actions=ACTIONS, lose_ack=st.sampled_from([0, 2]))
def test_the_memo_always_agrees_with_sql(
    tmp_path_factory: pytest.TempPathFactory, actions: list[tuple[str, int]], lose_ack: int
) -> None:
    fleet = open_fleet(tmp_path_factory.mktemp("memo"), lose_ack=lose_ack)
    try:
        run(fleet, actions)
    finally:
        fleet.store.close()


# each broken memo, and a sequence that exposes it
BROKEN = [
    (KeepsRolledBack(), 2, [("sync", 0), ("sync", 0), ("sync", 0), ("sync", 0)]),
    (Blind(), 0, [("sync", 0), ("cli", 0), ("sync", 0), ("sync", 1)]),
]


@pytest.mark.parametrize(("memo", "lose_ack", "actions"), BROKEN, ids=["keeps", "blind"])
def test_a_broken_memo_is_caught(
    tmp_path: Path, memo: Memo, lose_ack: int, actions: list[tuple[str, int]]
) -> None:
    sound = open_fleet(tmp_path / "sound", lose_ack=lose_ack)
    try:
        run(sound, actions)  # the same sequence with the real memo agrees
    finally:
        sound.store.close()
    fleet = open_fleet(tmp_path / "broken", memo=memo, lose_ack=lose_ack)
    try:
        with pytest.raises((AssertionError, sqlite3.IntegrityError)):
            run(fleet, actions)
    finally:
        fleet.store.close()


def test_a_stamp_another_writer_outdated_is_refused_though_the_memo_kept_it(
    tmp_path: Path,
) -> None:
    """A handset's stamp survives another writer's commit in the memo as a lower bound only:
    a request newer than it but not newer than what the other writer accepted is a replay."""
    fleet = open_fleet(tmp_path)
    other = Store.open(fleet.path)
    try:
        handset = fleet.handsets[0]
        fleet.store.exchange(Claim(handset, 2000, b""), [], 0, 5)
        other.exchange(Claim(handset, 3000, b""), [], 0, 5)
        with pytest.raises(RequestError, match="timestamp") as refused:
            fleet.store.exchange(Claim(handset, 2500, b""), [], 0, 5)
        assert refused.value.extra == {"last_ms": 3000}
        fleet.store.exchange(Claim(handset, 3001, b""), [], 0, 5)  # newer than both: accepted
        agree(fleet)
    finally:
        other.close()
        fleet.store.close()
