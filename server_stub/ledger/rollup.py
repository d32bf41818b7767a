"""The per-(day, agent) rollup the sales and collections reports page through: which day an
event counts for and what it adds, so `Store` only upserts the numbers it is given."""

from __future__ import annotations

from datetime import UTC, datetime

MM = "mm"  # payments.source of mobile money
AGENT = "agent"  # payments.source of cash taken by an agent
CHANNELS = {MM: "mobile_money", AGENT: "agent_cash"}


def day_of(ms: int) -> str:
    """The UTC calendar day of a millisecond timestamp, as reports group by it."""
    return datetime.fromtimestamp(ms / 1000, UTC).date().isoformat()


def sale_rollup(down_payment: int) -> dict[str, int]:
    """One device sold, and its down payment."""
    return {"sales": 1, "down_payments": down_payment}


def payment_rollup(source: str, amount: int) -> dict[str, int]:
    """One payment after the sale, counted in total and under its channel."""
    channel = CHANNELS.get(source)
    if channel is None:
        raise ValueError(f"payment source {source!r} is none of {sorted(CHANNELS)}")
    return {"payments": 1, "amount": amount, channel: amount}
