"""The per-(day, agent) rollup the sales and collections reports page through: which day an
event counts for and what it adds, so `Store` only upserts the numbers it is given, once per
(day, agent) and exchange (`Tally`) rather than once per operation."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

MM = "mm"  # payments.source of mobile money
AGENT = "agent"  # payments.source of cash taken by an agent
CHANNELS = {MM: "mobile_money", AGENT: "agent_cash"}


DAY_MS = 86_400_000


def day_of(ms: int) -> str:
    """The UTC calendar day of a millisecond timestamp, as reports group by it."""
    return _day(ms // DAY_MS)


@lru_cache(maxsize=64)
def _day(days: int) -> str:
    """Day number since the epoch to ISO date (a sync batch's operations share a few days)."""
    return datetime.fromtimestamp(days * (DAY_MS // 1000), UTC).date().isoformat()


def sale_rollup(down_payment: int) -> dict[str, int]:
    """One device sold, and its down payment."""
    return {"sales": 1, "down_payments": down_payment}


def payment_rollup(source: str, amount: int) -> dict[str, int]:
    """One payment after the sale, counted in total and under its channel."""
    channel = CHANNELS.get(source)
    if channel is None:
        raise ValueError(f"payment source {source!r} is none of {sorted(CHANNELS)}")
    return {"payments": 1, "amount": amount, channel: amount}


class Tally:
    """An exchange's rollup additions summed per (day, agent), so each rollup row is written
    once per exchange. An operation's additions are staged until it has applied (`keep`); one
    that is refused or rolled back is forgotten (`drop`). Additions are summed once, at the
    end (`kept`): keeping or dropping one is a mark in a list, not a sum per operation."""

    def __init__(self) -> None:
        self._added: list[tuple[str, int, dict[str, int]]] = []
        self._kept = 0  # how many of `_added` belong to applied operations; the rest is staged

    def add(self, day: str, agent: int, add: dict[str, int]) -> None:
        self._added.append((day, agent, add))

    def keep(self) -> None:
        self._kept = len(self._added)

    def drop(self) -> None:
        del self._added[self._kept :]

    @property
    def kept(self) -> dict[tuple[str, int], dict[str, int]]:
        """The kept additions summed per (day, agent)."""
        sums: dict[tuple[str, int], dict[str, int]] = {}
        for day, agent, add in self._added[: self._kept]:
            row = sums.setdefault((day, agent), {})
            for name, value in add.items():
                row[name] = row.get(name, 0) + value
        return sums
