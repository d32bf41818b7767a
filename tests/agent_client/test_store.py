"""The handset's SQLite store: migrations, durability across reopen, frozen payloads, and results
applied all-or-nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_client.errors import InvalidOperation, OperationFrozen
from agent_client.protocol.frames import Keycode, Payment, Plan, Reason, Stock
from agent_client.protocol.keycodes import KeycodeFormat
from agent_client.protocol.ops import Kind
from agent_client.protocol.sync import Result
from agent_client.store import MIGRATIONS, HandsetStore, OpState
from agent_client.strategies import fields_for


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
