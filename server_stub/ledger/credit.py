"""Money into meter time: how many days a device's unspent balance buys, what that costs, and
the keycodes (message ids for Nexus, counts for OpenPAYGO, strictly in order) that grant them.

Two steps so that a caller can decide between them (the apply-twice fault is counted only when
there is something to credit): `grant` says whether the balance buys any day, `credit` writes
the keycodes for a grant. Both are pure; the keycode encoders are `server_stub.keycodes`.
"""

from __future__ import annotations

from typing import NamedTuple

from agent_client.protocol.frames import Keycode

from ..keycodes import DeviceSecret, Issued, creditable_days, issue


class Account(NamedTuple):
    """A sold device's credit state, as the store holds it."""

    device: int
    secret: DeviceSecret
    next_id: int  # message id (Nexus) or count (OpenPAYGO) of its next keycode
    balance: int  # paid but not yet turned into days
    price_per_day: int
    credit_until_ms: int  # the platform's view of paid-up time


class Grant(NamedTuple):
    days: int  # what each keycode grants
    spent: int  # what it costs the balance: the days paid for, never the days granted


class Credit(NamedTuple):
    """What the store writes: the keycodes in order, and the device's new state."""

    grant: Grant
    codes: tuple[tuple[int, Issued], ...]  # (message id or count used, the keycode)
    next_id: int
    balance: int
    credit_until_ms: int

    def entry(self, issued: Issued, op_seq: int, account: Account) -> Keycode:
        """The downlink entry that carries one of the keycodes to a handset."""
        return Keycode(
            op_seq, account.device, account.secret.format, issued.number, issued.credit_s
        )


def grant(account: Account, factor: int = 1) -> Grant | None:
    """The days the balance pays for (as many as one keycode expresses), or None for none.

    Correct: exactly the days paid for. `factor` > 1 is the credit-factor fault: it grants
    more, clamped to what one keycode can express, and never below the days paid for
    (`creditable_days` is monotone)."""
    if account.price_per_day < 1:
        raise ValueError(f"price per day must be positive, got {account.price_per_day}")
    fmt, divider = account.secret.format, account.secret.time_divider
    paid = creditable_days(fmt, max(0, account.balance) // account.price_per_day, divider)
    if paid == 0:
        return None
    granted = paid if factor == 1 else creditable_days(fmt, paid * factor, divider)
    return Grant(granted, paid * account.price_per_day)


def credit(account: Account, given: Grant, now_ms: int, copies: int = 1) -> Credit:
    """The keycodes for `given`: one when correct; `copies` > 1 is the apply-twice fault (the
    same payment issued again under the next ids). Credit stacks on what is left, or starts
    now when the device has run out."""
    if copies < 1:
        raise ValueError(f"copies must be at least 1, got {copies}")
    issued = issue(account.secret, account.next_id, given.days)
    codes = [(account.next_id, issued)]
    for _ in range(copies - 1):  # the fault's copies, each under the next id
        codes.append((issued.next_id, issue(account.secret, issued.next_id, given.days)))
        issued = codes[-1][1]
    return Credit(
        given,
        tuple(codes),
        issued.next_id,
        account.balance - given.spent,
        max(account.credit_until_ms, now_ms) + issued.credit_s * 1000 * copies,  # alike
    )
