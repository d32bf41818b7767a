"""One lab run, composed of its parts:

    world/      the platform (embedded or --target), the fleet of handsets, the sites with meters
    workload/   the seeded plan, the agents' and customers' actions, the open-loop runner
    check/      the judge, on public evidence only

Phases: set-up (handsets provisioned, the installed base sold, not measured), field (the plan,
open loop), settle (no new actions; ends once all has settled, at most `settle_s`), end of day
(every handset syncs once more), check.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent_client.adapters import ADAPTERS, PlatformAdapter
from field_lab.check.evidence import (
    HandsetEvidence,
    PlatformEvidence,
    learn_from_handset,
    learn_from_operator,
)
from field_lab.check.judge import Verdict, judge
from field_lab.errors import ConfigError
from field_lab.lab.stats import RunStats
from field_lab.measure.history import History
from field_lab.measure.slo import Verdict as SloVerdict
from field_lab.scenario import Scenario
from field_lab.workload import plan
from field_lab.workload.behaviour import agent_behaviour, customer_behaviour, load_class
from field_lab.workload.field import Field
from field_lab.workload.runner import read_reports, run_plan
from field_lab.world.clock import LabClock
from field_lab.world.fixture import Fixture
from field_lab.world.fleet import Fleet
from field_lab.world.metering import Metering
from field_lab.world.platform import Platform, embedded, target
from field_lab.world.sites import Site, build_sites
from field_lab.world.traces import TraceBook
from server_stub.faults import PlatformFaults

TYPING_GRACE_S = 30.0
END_OF_DAY_S = 30.0
"""After the field, every handset syncs once more (at most this long), so that what the
platform sent down and what it still owes can be judged, not left to timing."""
STUCK_EXCHANGE_S = 5.0
"""An exchange stuck on a 2G link can take minutes to time out; its operations stay queued on
the handset (unknown, never lost), so the run waits this long for it, no more."""


@dataclass(frozen=True)
class Target:
    """A platform someone else runs, and what the lab needs to drive and judge it."""

    url: str
    fixture: Fixture
    audit_token: str | None = None
    """Without it the server-side checks are unchecked."""
    mm_secret: bytes | None = None
    """The mobile-money operator's shared secret; without it customers pay cash only."""


def platform_adapter(name: str) -> PlatformAdapter:
    """A built-in adapter by name (`compact`, `naive`) or MODULE:CLASS of your own."""
    if name in ADAPTERS:
        return ADAPTERS[name]()
    if ":" not in name:
        raise ConfigError(
            f"unknown adapter {name!r}; built in: {', '.join(ADAPTERS)}, or MODULE:CLASS"
        )
    made = load_class(name, "--adapter")()
    if not isinstance(made, PlatformAdapter):
        raise ConfigError(
            f"--adapter: {name} is not a PlatformAdapter (needs max_batch, polls, provision,"
            " exchange; see docs/library.md)"
        )
    return made


class Lab:
    def __init__(
        self,
        scenario: Scenario,
        workdir: Path,
        *,
        target: Target | None = None,
        faults: PlatformFaults | None = None,
        traces: TraceBook | None = None,
        adapter: str = "compact",
        progress: Callable[[Lab], None] | None = None,
        behaviour: str | None = None,
        customer_behaviour: str | None = None,
    ) -> None:
        """`behaviour` / `customer_behaviour`: MODULE:CLASS overriding the scenario's."""
        self.adapter = platform_adapter(adapter)
        if target is not None and faults is not None:
            raise ConfigError("faults are built into the embedded platform; a target has its own")
        self.scenario = scenario
        self.workdir = workdir
        self.target = target
        self.faults = faults
        self.traces = traces
        self.adapter_name = adapter
        self.progress = progress
        self.behaviours = (behaviour, customer_behaviour)
        self.stats = RunStats()
        self.series: list[dict[str, float]] = []
        self.phase = "setup"
        self.history = History()
        self.handsets = 0
        self.sites: dict[int, Site] = {}
        self.verdict: Verdict | None = None
        self.slo: list[SloVerdict] = []

    def _platform(self) -> contextlib.AbstractAsyncContextManager[Platform]:
        if self.target is None:
            return embedded(self.workdir, self.scenario, faults=self.faults)
        t = self.target
        return target(
            t.url, t.fixture, self.scenario, audit_token=t.audit_token, mm_secret=t.mm_secret
        )

    async def run(self) -> RunStats:
        fleet = Fleet(self.workdir, self.adapter)
        try:
            async with self._platform() as platform:
                await self._run(platform, fleet)
        finally:
            await fleet.close()
        return self.stats

    async def _run(self, platform: Platform, fleet: Fleet) -> None:
        s = self.scenario
        if len(platform.fixture.agents) < s.fleet.agents:
            raise ConfigError(
                f"the fixture has {len(platform.fixture.agents)} agents; the scenario needs"
                f" {s.fleet.agents} (fleet.agents, --agents)"
            )
        clock = LabClock.start(s.time_scale)
        agent = agent_behaviour(s, self.behaviours[0])
        customer = customer_behaviour(s, self.behaviours[1])
        self.sites = build_sites(platform.fixture, s, s.fleet.agents, customer, self.traces)
        field = Field(
            s, platform.fixture, self.sites, clock, self.stats, platform.operator, agent, customer
        )
        self.history = field.history
        if platform.sms is not None:
            platform.sms.inbox.listen(field.sms_arrived)
        await self._set_up(platform, fleet, field, clock)
        await self._field(platform, fleet, field, clock)
        self.phase = "end of day"
        with contextlib.suppress(TimeoutError):  # agents sync once more before going home
            await asyncio.wait_for(fleet.drain(), END_OF_DAY_S)
        await field.typed(TYPING_GRACE_S)
        self.phase = "check"
        await self._check(platform, fleet, field)

    async def _set_up(
        self, platform: Platform, fleet: Fleet, field: Field, clock: LabClock
    ) -> None:
        """Provision every handset and sell the installed base (not measured)."""
        self.phase = "set-up"
        await fleet.provision(
            platform.url,
            platform.fixture,
            plan.link_profiles(self.scenario),
            field.keycodes_arrived,
        )
        self.handsets = len(fleet.handsets)
        stock = [list(h.unsold) for h in fleet.handsets]
        for index, serial in plan.installed_base(self.scenario, stock):
            handset = fleet.handsets[index]
            handset.unsold.remove(serial)
            await field.sell(handset, serial, clock.real())
        await fleet.drain()
        await field.typed(TYPING_GRACE_S)
        await fleet.to_field(platform.url, plan.outages(self.scenario, len(fleet.handsets)))

    async def _field(self, platform: Platform, fleet: Fleet, field: Field, clock: LabClock) -> None:
        s = self.scenario
        self.phase = "field"
        field.measured = True
        start = clock.real()
        field.settle_by = start + s.duration_s + s.settle_s
        stop = asyncio.Event()
        background = [
            asyncio.create_task(h.sync_loop(field.agent.sync_every_s, stop)) for h in fleet.handsets
        ]
        background += [
            asyncio.create_task(read_reports(platform.url, i, s, clock, start, self.stats, stop))
            for i in range(s.reports.readers)
        ]
        background.append(asyncio.create_task(self._sample(fleet, field, clock, stop)))
        metering = Metering(s, self.sites, platform.url, clock)
        if s.metering.metered_share > 0:
            background.append(asyncio.create_task(metering.run(stop)))
        paying = [serial for serial, site in sorted(self.sites.items()) if site.sold]

        async def act(kind: str, target: int, intended: float) -> None:
            if kind == plan.VISIT:
                await field.visit(fleet.handsets[target], intended)
            else:
                site = self.sites[target]
                await field.pay(fleet.handsets[site.agent], site, intended)

        schedule = plan.field_plan(s, field.agent, field.customer, len(fleet.handsets), paying)
        actions: set[asyncio.Task[None]] = set()
        try:
            await run_plan(schedule, act, clock, start, self.stats, actions)
            remaining = start + s.duration_s - clock.real()
            if remaining > 0:
                await asyncio.sleep(remaining)
            self.phase = "settle"
            if actions:
                await asyncio.wait(actions, timeout=max(0.0, field.settle_by - clock.real()))
            stop.set()
            for handset in fleet.handsets:
                handset.wake.set()
            await asyncio.wait(background, timeout=STUCK_EXCHANGE_S)
        finally:  # also when the run is cancelled: nothing of the field outlives it
            stop.set()
            for task in [*actions, *background]:
                task.cancel()
            await asyncio.gather(*actions, *background, return_exceptions=True)
            metering.close()
        if s.metering.metered_share > 0:
            self.stats.sections["metering"] = metering.figures()
        await field.typed(TYPING_GRACE_S)

    async def _sample(
        self, fleet: Fleet, field: Field, clock: LabClock, stop: asyncio.Event
    ) -> None:
        start = clock.real()
        while not stop.is_set():
            sales = self.stats.total.sale_failed
            self.series.append(
                {
                    "t_s": round(clock.real() - start, 3),
                    "sales": sales.total,
                    "sales_ok": sales.total - sales.hits,
                    "activations": self.stats.total.activation.count,
                    "keycodes_received": field.counters["keycodes_received"],
                    "queue_depth": fleet.queue_depth(field.counters["handset_ops"]),
                    "links_down": fleet.links_down(clock.loop.time()),
                    "handsets": len(fleet.handsets),
                }
            )
            if self.progress is not None:
                self.progress(self)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    async def _check(self, platform: Platform, fleet: Fleet, field: Field) -> None:
        """What each side learnt completes the history; then the judge reads the evidence."""
        now = field.clock.real()
        handsets = [await HandsetEvidence.read(h.agent.store) for h in fleet.handsets]
        for seen in handsets:
            learn_from_handset(field.history, seen, now)
        for handset in fleet.handsets:
            self.stats.add_exchanges(handset.profile.name, handset.transport.exchanges)
            for group in self.stats.groups(handset.profile.name):
                group.syncs += handset.syncs
        if platform.operator is not None:
            await platform.operator.drain(timeout_s=10)
            learn_from_operator(field.history, platform.operator, field.clock.real())
        audited: PlatformEvidence | None = None
        if platform.audit is not None:
            audited = await platform.audit.evidence()
        self.verdict = judge(
            field.history,
            field.claims,
            platform=audited,
            handsets=handsets,
            meters={serial: site.granted for serial, site in self.sites.items()},
        )
        self.stats.checks = self.verdict.figures()
