"""The audit API's read side: what the platform applied, for a judge that may not use SQL.

Four feeds, one item per stored row: ``operations`` (every handset operation and its
outcome), ``keycodes`` (every keycode issued, with the key that paid for it), ``payments``
(every operator transaction as received) and ``escrow`` (every event of an offline-sale
escrowed code: granted, reconciled to its sale, revoked, dropped, flagged). Pages run in
insertion (rowid) order: writers commit one at a time and each new row's rowid is above every
committed one, so a reader that pages while writes happen sees each row exactly once. This is
the contract a user's own platform implements to be judged by the lab (docs/platform.md, "The
audit contract").

`parse_audit_query` (pure) validates the query string; `Audit` reads pages over a read-only
connection (a report reader's), never the store's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agent_client.protocol.frames import Reason
from agent_client.protocol.keycodes import KeycodeFormat
from agent_client.protocol.ops import Kind

from .reports import decode_cursor, encode_cursor, int_param

FEEDS = ("operations", "keycodes", "payments", "escrow")
DEFAULT_LIMIT = 500
MAX_LIMIT = 1000
APPLIED = "applied"


@dataclass(frozen=True)
class AuditQuery:
    limit: int = DEFAULT_LIMIT
    after: int = 0  # the rowid of the last row already read


def _cursor_name(feed: str) -> str:
    """A cursor carries its feed, so one from another feed or a report is refused."""
    return f"audit/{feed}"


def parse_audit_query(feed: str, params: Mapping[str, str]) -> AuditQuery:
    """``limit`` (1..1000, default 500) and ``cursor`` (a ``next_cursor`` of this feed)."""
    limit = int_param(params, "limit", 1, MAX_LIMIT) or DEFAULT_LIMIT
    cursor = params.get("cursor")
    if cursor is None:
        return AuditQuery(limit)
    (after,) = decode_cursor(_cursor_name(feed), cursor, (int,))
    return AuditQuery(limit, after)


def outcome_name(outcome: int) -> str:
    """``applied``, or the refusal reason as the handset receives it, in lower case."""
    return APPLIED if outcome == 0 else Reason(outcome).name.lower()


def _operation(row: tuple[Any, ...]) -> dict[str, Any]:
    handset, seq, kind, outcome, received_ms = row
    return {
        "handset": handset,
        "seq": seq,
        "kind": kind_name(kind),
        "outcome": outcome_name(outcome),
        "received_ms": received_ms,
    }


def kind_name(kind: int) -> str:
    """An operation kind's name; a kind the platform refused as unknown keeps its number."""
    try:
        return Kind(kind).name.lower()
    except ValueError:
        return f"unknown_kind_{kind}" if kind >= 0 else "unknown_kind"


def _keycode(row: tuple[Any, ...]) -> dict[str, Any]:
    (
        keycode,
        device,
        handset,
        fmt,
        message_id,
        text,
        days,
        credit_s,
        amount,
        op_seq,
        txn,
        issued_ms,
    ) = row
    paid_by: dict[str, Any] | None
    if op_seq > 0:
        paid_by = {"handset": handset, "seq": op_seq}
    elif txn is not None:
        paid_by = {"txn": txn}
    else:
        paid_by = None  # a keycode nobody paid for
    return {
        "keycode": keycode,
        "device": device,
        "handset": handset,
        "format": KeycodeFormat(fmt).name.lower(),
        "message_id": message_id,
        "text": text,
        "days": days,
        "credit_s": credit_s,
        "amount": amount,
        "paid_by": paid_by,
        "issued_ms": issued_ms,
    }


def _escrow(row: tuple[Any, ...]) -> dict[str, Any]:
    """One event of an escrowed code: granted, reconciled (to the sale that released it),
    revoked, dropped (its handsets heard the revocation) or flagged (an abuse refused)."""
    at_ms, kind, agent, device, reserved_id, days, handset, seq, flag = row
    return {
        "event": kind,
        "agent": agent,
        "device": device,
        "reserved_id": reserved_id,
        "days": days,
        "sale": None if seq is None else {"handset": handset, "seq": seq},
        "flag": flag,
        "at_ms": at_ms,
    }


def _payment(row: tuple[Any, ...]) -> dict[str, Any]:
    txn, outcome, account, device, amount, keycode, received_ms = row
    return {
        "txn": txn,
        "outcome": outcome,
        "account": account,
        "device": device,
        "amount": amount,
        "keycode": keycode,
        "received_ms": received_ms,
    }


# each feed: the page query (rowid first, then the item's columns) and the item it makes
SQL: dict[str, tuple[str, Callable[[tuple[Any, ...]], dict[str, Any]]]] = {
    "operations": (
        "SELECT rowid, handset, seq, kind, outcome, received_ms FROM ops"
        " WHERE rowid > ? ORDER BY rowid LIMIT ?",
        _operation,
    ),
    "keycodes": (
        # a keycode written before keycodes.txn existed finds its txn through mm_txns
        "SELECT k.keycode, k.keycode, k.device, k.handset, d.format, k.message_id, k.text,"
        " k.days, k.credit_s, k.amount, k.op_seq,"
        " CASE WHEN k.txn IS NULL AND k.op_seq = 0"
        " THEN (SELECT t.txn FROM mm_txns t WHERE t.keycode = k.keycode LIMIT 1)"
        " ELSE k.txn END, k.issued_ms"
        " FROM keycodes k JOIN devices d ON d.device = k.device"
        " WHERE k.keycode > ? ORDER BY k.keycode LIMIT ?",
        _keycode,
    ),
    "payments": (
        "SELECT rowid, txn, outcome, account, device, amount, keycode, received_ms FROM mm_txns"
        " WHERE rowid > ? ORDER BY rowid LIMIT ?",
        _payment,
    ),
    "escrow": (
        "SELECT event, at_ms, kind, agent, device, reserved_id, days, handset, seq, flag"
        " FROM escrow_events WHERE event > ? ORDER BY event LIMIT ?",
        _escrow,
    ),
}


class Audit:
    """The feeds over one read-only connection; cheap to make per request."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def page(self, feed: str, q: AuditQuery) -> dict[str, Any]:
        """One page: ``{"items": [...], "next_cursor": str | None}``."""
        sql, item = SQL[feed]
        rows = self.db.execute(sql, (q.after, q.limit + 1)).fetchall()
        more = len(rows) > q.limit
        rows = rows[: q.limit]
        cursor = encode_cursor(_cursor_name(feed), (rows[-1][0],)) if more else None
        return {"items": [item(tuple(r[1:])) for r in rows], "next_cursor": cursor}
