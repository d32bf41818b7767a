"""The platform's store: agents, handsets, stock, customers, idempotent ingest, downlink logs.

The business rules are not here: each operation reads the state it touches, asks
`server_stub.ledger` (pure) for the effects or a refusal, and writes the effects in the same
transaction.

Synchronous sqlite3, meant to run on one dedicated thread (see app.py) so that every request's
work is one transaction with no interleaving. Idempotency does not rest on that: the
``ops(handset, seq)`` primary key is inserted *first*, so a concurrent retry of the same key,
even from another process on the same file, fails the insert and is answered as a replay.
"""

from __future__ import annotations

import hmac
import os
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

import msgpack

from agent_client.protocol import auth, envelope
from agent_client.protocol.frames import (
    MAX_ENTRIES,
    BadOperation,
    DownlinkFrame,
    Entry,
    Payment,
    Plan,
    Reason,
    Stock,
    entry_from_row,
    entry_to_row,
)
from agent_client.protocol.keycodes import KeycodeFormat
from agent_client.protocol.ops import SCHEMAS, Kind, Operation

from . import escrow_store
from .callbacks import Answer, MoneyCallback, Outcome
from .errors import RequestError, SetupError
from .escrow import EscrowPolicy
from .faults import Every, PlatformFaults
from .keycodes import DeviceSecret
from .ledger import credit, replay, sales
from .ledger.access import code_weakness, new_token, token_digest
from .ledger.rollup import MM, Tally, day_of
from .ledger.sales import Refused
from .memo import Memo
from .migrations import DEFAULT_DISTRIBUTOR, migrate
from .provisioning import Provisioning, refused
from .writelock import WriteLock

ENTRIES_PER_RESPONSE = 256
APPLIED = 0
_SECRET_COLUMNS = "d.format, d.key, d.starting_code, d.time_divider"
_CREDIT_COLUMNS = f"{_SECRET_COLUMNS}, d.next_id, d.balance, p.price_per_day, d.credit_until_ms"
"""What `Store._account` reads of a device (and its plan, as ``p``)."""
_CREDIT = (
    f"SELECT {_CREDIT_COLUMNS} FROM devices d JOIN plans p ON p.plan = d.plan WHERE d.device = ?"
)
_PAID = (
    f"SELECT c.handset, h.agent, d.device, {_CREDIT_COLUMNS} FROM devices d"
    " JOIN plans p ON p.plan = d.plan JOIN customers c ON c.customer = d.customer"
    " JOIN handsets h ON h.handset = c.handset WHERE d.device = ?"
)
"""A payment's device, when sold: the handset that sold it (told of a mobile-money payment
and its keycode), that handset's agent (only it may take cash for it), and its credit state
(from the fourth column on)."""
_IN_STOCK = (
    f"SELECT d.agent, d.customer, {_SECRET_COLUMNS}, d.next_id, d.credit_until_ms"
    " FROM devices d WHERE d.device = ?"
)
"""A sale's device: whose stock, whether sold, and what its keycode needs."""
_STAMP = "UPDATE handsets SET last_ms = ? WHERE handset = ? AND last_ms < ?"
"""A handset's newest accepted request stamp; no row changed: another writer accepted a newer
one (the memo's is a lower bound)."""
_UNSYNCED = (
    "SELECT 1 FROM mm_txns WHERE handset = ? AND synced_ms IS NULL AND downlink_n IS NOT NULL"
    " LIMIT 1"
)
"""Whether a handset has a mobile-money keycode not yet confirmed stored (the partial index
``mm_txns_unsynced``)."""
_SOLD = (
    "UPDATE devices SET sold_handset = ?, sale_day = ?, down_payment = ?, sold_ms = ?,"
    " customer = ?, plan = ?, last_paid_ms = ?, balance = ?"
)
"""A sale, kept in its device's row (the `sales` view reads it there)."""
_SOLD_CREDITED = f"{_SOLD}, next_id = ?, credit_until_ms = ? WHERE device = ?"
"""A sale's one write of its device: the sale, sold to whom, and the keycode its down payment
bought."""


def _required(kind: Kind, *names: str) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """Reads named required fields of a `kind` operation's `fields` in one call (every
    decoded operation carries them; `Operation.field` per name costs a lookup each)."""
    where = {f.name: i for i, f in enumerate(SCHEMAS[kind])}
    return itemgetter(*(where[name] for name in names))


_CUSTOMER_FIELDS = _required(Kind.REGISTER_CUSTOMER, "name", "phone")
_SALE_FIELDS = _required(Kind.RECORD_SALE, "customer", "device", "plan", "down_payment")
_PAYMENT_FIELDS = _required(Kind.RECORD_PAYMENT, "account", "amount")


@lru_cache(maxsize=64)
def _rollup_upsert(names: tuple[str, ...]) -> str:
    """The upsert adding to `names` of one (day, agent) rollup row (a few shapes, made once)."""
    columns, marks = ", ".join(names), ", ".join("?" * len(names))
    sets = ", ".join(f"{n} = {n} + excluded.{n}" for n in names)
    return (
        f"INSERT INTO daily(day, agent, {columns}) VALUES (?, ?, {marks})"
        f" ON CONFLICT(day, agent) DO UPDATE SET {sets}"
    )


class Issued(NamedTuple):
    """A keycode just written: its row id, its text, and its downlink entry number."""

    keycode: int
    text: str
    entry: int


class _WroteThenRefused(Exception):
    """An operation refused after it wrote, outside a savepoint: its request must be rolled
    back and run again with a savepoint per operation."""


class _LostAck(Exception):
    """The lose-ack fault: roll the operation back, but acknowledge it anyway."""


@dataclass(frozen=True)
class Handset:
    handset: int
    agent: int
    public_key: bytes
    last_ms: int


@dataclass(frozen=True)
class DeviceRecord:
    device: int
    secret: DeviceSecret


def _replayed(last_ms: int) -> RequestError:
    return RequestError(
        401,
        "replayed_request",
        "timestamp not newer than the last accepted",
        {"last_ms": last_ms},
    )


def _keyed_insert(table: str, key: tuple[str, ...], columns: tuple[str, ...], again: bool) -> str:
    """The insert that records an idempotency key. Correct: a plain INSERT, so a replay fails
    on the key and is answered from the stored row. With the replay fault: an upsert, so the
    replay overwrites the row in place (same rowid) and is applied again."""
    sql = f"INSERT INTO {table}({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    if not again:
        return sql
    sets = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
    return f"{sql} ON CONFLICT({', '.join(key)}) DO UPDATE SET {sets}"


class Store:
    def __init__(
        self,
        db: sqlite3.Connection,
        *,
        faults: PlatformFaults | None = None,
        escrow: EscrowPolicy | None = None,
        memo: Memo | None = None,
        write_lock: WriteLock | None = None,
    ) -> None:
        self.db = db
        self.write_lock = write_lock
        """Taken before each transaction when other processes write the same file."""
        self._run = db.cursor().execute
        """Runs one statement on a cursor kept for the store's own: `Connection.execute` makes
        a cursor per call (0.3–2.6 µs more per insert on a fresh table; within the noise of
        `store_apply`). Only for statements read to the end (or not at all) before the next."""
        self.faults = faults or PlatformFaults()
        self.escrow = escrow or EscrowPolicy(devices=0)
        """Offline-sale escrow per agent (docs/offline-sales.md); the default grants none."""
        self._grouped = False
        self._clean = False
        """In a group: nothing done since its BEGIN, so the next request's undo is a rollback
        of the whole transaction and it needs no savepoint (two statements)."""
        self._wal: int | None = None  # the WAL file, when its fsync is deferred to sync_wal
        self._wal_lock = threading.Lock()
        self._closed = False
        self._changes = 0
        self._tally: Tally | None = None
        """While an exchange ingests: its rollup additions, written once at its end."""
        self.memo = memo or Memo()  # hot-path state; see memo.py for why it stays true
        again = self.faults.replays_apply_again
        self._insert_op = _keyed_insert(
            "ops",
            ("handset", "seq"),
            ("handset", "seq", "digest", "kind", "at", "received_ms", "outcome"),
            again,
        )
        self._insert_payment = (  # keyed elsewhere: a replay applied again pays again
            "INSERT INTO payments(device, agent, source, ref, amount, day, received_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)"
        )
        self._insert_txn = _keyed_insert(
            "mm_txns",
            ("txn",),
            (
                "txn",
                "digest",
                "outcome",
                "account",
                "amount",
                "msisdn",
                "paid_ms",
                "day",
                "received_ms",
                "device",
                "handset",
                "confirmed_ms",
                "keycode",
                "issued_ms",
                "downlink_n",
            ),
            again,
        )
        # a replayed registration has nothing to apply again: the customer is there already
        self._insert_customer = "INSERT OR IGNORE" if again else "INSERT"
        self._lose_ack = Every(self.faults.lose_ack_every)  # per store: per process
        self._apply_twice = Every(self.faults.apply_twice_every)

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        faults: PlatformFaults | None = None,
        synchronous: str = "full",
        escrow: EscrowPolicy | None = None,
        memo: Memo | None = None,
        write_lock: bool = False,
    ) -> Store:
        """`synchronous`: "full" syncs every commit to the disk; "normal" (WAL) only at
        checkpoints, so a commit survives the process dying but not the machine's power;
        "deferred" commits as "normal" does and leaves the fsync that "full" makes inside each
        COMMIT to `sync_wal`, which whoever answers for a commit must call first (the store
        thread's syncer does: `server_stub.runner`). `write_lock`: other processes serve the
        same file; each transaction first takes the cross-process lock (writelock.py)."""
        if synchronous not in ("full", "normal", "deferred"):
            raise ValueError(f"synchronous must be full, normal or deferred, got {synchronous!r}")
        db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        deferred = synchronous == "deferred"
        db.execute(f"PRAGMA synchronous={'NORMAL' if deferred else synchronous.upper()}")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA busy_timeout=10000")
        # a grouped exchange is a savepoint: the pages it changes are copied to a sub-journal,
        # which past 64 KiB spills to a temporary file (a write per page); in memory it costs
        # ~12 µs less CPU per operation (benchmarks/store_apply.py). It is only ever the
        # undo of an open transaction: a crash loses nothing of it that was committed.
        db.execute("PRAGMA temp_store=MEMORY")
        migrate(db)
        lock = WriteLock(path) if write_lock else None
        store = cls(db, faults=faults, escrow=escrow, memo=memo, write_lock=lock)
        if deferred:  # the WAL lives as long as this connection: the same file to the end
            store._wal = os.open(f"{path}-wal", os.O_RDONLY)
            store.sync_wal()
        return store

    def sync_wal(self) -> None:
        """Make every commit so far durable: what ``synchronous=FULL`` does at the end of each
        COMMIT in WAL mode (an fsync of the WAL file), for all of them at once, on any thread.
        A no-op unless opened "deferred", or once closed (closing syncs)."""
        with self._wal_lock:
            if self._wal is not None:
                os.fsync(self._wal)

    def no_autocheckpoint(self) -> None:
        """Never checkpoint in a commit: another process's `Checkpointer` does it for this
        file (several workers, checkpoint.py)."""
        self.db.execute("PRAGMA wal_autocheckpoint=0")

    def changes(self) -> int:
        """Rows changed through this connection so far (on its thread); after close, the
        count it closed with."""
        return self._changes if self._closed else self.db.total_changes

    def close(self) -> None:
        self._changes = self.db.total_changes
        self._closed = True
        self.db.close()
        if self.write_lock is not None:
            self.write_lock.close()
        with self._wal_lock:  # a commit whose answer still waits for the syncer: durable now
            if self._wal is not None:
                os.fsync(self._wal)
                os.close(self._wal)
                self._wal = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One request's all-or-nothing unit: its own transaction, or inside a `group` a
        savepoint that the group's single commit makes durable."""
        if self._clean:  # the group's first request: the transaction is its savepoint
            self._clean = False
            try:
                yield self.db
            except BaseException:
                self._restart()
                raise
            return
        if self._grouped:
            if not self.db.in_transaction:  # a restart failed: nothing may run unguarded
                raise sqlite3.OperationalError("the group's transaction was lost")
            self.db.execute("SAVEPOINT request")
            try:
                yield self.db
            except BaseException:
                self.memo.clear()
                self.db.execute("ROLLBACK TO request")
                self.db.execute("RELEASE request")
                raise
            self.db.execute("RELEASE request")
            return
        self._begin()
        try:
            yield self.db
        except BaseException:
            self.memo.clear()
            self._end("ROLLBACK")
            raise
        self._end("COMMIT")

    def _begin(self) -> None:
        """Take the write lock (first the other processes', when they share the file); the
        memo survives only if nobody else wrote meanwhile."""
        lock = self.write_lock
        if lock is not None:
            lock.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self.memo.seen(self.db.execute("PRAGMA data_version").fetchone()[0])
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            if lock is not None:
                lock.release()
            raise

    def _restart(self) -> None:
        """Undo a group's first request: roll the transaction back and begin it again, still
        holding the write lock, as clean as it started."""
        self.memo.clear()
        self.db.execute("ROLLBACK")
        self.db.execute("BEGIN IMMEDIATE")
        self.memo.seen(self.db.execute("PRAGMA data_version").fetchone()[0])
        self._clean = True

    def _end(self, sql: str) -> None:
        """COMMIT or ROLLBACK, then let the other processes' writers in (even when it failed:
        SQLite has then rolled back, or holds nothing another writer could wait for)."""
        try:
            self.db.execute(sql)
        finally:
            if self.write_lock is not None:
                self.write_lock.release()

    @contextmanager
    def group(self) -> Iterator[None]:
        """Group commit: the transactions run inside are savepoints of one transaction, made
        durable by one commit (one fsync) at the end. Nobody may be answered before it: the
        store thread resolves the group's requests only after this exits."""
        self._begin()
        self._grouped = self._clean = True
        try:
            yield
        except BaseException:
            self.memo.clear()
            self._end("ROLLBACK" if self.db.in_transaction else "SELECT 1")
            raise
        finally:
            self._grouped = self._clean = False
        self._end("COMMIT")

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        self.db.execute("SAVEPOINT op")
        try:
            yield
        except BaseException:
            self.memo.clear()
            self.db.execute("ROLLBACK TO op")
            self.db.execute("RELEASE op")
            raise
        self.db.execute("RELEASE op")

    def _one(self, sql: str, *args: Any) -> Any:
        return self._run(sql, args).fetchone()

    # -- setup (operator) ----------------------------------------------------------------------

    def add_distributor(self, name: str, now_ms: int) -> tuple[int, str]:
        """Create a distributor; returns (its id, its first API token, shown only now)."""
        if not name or not name.isprintable() or len(name) > 100:
            raise SetupError("a distributor needs a printable name of 1..100 characters")
        try:
            with self.transaction() as db:
                distributor = db.execute(
                    "INSERT INTO distributors(name, created_ms) VALUES (?, ?)", (name, now_ms)
                ).lastrowid
                assert distributor is not None
                token = self._new_token(distributor, now_ms)
        except sqlite3.IntegrityError as exc:
            raise SetupError(
                f"distributor {name!r} already exists; issue-token gives it another token"
            ) from exc
        return distributor, token

    def issue_token(self, name: str, now_ms: int) -> str:
        """Another API token for an existing distributor (rotation; the `default` one)."""
        distributor = self.distributor_id(name)
        with self.transaction():
            return self._new_token(distributor, now_ms)

    def _new_token(self, distributor: int, now_ms: int) -> str:
        token = new_token()
        self.db.execute(
            "INSERT INTO tokens(digest, distributor, created_ms) VALUES (?, ?, ?)",
            (token_digest(token), distributor, now_ms),
        )
        return token

    def revoke_token(self, token: str, now_ms: int) -> bool:
        """Revoke a token (given in full); False when no live token matches it."""
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE tokens SET revoked_ms = ? WHERE digest = ? AND revoked_ms IS NULL",
                (now_ms, token_digest(token)),
            )
            return cur.rowcount == 1

    def distributor_id(self, name: str) -> int:
        row = self._one("SELECT distributor FROM distributors WHERE name = ?", name)
        if row is None:
            raise SetupError(f"no distributor {name!r}; add-distributor makes one")
        return int(row[0])

    def add_plan(
        self, name: str, price_per_day: int, distributor: int = DEFAULT_DISTRIBUTOR
    ) -> int:
        """Add a plan to a distributor's catalog, telling its agents' handsets."""
        if not name or price_per_day < 1:
            raise SetupError("a plan needs a name and a positive price per day")
        with self.transaction() as db:
            plan = db.execute(
                "INSERT INTO plans(name, price_per_day, distributor) VALUES (?, ?, ?)",
                (name, price_per_day, distributor),
            ).lastrowid
            assert plan is not None
            for (handset,) in db.execute(
                "SELECT h.handset FROM handsets h JOIN agents a ON a.agent = h.agent"
                " WHERE a.distributor = ?",
                (distributor,),
            ).fetchall():
                self._emit(handset, Plan(plan, name, price_per_day))
        return plan

    def add_agent(
        self, name: str, code: str | None = None, distributor: int = DEFAULT_DISTRIBUTOR
    ) -> tuple[int, str]:
        """Create a distributor's agent; returns (agent id, one provisioning code for its
        handsets). A code chosen by the caller must be strong enough (ledger.access)."""
        if code is not None:
            weakness = code_weakness(code)
            if weakness is not None:
                raise SetupError(f"provisioning code too weak: {weakness} (or omit it)")
        code = code or secrets.token_urlsafe(12)
        try:
            with self.transaction() as db:
                agent = db.execute(
                    "INSERT INTO agents(name, code, distributor) VALUES (?, ?, ?)",
                    (name, code, distributor),
                ).lastrowid
        except sqlite3.IntegrityError as exc:
            raise SetupError(f"agent {name!r} already exists") from exc
        assert agent is not None
        return agent, code

    def audit_auth(
        self,
        kind: str,
        subject: str,
        source: str,
        outcome: str,
        retry_after_s: int | None,
        now_ms: int,
    ) -> None:
        """Write one refused or throttled secret attempt to the trail (never the secret)."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO auth_events(at_ms, kind, subject, source, outcome, retry_after_s)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (now_ms, kind, subject[:100], source[:100], outcome, retry_after_s),
            )

    def agent_id(self, name: str) -> int:
        row = self._one("SELECT agent FROM agents WHERE name = ?", name)
        if row is None:
            raise SetupError(f"no agent {name!r}")
        return int(row[0])

    def add_devices(self, agent: int | None, devices: Sequence[DeviceRecord]) -> None:
        """Register devices (into `agent`'s stock when given), telling the agent's handsets
        (looked up once for the lot, not once per device)."""
        first_id = 1
        rows = [
            (r.device, int(s.format), s.key, s.starting_code, s.time_divider, first_id, agent)
            for r in devices
            for s in (r.secret,)
        ]
        try:
            with self.transaction() as db:
                db.executemany(
                    "INSERT INTO devices(device, format, key, starting_code, time_divider,"
                    " next_id, agent) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                if agent is None:
                    return
                handsets = db.execute(
                    "SELECT handset FROM handsets WHERE agent = ?", (agent,)
                ).fetchall()
                for record in devices:
                    for (handset,) in handsets:
                        self._emit(handset, Stock(record.device, record.secret.format, True))
        except sqlite3.IntegrityError as exc:
            raise SetupError(f"device already registered: {exc}") from exc

    def device_secrets(self) -> dict[int, DeviceSecret]:
        rows = self.db.execute(
            "SELECT device, format, key, starting_code, time_divider FROM devices"
        ).fetchall()
        return {d: DeviceSecret(KeycodeFormat(f), k, sc, td) for d, f, k, sc, td in rows}

    # -- provisioning --------------------------------------------------------------------------

    def provision(
        self,
        agent_name: str,
        code: str,
        public_key: bytes,
        now_ms: int,
        sync_key: bytes | None = None,
    ) -> int:
        """Register a handset's key for an agent; idempotent per (agent, key). With `sync_key`
        its v2 sync key too (as secret as the code that comes with it), unless it has one: a
        retry never replaces the key registered first."""
        wanted = Provisioning(agent_name, code, public_key, sync_key)
        return self.provision_many([wanted], now_ms, numbered=False)[0]

    def provision_many(
        self, wanted: Sequence[Provisioning], now_ms: int, *, numbered: bool = True
    ) -> list[int]:
        """`provision` each of `wanted` in one transaction, all or nothing: a refusal of any
        one (its code, or its key under another agent) writes none, and names the item
        (`numbered`: `handsets[i]` in its detail, `item` in the answer)."""
        agents = [
            self._provisioning_agent(p, i if numbered else None) for i, p in enumerate(wanted)
        ]
        with self.transaction() as db:
            return [
                self._register(db, agent, p, now_ms, i if numbered else None)
                for i, (agent, p) in enumerate(zip(agents, wanted, strict=True))
            ]

    def _provisioning_agent(self, wanted: Provisioning, item: int | None) -> int:
        """The agent `wanted` names (by name, or by its decimal id), if its code is right."""
        if len(wanted.public_key) != 32:
            raise refused(400, "bad_public_key", "an Ed25519 public key is 32 bytes", item)
        if wanted.sync_key is not None and len(wanted.sync_key) != envelope.KEY_BYTES:
            raise refused(400, "bad_sync_key", f"a sync key is {envelope.KEY_BYTES} bytes", item)
        name = wanted.agent
        row = self._one("SELECT agent, code FROM agents WHERE name = ?", name)
        if row is None and name.isascii() and name.isdigit() and len(name) < 19:
            row = self._one("SELECT agent, code FROM agents WHERE agent = ?", int(name))
        if row is None or not hmac.compare_digest(row[1].encode(), wanted.code.encode()):
            raise refused(
                403,
                "bad_provisioning_code",
                "unknown agent or wrong code (the agent is named by its name or id)",
                item,
            )
        return int(row[0])

    def _register(
        self,
        db: sqlite3.Connection,
        agent: int,
        wanted: Provisioning,
        now_ms: int,
        item: int | None,
    ) -> int:
        """The handset of `wanted` (new, with its catalog and stock on its downlink; or the one
        its key got before, for a retry after a lost answer), inside the caller's transaction."""
        try:
            handset = db.execute(
                "INSERT INTO handsets(agent, public_key, created_ms) VALUES (?, ?, ?)",
                (agent, wanted.public_key, now_ms),
            ).lastrowid
        except sqlite3.IntegrityError as exc:  # the statement alone failed: nothing written
            existing = self._one(
                "SELECT handset FROM handsets WHERE public_key = ? AND agent = ?",
                wanted.public_key,
                agent,
            )
            if existing is None:
                raise refused(409, "key_already_registered", "key in use elsewhere", item) from exc
            self._first_sync_key(int(existing[0]), wanted.sync_key)
            return int(existing[0])
        assert handset is not None
        self._first_sync_key(handset, wanted.sync_key)
        self.memo.siblings.pop(agent, None)
        catalog: list[Entry] = [
            Plan(plan, name, price)
            for plan, name, price in db.execute(
                "SELECT p.plan, p.name, p.price_per_day FROM plans p"
                " JOIN agents a ON a.distributor = p.distributor WHERE a.agent = ?"
                " ORDER BY p.plan",
                (agent,),
            )
        ]
        catalog += [
            Stock(device, KeycodeFormat(fmt), True)
            for device, fmt in db.execute(
                "SELECT device, format FROM devices WHERE agent = ? AND customer IS NULL"
                " ORDER BY device",
                (agent,),
            )
        ]
        self._emit_first(handset, catalog)
        return handset

    def _first_sync_key(self, handset: int, key: bytes | None) -> None:
        if key is not None:
            self.db.execute(
                "INSERT INTO sync_keys(handset, key) VALUES (?, ?) ON CONFLICT(handset) DO NOTHING",
                (handset, key),
            )

    def handset(self, handset: int) -> Handset:
        row = self._one(
            "SELECT handset, agent, public_key, last_ms FROM handsets WHERE handset = ?", handset
        )
        if row is None:
            raise RequestError(401, "unknown_handset", f"handset {handset} is not registered")
        return Handset(*row)

    def sync_key(self, handset: int) -> tuple[Handset, bytes | None]:
        """The handset and its v2 sync key (None until it registered one)."""
        row = self._one("SELECT key FROM sync_keys WHERE handset = ?", handset)
        return self.handset(handset), None if row is None else bytes(row[0])

    def sync_keys(self) -> dict[int, bytes]:
        """Every registered v2 sync key (32 bytes a handset: 320 kB for 10,000), read once at
        start so that no handset's first exchange waits on the store thread for its key."""
        return {int(h): bytes(k) for h, k in self.db.execute("SELECT handset, key FROM sync_keys")}

    def set_sync_key(self, claim: auth.Claim, key: bytes) -> None:
        """Register (or replace) the v2 sync key of the handset that signed `claim` (already
        verified, and fresh: it counts as that handset's latest request)."""
        with self.transaction():
            self._fresh(claim)
            self.db.execute(
                "INSERT INTO sync_keys(handset, key) VALUES (?, ?)"
                " ON CONFLICT(handset) DO UPDATE SET key = excluded.key",
                (claim.handset, key),
            )

    # -- one sync exchange ---------------------------------------------------------------------

    def exchange(
        self,
        claim: auth.Claim,
        ops: Sequence[Operation],
        cursor: int,
        now_ms: int,
        *,
        paging: bool = True,
        bad: Sequence[BadOperation] = (),
    ) -> DownlinkFrame:
        """Freshness check, ingest and downlink page in one transaction.

        `bad` are operations that did not decode (refused alone, with their reason).
        With `paging`, the cursor is the handset's real one: mobile-money keycodes at or
        below it have reached the handset (stamped ``synced_ms``), and those in this page are
        on their way down (stamped ``downlinked_ms``).
        """
        if bad and self.faults.poison_batches:
            raise RequestError(400, "bad_field", f"operation {bad[0].seq}: {bad[0].detail}")
        known = self.memo.handsets.get(claim.handset)  # stamps only grow: a memo behind the
        if known is not None and claim.ts_ms <= known[2]:  # table still proves a replay
            raise _replayed(known[2])  # before any write: no rollback, the memo stays
        try:  # first without a savepoint per operation (two statements each)
            return self._exchange(claim, ops, cursor, now_ms, paging, bad, careful=False)
        except _WroteThenRefused:  # rolled back whole: again, each operation in a savepoint
            return self._exchange(claim, ops, cursor, now_ms, paging, bad, careful=True)

    def _exchange(
        self,
        claim: auth.Claim,
        ops: Sequence[Operation],
        cursor: int,
        now_ms: int,
        paging: bool,
        bad: Sequence[BadOperation],
        careful: bool,
    ) -> DownlinkFrame:
        with self.transaction():
            handset = self._fresh(claim)
            acked, rejected = self._ingest(handset, ops, now_ms, bad, careful=careful)
            if paging:
                self._escrow_sync(handset, cursor, now_ms)
            first, entries, more = self._page(handset.handset, cursor)
            if paging and self._in_flight(handset.handset):
                # Both stamps only among keycodes not yet synced, so each update is a search
                # of the partial index `mm_txns_unsynced`, never a scan of the month's
                # transactions; downlinked first: a row is stamped downlinked no later than
                # in the exchange that stamps it synced, so no synced row still lacks it.
                for column, upto in (
                    ("downlinked_ms", cursor + len(entries)),
                    ("synced_ms", cursor),
                ):
                    self.db.execute(
                        f"UPDATE mm_txns SET {column} = ? WHERE handset = ? AND downlink_n <= ?"
                        f" AND {column} IS NULL AND synced_ms IS NULL AND downlink_n IS NOT NULL",
                        (now_ms, handset.handset, upto),
                    )
                if self._one(_UNSYNCED, handset.handset) is None and self.memo.unsynced:
                    self.memo.unsynced.discard(handset.handset)
        return DownlinkFrame(now_ms, tuple(acked), tuple(rejected), first, entries, more)

    def _in_flight(self, handset: int) -> bool:
        """Whether the handset has mobile-money keycodes not yet confirmed stored: from the
        memo's set of them, read whole when this store is the only writer. With other writers
        the memo is forgotten at nearly every transaction, so then only this handset's are
        looked for (one search of the partial index, not a read of every one in flight)."""
        if self.memo.unsynced is None and self.write_lock is not None:
            return self._one(_UNSYNCED, handset) is not None
        return handset in self._unsynced()

    def _unsynced(self) -> set[int]:
        """Handsets with mobile-money keycodes not yet confirmed stored (memo.unsynced)."""
        if self.memo.unsynced is None:
            self.memo.unsynced = {
                int(h)
                for (h,) in self.db.execute(
                    "SELECT DISTINCT handset FROM mm_txns"
                    " WHERE synced_ms IS NULL AND downlink_n IS NOT NULL"
                )
            }
        return self.memo.unsynced

    def _fresh(self, claim: auth.Claim) -> Handset:
        """The claim's handset, its stamp checked strictly newer than the last accepted and
        stored: one statement when the memo knows the handset (its agent and key never change;
        its stamp is a lower bound, and the update checks the table's)."""
        ts = claim.ts_ms
        known = self.memo.handsets.get(claim.handset)
        handset = Handset(claim.handset, *known) if known else self.handset(claim.handset)
        if ts <= handset.last_ms:
            raise _replayed(handset.last_ms)
        if self._run(_STAMP, (ts, handset.handset, ts)).rowcount != 1:
            raise _replayed(self.handset(handset.handset).last_ms)  # another writer's newer
        self.memo.handsets[handset.handset] = (handset.agent, handset.public_key, ts)
        return handset

    def _ingest(
        self,
        handset: Handset,
        ops: Sequence[Operation],
        now_ms: int,
        bad: Sequence[BadOperation] = (),
        *,
        careful: bool = True,
    ) -> tuple[list[int], list[tuple[int, Reason]]]:
        """Apply each new operation; a refused one leaves nothing of itself. `careful`: each
        in a savepoint. Otherwise none, since a refusal normally comes before any write: one
        that wrote first raises _WroteThenRefused, and the caller rolls back and runs again
        carefully."""
        careful = careful or bool(self.faults.lose_ack_every)  # that fault needs savepoints
        tally = self._tally = Tally()
        try:
            acked, rejected = self._ingest_each(handset, ops, now_ms, bad, careful, tally)
        finally:
            self._tally = None
        for (day, agent), add in tally.kept.items():
            self._write_rollup(day, agent, add)
        return acked, rejected

    def _ingest_each(
        self,
        handset: Handset,
        ops: Sequence[Operation],
        now_ms: int,
        bad: Sequence[BadOperation],
        careful: bool,
        tally: Tally,
    ) -> tuple[list[int], list[tuple[int, Reason]]]:
        acked: list[int] = []
        rejected: list[tuple[int, Reason]] = []
        for item in bad:  # refused alone, and the refusal kept: a replay gets the same answer
            stored = self._key(handset, item.seq, item.content, item.kind, 0, now_ms, item.reason)
            rejected.append((item.seq, item.reason if stored is None else Reason(stored)))
        for op in ops:
            stored = self._key(handset, op.seq, op.content(), int(op.kind), op.at, now_ms)
            if stored is not None:
                if stored == APPLIED:
                    acked.append(op.seq)
                else:
                    rejected.append((op.seq, Reason(stored)))
                continue
            try:
                if careful:
                    with self._savepoint():
                        self._apply(handset, op, now_ms)
                        if self._lose_ack.hit():
                            raise _LostAck
                else:
                    self._apply_or_nothing(handset, op, now_ms)
                tally.keep()
                acked.append(op.seq)
            except _LostAck:  # the fault: acknowledged, yet nothing of it is kept
                tally.drop()
                self.db.execute(
                    "DELETE FROM ops WHERE handset = ? AND seq = ?", (handset.handset, op.seq)
                )
                acked.append(op.seq)
            except (Refused, escrow_store.Flagged) as refusal:
                tally.drop()
                self.db.execute(
                    "UPDATE ops SET outcome = ? WHERE handset = ? AND seq = ?",
                    (int(refusal.reason), handset.handset, op.seq),
                )
                if isinstance(refusal, escrow_store.Flagged):
                    escrow_store.flag(self, handset, op, refusal, now_ms)
                rejected.append((op.seq, refusal.reason))
        return acked, rejected

    def _apply_or_nothing(self, handset: Handset, op: Operation, now_ms: int) -> None:
        """`_apply` with no savepoint: a refusal after a write cannot be undone here."""
        written = self.db.total_changes
        try:
            self._apply(handset, op, now_ms)
        except Refused:
            if self.db.total_changes != written:
                raise _WroteThenRefused from None
            raise

    def _key(
        self,
        handset: Handset,
        seq: int,
        content: bytes,
        kind: int,
        at: int,
        now_ms: int,
        outcome: int = APPLIED,
    ) -> int | None:
        """Record the key (handset, seq) with `outcome`; None when it is new, else the stored
        answer: APPLIED, the stored reason's number, or `conflict` when the content differs."""
        digest = replay.digest(content)
        try:
            self._run(
                self._insert_op,
                (
                    handset.handset,
                    seq,
                    digest,
                    kind,
                    at,
                    now_ms,
                    int(outcome),
                ),
            )
        except sqlite3.IntegrityError:  # the key exists: a replay or a conflict
            old_digest, stored = self._one(
                "SELECT digest, outcome FROM ops WHERE handset = ? AND seq = ?",
                handset.handset,
                seq,
            )
            return replay.answer(old_digest, digest, stored)
        return None

    def _apply(self, handset: Handset, op: Operation, now_ms: int) -> None:
        match op.kind:
            case Kind.REGISTER_CUSTOMER:
                cur = self._run(
                    f"{self._insert_customer} INTO customers(handset, seq, name, phone)"
                    " VALUES (?, ?, ?, ?)",
                    (handset.handset, op.seq, *_CUSTOMER_FIELDS(op.fields)),
                )
                if cur.rowcount == 1 and cur.lastrowid is not None:  # not an ignored replay
                    self.memo.registered(handset.handset, op.seq, cur.lastrowid)
            case Kind.RECORD_SALE:
                self._sale(handset, op, now_ms)
            case Kind.RECORD_PAYMENT:
                self._cash(handset, op, now_ms)

    def _cash(self, handset: Handset, op: Operation, now_ms: int) -> None:
        """Cash an agent took for a device one of its handsets sold: the device is read once
        (whose it is and its credit state) and written once (balance, credit, next id)."""
        account, amount = _PAYMENT_FIELDS(op.fields)
        device = int(account)
        row = self._paid(device)
        paid = sales.cash_payment(
            row is not None and row[1] == handset.agent,
            device,
            handset.agent,
            handset.handset,
            op.seq,
            int(amount),
            op.at,
        )
        self._record_payment(paid, now_ms)
        self._credit_paid(device, row, paid.amount, handset.handset, op.seq, now_ms)

    def _paid(self, device: int) -> Any:
        """A device as a payment reads it (`_PAID`'s row; None: unsold or unknown), from the
        memo when this store wrote it last (memo.paid)."""
        row = self.memo.paid.get(device)
        return row if row is not None else self._one(_PAID, device)

    def _credit_paid(
        self,
        device: int,
        sold: tuple[Any, ...],
        amount: int,
        handset: int,
        op_seq: int,
        now_ms: int,
        txn: str | None = None,
    ) -> Issued | None:
        """A payment of `amount` into a sold device read as `_PAID`'s row (`sold`): its
        balance, credit and next id written once, with the keycode the balance now buys."""
        account = self._account(device, sold[3:], amount)
        (next_id, balance, until), issued = self._issue(account, handset, op_seq, now_ms, txn)
        self._run(
            "UPDATE devices SET last_paid_ms = ?, next_id = ?, balance = ?, credit_until_ms = ?"
            " WHERE device = ?",
            (now_ms, next_id, balance, until, device),
        )
        self.memo.remember_paid(device, (*sold[:7], next_id, balance, sold[9], until))
        return issued

    def _sale(self, handset: Handset, op: Operation, now_ms: int) -> None:
        """A sale reads the device once and, unless an escrowed code it released changes the
        balance in between, writes it once (sold to whom, balance, credit, next id)."""
        customer_seq, device, plan, down_payment = _SALE_FIELDS(op.fields)
        customer = self._customer(handset.handset, int(customer_seq))
        price = self._price(int(plan), handset.agent)  # the agent's catalog only
        released = None  # an offline sale: the escrowed code it released, accounted once
        if (
            op.get("reserved_id") is not None
            and customer is not None
            and price is not None
            and not self.faults.escrow_unaccounted
        ):
            released = escrow_store.reconcile(self, handset, op, now_ms)
        row = self._one(_IN_STOCK, device)
        sale = sales.sale(
            handset.agent,
            int(device),
            int(plan),
            int(down_payment),
            op.at,
            customer,
            price,
            None if row is None else sales.InStock(row[0], row[1], KeycodeFormat(row[2])),
        )
        sold = (handset.handset, sale.day, sale.balance, now_ms, sale.customer, sale.plan, now_ms)
        self._roll(sale.day, handset.agent, sale.rollup)
        for sibling in self._siblings(handset.agent):  # each of the agent's handsets drops it
            self._emit(sibling, sale.gone)
        if released is not None:  # its escrowed days come out of the balance, in SQL
            self.memo.paid.pop(sale.device, None)
            self._run(f"{_SOLD} WHERE device = ?", (*sold, sale.balance, sale.device))
            escrow_store.sold(self, sale.device, released, sale.price_per_day, now_ms)
            self._credit(sale.device, handset.handset, op.seq, now_ms)
            return
        escrow_store.sold(self, sale.device, None, sale.price_per_day, now_ms)
        secret = self._secret(sale.device, row[2:6])
        account = credit.Account(
            sale.device, secret, row[6], sale.balance, sale.price_per_day, row[7]
        )
        next_id, balance, until = self._issue(account, handset.handset, op.seq, now_ms)[0]
        self._run(_SOLD_CREDITED, (*sold, balance, next_id, until, sale.device))
        seller, price = (handset.handset, handset.agent, sale.device), sale.price_per_day
        self.memo.remember_paid(sale.device, (*seller, *row[2:6], next_id, balance, price, until))

    def _customer(self, handset: int, seq: int) -> int | None:
        """The customer a handset registered under `seq` (memo.customers: rows never change)."""
        customer = self.memo.customers.get((handset, seq))
        if customer is None:
            row = self._one(
                "SELECT customer FROM customers WHERE handset = ? AND seq = ?", handset, seq
            )
            if row is None:
                return None
            customer = int(row[0])
            self.memo.registered(handset, seq, customer)
        return customer

    def _secret(self, device: int, row: Sequence[Any]) -> DeviceSecret:
        """A device's keys from its (format, key, starting code, divider) columns
        (memo.secrets: they never change once the device is registered)."""
        secret = self.memo.secrets.get(device)
        if secret is None:
            fmt, key, starting_code, divider = row
            secret = DeviceSecret(KeycodeFormat(fmt), key, starting_code, divider)
            self.memo.remember_secret(device, secret)
        return secret

    def _account(self, device: int, row: Sequence[Any], paid: int = 0) -> credit.Account:
        """A device's credit state from its `_CREDIT_COLUMNS`, `paid` added to its balance."""
        next_id, balance, price, until = row[4:]
        return credit.Account(
            device, self._secret(device, row[:4]), next_id, balance + paid, price, until
        )

    def _price(self, plan: int, agent: int) -> int | None:
        """A plan's price per day if it is in the agent's distributor's catalog (memo.prices:
        plans never change; an unknown plan is not remembered, it may be added)."""
        key = (plan, agent)
        price = self.memo.prices.get(key)
        if price is None:
            row = self._one(
                "SELECT p.price_per_day FROM plans p JOIN agents a"
                " ON a.distributor = p.distributor WHERE p.plan = ? AND a.agent = ?",
                plan,
                agent,
            )
            if row is None:
                return None
            price = self.memo.prices[key] = int(row[0])
        return price

    def _siblings(self, agent: int) -> tuple[int, ...]:
        """The agent's handsets, ascending (memo.siblings; provisioning forgets them)."""
        handsets = self.memo.siblings.get(agent)
        if handsets is None:
            rows = self.db.execute(
                "SELECT handset FROM handsets WHERE agent = ? ORDER BY handset", (agent,)
            ).fetchall()
            handsets = self.memo.siblings[agent] = tuple(int(h) for (h,) in rows)
        return handsets

    def _record_payment(self, paid: sales.Paid, now_ms: int) -> None:
        """The collections ledger's row and rollup of a payment (the balance is the caller's)."""
        self._run(
            self._insert_payment,
            (paid.device, paid.agent, paid.source, paid.ref, paid.amount, paid.day, now_ms),
        )
        self._roll(paid.day, paid.agent, paid.rollup)

    def _roll(self, day: str, agent: int, add: dict[str, int]) -> None:
        """Keep the per-(day, agent) rollup the sales and collections reports page through,
        in the same transaction as the rows it sums (so it never disagrees with them); during
        an exchange summed in its tally and written at its end."""
        if self._tally is not None:
            self._tally.add(day, agent, add)
        else:
            self._write_rollup(day, agent, add)

    def _write_rollup(self, day: str, agent: int, add: dict[str, int]) -> None:
        self._run(_rollup_upsert(tuple(add)), (day, agent, *add.values()))

    def _credit(
        self, device: int, handset: int, op_seq: int, now_ms: int, txn: str | None = None
    ) -> Issued | None:
        """Turn the device's unspent balance into one keycode, carrying any remainder (the
        device read and written here; see `_issue`)."""
        self.memo.paid.pop(device, None)
        row = self._one(_CREDIT, device)
        account = self._account(device, row)
        state, issued = self._issue(account, handset, op_seq, now_ms, txn)
        if issued is not None:
            self._run(
                "UPDATE devices SET next_id = ?, balance = ?, credit_until_ms = ? WHERE device = ?",
                (*state, device),
            )
        return issued

    def _issue(
        self,
        account: credit.Account,
        handset: int,
        op_seq: int,
        now_ms: int,
        txn: str | None = None,
    ) -> tuple[tuple[int, int, int], Issued | None]:
        """The keycode the account's balance buys, written and sent down to `handset`; returns
        the device's new (next id, balance, credit until), for the caller to write, and the
        keycode (None when the balance buys no day).

        The keycode row names what paid for it: the handset operation (`op_seq` > 0) or the
        operator transaction `txn` (mobile money, `op_seq` 0), so an auditor needs no join."""
        given = credit.grant(account, self.faults.credit_factor)
        if given is None:
            return (account.next_id, account.balance, account.credit_until_ms), None
        copies = 2 if self._apply_twice.hit() else 1  # the fault: one payment issued again
        done = credit.credit(account, given, now_ms, copies)
        written: list[Issued] = []
        for message_id, issued in done.codes:
            keycode = self._run(
                "INSERT INTO keycodes(device, message_id, handset, op_seq, text, days, credit_s,"
                " amount, issued_ms, txn) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    account.device,
                    message_id,
                    handset,
                    op_seq,
                    issued.text,
                    given.days,
                    issued.credit_s,
                    given.spent,
                    now_ms,
                    txn,
                ),
            ).lastrowid
            assert keycode is not None
            entry = self._emit(handset, done.entry(issued, op_seq, account))
            written.append(Issued(keycode, issued.text, entry))
        return (done.next_id, done.balance, done.credit_until_ms), written[0]

    # -- escrow (offline sales) ----------------------------------------------------------------

    def _escrow_sync(self, handset: Handset, cursor: int, now_ms: int) -> None:
        """End of an exchange: revocations the handset has heard, and its agent's escrow
        topped up (the page answering this exchange may carry the new codes)."""
        if self.escrow.bound_days:
            escrow_store.heard(self, handset.handset, cursor, now_ms)
            escrow_store.grant(self, handset.agent, now_ms)

    def move_device(self, device: int, agent: int | None, now_ms: int) -> None:
        """An unsold device returns to the warehouse (`agent` None) or moves to another agent:
        the old agent's handsets drop it from stock and its escrowed code is revoked."""
        with self.transaction() as db:
            row = self._one("SELECT agent, customer, format FROM devices WHERE device = ?", device)
            if row is None:
                raise SetupError(f"no device {device}")
            if row[1] is not None:
                raise SetupError(f"device {device} is sold; only stock moves")
            fmt = KeycodeFormat(row[2])
            self.memo.paid.pop(device, None)
            escrow_store.revoke(self, device, now_ms)
            db.execute("UPDATE devices SET agent = ? WHERE device = ?", (agent, device))
            for owner, present in ((row[0], False), (agent, True)):
                if owner is None:
                    continue
                for (handset,) in db.execute(
                    "SELECT handset FROM handsets WHERE agent = ? ORDER BY handset", (owner,)
                ).fetchall():
                    self._emit(handset, Stock(device, fmt, present))

    # -- mobile money --------------------------------------------------------------------------

    def mobile_money(self, cb: MoneyCallback, now_ms: int, sms: bool = True) -> Answer:
        """Apply one operator callback exactly once per transaction id.

        The ``mm_txns`` row is the idempotency key: a replay is answered from it, a replay
        with other content is a conflict. A confirmed payment credits the device, tells the
        selling agent's handset (payment entry, then the keycode), and queues the SMS.
        """
        with self.transaction():
            row = self._one("SELECT digest, outcome, keycode FROM mm_txns WHERE txn = ?", cb.txn)
            if row is not None and not self.faults.replays_apply_again:
                if replay.conflicts(row[0], cb.digest()):
                    raise RequestError(
                        409, "txn_conflict", f"transaction {cb.txn} was sent with other content"
                    )
                return Answer(Outcome(row[1]), duplicate=True, keycode=row[2] is not None)
            sold = self._paid(int(cb.account))
            outcome = sales.mobile_money_outcome(cb.status, sold is not None)
            txn = [cb.txn, cb.digest(), outcome.value, cb.account, cb.amount, cb.msisdn]
            txn += [cb.paid_ms, day_of(cb.paid_ms), now_ms, None, None, None, None, None, None]
            if outcome is not Outcome.CONFIRMED:
                self._run(self._insert_txn, txn)
                return Answer(outcome, duplicate=False)
            handset, agent, device = sold[:3]
            self._record_payment(
                sales.payment(device, agent, MM, cb.txn, cb.amount, cb.paid_ms), now_ms
            )
            self._emit(handset, Payment(device, cb.amount, cb.txn))
            issued = self._credit_paid(device, sold, cb.amount, handset, 0, now_ms, cb.txn)
            if issued is not None:
                txn[9:] = (device, handset, now_ms, issued.keycode, now_ms, issued.entry)
                if self.memo.unsynced is not None:  # (else read when it is needed)
                    self.memo.unsynced.add(handset)
            else:
                txn[9:12] = (device, handset, now_ms)
            self._run(self._insert_txn, txn)  # the key is free: read under the write lock
            if issued is not None and sms:
                self._run(
                    "INSERT INTO sms(txn, msisdn, text, created_ms) VALUES (?, ?, ?, ?)",
                    (cb.txn, cb.msisdn, sales.keycode_sms(device, issued.text), now_ms),
                )
            return Answer(outcome, duplicate=False, keycode=issued is not None)

    # -- SMS outbox ----------------------------------------------------------------------------

    def sms_due(
        self, now_ms: int, resend_after_ms: int, max_attempts: int, limit: int = 64
    ) -> list[tuple[int, str, str]]:
        """Claim the SMS to send now: never sent, or sent without a receipt for too long.

        The resend rule lives here so that it survives restarts: the attempt is counted in
        the same transaction that hands the message out.
        """
        due = (
            "SELECT sms, msisdn, text FROM sms WHERE delivered_ms IS NULL AND attempts < ?"
            " AND (sent_ms IS NULL OR sent_ms + ? <= ?) ORDER BY sms LIMIT ?"
        )
        args = (max_attempts, resend_after_ms, now_ms, limit)
        if not self.db.execute(due, args).fetchone():
            return []  # an idle poll takes no write lock
        with self.transaction() as db:
            rows = db.execute(due, args).fetchall()
            db.executemany(
                "UPDATE sms SET attempts = attempts + 1, sent_ms = ?,"
                " first_sent_ms = coalesce(first_sent_ms, ?) WHERE sms = ?",
                [(now_ms, now_ms, r[0]) for r in rows],
            )
        return [(int(a), str(b), str(c)) for a, b, c in rows]

    def sms_next_due_ms(self, resend_after_ms: int, max_attempts: int) -> int | None:
        """When the earliest message sent without a receipt falls due for a resend (None: no
        message is waiting for one), so the sender can sleep until then instead of polling."""
        (sent,) = self._one(
            "SELECT min(sent_ms) FROM sms WHERE delivered_ms IS NULL AND attempts < ?"
            " AND sent_ms IS NOT NULL",
            max_attempts,
        )
        return None if sent is None else int(sent) + resend_after_ms

    def sms_delivered(self, sms: int, now_ms: int) -> bool:
        """A delivery receipt; the first one counts, repeats change nothing."""
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE sms SET delivered_ms = ? WHERE sms = ? AND delivered_ms IS NULL",
                (now_ms, sms),
            )
            return cur.rowcount == 1

    # -- downlink ------------------------------------------------------------------------------

    def _emit(self, handset: int, entry: Entry) -> int:
        """Append to a handset's downlink. Every downlink row is written here (and handsets
        only by `provision` and `_fresh`): the memo counts on it within this connection."""
        last = self.memo.last_n.get(handset)
        if last is None:
            (last,) = self._one(
                "SELECT coalesce(max(n), 0) FROM downlink WHERE handset = ?", handset
            )
        n = int(last) + 1
        self._run(
            "INSERT INTO downlink(handset, n, body) VALUES (?, ?, ?)",
            (handset, n, msgpack.packb(entry_to_row(entry))),
        )
        self.memo.emitted(handset, n, entry)
        return n

    def _emit_first(self, handset: int, entries: list[Entry]) -> None:
        """`_emit` each of `entries`, in order, onto the downlink of a handset created in this
        transaction (its first entry is number 1): one statement for the lot, its numbers
        known without reading them (a provisioning's catalog and stock)."""
        rows = [(handset, n, msgpack.packb(entry_to_row(e))) for n, e in enumerate(entries, 1)]
        self.db.executemany("INSERT INTO downlink(handset, n, body) VALUES (?, ?, ?)", rows)
        for n, entry in enumerate(entries, 1):
            self.memo.emitted(handset, n, entry)

    def _page(self, handset: int, cursor: int) -> tuple[int, tuple[Entry, ...], bool]:
        """The entries past `cursor`: from the memo when it holds them all (the common case:
        a handset fetching what was written since its last sync), else decoded from SQL."""
        limit = min(ENTRIES_PER_RESPONSE, MAX_ENTRIES)
        remembered = self.memo.page(handset, cursor, limit)
        if remembered is not None:
            return cursor + 1, *remembered
        rows = self.db.execute(
            "SELECT n, body FROM downlink WHERE handset = ? AND n > ? ORDER BY n LIMIT ?",
            (handset, cursor, limit + 1),
        ).fetchall()
        numbered = [(int(n), entry_from_row(msgpack.unpackb(body))) for n, body in rows[:limit]]
        more = len(rows) > limit
        self.memo.start_tail(handset, numbered, more)
        return cursor + 1, tuple(e for _, e in numbered), more

    # -- read side (tests, CLI, naive endpoint) ------------------------------------------------

    def keycodes_for_op(self, handset: int, seq: int) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT k.device, d.format, k.text, k.days, k.credit_s FROM keycodes k"
            " JOIN devices d ON d.device = k.device WHERE k.handset = ? AND k.op_seq = ?",
            (handset, seq),
        ).fetchall()
        return [
            {
                "device": d,
                "format": KeycodeFormat(f).name.lower(),
                "keycode": t,
                "days": n,
                "credit_s": c,
            }
            for d, f, t, n, c in rows
        ]

    def counts(self) -> dict[str, int]:
        tables = ("agents", "handsets", "customers", "devices", "ops", "keycodes", "downlink")
        return {t: int(self._one(f"SELECT count(*) FROM {t}")[0]) for t in tables}
