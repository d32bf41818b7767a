"""Distributor reports: the read side, on its own SQLite connection and thread.

WAL lets this connection read a consistent snapshot while the store's thread writes, so a
report never queues behind sync ingest. Pages are keyset-paginated: the cursor is an opaque
token holding the last row's sort key, so a page costs the same however deep it is and rows
written meanwhile neither repeat nor vanish from the pages already read.

`parse_query` (pure) validates the query string; each report method takes the parsed query,
``now_ms`` and the asking distributor, and returns a JSON-ready page of that distributor's
rows only (``None``: every distributor's, for the operator's own readiness probe). The scope
is in every query's WHERE clause, so no parameter or cursor, forged or another tenant's, can
reach another distributor's rows: a cursor only says where to start.
"""

from __future__ import annotations

import base64
import json
import re
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import RequestError
from .ledger.access import same_digest, token_digest
from .opm.report import usage
from .scope import TENANT, Scope

DAY_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
MAX_ID = 2**63 - 1
DAY_MS = 86_400_000
REPORTS = ("sales", "collections", "devices", "activation", "usage")


@dataclass(frozen=True)
class Query:
    limit: int = DEFAULT_LIMIT
    after: tuple[Any, ...] | None = None  # the last row's key from the cursor
    day_from: str = "0000-00-00"
    day_to: str = "9999-99-99"
    agent: int | None = None


def encode_cursor(report: str, key: tuple[Any, ...]) -> str:
    raw = json.dumps([report, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(report: str, token: str, types: tuple[type, ...]) -> tuple[Any, ...]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, "bad_cursor", "cursor is not one this server issued") from exc
    ok = (
        isinstance(doc, list)
        and len(doc) == len(types) + 1
        and doc[0] == report
        and all(type(v) is t for v, t in zip(doc[1:], types, strict=True))
        # every key integer is an id: beyond SQLite's range a forged one would fail the query
        and all(0 <= v <= MAX_ID for v in doc[1:] if type(v) is int)
    )
    if not ok:
        raise RequestError(400, "bad_cursor", f"cursor is not one for the {report} report")
    return tuple(doc[1:])


def int_param(params: Mapping[str, str], name: str, lo: int, hi: int) -> int | None:
    """An optional integer query parameter in lo..hi, or a 400 ``bad_parameter``."""
    text = params.get(name)
    if text is None:
        return None
    if not re.fullmatch(r"[0-9]{1,19}", text) or not lo <= int(text) <= hi:
        raise RequestError(400, "bad_parameter", f"{name} must be an integer in {lo}..{hi}")
    return int(text)


def _day_param(params: Mapping[str, str], name: str, default: str) -> str:
    text = params.get(name)
    if text is None:
        return default
    if not DAY_RE.fullmatch(text):
        raise RequestError(400, "bad_parameter", f"{name} must be a day YYYY-MM-DD")
    return text


# the sort key of each report's rows, as the cursor carries it
KEYS: dict[str, tuple[type, ...]] = {
    "sales": (str, int),
    "collections": (str, int),
    "devices": (int,),
    "activation": (str,),
    "usage": (int,),
}


def parse_query(report: str, params: Mapping[str, str]) -> Query:
    limit = int_param(params, "limit", 1, MAX_LIMIT) or DEFAULT_LIMIT
    cursor = params.get("cursor")
    after = decode_cursor(report, cursor, KEYS[report]) if cursor is not None else None
    return Query(
        limit=limit,
        after=after,
        day_from=_day_param(params, "from", Query.day_from),
        day_to=_day_param(params, "to", Query.day_to),
        agent=int_param(params, "agent", 1, MAX_ID),
    )


def page_where(scope: str) -> str:
    """Keyset paging over the (day, agent) rollup: the primary key order, so a page reads
    `limit` rows."""
    return (
        f" AND {scope} AND d.day >= :from AND d.day <= :to"
        " AND (:agent IS NULL OR d.agent = :agent)"
        " AND (d.day, d.agent) > (:after_day, :after_agent) ORDER BY d.day, d.agent LIMIT :limit"
    )


def confirmed(scope: str) -> str:
    """Confirmed mobile-money payments with their SMS, scoped to the selling agent's
    distributor."""
    return (
        "mm_txns t LEFT JOIN sms s ON s.txn = t.txn JOIN handsets h ON h.handset = t.handset"
        f" JOIN agents a ON a.agent = h.agent WHERE t.outcome = 'confirmed' AND {scope}"
    )


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty list."""
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[int(rank) - 1]


class Reports:
    """Read-only queries; one instance per thread (sqlite3 connections are not shared).
    Every query filters by `scope` (scope.TENANT: the asking distributor's rows)."""

    def __init__(self, db: sqlite3.Connection, scope: Scope = TENANT) -> None:
        self.db = db
        self.scope = scope.where
        self._page_where = page_where(self.scope)
        self._confirmed = confirmed(self.scope)

    @classmethod
    def open(cls, path: str | Path, scope: Scope = TENANT) -> Reports:
        uri = f"{Path(path).resolve().as_uri()}?mode=ro"
        db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA busy_timeout=10000")
        db.execute("PRAGMA query_only=ON")
        return cls(db, scope)

    def close(self) -> None:
        self.db.close()

    def _page(
        self,
        report: str,
        q: Query,
        rows: list[dict[str, Any]],
        key: Callable[[dict[str, Any]], tuple[Any, ...]],
    ) -> dict[str, Any]:
        more = len(rows) > q.limit
        items = rows[: q.limit]
        cursor = encode_cursor(report, key(items[-1])) if more else None
        return {"items": items, "next_cursor": cursor}

    def tenant(self, token: str) -> int | None:
        """The distributor a live API token belongs to, or None."""
        digest = token_digest(token)
        row = self.db.execute(
            "SELECT digest, distributor FROM tokens WHERE digest = ? AND revoked_ms IS NULL",
            (digest,),
        ).fetchone()
        if row is None or not same_digest(bytes(row[0]), digest):
            return None
        return int(row[1])

    def _grouped(
        self, report: str, sql: str, q: Query, fields: tuple[str, ...], distributor: int | None
    ) -> dict[str, Any]:
        """Read one page of the per-(day, agent) rollup."""
        after_day, after_agent = q.after if q.after else ("", 0)
        rows = self.db.execute(
            sql,
            {
                "from": q.day_from,
                "to": q.day_to,
                "agent": q.agent,
                "after_day": after_day,
                "after_agent": after_agent,
                "limit": q.limit + 1,
                "distributor": distributor,
            },
        ).fetchall()
        items = [dict(zip(("day", "agent", "agent_name", *fields), r, strict=True)) for r in rows]
        return self._page(report, q, items, lambda r: (r["day"], r["agent"]))

    def sales(self, q: Query, now_ms: int, distributor: int | None) -> dict[str, Any]:
        """Devices sold and down payments taken, per agent and day (the handset's day)."""
        return self._grouped(
            "sales",
            "SELECT d.day, d.agent, a.name, d.sales, d.down_payments FROM daily d"
            " JOIN agents a ON a.agent = d.agent WHERE d.sales > 0" + self._page_where,
            q,
            ("sales", "down_payments"),
            distributor,
        )

    def collections(self, q: Query, now_ms: int, distributor: int | None) -> dict[str, Any]:
        """Payments after the sale, per agent and day, split by channel."""
        return self._grouped(
            "collections",
            "SELECT d.day, d.agent, a.name, d.payments, d.amount, d.mobile_money, d.agent_cash"
            " FROM daily d JOIN agents a ON a.agent = d.agent WHERE d.payments > 0"
            + self._page_where,
            q,
            ("payments", "amount", "mobile_money", "agent_cash"),
            distributor,
        )

    def devices(self, q: Query, now_ms: int, distributor: int | None) -> dict[str, Any]:
        """Sold devices: credit remaining now and whole days since the last payment."""
        (after,) = q.after if q.after else (0,)
        rows = self.db.execute(
            "SELECT d.device, h.agent, d.plan, d.credit_until_ms, d.last_paid_ms, d.balance"
            " FROM devices d JOIN customers c ON c.customer = d.customer"
            " JOIN handsets h ON h.handset = c.handset JOIN agents a ON a.agent = h.agent"
            " WHERE d.customer IS NOT NULL AND d.device > :after"  # the devices_sold index
            f" AND (:agent IS NULL OR h.agent = :agent) AND {self.scope}"
            " ORDER BY d.device LIMIT :limit",
            {"after": after, "agent": q.agent, "limit": q.limit + 1, "distributor": distributor},
        ).fetchall()
        items = [
            {
                "device": device,
                "agent": agent,
                "plan": plan,
                "credit_remaining_s": max(0, until - now_ms) // 1000,
                "days_since_last_payment": max(0, now_ms - last) // DAY_MS,
                "unspent_balance": balance,
            }
            for device, agent, plan, until, last, balance in rows
        ]
        return self._page("devices", q, items, lambda r: (r["device"],))

    def usage(self, q: Query, now_ms: int, distributor: int | None) -> dict[str, Any]:
        """OpenPAYGO Metrics: each reporting device's last usage and its bytes (opm.report)."""
        return usage(self, q, distributor)

    def activation(self, q: Query, now_ms: int, distributor: int | None) -> dict[str, Any]:
        """Mobile-money activation latency per day: payment to keycode issued, to SMS
        delivered, and to the keycode reaching the selling agent's handset."""
        (after,) = q.after if q.after else ("",)
        days = self.db.execute(
            f"SELECT DISTINCT t.day FROM {self._confirmed} AND t.day >= :from AND t.day <= :to"
            " AND t.day > :after ORDER BY t.day LIMIT :limit",
            {
                "from": q.day_from,
                "to": q.day_to,
                "after": after,
                "limit": q.limit + 1,
                "distributor": distributor,
            },
        ).fetchall()
        items = [self._activation_day(str(day), distributor) for (day,) in days]
        return self._page("activation", q, items, lambda r: (r["day"],))

    def _activation_day(self, day: str, distributor: int | None) -> dict[str, Any]:
        rows = self.db.execute(
            "SELECT t.paid_ms, t.issued_ms, s.delivered_ms, t.downlinked_ms"
            f" FROM {self._confirmed} AND t.day = :day",
            {"day": day, "distributor": distributor},
        ).fetchall()
        item: dict[str, Any] = {"day": day, "payments": len(rows)}
        for name, column in (("issued", 1), ("sms_delivered", 2), ("handset_downlinked", 3)):
            lat = sorted((r[column] - r[0]) / 1000 for r in rows if r[column] is not None)
            item[name] = {
                "count": len(lat),
                "p50_s": percentile(lat, 50) if lat else None,
                "p95_s": percentile(lat, 95) if lat else None,
                "max_s": lat[-1] if lat else None,
            }
        return item

    # -- lab and operations --------------------------------------------------------------------

    def payment(self, txn: str, distributor: int | None) -> dict[str, Any] | None:
        """Every recorded step of one mobile-money transaction (milliseconds), when it paid
        for a device in stock with one of `distributor`'s agents; else None (not found)."""
        row = self.db.execute(
            "SELECT t.txn, t.outcome, t.account, t.amount, t.paid_ms, t.received_ms,"
            " t.confirmed_ms, t.issued_ms, k.text, s.first_sent_ms, s.attempts,"
            " s.delivered_ms, t.downlinked_ms, t.synced_ms FROM mm_txns t"
            " LEFT JOIN keycodes k ON k.keycode = t.keycode LEFT JOIN sms s ON s.txn = t.txn"
            " JOIN devices d ON d.device = t.account JOIN agents a ON a.agent = d.agent"
            f" WHERE t.txn = :txn AND {self.scope}",
            {"txn": txn, "distributor": distributor},
        ).fetchone()
        if row is None:
            return None
        names = (
            "txn",
            "outcome",
            "account",
            "amount",
            "paid_ms",
            "received_ms",
            "confirmed_ms",
            "issued_ms",
            "keycode",
            "sms_sent_ms",
            "sms_attempts",
            "sms_delivered_ms",
            "handset_downlinked_ms",
            "handset_synced_ms",
        )
        doc = dict(zip(names, row, strict=True))
        doc["sms_attempts"] = doc["sms_attempts"] or 0
        return doc

    def totals(self) -> dict[str, int]:
        """Monotonic counts for /metrics, read from the database so restarts keep them."""
        (keycodes,) = self.db.execute("SELECT count(*) FROM keycodes").fetchone()
        by_outcome = dict(
            self.db.execute("SELECT outcome, count(*) FROM mm_txns GROUP BY outcome").fetchall()
        )
        (sent, delivered) = self.db.execute(
            "SELECT coalesce(sum(attempts), 0), count(delivered_ms) FROM sms"
        ).fetchone()
        return {
            "keycodes": int(keycodes),
            "sms_sent": int(sent),
            "sms_delivered": int(delivered),
            **{f"mm_{k}": int(v) for k, v in by_outcome.items()},
        }
