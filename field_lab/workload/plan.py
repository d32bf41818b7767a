"""The run's schedule, decided up front from the scenario's seed and nothing else.

Pure functions: the same scenario and seed give the same link per handset, the same outages,
and the same visits and payments at the same planned times, whatever the machine does, and
whatever the number of shards: the whole fleet's plan is drawn, then each shard takes the
part of it that concerns its handsets (handset `i` is shard `i % count`'s).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass

from field_lab.errors import ConfigError
from field_lab.link import Outage
from field_lab.scenario import Scenario
from field_lab.workload.behaviour import AgentBehaviour, CustomerBehaviour

VISIT, PAY = "visit", "pay"


@dataclass(frozen=True)
class Shard:
    """One process's part of the fleet: the handsets whose index is `index` modulo `count`."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(f"shard {self.index} of {self.count}: need 0 <= index < count")

    def owns(self, handset: int) -> bool:
        return handset % self.count == self.index

    def seed(self, seed: int, name: str) -> str:
        """The seed of a generator this shard draws from as the run goes (its own choices);
        one shard keeps the single-process run's seeds."""
        if self.count == 1:
            return f"{seed}:{name}"
        return f"{seed}:shard{self.index}of{self.count}:{name}"

    def number(self, seed: int, name: str) -> int:
        """`seed` as an integer seed for a library that takes one (one shard: `seed` itself)."""
        if self.count == 1:
            return seed
        return random.Random(self.seed(seed, name)).randrange(2**31)

    def part(self, plan: Plan, site_agent: dict[int, int]) -> Plan:
        """The events of `plan` this shard acts on: its handsets' visits, and the payments of
        devices sold from its handsets (`site_agent`: device serial -> handset index)."""
        return Plan(
            tuple(
                event
                for event in plan.events
                if self.owns(event[2] if event[1] == VISIT else site_agent[event[2]])
            )
        )


@dataclass(frozen=True)
class Plan:
    """The open-loop schedule: (seconds after the field phase starts, action, target), where
    the target is a handset index for a visit and a device serial for a payment."""

    events: tuple[tuple[float, str, int], ...]


def link_profiles(scenario: Scenario) -> list[str]:
    """Each handset's link profile name, drawn from the scenario's mix."""
    fleet = scenario.fleet
    rng = random.Random(f"{scenario.seed}:links")
    names = list(fleet.links)
    weights = [fleet.links[n] for n in names]
    return [rng.choices(names, weights)[0] for _ in range(fleet.agents)]


def offline_agents(scenario: Scenario) -> frozenset[int]:
    """Indexes of the agents working in villages without coverage (`fleet.offline_share`)."""
    rng = random.Random(f"{scenario.seed}:offline")
    count = round(scenario.fleet.offline_share * scenario.fleet.agents)
    return frozenset(rng.sample(range(scenario.fleet.agents), count))


def outages(scenario: Scenario, handsets: int) -> dict[int, list[Outage]]:
    """Which handsets lose their link when (scripted outages hit a share of the fleet);
    overlapping outages of one handset are merged."""
    rng = random.Random(f"{scenario.seed}:outages")
    plan: dict[int, list[Outage]] = {}
    for outage in scenario.fleet.outages:
        if outage.for_s <= 0:
            continue
        for index in rng.sample(range(handsets), round(outage.share * handsets)):
            plan.setdefault(index, []).append(Outage(outage.at_s, outage.for_s))
    for index, items in plan.items():
        items.sort(key=lambda o: o.start_s)
        merged: list[Outage] = []
        for o in items:
            if merged and o.start_s < merged[-1].end_s:
                end = max(merged[-1].end_s, o.end_s)
                merged[-1] = Outage(merged[-1].start_s, end - merged[-1].start_s)
            else:
                merged.append(o)
        plan[index] = merged
    return plan


def installed_base(scenario: Scenario, stock: list[list[int]]) -> list[tuple[int, int]]:
    """(handset index, serial) of the devices sold before the run, `installed_share` of each
    agent's stock."""
    rng = random.Random(f"{scenario.seed}:sites")
    sells = []
    for index, devices in enumerate(stock):
        count = round(len(devices) * scenario.devices.installed_share)
        sells += [(index, serial) for serial in rng.sample(devices, count)]
    return sells


def field_plan(
    scenario: Scenario,
    agent: AgentBehaviour,
    customer: CustomerBehaviour,
    handsets: int,
    paying: Iterable[int],
) -> Plan:
    """Visits per handset and payments per paying device over `duration_s`, each drawn by its
    behaviour from its own generator (so one agent's plan does not shift another's)."""
    end = scenario.duration_s
    events: list[tuple[float, str, int]] = []
    for index in range(handsets):
        rng = random.Random(f"{scenario.seed}:agent:{index}")
        events += [(t, VISIT, index) for t in _within(agent.visits(rng, end), end, "visits")]
    for serial in sorted(paying):
        rng = random.Random(f"{scenario.seed}:pays:{serial}")
        events += [(t, PAY, serial) for t in _within(customer.payments(rng, end), end, "payments")]
    events.sort()
    return Plan(tuple(events))


def _within(times: Iterable[float], end: float, what: str) -> list[float]:
    out = [float(t) for t in times]
    bad = [t for t in out if not 0.0 <= t <= end]
    if bad:
        raise ConfigError(f"a behaviour planned {what} at {bad[0]!r} s, outside 0..{end:g} s")
    return out


def reader_start(scenario: Scenario, reader: int) -> float:
    """When a distributor's first report read is planned; readers are spread over one
    interval so that together they read at an even pace."""
    interval = scenario.reports.interval_s
    return reader * interval / max(1, scenario.reports.readers)


def digest(events: Iterable[tuple[float, str, int]]) -> str:
    """A fingerprint of a plan's events (in any order): the same events, the same digest."""
    text = "\n".join(f"{at!r} {kind} {target}" for at, kind, target in sorted(events))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
