"""The platform's schema as numbered migrations, recorded in ``PRAGMA user_version``.

Each migration brings a database from version n-1 to n in one transaction; a database made by
a release before versions existed reads 0 and is taken through all of them (the first one only
creates what is missing, so its tables and rows stay as they were). Append new migrations; never
edit one that has shipped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from .opm.schema import SCHEMA as METRICS_SCHEMA

BASE = """
CREATE TABLE IF NOT EXISTS agents (
    agent INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, code TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS handsets (
    handset INTEGER PRIMARY KEY, agent INTEGER NOT NULL REFERENCES agents(agent),
    public_key BLOB NOT NULL UNIQUE, last_ms INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS plans (
    plan INTEGER PRIMARY KEY, name TEXT NOT NULL,
    price_per_day INTEGER NOT NULL CHECK (price_per_day > 0)
);
CREATE TABLE IF NOT EXISTS customers (
    customer INTEGER PRIMARY KEY, handset INTEGER NOT NULL, seq INTEGER NOT NULL,
    name TEXT NOT NULL, phone TEXT NOT NULL, UNIQUE (handset, seq)
);
CREATE TABLE IF NOT EXISTS devices (
    device INTEGER PRIMARY KEY, format INTEGER NOT NULL, key BLOB NOT NULL,
    starting_code INTEGER NOT NULL DEFAULT 0, time_divider INTEGER NOT NULL DEFAULT 1,
    next_id INTEGER NOT NULL, agent INTEGER REFERENCES agents(agent),
    customer INTEGER REFERENCES customers(customer), plan INTEGER REFERENCES plans(plan),
    balance INTEGER NOT NULL DEFAULT 0, credit_until_ms INTEGER NOT NULL DEFAULT 0,
    last_paid_ms INTEGER
);
CREATE TABLE IF NOT EXISTS ops (
    handset INTEGER NOT NULL, seq INTEGER NOT NULL, digest BLOB NOT NULL, kind INTEGER NOT NULL,
    at INTEGER NOT NULL, received_ms INTEGER NOT NULL, outcome INTEGER NOT NULL,
    PRIMARY KEY (handset, seq)
);
CREATE TABLE IF NOT EXISTS keycodes (
    keycode INTEGER PRIMARY KEY, device INTEGER NOT NULL, message_id INTEGER NOT NULL,
    handset INTEGER NOT NULL, op_seq INTEGER NOT NULL, text TEXT NOT NULL, days INTEGER NOT NULL,
    credit_s INTEGER NOT NULL, amount INTEGER NOT NULL, issued_ms INTEGER NOT NULL,
    txn TEXT, UNIQUE (device, message_id)
);
CREATE TABLE IF NOT EXISTS downlink (
    handset INTEGER NOT NULL, n INTEGER NOT NULL, body BLOB NOT NULL, PRIMARY KEY (handset, n)
);
CREATE TABLE IF NOT EXISTS sales (
    device INTEGER PRIMARY KEY, agent INTEGER NOT NULL, handset INTEGER NOT NULL,
    day TEXT NOT NULL, down_payment INTEGER NOT NULL, received_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sales_by_day ON sales(day, agent);
CREATE TABLE IF NOT EXISTS payments (
    payment INTEGER PRIMARY KEY, device INTEGER NOT NULL, agent INTEGER NOT NULL,
    source TEXT NOT NULL, ref TEXT NOT NULL, amount INTEGER NOT NULL, day TEXT NOT NULL,
    received_ms INTEGER NOT NULL, UNIQUE (source, ref)
);
CREATE INDEX IF NOT EXISTS payments_by_day ON payments(day, agent);
CREATE TABLE IF NOT EXISTS daily (
    day TEXT NOT NULL, agent INTEGER NOT NULL, sales INTEGER NOT NULL DEFAULT 0,
    down_payments INTEGER NOT NULL DEFAULT 0, payments INTEGER NOT NULL DEFAULT 0,
    amount INTEGER NOT NULL DEFAULT 0, mobile_money INTEGER NOT NULL DEFAULT 0,
    agent_cash INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (day, agent)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mm_txns (
    txn TEXT PRIMARY KEY, digest BLOB NOT NULL, outcome TEXT NOT NULL, account TEXT NOT NULL,
    amount INTEGER NOT NULL, msisdn TEXT NOT NULL, device INTEGER, handset INTEGER,
    paid_ms INTEGER NOT NULL, day TEXT NOT NULL, received_ms INTEGER NOT NULL,
    confirmed_ms INTEGER,
    keycode INTEGER REFERENCES keycodes(keycode), issued_ms INTEGER, downlink_n INTEGER,
    downlinked_ms INTEGER, synced_ms INTEGER
);
CREATE INDEX IF NOT EXISTS mm_txns_unsynced ON mm_txns(handset, downlink_n)
    WHERE synced_ms IS NULL AND downlink_n IS NOT NULL;
CREATE INDEX IF NOT EXISTS mm_txns_by_day ON mm_txns(outcome, day);
CREATE TABLE IF NOT EXISTS sms (
    sms INTEGER PRIMARY KEY, txn TEXT NOT NULL REFERENCES mm_txns(txn), msisdn TEXT NOT NULL,
    text TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL,
    first_sent_ms INTEGER, sent_ms INTEGER, delivered_ms INTEGER
);
CREATE INDEX IF NOT EXISTS sms_undelivered ON sms(sms) WHERE delivered_ms IS NULL;
"""

TENANTS = """
CREATE TABLE distributors (
    distributor INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_ms INTEGER NOT NULL
);
INSERT INTO distributors(distributor, name, created_ms) VALUES (1, 'default', 0);
CREATE TABLE tokens (
    digest BLOB PRIMARY KEY, distributor INTEGER NOT NULL REFERENCES distributors(distributor),
    created_ms INTEGER NOT NULL, revoked_ms INTEGER
) WITHOUT ROWID;
ALTER TABLE agents ADD COLUMN distributor INTEGER NOT NULL DEFAULT 1;
ALTER TABLE plans ADD COLUMN distributor INTEGER NOT NULL DEFAULT 1;
CREATE INDEX agents_by_distributor ON agents(distributor, agent);
CREATE TABLE auth_events (
    event INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, kind TEXT NOT NULL,
    subject TEXT NOT NULL, source TEXT NOT NULL, outcome TEXT NOT NULL,
    retry_after_s INTEGER
);
"""
"""Version 2: distributors own agents and plans (everything before belongs to ``default``),
hashed report tokens, and the trail of refused provisioning and token attempts."""

SYNC_KEYS = """
CREATE TABLE sync_keys (
    handset INTEGER PRIMARY KEY REFERENCES handsets(handset), key BLOB NOT NULL
);
"""
"""Version 3: each handset's sync v2 MAC key, registered once under its Ed25519 key."""

ESCROW = """
CREATE TABLE escrow (
    device INTEGER NOT NULL REFERENCES devices(device), reserved_id INTEGER NOT NULL,
    agent INTEGER NOT NULL, days INTEGER NOT NULL, credit_s INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('held', 'reconciled', 'revoked', 'dropped')),
    sale_handset INTEGER, sale_seq INTEGER, granted_ms INTEGER NOT NULL, settled_ms INTEGER,
    PRIMARY KEY (device, reserved_id)
);
CREATE INDEX escrow_by_agent ON escrow(agent, state);
CREATE TABLE escrow_unheard (
    handset INTEGER NOT NULL, n INTEGER NOT NULL, device INTEGER NOT NULL,
    reserved_id INTEGER NOT NULL, PRIMARY KEY (handset, n)
);
CREATE INDEX escrow_unheard_by_code ON escrow_unheard(device, reserved_id);
CREATE TABLE escrow_events (
    event INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, kind TEXT NOT NULL,
    agent INTEGER NOT NULL, device INTEGER NOT NULL, reserved_id INTEGER NOT NULL,
    days INTEGER NOT NULL, handset INTEGER, seq INTEGER, flag TEXT
);
"""
"""Version 4: offline sales' escrow (docs/offline-sales.md): one row per reserved code, the
revocations each handset has not yet heard, and the append-only trail the audit API serves."""

BY_AGENT = """
CREATE INDEX devices_by_agent ON devices(agent, device);
CREATE INDEX handsets_by_agent ON handsets(agent, handset);
"""
"""Version 5: an agent's stock and handsets by index. Provisioning a handset lists its agent's
unsold devices, and the agent's first sale after it its handsets; without these each read every
row of the table, once per handset (2,000 handsets over 20,000 devices in a simulated month's
set-up)."""

LEAN_WRITES = """
CREATE TABLE downlink_lean (
    handset INTEGER NOT NULL, n INTEGER NOT NULL, body BLOB NOT NULL, PRIMARY KEY (handset, n)
) WITHOUT ROWID;
INSERT INTO downlink_lean(handset, n, body) SELECT handset, n, body FROM downlink;
DROP TABLE downlink;
ALTER TABLE downlink_lean RENAME TO downlink;
DROP INDEX sales_by_day;
DROP INDEX payments_by_day;
CREATE INDEX devices_sold ON devices(device) WHERE customer IS NOT NULL;
"""
"""Version 6: fewer B-trees written per operation, and a devices report that reads only sold
devices. The downlink is stored in its key's order with no rowid (one B-tree per entry, not
two); the by-day indexes of sales and payments go (the reports read the daily rollup, nothing
searched them); the devices report pages through sold devices by index instead of stepping
over every unsold one before them."""

SALES_IN_DEVICES = """
ALTER TABLE devices ADD COLUMN sold_handset INTEGER;
ALTER TABLE devices ADD COLUMN sale_day TEXT;
ALTER TABLE devices ADD COLUMN down_payment INTEGER;
ALTER TABLE devices ADD COLUMN sold_ms INTEGER;
UPDATE devices SET (sold_handset, sale_day, down_payment, sold_ms) = (
    SELECT s.handset, s.day, s.down_payment, s.received_ms FROM sales s
    WHERE s.device = devices.device
) WHERE device IN (SELECT device FROM sales);
DROP TABLE sales;
CREATE VIEW sales(device, agent, handset, day, down_payment, received_ms) AS
    SELECT device, agent, sold_handset, sale_day, down_payment, sold_ms FROM devices
    WHERE sold_ms IS NOT NULL;
CREATE TABLE payments_lean (
    payment INTEGER PRIMARY KEY, device INTEGER NOT NULL, agent INTEGER NOT NULL,
    source TEXT NOT NULL, ref TEXT NOT NULL, amount INTEGER NOT NULL, day TEXT NOT NULL,
    received_ms INTEGER NOT NULL
);
INSERT INTO payments_lean(payment, device, agent, source, ref, amount, day, received_ms)
    SELECT payment, device, agent, source, ref, amount, day, received_ms FROM payments;
DROP TABLE payments;
ALTER TABLE payments_lean RENAME TO payments
"""
"""Version 7: fewer B-trees written per sale and payment. A sale is kept in its device's row,
which the sale writes anyway (sold to whom, credit), instead of a row of its own in ``sales``;
``sales`` stays, as a view with the same columns (a device's agent is its seller's: only an
unsold device ever changes agent). A payment's row loses its ``(source, ref)`` unique index:
nothing searches it, and the key it repeated is kept where it is checked (an agent's cash
payment's ref is its operation's key in ``ops``, a mobile-money payment's its ``mm_txns``
row)."""

DEFAULT_DISTRIBUTOR = 1


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";\n") if s.strip()]


def _base(db: sqlite3.Connection) -> None:
    for statement in _statements(BASE) + _statements(METRICS_SCHEMA):
        db.execute(statement)
    # a database from before keycodes named their payment: the old rows keep NULL there
    if not any(row[1] == "txn" for row in db.execute("PRAGMA table_info(keycodes)")):
        db.execute("ALTER TABLE keycodes ADD COLUMN txn TEXT")


def _script(script: str) -> Callable[[sqlite3.Connection], None]:
    def apply(db: sqlite3.Connection) -> None:
        for statement in _statements(script):
            db.execute(statement)

    return apply


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _base,
    _script(TENANTS),
    _script(SYNC_KEYS),
    _script(ESCROW),
    _script(BY_AGENT),
    _script(LEAN_WRITES),
    _script(SALES_IN_DEVICES),
)
"""MIGRATIONS[n - 1] brings version n - 1 to n."""
VERSION = len(MIGRATIONS)


class TooNew(sqlite3.DatabaseError):
    """The database was made by a newer release: this one must not write to it."""


def version(db: sqlite3.Connection) -> int:
    (found,) = db.execute("PRAGMA user_version").fetchone()
    return int(found)


def migrate(db: sqlite3.Connection) -> int:
    """Bring `db` (autocommit mode) to VERSION; returns the version it had. Another process
    may be migrating the same file: the version is read again under the write lock."""
    before = version(db)
    if before == VERSION:
        return before
    if before > VERSION:
        raise TooNew(f"schema version {before} is newer than this release's {VERSION}")
    db.execute("BEGIN IMMEDIATE")
    try:
        for n in range(version(db), VERSION):
            MIGRATIONS[n](db)
            db.execute(f"PRAGMA user_version = {n + 1}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return before
