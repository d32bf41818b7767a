"""One lab run, composed of its parts:

    world/      the platform (embedded or --target), the fleet of handsets, the sites with meters
    workload/   the seeded plan, the agents' and customers' actions, the open-loop runner
    check/      the judge, on public evidence only

Phases: set-up (handsets provisioned, the installed base sold, not measured), field (the plan,
open loop), settle (no new actions; ends once all has settled, at most `settle_s`), end of day
(every handset syncs once more), check.

A lab may run one shard of a fleet (`Shard`): it provisions only its handsets, acts on its part
of the whole fleet's plan and gathers its evidence, which the parent judges with the other
shards' (`field_lab.lab.shards`). Before anything starts it checks the file descriptors the run
needs; while it runs, a watchdog stops it within seconds if the platform dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from field_lab.check.evidence import (
    HandsetEvidence,
    PlatformEvidence,
    learn_from_handset,
    learn_from_operator,
)
from field_lab.check.judge import Claim, Verdict, judge
from field_lab.errors import ConfigError, HarnessError
from field_lab.lab.budget import Budget, Limits, ProcessLimits
from field_lab.lab.collector import field_collector, setup_collector
from field_lab.lab.stats import RunStats
from field_lab.measure.history import History
from field_lab.measure.slo import Verdict as SloVerdict
from field_lab.scenario import Scenario
from field_lab.workload import plan
from field_lab.workload.behaviour import agent_behaviour, customer_behaviour
from field_lab.workload.field import Field
from field_lab.workload.plan import Shard
from field_lab.workload.runner import read_reports, run_plan
from field_lab.world.adapters import platform_adapter
from field_lab.world.clock import LabClock
from field_lab.world.fixture import Fixture
from field_lab.world.fleet import SETUP_CONCURRENCY, Fleet
from field_lab.world.handset import STORAGE, Handset
from field_lab.world.metering import Metering
from field_lab.world.platform import Platform, embedded, target
from field_lab.world.prepare import Order, Prepared, workers_for
from field_lab.world.sites import Site, build_sites
from field_lab.world.syncs import SyncScheduler
from field_lab.world.traces import TraceBook
from field_lab.world.watchdog import watch
from server_stub.faults import PlatformFaults

TYPING_GRACE_S = 30.0
END_OF_DAY_S = 30.0
"""After the field, every handset syncs once more (at most this long), so that what the
platform sent down and what it still owes can be judged, not left to timing."""
STUCK_EXCHANGE_S = 5.0
"""An exchange stuck on a 2G link can take minutes to time out; its operations stay queued on
the handset (unknown, never lost), so the run waits this long for it, no more."""
SET_UP_PHASES = frozenset({"setup", "set-up"})
"""Phases in which a target's refusal is about the fixture or the URL, not a lab fault."""
MAX_SYNCING = 2048
"""Handsets syncing at once, at most (each holds a socket while it does)."""


@dataclass(frozen=True)
class Target:
    """A platform someone else runs, and what the lab needs to drive and judge it."""

    url: str
    fixture: Fixture
    audit_token: str | None = None
    """Without it the server-side checks are unchecked."""
    mm_secret: bytes | None = None
    """The mobile-money operator's shared secret; without it customers pay cash only."""
    report_token: str | None = None
    """What the report readers send when the fixture names no distributors (their tokens)."""

    def reach(
        self, scenario: Scenario, shard: Shard | None = None
    ) -> contextlib.AbstractAsyncContextManager[Platform]:
        """The platform as the lab drives it (a shard's own operator when `shard` is given)."""
        return target(
            self.url,
            self.fixture,
            scenario,
            audit_token=self.audit_token,
            mm_secret=self.mm_secret,
            shard=shard,
            report_token=self.report_token,
        )


@dataclass
class FieldEvidence:
    """What one lab (or shard) saw, for the judge: the history, what each operation buys,
    the handsets' own views and the credit each meter granted."""

    history: History
    claims: dict[str, Claim]
    handsets: list[HandsetEvidence]
    meters: dict[int, float]


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
        shard: Shard | None = None,
        limits: Limits | None = None,
        max_syncing: int = MAX_SYNCING,
        readers: bool = True,
        judging: bool = True,
        setup_workers: int | None = None,
    ) -> None:
        """`behaviour` / `customer_behaviour`: MODULE:CLASS overriding the scenario's.
        `shard`: run only this part of the fleet; `limits`: where the descriptor limit comes
        from (default this process's); `readers`: run the distributors' report readers;
        `judging`: judge at the end (a shard leaves its `evidence` to its parent);
        `setup_workers`: processes that set the handsets up (0: this one; None: as many as
        `field_lab.world.prepare.workers_for` gives)."""
        self.adapter = platform_adapter(adapter)
        if setup_workers is not None and (
            isinstance(setup_workers, bool)
            or not isinstance(setup_workers, int)
            or setup_workers < 0
        ):
            raise ConfigError(
                "setup_workers must be a whole number of processes, 0 to set up in this one,"
                f" or None for the default; got {setup_workers!r}"
            )
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
        self.shard = shard or Shard()
        self.limits = limits or ProcessLimits()
        self.max_syncing = max_syncing
        self.readers = readers
        self.judging = judging
        self.setup_workers = setup_workers
        self.setup_workers_cpu_s = 0.0
        """The set-up workers' CPU seconds (not in this process's)."""
        self.evidence: FieldEvidence | None = None
        self.descriptor_limit = 0
        self.warm = 0
        """Handsets that keep their connections between polls (the limit has a socket each)."""
        self.warmed = 0
        """Of those, how many opened theirs over their links before the field (`Fleet.warm_up`)."""
        self.syncing_peak = 0
        self._syncs: SyncScheduler | None = None
        self.stats = RunStats()
        self.series: list[dict[str, float]] = []
        self.phase = "setup"
        self.history = History()
        self.handsets = 0
        self.sites: dict[int, Site] = {}
        self.verdict: Verdict | None = None
        self.slo: list[SloVerdict] = []
        self.paying: list[int] = []
        self.planned = 0
        """Events in the whole fleet's plan (every shard's)."""
        self.plan_part: tuple[tuple[float, str, int], ...] = ()
        """The events of that plan this lab acted on (all of them unless it is a shard)."""
        self.field: Field | None = None
        self.shards = self.shard.count
        self.traces_written = 0
        self.setup_s: dict[str, float] = {}
        """Wall seconds of each set-up step (provision, installed_base, drain, typing, to_field,
        warm_up)."""
        self.setup_cpu_s: dict[str, float] = {}
        """This process's CPU seconds in each of those steps."""

    def _platform(self) -> contextlib.AbstractAsyncContextManager[Platform]:
        if self.target is None:
            return embedded(self.workdir, self.scenario, faults=self.faults)
        return self.target.reach(self.scenario, self.shard)

    @property
    def devices(self) -> int:
        return len(self.sites)

    @property
    def field_syncs(self) -> int:
        """Syncs the fleet's scheduler has run so far in the field (0 before it)."""
        return self._syncs.syncs if self._syncs is not None else 0

    @property
    def plan_digest(self) -> str:
        return plan.digest(self.plan_part)

    def budget(self) -> Budget:
        """The descriptors this lab's part of the fleet needs."""
        s = self.scenario
        return Budget(
            handsets=sum(1 for i in range(s.fleet.agents) if self.shard.owns(i)),
            per_database=STORAGE.descriptors,
            max_syncing=min(self.max_syncing, s.fleet.agents),
            setup_concurrency=SETUP_CONCURRENCY,
            embedded=self.target is None,
        )

    async def run(self) -> RunStats:
        budget = self.budget()
        self.descriptor_limit = budget.ensure(self.limits)
        self.warm = budget.warm(self.descriptor_limit)
        fleet = Fleet(self.workdir, self.adapter)
        try:
            async with self._platform() as platform:
                await _watched(self._run(platform, fleet), platform.url)
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
        with setup_collector() as keep:
            self.sites = {}  # built by `_set_up` (while its workers start, when it has some)

            def build() -> None:
                self.sites.update(
                    build_sites(
                        platform.fixture,
                        s,
                        s.fleet.agents,
                        customer,
                        self.traces,
                        keep=self.shard.owns,
                    )
                )
                keep()  # the sites and their meters live to the end: never scanned again

            field = Field(
                s,
                platform.fixture,
                self.sites,
                clock,
                self.stats,
                platform.operator,
                agent,
                customer,
                self.shard,
            )
            self.history = field.history
            self.field = field
            if platform.sms is not None:
                platform.sms.inbox.listen(field.sms_arrived)
            await self._set_up(platform, fleet, field, clock, build)
            with field_collector() as settle:  # collects only what set-up made after the sites
                await self._field(platform, fleet, field, clock, settle)
        self.phase = "end of day"
        fleet.back_in_coverage()  # agents of villages without coverage come back to town
        with contextlib.suppress(TimeoutError):  # agents sync once more before going home
            await asyncio.wait_for(fleet.drain(), END_OF_DAY_S)
        await field.typed(TYPING_GRACE_S)
        self.phase = "check"
        await self._check(platform, fleet, field)

    async def _set_up(
        self,
        platform: Platform,
        fleet: Fleet,
        field: Field,
        clock: LabClock,
        build: Callable[[], None],
    ) -> None:
        """Build the sites (`build`), provision every handset and sell the installed base (not
        measured). The sales are drawn before the sites are built: neither draws from the
        other's generator, so the plan is the same either way round."""
        self.phase = "set-up"
        s = self.scenario
        profiles = plan.link_profiles(s)
        lap = _Laps(self.setup_s, self.setup_cpu_s)
        indexes = [i for i in range(len(profiles)) if self.shard.owns(i)]
        stock = [list(spec.devices) for spec in platform.fixture.agents[: s.fleet.agents]]
        base = plan.installed_base(s, stock)
        self.paying = sorted(serial for _, serial in base)
        sold: dict[int, list[int]] = {}
        for index, serial in base:
            if self.shard.owns(index):
                sold.setdefault(index, []).append(serial)
        workers = self.setup_workers
        if workers is None:
            workers = workers_for(len(indexes), self.shard.count)
        job = _SetUp(platform, fleet, field, clock, profiles, indexes, sold)
        if workers > 0:
            await self._prepare(job, workers, build)
            lap("prepare")
        else:
            build()
            await self._set_up_here(job, lap)
        await field.typed(TYPING_GRACE_S)
        lap("typing")
        await fleet.to_field(platform.url, plan.outages(s, s.fleet.agents), self.warm)
        await fleet.leave_coverage(plan.offline_agents(s))
        lap("to_field")
        self.warmed = await fleet.warm_up()
        lap("warm_up")

    async def _prepare(self, job: _SetUp, workers: int, build: Callable[[], None]) -> None:
        """Set-up in `workers` processes (`field_lab.world.prepare`): the sales drawn here in
        the plan's order, and recorded here (history, claims, keycodes typed) as each handset
        is reported set up, as `_set_up_here` records them; the sites are built (`build`)
        while the workers start."""
        field, sold = job.field, job.sold
        agents = job.platform.fixture.agents
        drawn = {index: field.draw_sales(agents[index], serials) for index, serials in sold.items()}
        orders = [
            Order(i, agents[i], job.profiles[i], tuple(drawn[i][0]) if i in drawn else ())
            for i in job.indexes
        ]

        def ready(handset: Handset, done: Prepared) -> None:
            serials = sold.get(handset.index, [])
            for serial in serials:
                handset.unsold.remove(serial)
            if serials:
                days = drawn[handset.index][1]
                field.record_sales(handset, serials, days, done.made, job.clock.real())
            if done.keycodes:
                handset.on_keycodes(handset, done.keycodes)

        self.setup_workers_cpu_s = await job.fleet.prepare(
            job.platform.url,
            self.adapter_name,
            orders,
            workers,
            field.keycodes_arrived,
            ready,
            meanwhile=build,
        )
        self.handsets = len(job.fleet.handsets)

    async def _set_up_here(self, job: _SetUp, lap: _Laps) -> None:
        """Set-up in this process: provisioning, the installed base, the drain."""
        fleet, field, clock, sold = job.fleet, job.field, job.clock, job.sold
        await fleet.provision(
            job.platform.url,
            job.platform.fixture,
            job.profiles,
            job.indexes,
            field.keycodes_arrived,
        )
        self.handsets = len(fleet.handsets)
        lap("provision")
        # sales are recorded in the plan's order (their choices are drawn in it); each handset
        # drains as soon as its sales are recorded, while the next handsets record theirs
        draining: list[asyncio.Task[None]] = []
        try:
            for index, serials in sold.items():
                handset = fleet.by_index[index]
                for serial in serials:
                    handset.unsold.remove(serial)
                await field.sell_many(handset, serials, clock.real())
                draining.append(asyncio.create_task(fleet.drain_one(handset)))
                await asyncio.sleep(0)  # recording never waits: let the drains move on
            lap("installed_base")
            await asyncio.gather(*draining)
        finally:
            for task in draining:
                task.cancel()
            await asyncio.gather(*draining, return_exceptions=True)
        await fleet.drain([h for h in fleet.handsets if h.index not in sold])
        lap("drain")

    async def _field(
        self,
        platform: Platform,
        fleet: Fleet,
        field: Field,
        clock: LabClock,
        settle: Callable[[], None],
    ) -> None:
        s = self.scenario
        self.phase = "field"
        field.measured = True
        start = clock.real()
        field.settle_by = start + s.duration_s + s.settle_s
        stop = asyncio.Event()
        syncs = SyncScheduler(field.agent.sync_every_s, self.max_syncing)
        self._syncs = syncs
        syncs.start(fleet.handsets)
        readers = platform.fixture.readers(s.reports.readers, platform.report_token)
        background = [
            asyncio.create_task(
                read_reports(platform.url, i, s, clock, start, self.stats, stop, token, name)
            )
            for i, (name, token) in enumerate(readers if self.readers else [])
        ]
        background.append(asyncio.create_task(self._sample(fleet, field, clock, stop, settle)))
        metering = Metering(s, self.sites, platform.url, clock)
        if s.metering.metered_share > 0:
            background.append(asyncio.create_task(metering.run(stop)))

        async def act(kind: str, target: int, intended: float) -> None:
            if kind == plan.VISIT:
                await field.visit(fleet.by_index[target], intended)
            else:
                site = self.sites[target]
                await field.pay(fleet.by_index[site.agent], site, intended)

        whole = plan.field_plan(s, field.agent, field.customer, s.fleet.agents, self.paying)
        agent_of = {serial: index for index, serial in self._sold_by(platform.fixture)}
        schedule = self.shard.part(whole, agent_of)
        self.planned = len(whole.events)
        self.plan_part = schedule.events
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
            await syncs.stop(STUCK_EXCHANGE_S)
            if syncs.failure is not None:
                raise HarnessError(f"a handset's sync failed: {syncs.failure!r}") from syncs.failure
        finally:  # also when the run is cancelled: nothing of the field outlives it
            stop.set()
            await syncs.stop(0)
            for task in [*actions, *background]:
                task.cancel()
            await asyncio.gather(*actions, *background, return_exceptions=True)
            self.syncing_peak = syncs.peak_active
            metering.close()
        if s.metering.metered_share > 0:
            self.stats.sections["metering"] = metering.figures()
        await field.typed(TYPING_GRACE_S)

    def _sold_by(self, fixture: Fixture) -> list[tuple[int, int]]:
        """(handset index, serial) of every paying device, whoever's shard it is in."""
        stock = [list(spec.devices) for spec in fixture.agents[: self.scenario.fleet.agents]]
        return plan.installed_base(self.scenario, stock)

    async def _sample(
        self,
        fleet: Fleet,
        field: Field,
        clock: LabClock,
        stop: asyncio.Event,
        settle: Callable[[], None],
    ) -> None:
        """Once a second: a point of the series, the progress callback, and `settle` (the
        collector's: what lives on is frozen, see `field_lab.lab.collector`)."""
        start = clock.real()
        while not stop.is_set():
            settle()
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
            distributor = handset.spec.distributor
            self.stats.add_exchanges(handset.group, handset.exchanges, distributor)
            for group in self.stats.groups(handset.group, distributor):
                group.syncs += handset.syncs
        if platform.operator is not None:
            await platform.operator.drain(timeout_s=10)
            learn_from_operator(field.history, platform.operator, field.clock.real())
        self.evidence = FieldEvidence(
            field.history,
            field.claims,
            handsets,
            {serial: site.granted for serial, site in self.sites.items()},
        )
        if not self.judging:
            return
        audited: PlatformEvidence | None = None
        if platform.audit is not None:
            audited = await platform.audit.evidence()
        self.verdict = judged(self.evidence, audited)
        self.stats.checks = self.verdict.figures()


@dataclass(frozen=True)
class _SetUp:
    """What setting the handsets up needs, in this process or in workers."""

    platform: Platform
    fleet: Fleet
    field: Field
    clock: LabClock
    profiles: list[str]
    indexes: list[int]
    sold: dict[int, list[int]]
    """Handset index -> the installed base's serials it sells, in the plan's order."""


class _Laps:
    """Records the wall seconds since the previous lap under each name, and the process's CPU
    seconds (every thread's) in `cpu`."""

    def __init__(self, into: dict[str, float], cpu: dict[str, float]) -> None:
        self.into = into
        self.cpu = cpu
        self.last = (time.monotonic(), time.process_time())

    def __call__(self, name: str) -> None:
        now = (time.monotonic(), time.process_time())
        self.into[name] = round(now[0] - self.last[0], 2)
        self.cpu[name] = round(now[1] - self.last[1], 2)
        self.last = now


def judged(evidence: FieldEvidence, platform: PlatformEvidence | None) -> Verdict:
    """The judge's verdict on a run's evidence (one lab's, or every shard's merged)."""
    return judge(
        evidence.history,
        evidence.claims,
        platform=platform,
        handsets=evidence.handsets,
        meters=evidence.meters,
    )


async def _watched(body: Coroutine[Any, Any, None], url: str) -> None:
    """Run `body`; if the platform at `url` dies meanwhile, stop it and say so."""
    work = asyncio.ensure_future(body)
    watchdog = asyncio.ensure_future(watch(url))
    try:
        await asyncio.wait({work, watchdog}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (work, watchdog):
            task.cancel()
        done = await asyncio.gather(work, watchdog, return_exceptions=True)
    for outcome in reversed(done):  # the watchdog's word first: it says why the rest failed
        if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
            raise outcome
