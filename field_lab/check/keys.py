"""How the judge names what it checks: every operation and payment by its idempotency key."""

from __future__ import annotations

FIGURES = (
    "lost_ops",
    "duplicate_ops",
    "unexpected_ops",
    "overcredited_meters",
    "undercredited_meters",
    "duplicate_keycodes",
    "undelivered_keycodes",
    "pending_ops",
    "escrow_unaccounted",
    "escrow_accounted_twice",
    "credited_unsold_meters",
)
"""Every figure the judge gives (a count of violations, or None when unchecked)."""

MOBILE_MONEY = "mobile_money"
"""History kind of a payment made through the mobile-money operator (keyed by its txn)."""


def op_key(handset: int, seq: int) -> str:
    """A handset operation: (handset id, per-handset sequence number)."""
    return f"{handset}:{seq}"


def mm_key(txn: str) -> str:
    """An operator transaction."""
    return f"mm:{txn}"
