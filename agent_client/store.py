"""The handset's durable state in one SQLite file: identity, outbox, inbox, cursor.

The outbox row is the idempotency key: ``seq`` is allocated once (AUTOINCREMENT never reuses a
value) and the payload is stored as the operation's canonical bytes, frozen from the moment a
send starts. Rows leave ``pending``/``in_flight`` only on an explicit acknowledgement or
rejection from the server; anything in flight when the process dies is simply sent again.
The inbox and the cursor are written in the same transaction as the acks they arrived with.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from .database import Connection, Storage
from .errors import InvalidOperation, OperationFrozen
from .escrow import EscrowCode, HandsetEscrow, escrow_key, seal, unseal
from .protocol.errors import FrameError
from .protocol.frames import Escrow, EscrowRevoked, Keycode, Payment, Plan, Stock
from .protocol.keycodes import KeycodeFormat
from .protocol.ops import Kind, Operation
from .protocol.sync import Result

DAY_S = 86_400

MIGRATIONS: tuple[str, ...] = (
    # v1: identity, outbox, inbox with its typed views
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        kind INTEGER NOT NULL,
        content BLOB NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending', 'in_flight', 'acknowledged', 'rejected')),
        reason TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL,
        settled_ms INTEGER
    );
    CREATE TABLE inbox (n INTEGER PRIMARY KEY, kind INTEGER NOT NULL, received_ms INTEGER NOT NULL);
    CREATE TABLE keycodes (
        n INTEGER PRIMARY KEY REFERENCES inbox(n),
        device INTEGER NOT NULL, op_seq INTEGER NOT NULL, format INTEGER NOT NULL,
        number INTEGER NOT NULL, credit_s INTEGER NOT NULL
    );
    CREATE INDEX keycodes_device ON keycodes(device, n);
    CREATE TABLE payments (
        n INTEGER PRIMARY KEY REFERENCES inbox(n),
        device INTEGER NOT NULL, amount INTEGER NOT NULL, ref TEXT NOT NULL
    );
    CREATE TABLE stock (device INTEGER PRIMARY KEY, format INTEGER NOT NULL);
    CREATE TABLE plans (
        plan INTEGER PRIMARY KEY, name TEXT NOT NULL, price_per_day INTEGER NOT NULL
    );
    """,
    # v2: the sendable-batch query scans by state in seq order
    """
    CREATE INDEX outbox_state_seq ON outbox(state, seq);
    """,
)


T = TypeVar("T")
_PUT_META = (
    "INSERT INTO meta(key, value) VALUES (?, ?) "
    "ON CONFLICT(key) DO UPDATE SET value = excluded.value"
)


class OpState(StrEnum):
    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    ACKNOWLEDGED = "acknowledged"
    REJECTED = "rejected"


@dataclass(frozen=True)
class OutboxRow:
    op: Operation
    state: OpState
    reason: str | None
    attempts: int


class HandsetStore:
    def __init__(self, db: Connection, *, sole_writer: bool = False) -> None:
        """`sole_writer`: nothing but this store writes its file (`Storage(locks=False)`), so
        it may keep the count of unsettled operations in memory (see `unsettled`)."""
        self._db = db
        self._lock = asyncio.Lock()
        self._sole = sole_writer
        self._unsettled: int | None = None
        """Operations pending or in flight, when known without a read: counted once, then
        moved by this store's own commits; None: unknown (the next read counts them)."""

    @classmethod
    async def open(cls, path: str | Path, storage: Storage | None = None) -> HandsetStore:
        """`storage`: journal, sync and runner (default: WAL, synced commits, shared thread)."""
        storage = storage or Storage()
        db = await Connection.connect(path, storage)
        try:
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA busy_timeout=5000")
            store = cls(db, sole_writer=not storage.locks)
            await store._migrate()
        except BaseException:
            await db.close()
            raise
        return store

    async def close(self) -> None:
        await self._db.close()

    async def schema_version(self) -> int:
        return int((await self._one("PRAGMA user_version"))[0])

    async def _migrate(self) -> None:
        if await self.schema_version() == len(MIGRATIONS):
            return  # the usual open: current already, no write lock taken
        async with self._transaction():
            version = await self.schema_version()
            if version > len(MIGRATIONS):
                raise RuntimeError(f"database schema v{version} is newer than this code")
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.split(";")):
                    await self._db.execute(statement)
                await self._db.execute(f"PRAGMA user_version = {number}")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """One write transaction of the caller's own statements: afterwards the store counts
        its unsettled operations afresh (the caller may have changed any of them)."""
        try:
            async with self._transaction() as db:
                yield db
        finally:
            self._unsettled = None

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Connection]:
        async with self._lock:
            try:
                await self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    await self._db.execute("ROLLBACK")
                    raise
                await self._db.execute("COMMIT")
            except BaseException:
                self._unsettled = None  # whatever happened to the file, count it afresh
                raise

    def _moved(self, delta: int) -> None:
        """A commit of this store's added (or settled: negative) `delta` unsettled operations."""
        if self._unsettled is not None:
            self._unsettled += delta

    async def _atomic(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work`'s statements as one transaction in one hand-off to the database's thread
        (a sync's acks and 200 keycodes are one wake-up, not 400); committed before it returns."""

        def run(db: sqlite3.Connection) -> T:
            db.execute("BEGIN IMMEDIATE")
            try:
                done = work(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return done

        async with self._lock:
            try:
                return await self._db.run(run)
            except BaseException:
                self._unsettled = None  # whatever happened to the file, count it afresh
                raise

    async def _one(self, sql: str, args: Iterable[Any] = ()) -> Any:
        async with self._db.execute(sql, tuple(args)) as cursor:
            return await cursor.fetchone()

    async def _all(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        async with self._db.execute(sql, tuple(args)) as cursor:
            return list(await cursor.fetchall())

    # -- meta ----------------------------------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        row = await self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return default if row is None else row[0]

    async def meta(self) -> dict[str, Any]:
        """Every meta value by key, in one read (opening an agent needs most of them)."""
        return dict(await self._all("SELECT key, value FROM meta"))

    async def put(self, **values: Any) -> None:
        async with self._transaction() as db:
            await self._put(db, values)

    @staticmethod
    async def _put(db: Connection, values: dict[str, Any]) -> None:
        await db.executemany(_PUT_META, list(values.items()))

    # -- outbox --------------------------------------------------------------------------------

    async def enqueue(self, kind: Kind, at: int, *fields: object, now_ms: int) -> Operation:
        try:
            Operation.make(1, kind, at, *fields)
        except FrameError as exc:
            raise InvalidOperation(exc.detail) from exc
        async with self._transaction() as db:
            cursor = await db.execute(
                "INSERT INTO outbox(kind, content, created_ms) VALUES (?, ?, ?)",
                (int(kind), Operation.make(1, kind, at, *fields).content(), now_ms),
            )
            seq = cursor.lastrowid
            assert seq is not None
        self._moved(1)
        return Operation.make(seq, kind, at, *fields)

    async def enqueue_sales(
        self, at: int, sales: Sequence[tuple[str, str, int, int, int]], *, now_ms: int
    ) -> list[tuple[Operation, Operation]]:
        """Register a customer and record a sale to them for each (name, phone, device, plan,
        down payment): one transaction for the lot, all or nothing. Each sale names the
        customer registered just before it (the registration's seq, as `record_sale` does)."""

        def made(kind: Kind, *fields: object) -> Operation:
            try:  # seq 1 until the row has one: the content does not carry it
                return Operation.make(1, kind, at, *fields)
            except FrameError as exc:
                raise InvalidOperation(exc.detail) from exc

        insert = "INSERT INTO outbox(kind, content, created_ms) VALUES (?, ?, ?)"

        def queued(db: sqlite3.Connection, op: Operation) -> Operation:
            seq = db.execute(insert, (int(op.kind), op.content(), now_ms)).lastrowid
            assert seq is not None
            return replace(op, seq=seq)

        def work(db: sqlite3.Connection) -> list[tuple[Operation, Operation]]:
            pairs: list[tuple[Operation, Operation]] = []
            for name, phone, device, plan, down_payment in sales:
                customer = queued(db, made(Kind.REGISTER_CUSTOMER, name, phone))
                sale = made(Kind.RECORD_SALE, customer.seq, device, plan, down_payment)
                pairs.append((customer, queued(db, sale)))
            return pairs

        pairs = await self._atomic(work)
        self._moved(2 * len(pairs))
        return pairs

    async def amend(self, seq: int, *fields: object) -> Operation:
        """Replace a still-pending operation's fields; frozen once a send has started."""
        async with self._transaction() as db:
            row = await self._one("SELECT content, state FROM outbox WHERE seq = ?", (seq,))
            if row is None:
                raise InvalidOperation(f"no operation {seq}")
            if row[1] != OpState.PENDING:
                raise OperationFrozen(f"operation {seq} is {row[1]}: its payload is frozen")
            old = Operation.from_content(seq, row[0])
            try:
                new = Operation.make(seq, old.kind, old.at, *fields)
            except FrameError as exc:
                raise InvalidOperation(exc.detail) from exc
            await db.execute("UPDATE outbox SET content = ? WHERE seq = ?", (new.content(), seq))
        return new

    async def sendable(self, limit: int) -> list[Operation]:
        """The first `limit` unsettled operations in seq order (no read when none are)."""
        if self._unsettled == 0:
            return []  # a poll's sync asks twice: the outbox is not read for nothing
        rows = await self._all(
            "SELECT seq, content FROM outbox WHERE state IN ('pending', 'in_flight') "
            "ORDER BY seq LIMIT ?",
            (limit,),
        )
        if self._sole and len(rows) < limit:
            self._unsettled = len(rows)  # all of them: the count is known for free
        return [Operation.from_content(seq, content) for seq, content in rows]

    async def mark_in_flight(self, seqs: Iterable[int], **meta: Any) -> None:
        """Freeze `seqs` for sending (and record `meta`, e.g. the request timestamp)."""
        rows = [(seq,) for seq in seqs]

        def work(db: sqlite3.Connection) -> None:
            db.executemany(_PUT_META, list(meta.items()))
            db.executemany(
                "UPDATE outbox SET state = 'in_flight', attempts = attempts + 1 "
                "WHERE seq = ? AND state IN ('pending', 'in_flight')",
                rows,
            )

        await self._atomic(work)

    async def operation(self, seq: int) -> OutboxRow | None:
        rows = await self._rows("WHERE seq = ?", (seq,))
        return rows[0] if rows else None

    async def queue(self, states: Iterable[OpState] = tuple(OpState)) -> list[OutboxRow]:
        wanted = tuple(states)
        marks = ",".join("?" * len(wanted))
        return await self._rows(f"WHERE state IN ({marks}) ORDER BY seq", wanted)

    async def _rows(self, where: str, args: Iterable[Any]) -> list[OutboxRow]:
        rows = await self._all(
            f"SELECT seq, content, state, reason, attempts FROM outbox {where}", args
        )
        return [
            OutboxRow(Operation.from_content(seq, content), OpState(state), reason, attempts)
            for seq, content, state, reason, attempts in rows
        ]

    async def unsettled(self) -> int:
        """Operations still to be acknowledged or refused (pending or in flight): what a sync
        reports as left over, read from the state index (no count per state).

        A store that is its file's sole writer counts them once and then keeps the count as
        its own commits move it (enqueued: up; acknowledged or refused: down), so a poll's
        sync reads nothing from the outbox; any failed write, or a caller's own
        `transaction`, makes it count afresh."""
        if self._unsettled is not None:
            return self._unsettled
        row = await self._one("SELECT count(*) FROM outbox WHERE state IN ('pending', 'in_flight')")
        if self._sole:
            self._unsettled = int(row[0])
        return int(row[0])

    async def counts(self) -> dict[OpState, int]:
        rows = await self._all("SELECT state, count(*) FROM outbox GROUP BY state")
        counts = dict.fromkeys(OpState, 0)
        counts.update({OpState(state): n for state, n in rows})
        return counts

    # -- results and inbox ---------------------------------------------------------------------

    async def apply(self, result: Result, now_ms: int, **meta: Any) -> None:
        """Acks, rejections, downlink entries and the cursor: all or nothing."""

        settled = [0]  # operations this answer settled (an ack heard twice settles one once)

        def work(db: sqlite3.Connection) -> list[Escrow | EscrowRevoked]:
            settled[0] = 0
            if result.acked:
                settled[0] += db.executemany(
                    "UPDATE outbox SET state = 'acknowledged', settled_ms = ? "
                    "WHERE seq = ? AND state IN ('pending', 'in_flight')",
                    [(now_ms, seq) for seq in result.acked],
                ).rowcount
            if result.rejected:
                settled[0] += db.executemany(
                    "UPDATE outbox SET state = 'rejected', reason = ?, settled_ms = ? "
                    "WHERE seq = ? AND state IN ('pending', 'in_flight')",
                    [(reason.name.lower(), now_ms, seq) for seq, reason in result.rejected],
                ).rowcount
            escrowed: list[Escrow | EscrowRevoked] = []
            for n, entry in result.entries:
                if self._store_entry(db, n, entry, now_ms) and isinstance(
                    entry, Escrow | EscrowRevoked
                ):
                    escrowed.append(entry)
            db.executemany(_PUT_META, [("cursor", result.cursor), *meta.items()])
            return escrowed

        if not any(isinstance(entry, Escrow | EscrowRevoked) for _, entry in result.entries):
            await self._atomic(work)  # the common answer: one hand-off to the database thread
        else:
            async with self._transaction() as db:  # the vault is opened and sealed in it too
                escrowed = await db.run(work)
                if escrowed:
                    await self._escrow_update(db, escrowed)
        self._moved(-settled[0])

    @staticmethod
    def _store_entry(db: sqlite3.Connection, n: int, entry: object, now_ms: int) -> bool:
        """Store one downlink entry; False when it was stored already."""
        cursor = db.execute(
            "INSERT OR IGNORE INTO inbox(n, kind, received_ms) VALUES (?, ?, ?)",
            (n, type(entry).__name__.lower(), now_ms),
        )
        if cursor.rowcount == 0:
            return False  # already stored (a late duplicate answer)
        match entry:
            case Keycode():
                db.execute(
                    "INSERT INTO keycodes VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        n,
                        entry.device,
                        entry.op_seq,
                        int(entry.format),
                        entry.number,
                        entry.credit_s,
                    ),
                )
            case Payment():
                db.execute(
                    "INSERT INTO payments VALUES (?, ?, ?, ?)",
                    (n, entry.device, entry.amount, entry.ref),
                )
            case Stock(present=True):
                db.execute(
                    "INSERT OR REPLACE INTO stock VALUES (?, ?)", (entry.device, int(entry.format))
                )
            case Stock(present=False):
                db.execute("DELETE FROM stock WHERE device = ?", (entry.device,))
            case Plan():
                db.execute(
                    "INSERT OR REPLACE INTO plans VALUES (?, ?, ?)",
                    (entry.plan, entry.name, entry.price_per_day),
                )
        return True

    # -- escrow (offline sales) ----------------------------------------------------------------

    async def _vault_key(self) -> tuple[int, bytes]:
        handset, seed = await self.get("handset"), await self.get("key_seed")
        if handset is None or seed is None:
            raise InvalidOperation("a handset without an identity holds no escrow")
        return int(handset), escrow_key(bytes(seed), int(handset))

    async def _vault(self) -> HandsetEscrow:
        """The sealed escrow, opened; codes released by sales not yet acknowledged are
        `released` (they go up with their sale, and are never offered again)."""
        handset, key = await self._vault_key()
        blob = await self.get("escrow")
        vault = HandsetEscrow.of(unseal(key, handset, bytes(blob)) if blob is not None else [])
        for row in await self.queue((OpState.PENDING, OpState.IN_FLIGHT)):
            if row.op.kind is Kind.RECORD_SALE and row.op.get("reserved_id") is not None:
                device = int(row.op.field("device"))
                vault.released[device] = EscrowCode(
                    device, int(row.op.field("reserved_id")), 0, 0, 0
                )
        return vault

    async def _seal(self, db: Connection, vault: HandsetEscrow) -> None:
        handset, key = await self._vault_key()
        blob = seal(key, handset, vault.codes.values(), nonce=os.urandom(12))
        await self._put(db, {"escrow": blob})

    async def _escrow_update(self, db: Connection, entries: list[Escrow | EscrowRevoked]) -> None:
        vault = await self._vault()
        for entry in entries:
            if isinstance(entry, Escrow):
                fields = (entry.device, entry.reserved_id, int(entry.format), entry.number)
                vault.grant(EscrowCode(*fields, entry.credit_s))
            else:
                vault.revoke(entry.device, entry.reserved_id)
        await self._seal(db, vault)

    async def escrow(self) -> list[EscrowCode]:
        """The codes held for offline sales (opened for the handset's own use)."""
        return sorted((await self._vault()).codes.values(), key=lambda c: c.device)

    async def sell_offline(
        self,
        at: int,
        customer: int,
        device: int,
        plan: int,
        down_payment: int,
        *,
        price_per_day: int,
        now_ms: int,
    ) -> tuple[Operation, EscrowCode]:
        """Release `device`'s escrowed code and queue the sale that carries its reserved id,
        in one transaction: a code is never released without its sale, nor twice, nor for a
        down payment that does not pay for the code's days."""
        async with self._transaction() as db:
            vault = await self._vault()
            sold = {
                int(row.op.field("device"))
                for row in await self.queue((OpState.PENDING, OpState.IN_FLIGHT))
                if row.op.kind is Kind.RECORD_SALE
            }
            stock = await self.stock()
            code = vault.release(device, in_stock=device in stock and device not in sold)
            days = -(-code.credit_s // DAY_S)
            if down_payment < days * price_per_day:
                raise InvalidOperation(
                    f"a down payment of {down_payment} does not pay for the escrowed code's"
                    f" {days} days at {price_per_day} a day"
                )
            fields = (customer, device, plan, down_payment, code.reserved_id)
            try:
                content = Operation.make(1, Kind.RECORD_SALE, at, *fields).content()
            except FrameError as exc:
                raise InvalidOperation(exc.detail) from exc
            cursor = await db.execute(
                "INSERT INTO outbox(kind, content, created_ms) VALUES (?, ?, ?)",
                (int(Kind.RECORD_SALE), content, now_ms),
            )
            assert cursor.lastrowid is not None
            await self._seal(db, vault)
        self._moved(1)
        return Operation.make(cursor.lastrowid, Kind.RECORD_SALE, at, *fields), code

    async def keycodes(self, device: int | None = None) -> list[Keycode]:
        """Keycodes received, in downlink order (all devices', or one device's)."""
        rows = await self._all(
            "SELECT op_seq, device, format, number, credit_s FROM keycodes "
            "WHERE ? IS NULL OR device = ? ORDER BY n",
            (device, device),
        )
        return [
            Keycode(seq, dev, KeycodeFormat(fmt), num, credit)
            for seq, dev, fmt, num, credit in rows
        ]

    async def stock(self) -> dict[int, KeycodeFormat]:
        rows = await self._all("SELECT device, format FROM stock ORDER BY device")
        return {device: KeycodeFormat(fmt) for device, fmt in rows}

    async def plans(self) -> list[Plan]:
        rows = await self._all("SELECT plan, name, price_per_day FROM plans ORDER BY plan")
        return [Plan(*row) for row in rows]

    async def payments(self) -> list[Payment]:
        rows = await self._all("SELECT device, amount, ref FROM payments ORDER BY n")
        return [Payment(*row) for row in rows]
