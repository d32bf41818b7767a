"""Brute-force keycode entry against the meter's own rate limits: how often a random guess is
accepted (measured on the simulator with the limit off, bounded by the MAC width where no
guess succeeds), and the expected time to a first success with the limit on.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from meter_sim.meter import Meter
from meter_sim.outcomes import Outcome
from meter_sim.ratelimit import NexusRateLimit, OpenPaygoBlocking

YEAR = 365.25 * 86400


@dataclass(frozen=True)
class Guessing:
    protocol: str
    tried: int
    accepted: int
    p_bound: float
    """Per-guess success odds used: the measured rate, or the bound when it is higher."""
    bound_basis: str
    expected_guesses: float
    expected_seconds: float
    measured_seconds: float | None
    """The same with the measured odds alone, when some guess succeeded."""

    def summary(self) -> dict[str, object]:
        return {
            "protocol": self.protocol,
            "tried": self.tried,
            "accepted": self.accepted,
            "p_per_guess": self.p_bound,
            "bound": self.bound_basis,
            "expected_guesses": round(self.expected_guesses),
            "expected_days": round(self.expected_seconds / 86400, 1),
            "expected_years": round(self.expected_seconds / YEAR, 2),
            "measured_days": None
            if self.measured_seconds is None
            else round(self.measured_seconds / 86400, 1),
        }


def nexus_seconds(guesses: float, limit: NexusRateLimit) -> float:
    """A full bucket spends at once; after that one attempt per refill period."""
    return max(0.0, guesses - limit.bucket_max) * limit.refill_seconds


def openpaygo_seconds(guesses: float, policy: OpenPaygoBlocking) -> float:
    """Each invalid token beyond the free ones blocks entry for a doubling, capped, time."""
    whole = int(min(guesses, 10**7))
    capped_from = next(
        (n for n in range(1, whole) if policy.block_seconds(n) >= policy.max_block_seconds), whole
    )
    head = sum(policy.block_seconds(n) for n in range(1, min(capped_from, whole)))
    return head + max(0.0, guesses - capped_from) * policy.max_block_seconds


PROTOCOLS: dict[str, tuple[str, int, str, float, str]] = {
    # name: (symbols, length, frame, MAC-width bound, basis); frame "{}" is the body
    "nexus_full": ("0123456789", 14, "*{}#", 1e-6, "6-digit MAC: one body in 10^6"),
    "nexus_small": ("2345", 14, "1{}", 16 / 4096, "12-bit MAC, up to 16 window ids tried"),
    "openpaygo": ("0123456789", 9, "*{}#", 0.0, "rule of three on the guesses tried"),
}


def guessing(protocol: str, tries: int, seed: int = 1) -> Guessing:
    rng = random.Random(seed)
    symbols, length, frame, bound, basis = PROTOCOLS[protocol]
    make: Callable[[], Meter]
    if protocol == "openpaygo":
        make = lambda: Meter.openpaygo(rng.randbytes(16), rng.randrange(10**9), blocking=None)  # noqa: E731
    else:
        kind = protocol.removeprefix("nexus_")
        make = lambda: Meter.nexus(rng.randbytes(16), kind, rate_limit=None)  # noqa: E731
    meter, accepted = make(), 0
    for i in range(tries):
        code = frame.format("".join(rng.choice(symbols) for _ in range(length)))
        if meter.enter_keycode(code, float(i)).outcome is Outcome.APPLIED:
            accepted += 1
            meter = make()  # a fresh device: the attack starts over
    p = max(accepted / tries, bound, 3 / tries if protocol == "openpaygo" and not accepted else 0)

    def seconds(guesses: float) -> float:
        if protocol == "openpaygo":
            return openpaygo_seconds(guesses, OpenPaygoBlocking())
        return nexus_seconds(guesses, NexusRateLimit())

    measured = seconds(tries / accepted) if accepted else None
    if p == accepted / tries:
        basis = f"measured: {accepted} accepted of {tries}"
    return Guessing(protocol, tries, accepted, p, basis, 1 / p, seconds(1 / p), measured)
