"""What the store thread remembers between transactions, so a sync exchange does not re-read it.

At hundreds of exchanges a second each SQL statement costs (the store thread is the platform's
bottleneck), and several of an exchange's statements re-read what the store itself wrote or
what never changes: the handset row, each handset's last downlink number, the entries it has
not yet fetched, the agent's handsets, a plan's price, whether a handset has mobile-money
keycodes still travelling, the customer a sale names (usually registered in the same batch),
a device's keys, whether any escrowed code is held at all. The memo keeps those.

It is only ever a copy of committed-or-current-transaction state, and two rules keep it so:
any rollback forgets everything (`clear`), and a write by another connection (the CLI on the
same file, another worker), seen as a changed ``PRAGMA data_version`` when a transaction
starts, forgets everything another writer could have changed (`seen`). What no writer ever
changes stays: a handset's agent and public key, a registered customer, a plan's price, a
device's keys. A handset's last accepted stamp stays too, as a lower bound: stamps only grow,
and the store's update of it checks the table's (`Store._fresh`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent_client.protocol.frames import Entry

from .keycodes import DeviceSecret

TAIL_LIMIT = 1024
"""Entries remembered per handset past its cursor; past that the page is read from SQL."""
ROWS_LIMIT = 65_536
"""Customers and device keys remembered; past that they are forgotten and read again."""


@dataclass
class Memo:
    data_version: int | None = None
    handsets: dict[int, tuple[int, bytes, int]] = field(default_factory=dict)
    """handset -> (agent, public key, last accepted request stamp: at most the table's)"""
    last_n: dict[int, int] = field(default_factory=dict)
    """handset -> number of its last downlink entry"""
    tails: dict[int, dict[int, Entry]] = field(default_factory=dict)
    """handset -> its downlink entries from some number on to `last_n` (no gaps)"""
    siblings: dict[int, tuple[int, ...]] = field(default_factory=dict)
    """agent -> its handsets, ascending"""
    prices: dict[tuple[int, int], int] = field(default_factory=dict)
    """(plan, agent) -> price per day, for plans in the agent's distributor's catalog"""
    unsynced: set[int] | None = None
    """handsets with mobile-money keycodes not yet confirmed stored; None: not loaded"""
    customers: dict[tuple[int, int], int] = field(default_factory=dict)
    """(handset, seq of its registration) -> customer id"""
    secrets: dict[int, DeviceSecret] = field(default_factory=dict)
    """device -> its keys (format, key, OpenPAYGO starting code and divider)"""
    escrow_held: bool | None = None
    """whether any escrowed code is held (an online sale revokes its device's); None: unknown"""
    paid: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    """sold device -> what a payment reads of it (`store._PAID`'s row: the selling handset,
    its agent, the device, its keys, next id, balance, price per day, credit until), kept
    as the store writes it"""

    def clear(self) -> None:
        """Forget everything (a rollback: any of it may have been undone)."""
        self.handsets.clear()
        self.prices.clear()
        self.customers.clear()
        self.secrets.clear()
        self.forget_mutable()

    def forget_mutable(self) -> None:
        """Forget what another writer may change: downlinks, an agent's handsets, mobile-money
        keycodes in flight, escrow, devices' credit state."""
        self.last_n.clear()
        self.tails.clear()
        self.siblings.clear()
        self.unsynced = None
        self.escrow_held = None
        self.paid.clear()

    def seen(self, data_version: int) -> None:
        """Another connection committed since the last look: forget what it may have changed
        (a handset's stamp is kept as what it is: a lower bound)."""
        if data_version != self.data_version:
            self.forget_mutable()
            self.data_version = data_version

    def remember_paid(self, device: int, row: tuple[Any, ...]) -> None:
        if len(self.paid) >= ROWS_LIMIT:
            self.paid.clear()
        self.paid[device] = row

    def registered(self, handset: int, seq: int, customer: int) -> None:
        if len(self.customers) >= ROWS_LIMIT:
            self.customers.clear()
        self.customers[handset, seq] = customer

    def remember_secret(self, device: int, secret: DeviceSecret) -> None:
        if len(self.secrets) >= ROWS_LIMIT:
            self.secrets.clear()
        self.secrets[device] = secret

    def emitted(self, handset: int, n: int, entry: Entry) -> None:
        self.last_n[handset] = n
        tail = self.tails.get(handset)
        if tail is None:
            if n == 1:  # the whole downlink of a new handset is known
                self.tails[handset] = {n: entry}
            return
        if len(tail) >= TAIL_LIMIT:  # a handset that stopped syncing: read it from SQL
            del self.tails[handset]
        else:
            tail[n] = entry

    def page(self, handset: int, cursor: int, limit: int) -> tuple[tuple[Entry, ...], bool] | None:
        """The entries past `cursor` (at most `limit`) and whether more follow, when every one
        is remembered; None otherwise. Entries at or below the cursor are dropped: the
        handset has them."""
        tail = self.tails.get(handset)
        last = self.last_n.get(handset)
        if tail is None or last is None:
            return None
        for n in [n for n in tail if n <= cursor]:
            del tail[n]
        if cursor < last and cursor + 1 not in tail:
            return None
        upto = min(last, cursor + limit)
        return tuple(tail[n] for n in range(cursor + 1, upto + 1)), last > upto

    def start_tail(self, handset: int, rows: list[tuple[int, Entry]], more: bool) -> None:
        """A page read from SQL (numbered entries) that reached the handset's last entry:
        remember from there on. An empty page proves nothing (the cursor may be past the
        end), so it starts nothing."""
        if rows and not more:
            self.last_n[handset] = rows[-1][0]
            self.tails[handset] = dict(rows)
