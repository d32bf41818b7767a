"""A customer's home in the simulated month: the real meter, the person typing codes into it,
and the record of each payment's way to it (for `darkness`).

The meter (`meter_sim`) is touched only when a code is typed: between codes its credit simply
runs down on the virtual clock, so when its output went off is known without polling it
(`lit_until`). A payment's way is kept as moments (paid, callback sent, keycode issued, code
reached the customer, applied) and turned into contiguous `Stage`s at the end.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from field_lab.simulate.darkness import Dark, Delivery, Stage
from meter_sim import Outcome
from meter_sim.trace.recorder import MeterLike

RATE_LIMIT_WAIT_S = 720.0
"""A rate-limited keypad refills one attempt in this long (meter_sim's Nexus rule)."""
MAX_TRIES = 6


@dataclass
class Paid:
    """One payment (or sale) and the moments of its way to the meter (simulated seconds)."""

    key: str
    paid_at: float
    mobile: bool
    agent_scope: str
    village_scope: str
    via: str
    """How the code is expected to come ("sms" or "agent"); the first that does says."""
    sent_at: float | None = None
    """Mobile money: the operator's first callback attempt."""
    issued_at: float | None = None
    """Mobile money: the platform issued the keycode (the callback it accepted)."""
    reached_at: float | None = None
    applied_at: float | None = None

    def delivery(self, meter: str, base: float, end: float) -> Delivery:
        """The stages from paying to the code applied (or to `end`), relative to `base`."""
        scope = self.village_scope if self.via == "sms" else self.agent_scope
        plan: list[tuple[str, str, str, float | None]] = []
        if self.mobile:
            plan += [("operator", "", "", self.sent_at), ("platform", "", "", self.issued_at)]
        plan += [("delivery", self.via, scope, self.reached_at), ("entry", "", "", self.applied_at)]
        stages: list[Stage] = []
        t = self.paid_at
        for name, via, where, until in plan:
            stop = end if until is None else min(max(until, t), end)
            stages.append(Stage(name, t - base, stop - base, via, where))
            t = stop
            if until is None or t >= end:
                break
        applied = self.applied_at if self.applied_at is not None and self.applied_at < end else None
        return Delivery(
            meter, self.paid_at - base, None if applied is None else applied - base, tuple(stages)
        )


@dataclass(frozen=True, slots=True)
class Keyed:
    """One code at the keypad and what the meter made of it (evidence for failed checks)."""

    at: float
    text: str
    via: str
    outcome: str
    """The meter's outcome, or `not retyped`: the customer had typed this text before."""
    reason: str
    credit_s: float
    """Credit the meter added for it."""


@dataclass
class Household:
    serial: int
    meter: MeterLike
    village: int
    agent: int
    reads_sms: bool
    seconds_per_key: float
    lit_until: float = 0.0
    granted: float = 0.0
    """Credit seconds the meter granted for applied codes (the judge's evidence)."""
    dark: list[tuple[float, float]] = field(default_factory=list)
    paid: list[Paid] = field(default_factory=list)
    by_op: dict[str, Paid] = field(default_factory=dict)
    mobile_waiting: deque[Paid] = field(default_factory=deque)
    typed: set[str] = field(default_factory=set)
    keyed: list[Keyed] = field(default_factory=list)
    rejected: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def expect(self, paid: Paid) -> None:
        self.paid.append(paid)
        if paid.mobile:
            self.mobile_waiting.append(paid)
        else:
            self.by_op[paid.key] = paid

    def _payment_for(self, op_key: str | None) -> Paid | None:
        if op_key is not None:
            return self.by_op.get(op_key)
        for paid in self.mobile_waiting:
            if paid.reached_at is None:
                return paid
        return None

    async def reached(self, text: str, via: str, op_key: str | None, *, instant: bool) -> None:
        """A code reached the customer (by SMS, or from the agent); they type it once."""
        loop = asyncio.get_running_loop()
        if text in self.typed:
            self.keyed.append(Keyed(loop.time(), text, via, "not retyped", "", 0.0))
            return
        self.typed.add(text)
        paid = self._payment_for(op_key)
        if paid is not None and paid.reached_at is None:
            paid.reached_at, paid.via = loop.time(), via
        async with self.lock:
            for _ in range(MAX_TRIES):
                if not instant:
                    await asyncio.sleep(
                        (sum(ch.isdigit() for ch in text) + 1) * self.seconds_per_key
                    )
                now = loop.time()
                before = self.meter.credit_remaining(now)
                result = self.meter.enter_keycode(text, now)
                outcome, gained = result.outcome, 0.0
                if outcome is Outcome.APPLIED:
                    gained = self._applied(now, before, paid)
                elif outcome is Outcome.INVALID:
                    self.rejected += 1
                self.keyed.append(Keyed(now, text, via, outcome.value, result.reason, gained))
                if outcome is Outcome.RATE_LIMITED:
                    await asyncio.sleep(RATE_LIMIT_WAIT_S)
                    continue
                return

    def _applied(self, now: float, before: float, paid: Paid | None) -> float:
        """Book an applied code; the credit it added."""
        after = self.meter.credit_remaining(now)
        self.granted += after - before
        if before <= 0 and now > self.lit_until:
            self.dark.append((self.lit_until, now))
        self.lit_until = now + after
        if paid is not None and paid.applied_at is None:
            paid.applied_at = now
            if paid.mobile and paid in self.mobile_waiting:
                self.mobile_waiting.remove(paid)
        return after - before

    def dark_intervals(self, base: float, end: float) -> list[Dark]:
        """When the output was off within [base, end), relative to `base`."""
        spans = [*self.dark, (self.lit_until, end)]
        meter = str(self.serial)
        return [
            Dark(meter, max(s, base) - base, min(e, end) - base)
            for s, e in spans
            if min(e, end) > max(s, base)
        ]

    def deliveries(self, base: float, end: float) -> list[Delivery]:
        meter = str(self.serial)
        return [
            p.delivery(meter, base, end) for p in self.paid if p.paid_at >= base and p.paid_at < end
        ]
