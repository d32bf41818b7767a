"""The platform store on its own: idempotency under racing retries, conflicts, and the
carry-forward of money that does not buy a whole day."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_client.protocol.auth import Claim, HandsetKey
from agent_client.protocol.frames import Keycode, Reason, Stock
from agent_client.protocol.ops import Kind, Operation
from server_stub.errors import RequestError, SetupError
from server_stub.store import DeviceRecord, Store

from .fixtures import PRICE_PER_DAY, Seeded, seed_platform


@pytest.fixture
def seeded(tmp_path: Path) -> Seeded:
    return seed_platform(tmp_path / "s.db")


def provisioned(path: Path) -> int:
    store = Store.open(path)
    handset = store.provision("ama", "code-ama-7f3a9c", HandsetKey.generate().public, 1)
    store.close()
    return handset


class Stamps:
    def __init__(self, handset: int) -> None:
        self.handset, self.ts = handset, 1000

    def __call__(self) -> Claim:
        self.ts += 1
        return Claim(self.handset, self.ts, b"")


@pytest.fixture
def opened(tmp_path: Path, seeded: Seeded) -> Iterator[tuple[Store, Stamps]]:
    stamp = Stamps(provisioned(tmp_path / "s.db"))
    store = Store.open(tmp_path / "s.db")
    yield store, stamp
    store.close()


def sale_ops(seeded: Seeded) -> list[Operation]:
    return [
        Operation.make(1, Kind.REGISTER_CUSTOMER, 1, "Esi", "+233200000001"),
        Operation.make(2, Kind.RECORD_SALE, 1, 1, seeded.stock["ama"][0], seeded.plan, 300),
    ]


def test_racing_retries_of_the_same_key_apply_once(tmp_path: Path, seeded: Seeded) -> None:
    """Four connections (as four server processes would be) ingest the same batch at once;
    request freshness is left out so that only the (handset, seq) constraint stands guard."""
    path = tmp_path / "s.db"
    handset = provisioned(path)
    ops = sale_ops(seeded)
    barrier = threading.Barrier(4)
    outcomes: list[tuple[list[int], list[tuple[int, Reason]]]] = []

    def retry() -> None:
        store = Store.open(path)
        barrier.wait()
        with store.transaction():
            outcomes.append(store._ingest(store.handset(handset), ops, 5))
        store.close()

    threads = [threading.Thread(target=retry) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert outcomes == [([1, 2], [])] * 4  # applied once, acknowledged again three times
    store = Store.open(path)
    assert store.counts()["ops"] == 2
    assert store.counts()["keycodes"] == 1
    assert store.counts()["customers"] == 1
    store.close()


def test_stale_stamps_are_refused_inside_the_transaction(tmp_path: Path, seeded: Seeded) -> None:
    path = tmp_path / "s.db"
    handset = provisioned(path)
    store = Store.open(path)
    store.exchange(Claim(handset, 5000, b""), [], 0, 1)
    with pytest.raises(RequestError) as info:
        store.exchange(Claim(handset, 5000, b""), sale_ops(seeded), 0, 1)
    assert (info.value.status, info.value.code) == (401, "replayed_request")
    assert info.value.extra == {"last_ms": 5000}  # so the handset can recover
    assert store.counts()["ops"] == 0
    store.close()


def test_same_key_different_content_is_a_conflict(
    opened: tuple[Store, Stamps], seeded: Seeded
) -> None:
    store, stamp = opened
    store.exchange(stamp(), sale_ops(seeded), 0, 1)
    changed = Operation.make(2, Kind.RECORD_SALE, 1, 1, seeded.stock["ama"][0], seeded.plan, 900)
    reply = store.exchange(stamp(), [changed], 0, 2)
    assert reply.rejected == ((2, Reason.CONFLICT),)
    exact = store.exchange(stamp(), sale_ops(seeded), 0, 3)
    assert exact.acked == (1, 2)
    assert store.counts()["keycodes"] == 1


def test_a_rejection_is_stable_under_replay(opened: tuple[Store, Stamps], seeded: Seeded) -> None:
    store, stamp = opened
    pay = [Operation.make(1, Kind.RECORD_PAYMENT, 1, seeded.stock["ama"][0], 500)]
    assert store.exchange(stamp(), pay, 0, 1).rejected == ((1, Reason.UNKNOWN_ACCOUNT),)
    store.exchange(stamp(), sale_ops(seeded)[:0], 0, 2)
    assert store.exchange(stamp(), pay, 0, 3).rejected == ((1, Reason.UNKNOWN_ACCOUNT),)


def test_keycodes_and_stock_come_down_in_order_with_paging(
    opened: tuple[Store, Stamps], seeded: Seeded
) -> None:
    store, stamp = opened
    first = store.exchange(stamp(), sale_ops(seeded), 0, 1)
    # a plan, 12 devices of stock, the sold device's stock out, then the sale's keycode
    assert first.first_entry == 1
    assert len(first.entries) == 15
    sold = seeded.stock["ama"][0]
    assert first.entries[-2] == Stock(sold, seeded.secrets[sold].format, False)
    assert first.entries[-1] == Keycode(
        2,
        seeded.stock["ama"][0],
        seeded.secrets[seeded.stock["ama"][0]].format,
        first.entries[-1].number,
        3 * 86400,  # type: ignore[union-attr]
    )
    later = store.exchange(stamp(), [], 10, 2)
    assert later.first_entry == 11
    assert later.entries == first.entries[10:]


def test_payments_carry_the_remainder_and_credit_whole_days(
    opened: tuple[Store, Stamps], seeded: Seeded
) -> None:
    store, stamp = opened
    device = seeded.stock["ama"][0]
    store.exchange(stamp(), sale_ops(seeded), 0, 1)
    ops = [
        Operation.make(3 + i, Kind.RECORD_PAYMENT, 1, device, PRICE_PER_DAY // 3) for i in range(4)
    ]
    store.exchange(stamp(), ops, 0, 2)
    codes = store.db.execute("SELECT op_seq, days FROM keycodes ORDER BY keycode").fetchall()
    assert codes == [(2, 3), (6, 1)]  # 33 + 33 + 33 = 99 buys nothing; the fourth makes 132
    (balance,) = store.db.execute(
        "SELECT balance FROM devices WHERE device = ?", (device,)
    ).fetchone()
    assert balance == 4 * (PRICE_PER_DAY // 3) - PRICE_PER_DAY


def test_a_deferred_store_commits_without_fsync_and_syncs_its_wal_on_demand(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    store = Store.open(path, synchronous="deferred")
    try:
        assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        wal = store._wal
        assert wal is not None
        assert os.path.samestat(os.fstat(wal), os.stat(f"{path}-wal"))
        before = store.changes()
        store.add_agent("ama")
        assert store.changes() > before
        store.sync_wal()
    finally:
        store.close()
    store.sync_wal()  # closed: nothing left to sync, no error
    assert store.changes() > before


def test_devices_added_reach_every_handset_of_their_agent_in_order_all_or_nothing(
    tmp_path: Path, seeded: Seeded
) -> None:
    """`add_devices` (seeding, `import-devices`): one Stock entry per device for each of the
    agent's handsets, in the devices' order; a device already registered refuses the lot."""
    path = tmp_path / "s.db"
    handsets = [provisioned(path), provisioned(path)]
    store = Store.open(path)
    try:
        agent = seeded.agents["ama"][0]
        secret = seeded.secrets[seeded.stock["ama"][0]]
        new = [DeviceRecord(30_000_000 + n, secret) for n in range(3)]
        before = [store.exchange(Claim(h, 10, b""), [], 0, 1, paging=False) for h in handsets]
        store.add_devices(agent, new)
        for handset, seen in zip(handsets, before, strict=True):
            later = store.exchange(Claim(handset, 11, b""), [], seen.last_entry, 2, paging=False)
            assert list(later.entries) == [Stock(r.device, secret.format, True) for r in new]
        with pytest.raises(SetupError, match="already registered"):
            store.add_devices(agent, [DeviceRecord(30_000_010, secret), new[0]])
        assert 30_000_010 not in store.device_secrets()
    finally:
        store.close()


def test_provisionings_in_one_group_each_get_their_catalog_and_stock_from_one(
    tmp_path: Path, seeded: Seeded
) -> None:
    """Provisionings sharing a group commit (as the store thread runs a fleet set up at once):
    each new handset's downlink is its plan then its agent's stock in device order, numbered
    from 1, the same from the memo as read back from SQL; a refused one in the group costs
    the others nothing."""
    path = tmp_path / "s.db"
    store = Store.open(path)
    try:
        with store.group():
            handsets = [
                store.provision("ama", "code-ama-7f3a9c", HandsetKey.generate().public, 1)
                for _ in range(2)
            ]
            with pytest.raises(RequestError, match="unknown agent or wrong code"):
                store.provision("ama", "wrong-code", HandsetKey.generate().public, 1)
        ama = seeded.stock["ama"]
        stock = [Stock(d, seeded.secrets[d].format, True) for d in ama]
        remembered = [store.exchange(Claim(h, 10, b""), [], 0, 1, paging=False) for h in handsets]
    finally:
        store.close()
    reopened = Store.open(path)  # a new memo: the pages are read from SQL
    try:
        for handset, seen in zip(handsets, remembered, strict=True):
            read = reopened.exchange(Claim(handset, 11, b""), [], 0, 2, paging=False)
            for page in (seen, read):
                assert (page.first_entry, page.last_entry) == (1, 1 + len(stock))
                assert list(page.entries[1:]) == stock
                assert page.entries[0].plan == seeded.plan  # type: ignore[union-attr]
            past_plan = reopened.exchange(Claim(handset, 12, b""), [], 1, 3, paging=False)
            assert list(past_plan.entries) == stock  # numbered in SQL as the memo numbered them
    finally:
        reopened.close()
