"""The store's connection: synchronous `sqlite3` behind an async API, with no thread per file.

aiosqlite gives every connection its own thread; ten thousand emulated handsets in one process
would be ten thousand threads. Here a `Runner` decides where statements run:

    SharedThread  one worker thread serving any number of database files; the statements
                  queued while it works are run together and their results go back to the
                  event loop in one wake-up (the default: a commit that waits for the disk
                  never stalls the loop)
    Inline        on the caller's thread, for storage that never waits for the disk
                  (``synchronous=off``: each commit is handed to the OS and survives the
                  process dying, not the machine losing power); no hand-off at all

`Storage` says how a handset's file is kept (journal, sync) and which runner serves it, and
what it costs in file descriptors. `Connection` offers the subset of aiosqlite's API the store
uses (`execute` awaited or as ``async with``, `executemany`, `close`).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

JOURNALS = ("wal", "truncate", "persist", "delete")
SYNCHRONOUS = ("full", "normal", "off")


class Runner(Protocol):
    """Where a database call runs; the result comes back to the awaiting coroutine."""

    async def call(self, fn: Callable[[], T]) -> T: ...


class Inline:
    """Runs every call at once on the caller's thread (never blocks on the disk only when the
    storage does not sync)."""

    async def call(self, fn: Callable[[], T]) -> T:
        return fn()


Outcome = tuple["asyncio.Future[Any]", bool, Any]


def _settle(outcomes: list[Outcome]) -> None:
    for future, ok, value in outcomes:
        if future.cancelled():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class SharedThread:
    """One daemon thread running the calls of every connection given to it, in order.

    Calls that queue up while it works are run as one batch and settled with one
    `call_soon_threadsafe` per event loop, so under load a hand-off costs a fraction of a
    wake-up. A loop that has closed meanwhile is skipped, never shouted at.
    """

    def __init__(self, name: str = "handset-sqlite") -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]]] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    async def call(self, fn: Callable[[], T]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        if self._thread is None:
            self._start()
        self._jobs.put((fn, future))
        return await future

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self._thread.start()

    def _work(self) -> None:
        while True:
            batch = [self._jobs.get()]
            with contextlib.suppress(queue.Empty):
                while len(batch) < 1024:
                    batch.append(self._jobs.get_nowait())
            settled: dict[asyncio.AbstractEventLoop, list[Outcome]] = defaultdict(list)
            for fn, future in batch:
                try:
                    outcome: Outcome = (future, True, fn())
                except BaseException as exc:  # handed to the awaiting coroutine
                    outcome = (future, False, exc)
                settled[future.get_loop()].append(outcome)
            for loop, outcomes in settled.items():
                with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                    loop.call_soon_threadsafe(_settle, outcomes)


_SHARED = SharedThread()


def shared_thread() -> SharedThread:
    """The process's default worker thread for handset databases."""
    return _SHARED


@dataclass(frozen=True)
class Storage:
    """How a handset's SQLite file is kept, and which runner serves its statements.

    The default is a phone's: write-ahead log, every commit synced to the disk (survives
    power loss), statements on the shared thread so a sync never stalls the event loop.
    """

    journal: str = "wal"
    synchronous: str = "full"
    runner: Runner = field(default_factory=shared_thread)
    locks: bool = True
    """False: SQLite's `unix-none` VFS, no file locks, for a file only ever opened by one
    connection in one process at a time (an emulated handset). SQLite's default VFS keeps a
    list of every file the process has open and walks it on each open, so a process holding
    10,000 files opened each in about five times the time of the first; without locks an open
    costs the same however many are open, and a transaction makes no lock calls. A crash is
    recovered as before: the next open rolls back a hot journal."""

    def __post_init__(self) -> None:
        if self.journal not in JOURNALS:
            raise ValueError(f"journal must be one of {', '.join(JOURNALS)}, got {self.journal!r}")
        if self.synchronous not in SYNCHRONOUS:
            raise ValueError(
                f"synchronous must be one of {', '.join(SYNCHRONOUS)}, got {self.synchronous!r}"
            )

    @property
    def descriptors(self) -> int:
        """File descriptors one open, idle database holds (the WAL keeps its log and its
        shared-memory index open; a rollback journal is open only during a write)."""
        return 3 if self.journal == "wal" else 1


@dataclass(frozen=True)
class Cursor:
    """A statement's outcome, fetched in full where it ran."""

    rows: list[Any]
    lastrowid: int | None
    rowcount: int

    async def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None

    async def fetchall(self) -> list[Any]:
        return list(self.rows)


class _Pending:
    """`await db.execute(...)` or `async with db.execute(...) as cursor:`."""

    def __init__(self, run: Callable[[], Any]) -> None:
        self._run = run

    def __await__(self) -> Generator[Any, None, Cursor]:
        return self._run().__await__()  # type: ignore[no-any-return]

    async def __aenter__(self) -> Cursor:
        cursor: Cursor = await self._run()
        return cursor

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


def _address(path: str | Path, storage: Storage) -> str:
    """The file as an SQLite URI naming its VFS (`storage.locks`); ":memory:" as it is."""
    if str(path) == ":memory:":
        return ":memory:"
    uri = Path(path).absolute().as_uri()
    return uri if storage.locks else f"{uri}?vfs=unix-none"


class Connection:
    """One database file, its statements run by `storage.runner`."""

    def __init__(self, db: sqlite3.Connection, runner: Runner) -> None:
        self._db = db
        self._runner = runner

    @classmethod
    async def connect(cls, path: str | Path, storage: Storage) -> Connection:
        def opening() -> sqlite3.Connection:
            db = sqlite3.connect(
                _address(path, storage), isolation_level=None, check_same_thread=False, uri=True
            )
            try:
                db.execute(f"PRAGMA journal_mode={storage.journal}")
                db.execute(f"PRAGMA synchronous={storage.synchronous}")
                # the outbox's sorts (a few rows) in memory: with the default, every
                # `sendable` opened and removed a temporary file (3x its CPU)
                db.execute("PRAGMA temp_store=memory")
            except BaseException:
                db.close()
                raise
            return db

        return cls(await storage.runner.call(opening), storage.runner)

    def execute(self, sql: str, args: Iterable[Any] = ()) -> _Pending:
        values = tuple(args)

        def run() -> Cursor:
            cursor = self._db.execute(sql, values)
            return Cursor(cursor.fetchall(), cursor.lastrowid, cursor.rowcount)

        return _Pending(lambda: self._runner.call(run))

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> Cursor:
        values = [tuple(row) for row in rows]

        def run() -> Cursor:
            cursor = self._db.executemany(sql, values)
            return Cursor([], cursor.lastrowid, cursor.rowcount)

        return await self._runner.call(run)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(connection)` where the statements run: many statements in one hand-off."""
        return await self._runner.call(lambda: fn(self._db))

    async def close(self) -> None:
        await self._runner.call(self._db.close)
