"""Bugs built into the platform on purpose, so the lab's tests can prove its judge catches them.

A fault enters only through a constructor (`create_app(..., faults=...)`, `Store.open(...,
faults=...)`): no CLI flag or environment variable can switch one on, so a production server
cannot be broken by its surroundings. `Every` is the per-process "every Nth" counter a store
keeps for each periodic fault.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PlatformFaults:
    """Bugs built into a platform on purpose, so tests prove the judge catches them.
    Only a constructor takes them: no CLI flag or environment variable can switch one on."""

    replays_apply_again: bool = False
    """Idempotency off: a replayed key (handset op or operator txn) is applied again."""
    lose_ack_every: int = 0
    """Every Nth operation the store applies is acknowledged to the handset, but its effect is
    rolled back and it leaves no ops row (a lost ack); 0 = never."""
    apply_twice_every: int = 0
    """Every Nth keycode issued is issued twice: a second keycode (next message id, same days,
    same paying key, also sent down the handset's downlink) for one payment; 0 = never."""
    poison_batches: bool = False
    """A field error in one operation refuses the whole request (400 bad_field) instead of
    that operation alone: the poison-batch bug the conformance kit must catch."""
    credit_factor: int = 1
    """Keycodes grant credit_factor x the days paid for (clamped to what one keycode can
    express); the keycodes row records what the keycode really grants."""
    escrow_unaccounted: bool = False
    """An offline sale's reserved id is ignored: the sale is applied as an online one, so the
    escrowed code it released is never accounted and its days are paid out again."""

    def __post_init__(self) -> None:
        for flag in ("replays_apply_again", "poison_batches", "escrow_unaccounted"):
            if type(getattr(self, flag)) is not bool:
                raise ValueError(f"{flag} must be a bool, got {getattr(self, flag)!r}")
        for name in ("lose_ack_every", "apply_twice_every", "credit_factor"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        if self.credit_factor < 1:
            raise ValueError(f"credit_factor must be at least 1, got {self.credit_factor}")


class Every:
    """Counts events and says which ones are every Nth (never when N is 0)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0

    def hit(self) -> bool:
        if self.n == 0:
            return False
        self.count += 1
        return self.count % self.n == 0
