"""The platform a fault run works on (seeded the same way every time), what it holds at the
end (read straight from its SQLite file), and the verdict of the lab's checkers on it."""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
from aiohttp import web

from agent_client.protocol.frames import Keycode, Payment, entry_from_row
from agent_client.protocol.keycodes import KeycodeFormat
from field_lab.measure.history import (
    Bounded,
    CounterCheck,
    History,
    SetCheck,
    Status,
    check_applied,
    check_bounds,
)
from server_stub.app import Platform, create_app
from server_stub.devices import make_devices
from server_stub.store import Store

PRICE = 100
AGENT, CODE = "ama", "code-ama"
MM_SECRET = b"chaos-operator-secret"
FIRST_SERIAL = 20_000_001
OP, MM = "op", "mm"  # history kinds: handset operations, mobile-money payments


def seed(path: Path, devices: int, seed: int = 7) -> list[int]:
    """One plan, one agent with `devices` Nexus full devices in stock (same keys per seed)."""
    store = Store.open(path)
    try:
        store.add_plan("solar-home-10w", PRICE)
        agent, _ = store.add_agent(AGENT, CODE)
        records = make_devices(FIRST_SERIAL, devices, KeycodeFormat.NEXUS_FULL, random.Random(seed))
        store.add_devices(agent, records)
        return [r.device for r in records]
    finally:
        store.close()


@asynccontextmanager
async def serving(db: Path, port: int = 0) -> AsyncIterator[int]:
    """The platform in this process on 127.0.0.1 (`port` 0: any); yields its port."""
    app = create_app(db, platform=Platform(mm_secret=MM_SECRET))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return [tuple(r) for r in conn.execute(sql).fetchall()]


BUSINESS_STATE = {
    # what a household and the distributor see; no timestamps, days or signatures, which
    # legitimately differ with clock skew and retries
    "customers": "SELECT handset, seq, name, phone FROM customers",
    "devices": "SELECT device, customer, plan, balance, next_id FROM devices",
    "keycodes": "SELECT device, message_id, op_seq, text, days, amount FROM keycodes",
    "payments": "SELECT device, source, ref, amount FROM payments",
    "ops": "SELECT handset, seq, kind, outcome FROM ops",
    "mm": "SELECT txn, outcome, device, keycode IS NOT NULL FROM mm_txns",
}


def digest(db: Path) -> str:
    """One hash of the server's business state: equal digests, same final state."""
    h = hashlib.sha256()
    for name, sql in BUSINESS_STATE.items():
        h.update(json.dumps([name, sorted(rows(db, sql), key=repr)]).encode())
    return h.hexdigest()[:16]


@dataclass
class Ledger:
    """What the harness attempted per device, to bound the credit the platform issued."""

    attempted: dict[int, int] = field(default_factory=dict)
    confirmed: dict[int, int] = field(default_factory=dict)
    amounts: dict[str, tuple[int, int]] = field(default_factory=dict)  # key -> (device, amount)

    def attempt(self, key: str, device: int, amount: int) -> None:
        self.amounts[key] = (device, amount)
        self.attempted[device] = self.attempted.get(device, 0) + amount

    def bounds(self, history: History, db: Path) -> list[Bounded]:
        confirmed: dict[int, int] = {}
        for key, (device, amount) in self.amounts.items():
            if history.final(key) is Status.OK:
                confirmed[device] = confirmed.get(device, 0) + amount
        credited: dict[int, int] = dict(
            rows(
                db,
                "SELECT d.device, d.balance + coalesce(sum(k.amount), 0) FROM devices d"
                " LEFT JOIN keycodes k ON k.device = d.device GROUP BY d.device",
            )
        )
        return [
            Bounded(f"device {d}", float(credited.get(d, 0)), confirmed.get(d, 0), upper)
            for d, upper in self.attempted.items()
        ]


@dataclass(frozen=True)
class Verdict:
    ops: SetCheck
    payments: SetCheck
    credit: CounterCheck
    unpaid_keycodes: tuple[str, ...]  # confirmed payments with no keycode
    keycodes_twice: tuple[str, ...]  # the same keycode issued or delivered more than once
    undelivered: tuple[str, ...]  # keycodes the platform sent down that a handset lacks
    pending: int  # operations still not settled on the handset
    digest: str

    @property
    def valid(self) -> bool:
        return (
            self.ops.valid
            and self.payments.valid
            and self.credit.valid
            and not self.unpaid_keycodes
            and not self.keycodes_twice
            and not self.undelivered
            and not self.pending
        )

    def summary(self) -> dict[str, object]:
        return {
            "valid": self.valid,
            "ops_attempted": self.ops.attempted,
            "ops_acknowledged": self.ops.acknowledged,
            "lost": len(self.ops.lost) + len(self.payments.lost),
            "duplicated": len(self.ops.duplicated) + len(self.payments.duplicated),
            "unexpected": len(self.ops.unexpected) + len(self.payments.unexpected),
            "failed_but_applied": len(self.ops.failed_but_applied)
            + len(self.payments.failed_but_applied),
            "recovered_unknown": self.ops.recovered + self.payments.recovered,
            "payments_attempted": self.payments.attempted,
            "payments_acknowledged": self.payments.acknowledged,
            "credit_over": len(self.credit.over),
            "credit_under": len(self.credit.under),
            "unpaid_keycodes": len(self.unpaid_keycodes),
            "keycodes_twice": len(self.keycodes_twice),
            "undelivered": len(self.undelivered),
            "pending": self.pending,
            "digest": self.digest,
        }


def downlink(db: Path) -> list[tuple[int, object]]:
    return [
        (int(h), entry_from_row(msgpack.unpackb(body)))
        for h, body in rows(db, "SELECT handset, body FROM downlink ORDER BY handset, n")
    ]


def judge(
    history: History,
    ledger: Ledger,
    server_db: Path,
    handset_dbs: Iterable[Path],
    pending: int,
) -> Verdict:
    """Run the lab's checkers on what the platform and the handsets hold after settling."""
    applied_ops = [f"{h}:{s}" for h, s in rows(server_db, "SELECT handset, seq FROM customers")]
    applied_ops += [
        f"{h}:{s}" for h, s in rows(server_db, "SELECT handset, op_seq FROM keycodes WHERE op_seq")
    ]
    entries = downlink(server_db)
    applied_mm = [e.ref for _, e in entries if isinstance(e, Payment)]
    unpaid = [
        str(t)
        for (t,) in rows(
            server_db, "SELECT txn FROM mm_txns WHERE outcome = 'confirmed' AND keycode IS NULL"
        )
    ]
    twice = [
        f"server {d}/{t}"
        for d, t, n in rows(
            server_db,
            "SELECT device, text, count(*) FROM keycodes GROUP BY 1, 2 HAVING count(*) > 1",
        )
        if n
    ]
    sent = sum(1 for _, e in entries if isinstance(e, Keycode))
    undelivered = []
    for db in handset_dbs:
        ((total, distinct),) = rows(db, "SELECT count(*), count(DISTINCT n) FROM keycodes")
        if total != distinct:
            twice.append(f"handset {db.name}: {total} keycodes, {distinct} distinct")
        if distinct != sent:
            undelivered.append(f"handset {db.name}: holds {distinct} of {sent} keycodes sent")
    return Verdict(
        ops=check_applied(history, applied_ops, kind=OP),
        payments=check_applied(history, applied_mm, kind=MM),
        credit=check_bounds(ledger.bounds(history, server_db)),
        unpaid_keycodes=tuple(unpaid),
        keycodes_twice=tuple(twice),
        undelivered=tuple(undelivered),
        pending=pending,
        digest=digest(server_db),
    )
