"""What agents and customers do, as classes a user can write: the behaviour API.

In the spirit of Locust's `User`, but open loop and seeded: a behaviour plans its actions up
front from a random generator the lab gives it (one per agent, one per customer, derived from
the run's seed), and the lab starts each action at its planned time whether or not the last
one finished. A behaviour decides; the lab does the recording, the syncing and the measuring.

    class MarketDayAgent:
        '''Visits only in the morning rush, syncs only at the end of the day.'''
        sync_on_record = False
        sync_every_s = None

        def __init__(self, *, scenario: Scenario) -> None:
            self.visit_s = scenario.agents.visit_s

        def visits(self, rng: random.Random, duration_s: float) -> list[float]:
            return sorted(rng.uniform(0, duration_s / 3) for _ in range(5))

        def down_payment_days(self, rng: random.Random) -> int:
            return 7

A scenario names behaviours by import path (`[agents] behaviour = "mypkg.habits:MarketDayAgent"`,
`[customers] behaviour = ...`), and so does `field-lab run --behaviour MODULE:CLASS`. The lab
builds one instance per run with the scenario as its only (keyword) argument.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from field_lab.errors import ConfigError
from field_lab.scenario import Scenario


@runtime_checkable
class AgentBehaviour(Protocol):
    """One kind of agent: when they visit new customers, what they sell, when they sync."""

    sync_on_record: bool
    """Sync as soon as a sale or a cash payment is recorded (when the link allows)."""
    sync_every_s: float | None
    """Also sync on this interval (to fetch keycodes for their customers); None: never."""
    visit_s: float
    """How long the agent stays with a new customer, waiting for the light to come on."""

    def visits(self, rng: random.Random, duration_s: float) -> Sequence[float]:
        """Seconds into the field phase at which this agent starts a visit (any order)."""
        ...

    def down_payment_days(self, rng: random.Random) -> int:
        """Days of credit the down payment of a sale buys (at least 1)."""
        ...


@runtime_checkable
class CustomerBehaviour(Protocol):
    """One kind of customer with a device already installed: when and how they pay, how they
    type keycodes."""

    seconds_per_key: float
    typo_rate: float
    """Chance that a keycode is mistyped once (a refused attempt, then retyped)."""

    def payments(self, rng: random.Random, duration_s: float) -> Sequence[float]:
        """Seconds into the field phase at which this customer pays."""
        ...

    def by_mobile_money(self, rng: random.Random) -> bool:
        """True: pays the operator (who calls the platform); False: pays their agent cash."""
        ...

    def days(self, rng: random.Random) -> int:
        """Days of credit one payment buys (at least 1)."""
        ...

    def reads_sms(self, rng: random.Random) -> bool:
        """Whether this customer gets keycodes by SMS (decided once per customer)."""
        ...


def poisson_times(rng: random.Random, rate_per_s: float, start: float, end: float) -> list[float]:
    """Arrival times of a Poisson process with `rate_per_s` in [start, end)."""
    times: list[float] = []
    t = start
    if rate_per_s <= 0:
        return times
    while True:
        t += rng.expovariate(rate_per_s)
        if t >= end:
            return times
        times.append(t)


class FieldAgent:
    """The built-in agent: Poisson visits at `visits_per_hour`, a down payment of 1-3 days,
    sync on every recording and every `sync_interval_s`."""

    sync_on_record = True

    def __init__(self, *, scenario: Scenario) -> None:
        self.rate_per_s = scenario.agents.visits_per_hour / 3600
        self.visit_s = scenario.agents.visit_s
        self.sync_every_s: float | None = scenario.agents.sync_interval_s

    def visits(self, rng: random.Random, duration_s: float) -> list[float]:
        return poisson_times(rng, self.rate_per_s, 0.0, duration_s)

    def down_payment_days(self, rng: random.Random) -> int:
        return rng.randint(1, 3)


class FieldCustomer:
    """The built-in customer: Poisson payments at `payments_per_hour`, 1-3 days each, by
    mobile money with `mobile_money_share`, keycodes by SMS with `sms_share`."""

    def __init__(self, *, scenario: Scenario) -> None:
        c = scenario.customers
        self.rate_per_s = c.payments_per_hour / 3600
        self.mobile_money_share = c.mobile_money_share
        self.sms_share = c.sms_share
        self.seconds_per_key = c.seconds_per_key
        self.typo_rate = c.typo_rate

    def payments(self, rng: random.Random, duration_s: float) -> list[float]:
        return poisson_times(rng, self.rate_per_s, 0.0, duration_s)

    def by_mobile_money(self, rng: random.Random) -> bool:
        return rng.random() < self.mobile_money_share

    def days(self, rng: random.Random) -> int:
        return rng.randint(1, 3)

    def reads_sms(self, rng: random.Random) -> bool:
        return rng.random() < self.sms_share


def load_class(path: str, what: str) -> type:
    """`module.sub:Class` to the class, with an error that says what is wrong with the path."""
    module_name, sep, name = path.partition(":")
    if not sep or not module_name or not name.isidentifier():
        raise ConfigError(f"{what}: expected MODULE:CLASS (e.g. mypkg.habits:Day), got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{what}: cannot import {module_name!r}: {exc}") from exc
    found = getattr(module, name, None)
    if not isinstance(found, type):
        raise ConfigError(f"{what}: {module_name!r} has no class {name!r}")
    return found


def _build(path: str, default: type, kind: type, what: str, scenario: Scenario) -> object:
    """An instance of the behaviour at `path` (or `default`), checked against its protocol."""
    cls = load_class(path, what) if path else default
    try:
        made: object = cls(scenario=scenario)
    except TypeError as exc:
        raise ConfigError(f"{what}: {cls.__qualname__}(*, scenario) failed: {exc}") from exc
    if not isinstance(made, kind):
        wanted = set(kind.__annotations__) | {
            n for n, v in vars(kind).items() if callable(v) and not n.startswith("_")
        }
        missing = ", ".join(sorted(n for n in wanted if not hasattr(made, n)))
        raise ConfigError(f"{what}: {cls.__qualname__} is not an {kind.__name__}; lacks {missing}")
    return made


def agent_behaviour(scenario: Scenario, path: str | None = None) -> AgentBehaviour:
    """The run's agent behaviour: `path` (MODULE:CLASS), else the scenario's, else built-in."""
    chosen = path or scenario.agents.behaviour
    made = _build(chosen, FieldAgent, AgentBehaviour, "agents.behaviour", scenario)
    assert isinstance(made, AgentBehaviour)
    return made


def customer_behaviour(scenario: Scenario, path: str | None = None) -> CustomerBehaviour:
    """The run's customer behaviour: `path`, else the scenario's, else the built-in."""
    chosen = path or scenario.customers.behaviour
    made = _build(chosen, FieldCustomer, CustomerBehaviour, "customers.behaviour", scenario)
    assert isinstance(made, CustomerBehaviour)
    return made
