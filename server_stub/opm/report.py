"""The usage report: what each reporting device said last, and what its reports cost."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..reports import Query, Reports

COLUMNS = (
    "device",
    "agent",
    "requests",
    "rows",
    "token_count",
    "energy_wh",
    "hours_of_use",
    "tokens_sent",
    "bytes_in",
    "bytes_out",
    "first_ms",
    "last_ms",
)


def usage(reports: Reports, q: Query, distributor: int | None) -> dict[str, Any]:
    """One page of devices that reported, by device id (the agent filter is the stock's)."""
    (after,) = q.after if q.after else (0,)
    rows = reports.db.execute(
        "SELECT o.device, d.agent, o.requests, o.rows, o.token_count, o.energy_wh,"
        " o.hours_of_use, o.tokens_sent, o.bytes_in, o.bytes_out, o.first_ms, o.last_ms"
        " FROM opm_devices o JOIN devices d ON d.device = o.device"
        " JOIN agents a ON a.agent = d.agent"
        f" WHERE o.device > :after AND (:agent IS NULL OR d.agent = :agent) AND {reports.scope}"
        " ORDER BY o.device LIMIT :limit",
        {"after": after, "agent": q.agent, "limit": q.limit + 1, "distributor": distributor},
    ).fetchall()
    items = [dict(zip(COLUMNS, r, strict=True)) for r in rows]
    return reports._page("usage", q, items, lambda r: (r["device"],))
