"""Who does what when in the simulated month: the month model's generators applied to a fleet.

Pure: from (scenario, month, fixture) to each household's village, habits and payments, each
agent's village, working windows and offline windows. A test may build a `Schedule` by hand
(one customer, one payment) and hand it to the engine instead.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from field_lab.scenario import Scenario
from field_lab.simulate import month as m
from field_lab.world.fixture import Fixture


@dataclass(frozen=True)
class Customer:
    serial: int
    agent: int
    """Index of the agent who sold the device (and collects cash)."""
    village: int
    mobile: bool
    """Pays by mobile money (else in cash to the agent on a visit)."""
    reads_sms: bool
    down_days: int
    """Days of credit the sale's down payment bought."""
    payments: tuple[m.Payment, ...]
    """Month-relative times."""


@dataclass(frozen=True)
class AgentPlan:
    index: int
    village: int
    windows: tuple[tuple[float, float], ...]
    """Working windows, month-relative."""


@dataclass(frozen=True)
class Schedule:
    customers: tuple[Customer, ...]
    agents: tuple[AgentPlan, ...]
    village_outages: dict[int, tuple[tuple[float, float], ...]]
    """Month-relative link-outage windows per village."""

    def cash_time(self, agent: int, at: float) -> float | None:
        """When a customer ready to pay cash at `at` meets their agent (None: not this month)."""
        for start, end in self.agents[agent].windows:
            if end > at:
                return max(at, start)
        return None


def schedule_of(scenario: Scenario, month: m.Month, fixture: Fixture) -> Schedule:
    """The month for this fleet: every device of the first `fleet.agents` agents is a home."""
    seed = scenario.seed
    rng = random.Random(f"{seed}:simulate:customers")
    plans = list(month.plans.values())
    agents: list[AgentPlan] = []
    customers: list[Customer] = []
    c = scenario.customers
    for index, spec in enumerate(fixture.agents[: scenario.fleet.agents]):
        village = index % month.villages
        windows = m.working_windows(seed=seed, agent=index, hours=month.agents, days=month.days)
        agents.append(AgentPlan(index, village, windows))
        for serial in spec.devices:
            plan = plans[rng.randrange(len(plans))]
            mobile = rng.random() < c.mobile_money_share
            reads_sms = rng.random() < c.sms_share
            down = rng.randint(1, plan.days_per_payment)
            habit = m.habit_of(seed, serial, plan)
            pays = m.payments(
                seed=seed,
                customer=serial,
                plan=plan,
                habit=habit,
                credit_until=down * m.DAY - m.DAY,
                days=month.days,
            )
            customers.append(Customer(serial, index, village, mobile, reads_sms, down, pays))
    outages = {
        v: m.village_outages(
            seed=seed,
            village=v,
            coverage=month.coverage[m.coverage_of(seed, v, month)],
            days=month.days,
        )
        for v in range(month.villages)
    }
    return Schedule(tuple(customers), tuple(agents), outages)
