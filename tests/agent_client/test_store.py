"""The handset's SQLite store: migrations, durability across reopen, frozen payloads, and results
applied all-or-nothing."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_client.database import Inline, Storage
from agent_client.errors import InvalidOperation, OperationFrozen
from agent_client.protocol.frames import Keycode, Payment, Plan, Reason, Stock
from agent_client.protocol.keycodes import KeycodeFormat
from agent_client.protocol.ops import Kind
from agent_client.protocol.sync import Result
from agent_client.store import MIGRATIONS, HandsetStore, OpState
from agent_client.strategies import fields_for, u32


def result(**kw: object) -> Result:
    base: dict[str, object] = {
        "acked": (),
        "rejected": (),
        "entries": (),
        "cursor": 0,
        "more": False,
        "server_ms": 1,
        "current": True,
    }
    base.update(kw)
    return Result(**base)  # type: ignore[arg-type]


async def test_fresh_database_is_at_the_latest_schema_in_wal(tmp_path: Path) -> None:
    store = await HandsetStore.open(tmp_path / "h.db")
    assert await store.schema_version() == len(MIGRATIONS)
    await store.close()
    with sqlite3.connect(tmp_path / "h.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_the_outbox_sorts_in_memory_not_in_a_temporary_file(tmp_path: Path) -> None:
    """`sendable` sorts two states' rows by seq: with temporary files, each call made one."""
    store = await HandsetStore.open(tmp_path / "h.db")
    assert (await store._one("PRAGMA temp_store"))[0] == 2  # memory
    plan = await store._all(
        "EXPLAIN QUERY PLAN SELECT seq FROM outbox WHERE state IN ('pending', 'in_flight')"
        " ORDER BY seq LIMIT 1"
    )
    assert any("TEMP B-TREE" in str(row[-1]) for row in plan)  # why it matters
    await store.close()


async def test_v1_database_is_migrated_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(MIGRATIONS[0] + "PRAGMA user_version = 1;")
        db.execute("INSERT INTO meta VALUES ('cursor', 5)")
    store = await HandsetStore.open(path)
    assert await store.schema_version() == 2
    assert await store.get("cursor") == 5
    await store.close()
    with sqlite3.connect(path) as db:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "outbox_state_seq" in names


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "new.db") as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(RuntimeError, match="newer"):
        await HandsetStore.open(tmp_path / "new.db")


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=20)
@given(
    ops=st.lists(
        st.sampled_from(Kind).flatmap(lambda k: st.tuples(st.just(k), fields_for(k))), max_size=12
    )
)
async def test_queued_operations_survive_reopen_in_order(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[Kind, tuple[object, ...]]]
) -> None:
    path = tmp_path_factory.mktemp("reopen") / "h.db"
    store = await HandsetStore.open(path)
    made = [await store.enqueue(kind, 1000, *fields, now_ms=1) for kind, fields in ops]
    await store.close()
    store = await HandsetStore.open(path)
    assert await store.sendable(100) == made
    assert [op.seq for op in made] == list(range(1, len(made) + 1))
    await store.close()


new_sales = st.tuples(fields_for(Kind.REGISTER_CUSTOMER), u32, u32, st.integers(0, 2**32 - 1))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=10)
@given(sales=st.lists(new_sales, max_size=8), before=st.integers(0, 3))
async def test_sales_in_one_go_queue_what_one_at_a_time_would(
    tmp_path_factory: pytest.TempPathFactory,
    sales: list[tuple[tuple[object, ...], int, int, int]],
    before: int,
) -> None:
    """`enqueue_sales` (one transaction) leaves the outbox as registering each customer and
    recording each sale to them, one operation at a time, does."""
    folder = tmp_path_factory.mktemp("sales")
    batched = await HandsetStore.open(folder / "a.db")
    single = await HandsetStore.open(folder / "b.db")
    for store in (batched, single):  # operations already queued shift every seq
        for _ in range(before):
            await store.enqueue(Kind.RECORD_PAYMENT, 1000, 5, 100, now_ms=1)
    rows = [(str(who[0]), str(who[1]), device, plan, down) for who, device, plan, down in sales]
    made = await batched.enqueue_sales(1000, rows, now_ms=1)
    for name, phone, device, plan, down in rows:
        customer = await single.enqueue(Kind.REGISTER_CUSTOMER, 1000, name, phone, now_ms=1)
        await single.enqueue(Kind.RECORD_SALE, 1000, customer.seq, device, plan, down, now_ms=1)
    assert await batched.sendable(100) == await single.sendable(100)
    assert [op for pair in made for op in pair] == (await single.sendable(100))[before:]
    for store in (batched, single):
        await store.close()


async def test_a_refused_sale_leaves_none_of_its_lot_behind(tmp_path: Path) -> None:
    store = await HandsetStore.open(tmp_path / "h.db")
    lot = [("Ama", "+233201234567", 7, 1, 500), ("Kofi", "+233201234568", 8, 1, -1)]
    with pytest.raises(InvalidOperation, match="down_payment"):
        await store.enqueue_sales(1000, lot, now_ms=1)
    assert await store.sendable(10) == []
    await store.close()


async def test_sequence_numbers_are_never_reused(tmp_path: Path) -> None:
    store = await HandsetStore.open(tmp_path / "h.db")
    first = await store.enqueue(Kind.RECORD_PAYMENT, 1, 5, 100, now_ms=1)
    await store.apply(result(acked=(first.seq,)), 2)
    second = await store.enqueue(Kind.RECORD_PAYMENT, 1, 5, 100, now_ms=3)
    assert second.seq == first.seq + 1
    await store.close()


async def test_invalid_fields_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    store = await HandsetStore.open(tmp_path / "h.db")
    with pytest.raises(InvalidOperation, match="amount"):
        await store.enqueue(Kind.RECORD_PAYMENT, 1, 5, 0, now_ms=1)
    assert await store.sendable(10) == []
    await store.close()


async def test_payload_freezes_once_a_send_starts(tmp_path: Path) -> None:
    store = await HandsetStore.open(tmp_path / "h.db")
    op = await store.enqueue(Kind.RECORD_PAYMENT, 1, 5, 100, now_ms=1)
    amended = await store.amend(op.seq, 5, 200)
    assert await store.sendable(1) == [amended]
    await store.mark_in_flight([op.seq])
    with pytest.raises(OperationFrozen):
        await store.amend(op.seq, 5, 300)
    assert await store.sendable(1) == [amended]
    await store.close()


async def test_result_settles_ops_and_stores_entries_once(tmp_path: Path) -> None:
    store = await HandsetStore.open(tmp_path / "h.db")
    a = await store.enqueue(Kind.RECORD_PAYMENT, 1, 5, 100, now_ms=1)
    b = await store.enqueue(Kind.RECORD_PAYMENT, 1, 6, 100, now_ms=1)
    c = await store.enqueue(Kind.RECORD_PAYMENT, 1, 7, 100, now_ms=1)
    await store.mark_in_flight([a.seq, b.seq])
    key = Keycode(a.seq, 5, KeycodeFormat.NEXUS_FULL, 123, 3600)
    entries = (
        (1, key),
        (2, Payment(5, 50, "MM1")),
        (3, Stock(9, KeycodeFormat.OPENPAYGO, True)),
        (4, Plan(1, "basic", 50)),
    )
    res = result(
        acked=(a.seq,), rejected=((b.seq, Reason.NOT_IN_STOCK),), entries=entries, cursor=4
    )
    await store.apply(res, 10)
    await store.apply(res, 11)  # a late duplicate answer changes nothing
    assert await store.keycodes(5) == [key]
    assert await store.payments() == [Payment(5, 50, "MM1")]
    assert await store.stock() == {9: KeycodeFormat.OPENPAYGO}
    assert await store.plans() == [Plan(1, "basic", 50)]
    assert await store.get("cursor") == 4
    rows = {row.op.seq: row for row in await store.queue()}
    assert rows[a.seq].state is OpState.ACKNOWLEDGED
    assert (rows[b.seq].state, rows[b.seq].reason) == (OpState.REJECTED, "not_in_stock")
    assert rows[c.seq].state is OpState.PENDING
    assert await store.sendable(10) == [c]
    counts = await store.counts()
    assert await store.unsettled() == counts[OpState.PENDING] + counts[OpState.IN_FLIGHT] == 1
    await store.mark_in_flight([c.seq])
    assert await store.unsettled() == 1  # in flight is still unsettled
    await store.apply(result(acked=(c.seq,), cursor=4), 12)
    assert await store.unsettled() == 0
    await store.apply(
        result(entries=((5, Stock(9, KeycodeFormat.OPENPAYGO, False)),), cursor=5), 12
    )
    assert await store.stock() == {}
    await store.close()


async def test_a_failing_apply_leaves_nothing_behind(tmp_path: Path) -> None:
    store = await HandsetStore.open(tmp_path / "h.db")
    op = await store.enqueue(Kind.RECORD_PAYMENT, 1, 5, 100, now_ms=1)
    bad = result(acked=(op.seq,), entries=((1, object()),), cursor=1)
    with pytest.raises(sqlite3.Error):
        await store.apply(bad, 2, broken=object())
    assert (await store.operation(op.seq)) is not None
    assert (await store.counts())[OpState.PENDING] == 1
    assert await store.get("cursor") is None
    await store.close()


UNLOCKED = Storage(journal="truncate", synchronous="off", runner=Inline(), locks=False)


def _posix_locks() -> set[int]:
    """Pids holding a POSIX lock on any file now (Linux's /proc/locks)."""
    with open("/proc/locks") as locks:
        return {int(line.split()[4]) for line in locks if " POSIX " in line}


@pytest.mark.parametrize("storage", [Storage(), UNLOCKED], ids=["locks", "no-locks"])
async def test_storage_without_locks_takes_none(tmp_path: Path, storage: Storage) -> None:
    """`locks=False` (SQLite's unix-none VFS): a write transaction holds no file lock."""
    store = await HandsetStore.open(tmp_path / "h.db", storage)
    async with store.transaction() as db:
        await db.execute("INSERT INTO meta(key, value) VALUES ('k', 1)")
        held = os.getpid() in _posix_locks()
    assert held is storage.locks
    assert await store.get("k") == 1
    await store.close()


_CRASH_MID_TRANSACTION = """
import asyncio, os, sys
from agent_client.database import Inline, Storage
from agent_client.store import HandsetStore

async def main():
    unlocked = Storage(journal=sys.argv[2], synchronous="off", runner=Inline(), locks=False)
    store = await HandsetStore.open(sys.argv[1], unlocked)
    await store.put(**{f"k{n}": b"a" * 4000 for n in range(100)})
    await store._one("PRAGMA cache_size=2")  # spills: the file's pages change before a commit
    async with store.transaction() as db:
        await db.execute("UPDATE meta SET value = ?", (b"b" * 4000,))
        os._exit(0)  # the process dies mid-transaction

asyncio.run(main())
"""


@pytest.mark.parametrize("journal", ["truncate", "persist"])
def test_a_crash_mid_transaction_without_locks_is_rolled_back_at_the_next_open(
    tmp_path: Path, journal: str
) -> None:
    """No locks, but the rollback journal still works: the next open rolls the torn
    transaction back (a hot journal), as with SQLite's default VFS. A persistent journal
    (the lab's handsets) keeps its file between commits, its header zeroed at each: the
    transaction committed before the crash stays, only the torn one is undone."""
    path = tmp_path / "h.db"
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    script = [sys.executable, "-c", _CRASH_MID_TRANSACTION, str(path), journal]
    subprocess.run(script, env=env, check=True)
    assert Path(f"{path}-journal").stat().st_size > 0  # torn: a hot journal is left

    async def reopened() -> dict[str, object]:
        store = await HandsetStore.open(path, replace(UNLOCKED, journal=journal))
        try:
            return await store.meta()
        finally:
            await store.close()

    assert asyncio.run(reopened()) == {f"k{n}": b"a" * 4000 for n in range(100)}


_ENTRY = st.one_of(
    st.builds(
        Keycode,
        st.integers(0, 9),
        st.integers(1, 4),
        st.sampled_from(KeycodeFormat),
        st.integers(0, 999),
        st.integers(0, 10**6),
    ),
    st.builds(Payment, st.integers(1, 4), st.integers(0, 10**6), st.text(max_size=5)),
    st.builds(Stock, st.integers(1, 4), st.sampled_from(KeycodeFormat), st.booleans()),
    st.builds(Plan, st.integers(1, 3), st.text(max_size=5), st.integers(0, 999)),
)
_ANSWER = st.lists(st.tuples(st.integers(1, 12), _ENTRY), max_size=12)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(answers=st.lists(_ANSWER, min_size=1, max_size=3))
def test_downlink_entries_are_stored_once_each_in_order(
    tmp_path_factory: pytest.TempPathFactory, answers: list[list[tuple[int, object]]]
) -> None:
    """Each entry number is stored the first time it comes (again in the same answer, or in a
    late duplicate answer, it is ignored); stock comes and goes in the order it was sent."""
    keycodes: list[tuple[int, Keycode]] = []
    payments: list[tuple[int, Payment]] = []
    stock: dict[int, KeycodeFormat] = {}
    plans: dict[int, Plan] = {}
    seen: set[int] = set()
    for answer in answers:
        for n, entry in answer:
            if n in seen:
                continue
            seen.add(n)
            match entry:
                case Keycode():
                    keycodes.append((n, entry))
                case Payment():
                    payments.append((n, entry))
                case Stock(present=True):
                    stock[entry.device] = entry.format
                case Stock():
                    stock.pop(entry.device, None)
                case Plan():
                    plans[entry.plan] = entry

    async def stored() -> None:
        store = await HandsetStore.open(tmp_path_factory.mktemp("h") / "h.db")
        try:
            for answer in answers:
                await store.apply(result(entries=tuple(answer)), 5)
            assert await store.keycodes() == [k for _, k in sorted(keycodes, key=lambda e: e[0])]
            assert await store.payments() == [p for _, p in sorted(payments, key=lambda e: e[0])]
            assert await store.stock() == dict(sorted(stock.items()))
            assert await store.plans() == [plans[p] for p in sorted(plans)]
        finally:
            await store.close()

    asyncio.run(stored())
