"""A customer's home: the meter, the person typing keycodes into it, and what they are owed.

Keycodes reach a site by SMS or through the agent's handset; the customer types each new one
(in the order received, at their typing speed, sometimes with a typo that costs an attempt)
and the site records when each operation's keycode was applied, and how much credit the meter
granted: the numbers the activation latency and the credit checker are made of.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent_client.protocol.keycodes import KeycodeFormat
from field_lab.scenario import Scenario
from field_lab.world.clock import LabClock
from meter_sim import Meter, Outcome
from meter_sim.trace.recorder import MeterLike
from server_stub.keycodes import DeviceSecret

if TYPE_CHECKING:
    from field_lab.workload.behaviour import CustomerBehaviour
    from field_lab.world.fixture import Fixture
    from field_lab.world.traces import TraceBook

BY_OPERATOR = "by-operator"
"""Settles-key of a keycode paid through the operator: neither the SMS nor the handset's
downlink says which payment it was for, so it settles this site's oldest waiting one."""
MAX_TRIES = 6
"""A customer gives up on one keycode after this many rate-limited or mistyped attempts."""


def meter_for(secret: DeviceSecret, now: float) -> Meter:
    """The meter a device secret makes: the one place the lab turns a secret into a meter."""
    match secret.format:
        case KeycodeFormat.NEXUS_FULL:
            return Meter.nexus(secret.key, "full", now=now)
        case KeycodeFormat.NEXUS_SMALL:
            return Meter.nexus(secret.key, "small", now=now)
        case _:
            return Meter.openpaygo(
                secret.key,
                secret.starting_code,
                restricted_digits=secret.format is KeycodeFormat.OPENPAYGO_RESTRICTED,
                time_divider=secret.time_divider,
                now=now,
            )


def typo(text: str, rng: random.Random) -> str:
    """The same code with one key typed wrong (a key that exists on the keypad)."""
    positions = [i for i, ch in enumerate(text) if ch.isdigit()]
    if text.startswith("1") and len(text) == 15:  # Nexus small: keys after the leading 1
        positions = positions[1:]
    i = rng.choice(positions)
    alphabet = "2345" if len(text) == 15 and text.startswith("1") else "0123456789"
    wrong = rng.choice([c for c in alphabet if c != text[i]])
    return text[:i] + wrong + text[i + 1 :]


@dataclass
class Waiter:
    """An operation whose keycode somebody is waiting to see applied."""

    key: str
    kind: str
    intended: float
    """Real seconds (lab clock) at which the action was planned to start."""
    applied_at: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Site:
    serial: int
    secret: DeviceSecret
    agent: int
    """Index of the agent whose stock the device came from."""
    meter: MeterLike
    rng: random.Random
    phone: str = ""
    reads_sms: bool = True
    """Whether the customer gets keycodes by SMS (otherwise only through the agent)."""
    mm_waiting: deque[str] = field(default_factory=deque)
    """Mobile-money payments waiting for their keycode, oldest first."""
    sold: bool = False
    granted: float = 0.0
    """Credit seconds granted by the meter for applied keycodes."""
    typed: set[str] = field(default_factory=set)
    waiters: dict[str, Waiter] = field(default_factory=dict)
    rejected_codes: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    by_link: dict[str, float] = field(default_factory=dict)
    """Keycodes the meter took from its own link (a Metrics answer), with the lab time: when
    the same code reaches the customer it settles its operation without being typed."""

    def expect(self, key: str, kind: str, intended: float) -> Waiter:
        waiter = Waiter(key, kind, intended)
        self.waiters[key] = waiter
        return waiter

    def _settles(self, key: str | None) -> Waiter | None:
        """The operation an applied keycode settles; mobile-money codes settle in order."""
        if key != BY_OPERATOR:
            return self.waiters.get(key) if key is not None else None
        while self.mm_waiting:
            waiter = self.waiters.get(self.mm_waiting.popleft())
            if waiter is not None and waiter.applied_at is None:
                return waiter
        return None

    def _settle(self, key: str | None, at: float) -> None:
        waiter = self._settles(key)
        if waiter is not None and waiter.applied_at is None:
            waiter.applied_at = at
            waiter.done.set()

    async def type_code(
        self,
        text: str,
        key: str | None,
        clock: LabClock,
        *,
        seconds_per_key: float,
        typo_rate: float,
        instant: bool = False,
    ) -> Outcome | None:
        """Type one keycode unless it was typed already; return the meter's last answer."""
        if text in self.typed:
            return None
        self.typed.add(text)
        async with self.lock:
            if text in self.by_link:
                self._settle(key, self.by_link[text])
                return None
            keys = sum(ch.isdigit() for ch in text) + 1
            outcome: Outcome | None = None
            for _ in range(MAX_TRIES):
                attempt = text
                if not instant:
                    await asyncio.sleep(keys * seconds_per_key)
                    if self.rng.random() < typo_rate:
                        attempt = typo(text, self.rng)
                now = clock.meter()
                before = self.meter.credit_remaining(now)
                result = self.meter.enter_keycode(attempt, now)
                outcome = result.outcome
                if outcome is Outcome.RATE_LIMITED:
                    await asyncio.sleep(clock.real_seconds(720.0) + 0.05)
                    continue
                if attempt != text:
                    continue  # the mistyped code was refused (or, rarely, not): type it again
                if outcome is Outcome.APPLIED:
                    self.granted += self.meter.credit_remaining(now) - before
                    self._settle(key, clock.real())
                elif outcome is Outcome.INVALID:
                    self.rejected_codes += 1
                return outcome
            return outcome


def build_sites(
    fixture: Fixture,
    scenario: Scenario,
    agents: int,
    customer: CustomerBehaviour,
    traces: TraceBook | None = None,
    keep: Callable[[int], bool] | None = None,
) -> dict[int, Site]:
    """A site for every device in the first `agents` agents' stock (meters at device time 0);
    with `keep`, only for the agents it keeps (a shard's), the customers' habits drawn the
    same as for the whole fleet."""
    rng = random.Random(f"{scenario.seed}:sms")
    sites: dict[int, Site] = {}
    for index, spec in enumerate(fixture.agents[:agents]):
        for serial in spec.devices:
            reads_sms = customer.reads_sms(rng)
            if keep is not None and not keep(index):
                continue
            secret = fixture.secrets[serial]
            meter = traces.recorder(serial, secret, 0.0) if traces else meter_for(secret, 0.0)
            sites[serial] = Site(
                serial,
                secret,
                index,
                meter,
                random.Random(f"{scenario.seed}:customer:{serial}"),
                phone=phone_of(serial),
                reads_sms=reads_sms,
            )
    return sites


def phone_of(serial: int) -> str:
    """The customer's phone number (one customer per device)."""
    return f"+2335{serial % 10**8:08d}"


def credit_granted(
    secret: DeviceSecret, keycodes: Sequence[str], *, spacing_s: float = 720.0
) -> float:
    """Credit seconds a fresh meter for `secret` grants when every keycode is typed into it in
    this order, `spacing_s` apart (one rate-limit refill each, so none is refused for speed).
    What the meter says, not what the platform says it issued."""
    meter = meter_for(secret, 0.0)
    granted, now = 0.0, 0.0
    for text in keycodes:
        outcome, before = Outcome.RATE_LIMITED, 0.0
        for _ in range(MAX_TRIES):
            now += spacing_s
            before = meter.credit_remaining(now)
            outcome = meter.enter_keycode(text, now).outcome
            if outcome is not Outcome.RATE_LIMITED:
                break
        if outcome is Outcome.APPLIED:
            granted += meter.credit_remaining(now) - before
    return granted
