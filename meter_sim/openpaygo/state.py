"""The device's token memory: the highest count accepted and the recently used counts.

Invariants kept by `process_token`: `count` only moves forward (an older token never
lowers it, unlike the library README's `count = updated_count`, which re-opens replay),
and `used` holds the used counts in the window `[count - OLDER_WINDOW, count]`, `count`
included. The validator also treats `count` as used and ignores anything outside the
window, so a state read back from storage cannot re-open a token even if it breaks them.
"""

from __future__ import annotations

from dataclasses import dataclass

from meter_sim.errors import ConfigError

OLDER_WINDOW = 16
"""An ADD token up to 15 counts below the highest is still accepted once (8 older ADDs)."""


@dataclass(frozen=True, slots=True)
class TokenState:
    """Token counts as the device persists them."""

    count: int
    """Highest valid count seen."""
    used: frozenset[int]
    """Used counts within `[count - OLDER_WINDOW, count]`."""

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0:
            raise ConfigError(f"token count must be a non-negative integer, got {self.count!r}")

    @classmethod
    def initial(cls, count: int = 1) -> TokenState:
        """A freshly provisioned device: the initial count is itself used (as in the C code)."""
        return cls(count=count, used=frozenset({count}))

    def can_take_older(self, count: int) -> bool:
        """Whether an older ADD token at `count` is still unused and inside the window."""
        return self.count - OLDER_WINDOW < count < self.count and count not in self.used

    def after(self, count: int, *, closes_window: bool) -> TokenState:
        """The state once the token at `count` is accepted.

        A SET, DISABLE or SYNC token marks the whole window used, so no older ADD token can
        follow it (it was issued before a reset of the credit); an ADD marks only its count.
        """
        top = max(self.count, count)
        bottom = max(0, top - OLDER_WINDOW)
        if closes_window:
            used = frozenset(range(bottom, top + 1))
        else:
            used = frozenset(c for c in (*self.used, count, top) if bottom <= c <= top)
        return TokenState(count=top, used=used)
