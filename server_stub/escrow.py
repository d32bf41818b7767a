"""The platform's escrow book, sans I/O: which activation codes each agent holds for offline
sales, and the exactly-once reconciliation of the sales that released them.

    book = EscrowBook(EscrowPolicy(devices=3, days=1))
    new = book.grant("ama", {20000001: 5, 20000002: 0})   # device -> its next message id/count
    # issue one keycode per reservation at r.reserved_id; the device's next id becomes r.next_id
    book.reconcile("ama", 20000001, 5, sale="7:12")          # the released code, once
    book.revoke(20000002)                                   # returned to stock / moved

A reservation is one add-credit code of `days` for a device in the agent's stock, at the
device's next message id (Nexus) or count (OpenPAYGO); the platform moves the device's next id
past it at once, so every later code continues after it whether or not it is ever released.
Exposure (days of credit an agent could hand out with no link) counts every reservation not
yet reconciled, and revoked ones until the handset has heard of the revocation; `grant` never
lets it pass `devices * days`. The book refuses, and flags, a code released twice, for a device
that is not the agent's, or after revocation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum

from .errors import SetupError


@dataclass(frozen=True, slots=True)
class EscrowPolicy:
    devices: int = 3
    """Devices per agent with an escrowed code at once."""
    days: int = 1
    """Days of credit one escrowed code grants (the customer's down payment pays the rest)."""

    def __post_init__(self) -> None:
        for name, value, high in (("devices", self.devices, 1000), ("days", self.days, 90)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
                raise SetupError(f"escrow {name} must be a whole number 0..{high}, got {value!r}")

    @property
    def bound_days(self) -> int:
        return self.devices * self.days


class State(Enum):
    HELD = "held"
    """On the handset, not (yet) reported released."""
    RECONCILED = "reconciled"
    REVOKED = "revoked"
    """Revoked; the handset may still hold it until it syncs past the revocation."""
    DROPPED = "dropped"
    """Revoked and the handset has heard: no longer exposure."""


class Flag(Enum):
    RELEASED_TWICE = "released_twice"
    NOT_IN_STOCK = "not_in_stock"
    AFTER_REVOCATION = "after_revocation"


@dataclass(frozen=True, slots=True)
class Reservation:
    agent: str
    device: int
    reserved_id: int
    days: int
    state: State = State.HELD
    sale: str | None = None
    """The sale (handset:seq) that released it, once reconciled."""

    @property
    def next_id(self) -> int:
        """The device's next message id / count once this one is reserved."""
        return self.reserved_id + 1


@dataclass(frozen=True, slots=True)
class Reconciled:
    ok: bool
    replay: bool = False
    """The same sale reported again: acknowledged, nothing applied a second time."""
    flag: Flag | None = None
    reservation: Reservation | None = None


@dataclass
class EscrowBook:
    policy: EscrowPolicy
    reservations: dict[tuple[int, int], Reservation] = field(default_factory=dict)
    """(device, reserved id) -> reservation, every one ever made."""
    flags: list[tuple[str, int, Flag]] = field(default_factory=list)

    def exposure(self, agent: str) -> int:
        """Days of credit `agent` could release with no link."""
        return sum(
            r.days
            for r in self.reservations.values()
            if r.agent == agent and r.state in (State.HELD, State.REVOKED)
        )

    def held(self, agent: str) -> list[Reservation]:
        return [r for r in self.reservations.values() if r.agent == agent and r.state is State.HELD]

    def grant(self, agent: str, stock: Mapping[int, int]) -> list[Reservation]:
        """Top `agent` up to the bound from `stock` (device -> next id), lowest serial first;
        the new reservations (the caller issues their codes and moves each device's next id)."""
        covered = {r.device for r in self.held(agent)}
        room = (self.policy.bound_days - self.exposure(agent)) // max(1, self.policy.days)
        made: list[Reservation] = []
        for device in sorted(stock):
            if len(made) >= room or self.policy.days == 0:
                break
            if device in covered:
                continue
            reservation = Reservation(agent, device, stock[device], self.policy.days)
            if (device, reservation.reserved_id) in self.reservations:
                raise SetupError(
                    f"device {device}: id {reservation.reserved_id} is reserved already; the"
                    " caller must move the device's next id past each reservation"
                )
            self.reservations[(device, reservation.reserved_id)] = reservation
            made.append(reservation)
        return made

    def reconcile(self, agent: str, device: int, reserved_id: int, sale: str) -> Reconciled:
        """A sale that released the code at (`device`, `reserved_id`) reached the platform."""
        found = self.reservations.get((device, reserved_id))
        if found is None or found.agent != agent:
            return self._flag(agent, device, Flag.NOT_IN_STOCK, found)
        if found.state is State.RECONCILED:
            if found.sale == sale:
                return Reconciled(True, replay=True, reservation=found)
            return self._flag(agent, device, Flag.RELEASED_TWICE, found)
        if found.state in (State.REVOKED, State.DROPPED):
            return self._flag(agent, device, Flag.AFTER_REVOCATION, found)
        done = replace(found, state=State.RECONCILED, sale=sale)
        self.reservations[(device, reserved_id)] = done
        return Reconciled(True, reservation=done)

    def revoke(self, device: int) -> list[Reservation]:
        """The device went back to stock or to another agent: its held codes are revoked."""
        revoked = []
        for key, r in self.reservations.items():
            if r.device == device and r.state is State.HELD:
                self.reservations[key] = revoked_one = replace(r, state=State.REVOKED)
                revoked.append(revoked_one)
        return revoked

    def heard(self, agent: str, device: int) -> None:
        """The agent's handset synced past the revocation: the code is no longer exposure."""
        for key, r in self.reservations.items():
            if r.agent == agent and r.device == device and r.state is State.REVOKED:
                self.reservations[key] = replace(r, state=State.DROPPED)

    def _flag(self, agent: str, device: int, flag: Flag, found: Reservation | None) -> Reconciled:
        self.flags.append((agent, device, flag))
        return Reconciled(False, flag=flag, reservation=found)
