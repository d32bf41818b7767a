"""Sales and payments: whether an operation may happen, and what it changes when it may.

Each function takes the state the store read for one operation and returns the effect to
write, or raises `Refused` with the reason the handset gets (the rest of its batch goes on).
"""

from __future__ import annotations

from typing import NamedTuple

from agent_client.protocol.frames import Reason, Stock
from agent_client.protocol.keycodes import KeycodeFormat

from ..callbacks import Outcome
from .rollup import AGENT, day_of, payment_rollup, sale_rollup


class Refused(Exception):
    """One operation refused for a business reason; nothing of it is kept."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason.name)
        self.reason = reason


class InStock(NamedTuple):
    """A device as a sale sees it."""

    agent: int | None  # whose stock it is in (None: registered to nobody)
    customer: int | None  # who bought it (None: unsold)
    format: KeycodeFormat


class Sale(NamedTuple):
    """A device handed to a customer: who, for how much, counted on which day."""

    device: int
    customer: int
    plan: int
    price_per_day: int
    balance: int  # the down payment, to be turned into days
    day: str
    rollup: dict[str, int]
    gone: Stock  # what every handset of the agent is told: no longer in stock


class Paid(NamedTuple):
    """Money for a sold device: its balance grows and the collections ledger records it."""

    device: int
    agent: int
    source: str
    ref: str
    amount: int
    day: str
    rollup: dict[str, int]


def sale(
    agent: int,
    device: int,
    plan: int,
    down_payment: int,
    at_s: int,
    customer: int | None,
    price_per_day: int | None,
    stock: InStock | None,
) -> Sale:
    """A sale by `agent`: the customer must be its handset's, the plan its distributor's,
    the device in its stock and unsold, and the down payment must buy at least a day."""
    if customer is None:
        raise Refused(Reason.UNKNOWN_CUSTOMER)
    if price_per_day is None:
        raise Refused(Reason.UNKNOWN_PLAN)
    if stock is None or stock.agent != agent:
        raise Refused(Reason.NOT_IN_STOCK)
    if stock.customer is not None:
        raise Refused(Reason.ALREADY_SOLD)
    if down_payment < price_per_day:
        raise Refused(Reason.AMOUNT_TOO_LOW)
    return Sale(
        device,
        customer,
        plan,
        price_per_day,
        down_payment,
        day_of(at_s * 1000),
        sale_rollup(down_payment),
        Stock(device, stock.format, False),
    )


def payment(device: int, agent: int, source: str, ref: str, amount: int, at_ms: int) -> Paid:
    """A payment for a sold device, counted on the day it was paid."""
    return Paid(device, agent, source, ref, amount, day_of(at_ms), payment_rollup(source, amount))


def cash_payment(
    sold_by_agent: bool, device: int, agent: int, handset: int, seq: int, amount: int, at_s: int
) -> Paid:
    """Cash an agent took: only for a device one of the agent's handsets sold. Its reference
    is the operation's key, so the ledger row names what paid."""
    if not sold_by_agent:
        raise Refused(Reason.UNKNOWN_ACCOUNT)
    return payment(device, agent, AGENT, f"{handset}:{seq}", amount, at_s * 1000)


def mobile_money_outcome(status: str, sold: bool) -> Outcome:
    """What an operator callback does: a failed payment credits nothing, nor does one for an
    account no customer bought; the rest is confirmed."""
    if status != "success":
        return Outcome.FAILED
    if not sold:
        return Outcome.UNKNOWN_ACCOUNT
    return Outcome.CONFIRMED


def keycode_sms(device: int, keycode: str) -> str:
    """The SMS that tells a paying customer the keycode to enter."""
    return f"PAYG {device}: enter {keycode}"
