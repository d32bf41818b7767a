"""PAYG credit on the device clock.

Credit is held as the clock reading at which it runs out, not as a counter the device
decrements: the same thing for a monotonic clock, and it needs no periodic writes to survive
a power cut (the reference product backs its counter up hourly and loses up to an hour).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from meter_sim.actions import Action, AddCredit, SetCredit
from meter_sim.frozen import maker
from meter_sim.outcomes import PaygState

_UNLOCKED, _ENABLED, _DISABLED = PaygState.UNLOCKED, PaygState.ENABLED, PaygState.DISABLED
"""Members read once: on Python 3.11 every `PaygState.X` goes through `EnumType.__getattr__`
(about 900 instructions, a hundredth of a validation), a module global costs a tenth of that."""


@dataclass(frozen=True, slots=True)
class Credit:
    until: float = 0.0
    """Device-clock second at which credit runs out (meaningless while unlocked)."""
    unlocked: bool = False

    def remaining(self, now: float) -> float:
        if self.unlocked:
            return math.inf
        left = self.until - now
        return left if left > 0.0 else 0.0  # max(0.0, left) without the builtin call

    def state(self, now: float) -> PaygState:
        if self.unlocked:
            return _UNLOCKED
        return _ENABLED if self.until > now else _DISABLED

    def reading(self, now: float) -> tuple[float, PaygState]:
        """`(remaining(now), state(now))` at once: what every `Result` reports."""
        if self.unlocked:
            return math.inf, _UNLOCKED
        left = self.until - now
        if left > 0.0:
            return left, _ENABLED
        return 0.0, _DISABLED

    def apply(self, action: Action, now: float) -> Credit:
        """Nexus product semantics: add keeps an unlock, set relocks, unlock zeroes credit."""
        # isinstance, not `match`: this runs for every applied code and the class patterns
        # cost more than the rest of the method.
        if isinstance(action, AddCredit):
            until = self.until
            return _credit((until if until >= now else now) + action.seconds, self.unlocked)
        if isinstance(action, SetCredit):
            return Credit(until=now + action.seconds, unlocked=False)
        return Credit(until=now, unlocked=True)


_credit = maker(Credit)
