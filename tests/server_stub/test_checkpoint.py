"""WAL checkpoints from their own thread: the store's connection never checkpoints, and the
log's pages still reach the database file."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient

from server_stub.app import RUNNER, STORE, create_app
from server_stub.checkpoint import Checkpointer

PAGE = 4096


def writer(path: Path) -> sqlite3.Connection:
    """A WAL connection that never checkpoints by itself, with ~2 MB of rows in its log."""
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute("CREATE TABLE t (x BLOB)")
    db.execute("BEGIN")
    db.executemany("INSERT INTO t VALUES (?)", [(bytes(1000),) for _ in range(2000)])
    db.execute("COMMIT")
    return db


def test_without_a_checkpointer_the_rows_stay_in_the_log(tmp_path: Path) -> None:
    db = writer(tmp_path / "a.db")
    time.sleep(0.2)
    assert (tmp_path / "a.db").stat().st_size < 10 * PAGE  # the control: nothing copied
    db.close()


def test_the_checkpointer_copies_the_log_into_the_database(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    db = writer(path)
    checkpointer = Checkpointer(path, interval_s=0.01)
    checkpointer._thread.start()
    try:
        for _ in range(500):  # bounded: 5 s at most
            if path.stat().st_size > 1_000_000 and checkpointer.checkpoints >= 1:
                break
            time.sleep(0.01)
        assert path.stat().st_size > 1_000_000
        assert checkpointer.checkpoints >= 1
    finally:
        checkpointer.stop()
        db.close()


def test_start_for_turns_the_writers_own_checkpoints_off(tmp_path: Path) -> None:
    db = sqlite3.connect(str(tmp_path / "b.db"), isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    checkpointer = Checkpointer.start_for(db, tmp_path / "b.db", interval_s=0.01)
    try:
        assert db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    finally:
        checkpointer.stop()
        db.close()


def test_a_bad_interval_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="interval_s must be positive"):
        Checkpointer(tmp_path / "c.db", interval_s=0)


async def test_the_platform_checkpoints_off_its_store_thread(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    app = create_app(tmp_path / "p.db")
    await aiohttp_client(app)
    loop = asyncio.get_running_loop()
    store = app[STORE]
    auto = await loop.run_in_executor(
        app[RUNNER], lambda: store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    )
    assert auto == 0
