"""Sunrise: a small PAYG platform with its own plain JSON REST API — not the lab's wire format.

It stands for *your* platform: the lab drives it through an adapter (`adapter.py`) and judges it
through the audit contract (docs/platform.md), which it implements at `/v1/audit/*`. Nothing
here imports the lab's platform stand-in; keycodes come from Angaza's `nexus-keycode`.

    POST /api/v1/handsets        {"agent", "pin"}                 -> {"handset_id", "token"}
    POST /api/v1/transactions    {"transactions": [...], "since"}  -> {"results", "unlock_codes",
                                  Authorization: Bearer <token>        "next_since"}
    GET  /v1/audit/{operations,keycodes,payments}                  (Bearer <audit token>)

The lab needs only the fixture `seed` returns (agents, their PINs, device keys) to drive it;
`DeviceSecret` and `Fixture` are the lab's types for that handover, not platform code.

A transaction is `{"client_ref": n, "type": "customer"|"sale"|"payment", ...}`; `client_ref`
is the handset's sequence number and, with the handset, the idempotency key: a replay gets the
same result and changes nothing.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import random
import secrets
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from nexus_keycode.protocols.full import FullMessage

from agent_client.protocol.keycodes import KeycodeFormat
from field_lab.world.fixture import AgentSpec, Fixture
from server_stub.keycodes import DeviceSecret

SCHEMA = """
CREATE TABLE IF NOT EXISTS agents (name TEXT PRIMARY KEY, pin TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS handsets (
    id INTEGER PRIMARY KEY, agent TEXT NOT NULL, token TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    serial INTEGER PRIMARY KEY, agent TEXT NOT NULL, key BLOB NOT NULL, next_id INTEGER NOT NULL,
    customer TEXT, balance INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS customers (
    handset INTEGER, ref INTEGER, name TEXT, PRIMARY KEY (handset, ref)
);
CREATE TABLE IF NOT EXISTS transactions (
    handset INTEGER NOT NULL, ref INTEGER NOT NULL, type TEXT NOT NULL, body TEXT NOT NULL,
    status TEXT NOT NULL, reason TEXT, at_ms INTEGER NOT NULL, PRIMARY KEY (handset, ref)
);
CREATE TABLE IF NOT EXISTS unlock_codes (
    id INTEGER PRIMARY KEY, handset INTEGER NOT NULL, ref INTEGER NOT NULL,
    serial INTEGER NOT NULL, message_id INTEGER NOT NULL, code TEXT NOT NULL,
    hours INTEGER NOT NULL, amount INTEGER NOT NULL, at_ms INTEGER NOT NULL
);
"""
PRICE_PER_DAY = 500
KINDS = {"customer": "register_customer", "sale": "record_sale", "payment": "record_payment"}
"""Sunrise's transaction types, as the audit contract names operation kinds."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def open_db(path: str | Path) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(SCHEMA)
    return db


def add_agent(db: sqlite3.Connection, name: str, pin: str, devices: dict[int, bytes]) -> None:
    """Onboard an agent with devices in stock (serial -> 16-byte Nexus key)."""
    with db:
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO agents VALUES (?, ?)", (name, pin))
        db.executemany(
            "INSERT INTO devices (serial, agent, key, next_id) VALUES (?, ?, ?, 1)",
            [(serial, name, key) for serial, key in devices.items()],
        )


def _error(status: int, code: str, detail: str) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status)


class Sunrise:
    def __init__(self, db: sqlite3.Connection, audit_token: str, hours_per_day: int = 24) -> None:
        """`hours_per_day` other than 24 is a bug built in on purpose (the example test shows
        the lab's judge catching it from the meters, through this platform's own API)."""
        self.db = db
        self.audit_token = audit_token
        self.hours_per_day = hours_per_day

    # -- handsets --------------------------------------------------------------------------------

    async def register(self, request: web.Request) -> web.Response:
        doc = await _json(request)
        agent, pin = doc.get("agent"), doc.get("pin")
        row = self.db.execute("SELECT pin FROM agents WHERE name = ?", (agent,)).fetchone()
        if not isinstance(pin, str) or row is None or not hmac.compare_digest(row[0], pin):
            return _error(403, "bad_credentials", "unknown agent or wrong PIN")
        token = secrets.token_urlsafe(24)
        cur = self.db.execute("INSERT INTO handsets (agent, token) VALUES (?, ?)", (agent, token))
        return web.json_response({"handset_id": cur.lastrowid, "token": token}, status=201)

    def _handset(self, request: web.Request) -> tuple[int, str] | None:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        row = self.db.execute("SELECT id, agent FROM handsets WHERE token = ?", (token,)).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    # -- transactions ----------------------------------------------------------------------------

    async def transactions(self, request: web.Request) -> web.Response:
        who = self._handset(request)
        if who is None:
            return _error(401, "unauthorized", "register the handset first")
        doc = await _json(request)
        items, since = doc.get("transactions"), doc.get("since", 0)
        if not isinstance(items, list) or not isinstance(since, int) or len(items) > 100:
            return _error(400, "bad_request", "need transactions (a list of at most 100), since")
        results = []
        now = int(time.time() * 1000)
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for item in items:
                results.append(self._one(who, item, now))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        codes = [
            {"id": i, "client_ref": ref, "serial": serial, "code": code, "hours": hours}
            for i, ref, serial, code, hours in self.db.execute(
                "SELECT id, ref, serial, code, hours FROM unlock_codes"
                " WHERE handset = ? AND id > ? ORDER BY id",
                (who[0], since),
            )
        ]
        next_since = codes[-1]["id"] if codes else since
        return web.json_response(
            {"results": results, "unlock_codes": codes, "next_since": next_since}
        )

    def _one(self, who: tuple[int, str], item: Any, now: int) -> dict[str, Any]:
        handset, agent = who
        if not isinstance(item, dict) or not isinstance(item.get("client_ref"), int):
            return {"client_ref": None, "status": "rejected", "reason": "malformed"}
        ref, kind = item["client_ref"], item.get("type")
        body = json.dumps(item, sort_keys=True)
        old = self.db.execute(
            "SELECT body, status, reason FROM transactions WHERE handset = ? AND ref = ?",
            (handset, ref),
        ).fetchone()
        if old is not None:  # a replay: the same answer, nothing applied again
            if old[0] != body:
                return {"client_ref": ref, "status": "rejected", "reason": "conflict"}
            return {"client_ref": ref, "status": old[1], "reason": old[2]}
        self.db.execute("SAVEPOINT tx")
        try:
            reason = self._apply(handset, agent, ref, kind, item, now)
        except (KeyError, TypeError, ValueError):
            reason = "malformed"
        if reason is not None:
            self.db.execute("ROLLBACK TO tx")
        self.db.execute("RELEASE tx")
        status = "ok" if reason is None else "rejected"
        self.db.execute(
            "INSERT INTO transactions VALUES (?, ?, ?, ?, ?, ?, ?)",
            (handset, ref, str(kind), body, status, reason, now),
        )
        return {"client_ref": ref, "status": status, "reason": reason}

    def _apply(
        self, handset: int, agent: str, ref: int, kind: Any, item: dict[str, Any], now: int
    ) -> str | None:
        if kind == "customer":
            self.db.execute(
                "INSERT INTO customers VALUES (?, ?, ?)", (handset, ref, str(item["name"]))
            )
            return None
        if kind == "sale":
            serial, amount = int(item["serial"]), int(item["down_payment"])
            customer = self.db.execute(
                "SELECT 1 FROM customers WHERE handset = ? AND ref = ?",
                (handset, int(item["customer_ref"])),
            ).fetchone()
            if customer is None:
                return "unknown_customer"
            device = self.db.execute(
                "SELECT agent, customer FROM devices WHERE serial = ?", (serial,)
            ).fetchone()
            if device is None or device[0] != agent:
                return "not_in_stock"
            if device[1] is not None:
                return "already_sold"
            if amount < PRICE_PER_DAY:
                return "amount_too_low"
            self.db.execute(
                "UPDATE devices SET customer = ? WHERE serial = ?", (f"{handset}:{ref}", serial)
            )
            self._credit(handset, ref, serial, amount, now)
            return None
        if kind == "payment":
            serial, amount = int(item["serial"]), int(item["amount"])
            sold = self.db.execute(
                "SELECT 1 FROM devices WHERE serial = ? AND agent = ? AND customer IS NOT NULL",
                (serial, agent),
            ).fetchone()
            if sold is None:
                return "unknown_account"
            self._credit(handset, ref, serial, amount, now)
            return None
        return "malformed"

    def _credit(self, handset: int, ref: int, serial: int, amount: int, now: int) -> None:
        """Turn the device's balance into whole days of credit: one Nexus keycode."""
        key, next_id, balance = self.db.execute(
            "SELECT key, next_id, balance FROM devices WHERE serial = ?", (serial,)
        ).fetchone()
        days = (balance + amount) // PRICE_PER_DAY
        spent = days * PRICE_PER_DAY
        self.db.execute(
            "UPDATE devices SET balance = balance + ? - ?, next_id = next_id + ? WHERE serial = ?",
            (amount, spent, 1 if days else 0, serial),
        )
        if days:
            hours = days * self.hours_per_day
            code = FullMessage.add_credit(id_=next_id, hours=hours, secret_key=key)
            self.db.execute(
                "INSERT INTO unlock_codes (handset, ref, serial, message_id, code, hours, amount,"
                " at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    handset,
                    ref,
                    serial,
                    next_id,
                    code.to_keycode(separator=""),
                    days * 24,
                    spent,
                    now,
                ),
            )
        return None

    # -- the audit contract ----------------------------------------------------------------------

    async def audit(self, request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), self.audit_token.encode()):
            return _error(401, "unauthorized", "audit needs the operator's token")
        feed = request.match_info["feed"]
        try:
            limit = int(request.query.get("limit", "500"))
            after = int(request.query.get("cursor", "0"))
        except ValueError:
            return _error(400, "bad_parameter", "limit and cursor are integers")
        if not 1 <= limit <= 1000:
            return _error(400, "bad_parameter", "limit is 1..1000")
        if feed == "operations":
            rows = self.db.execute(
                "SELECT rowid, handset, ref, type, status, reason, at_ms FROM transactions"
                " WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (after, limit + 1),
            ).fetchall()
            items = [
                {
                    "handset": h,
                    "seq": ref,
                    "kind": KINDS.get(t, t),
                    "outcome": "applied" if status == "ok" else reason,
                    "received_ms": at,
                }
                for _, h, ref, t, status, reason, at in rows
            ]
        elif feed == "keycodes":
            rows = self.db.execute(
                "SELECT id, handset, ref, serial, message_id, code, hours, amount, at_ms"
                " FROM unlock_codes WHERE id > ? ORDER BY id LIMIT ?",
                (after, limit + 1),
            ).fetchall()
            items = [
                {
                    "keycode": i,
                    "device": serial,
                    "handset": h,
                    "format": "nexus_full",
                    "message_id": message_id,
                    "text": code,
                    "days": hours // 24,
                    "credit_s": hours * 3600,
                    "amount": amount,
                    "paid_by": {"handset": h, "seq": ref},
                    "issued_ms": at,
                }
                for i, h, ref, serial, message_id, code, hours, amount, at in rows
            ]
        elif feed == "payments":
            rows, items = [], []  # Sunrise takes no mobile money: cash through agents only
        else:
            return _error(404, "not_found", f"no audit feed {feed!r}")
        more = len(rows) > limit
        cursor = str(rows[limit - 1][0]) if more else None
        return web.json_response({"items": items[:limit], "next_cursor": cursor})


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        doc = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text="body is not JSON") from None
    if not isinstance(doc, dict):
        raise web.HTTPBadRequest(text="body is not a JSON object")
    return doc


def create_app(
    db: sqlite3.Connection, *, audit_token: str, hours_per_day: int = 24
) -> web.Application:
    sunrise = Sunrise(db, audit_token, hours_per_day)
    app = web.Application()
    app.router.add_post("/api/v1/handsets", sunrise.register)
    app.router.add_post("/api/v1/transactions", sunrise.transactions)
    app.router.add_get("/v1/audit/{feed}", sunrise.audit)
    return app


def seed(db: sqlite3.Connection, *, agents: int, devices: int, seed: int = 1) -> Fixture:
    """Onboard `agents` agents with `devices` Nexus full devices between them, and return what
    the lab needs to drive and judge them (agents, PINs, device keys)."""
    rng = random.Random(f"sunrise:{seed}")
    per_agent, extra = divmod(devices, agents)
    specs, secrets_ = [], {}
    serial = 70_000_001
    for index in range(agents):
        name, pin = f"sunrise-{index:04d}", f"{rng.randrange(10**6):06d}"
        keys = {}
        for _ in range(per_agent + (1 if index < extra else 0)):
            keys[serial] = rng.randbytes(16)
            secrets_[serial] = DeviceSecret(KeycodeFormat.NEXUS_FULL, keys[serial])
            serial += 1
        add_agent(db, name, pin, keys)
        specs.append(AgentSpec(name, pin, tuple(keys)))
    return Fixture(1, PRICE_PER_DAY, tuple(specs), secrets_)


def main(argv: list[str] | None = None) -> int:
    """``python -m examples.rest_platform.platform --db F --fixture OUT.json --port P``:
    seed a fresh database, write the lab's fixture, and serve on 127.0.0.1 (audit token from
    ``SUNRISE_AUDIT_TOKEN``)."""
    p = argparse.ArgumentParser(prog="python -m examples.rest_platform.platform")
    p.add_argument("--db", type=Path, required=True)
    p.add_argument("--fixture", type=Path, required=True)
    p.add_argument("--port", type=int, default=8090)
    p.add_argument("--agents", type=int, default=4)
    p.add_argument("--devices", type=int, default=40)
    args = p.parse_args(argv)
    token = os.environ.get("SUNRISE_AUDIT_TOKEN")
    if not token:
        p.error("set SUNRISE_AUDIT_TOKEN (the operator's audit token)")
    db = open_db(args.db)
    args.fixture.write_text(seed(db, agents=args.agents, devices=args.devices).to_json())
    web.run_app(create_app(db, audit_token=token), host="127.0.0.1", port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
