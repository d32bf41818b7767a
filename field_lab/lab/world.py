"""One lab run: build the field, run the open-loop schedule, settle, check.

    platform (embedded server_stub or --target)
      ^  HTTP over each handset's own emulated 2G link
    handsets (agent_client.Agent, SQLite outbox each)  --keycodes-->  sites (customer + meter)

Every action starts at its planned time whether or not earlier ones finished (open loop), and
its latency is measured from that planned time. Every operation a handset records is kept in a
Jepsen-style history; after the run the history is checked against what the platform holds,
and every meter's granted credit against what was paid.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import ClientSession, ClientTimeout, web

from agent_client.agent import Agent
from agent_client.naive import NaiveAgent
from agent_client.protocol.frames import Keycode
from agent_client.store import OpState
from field_lab.lab.clock import LabClock
from field_lab.lab.fixture import Fixture, seed
from field_lab.lab.handset import Handset, MeasuredTransport
from field_lab.lab.site import MOBILE_MONEY, Site, Waiter, meter_for
from field_lab.lab.stats import RunStats
from field_lab.lab.traces import TraceBook
from field_lab.link import Outage, get_profile
from field_lab.link.scheduler import LinkScheduler
from field_lab.measure.history import Bounded, History, Status, check_applied, check_bounds
from field_lab.measure.slo import Verdict
from field_lab.scenario import Scenario
from server_stub.app import Platform, create_app
from server_stub.mno import Final, MnoConfig, MnoSimulator, Txn
from server_stub.notify import ResendRule
from server_stub.sms import Message, SmsConfig, SmsGateway

DAY_S = 86_400
REPORT_PATHS = (
    "/v1/reports/sales?limit=50",
    "/v1/reports/collections?limit=50",
    "/v1/reports/devices?limit=50",
    "/v1/reports/activation?limit=50",
)
"""Distributor report endpoints the readers poll (the platform's report API)."""


class HarnessError(RuntimeError):
    """The lab itself could not run (not the system under test's fault)."""


@dataclass
class Plan:
    """The open-loop schedule: (real seconds after the start, action name, target index)."""

    events: list[tuple[float, str, int]]


def poisson_times(rng: random.Random, rate_per_s: float, start: float, end: float) -> list[float]:
    times: list[float] = []
    t = start
    if rate_per_s <= 0:
        return times
    while True:
        t += rng.expovariate(rate_per_s)
        if t >= end:
            return times
        times.append(t)


@dataclass
class Lab:
    scenario: Scenario
    workdir: Path
    target: str | None = None
    fixture: Fixture | None = None
    server_db: Path | None = None
    progress: Callable[[Lab], None] | None = None
    stats: RunStats = field(default_factory=RunStats)
    history: History = field(default_factory=History)
    handsets: list[Handset] = field(default_factory=list)
    sites: dict[int, Site] = field(default_factory=dict)
    series: list[dict[str, float]] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)
    credit_of: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Operation key -> (device, credit seconds it pays for)."""
    phase: str = "setup"
    started: float = 0.0
    verdicts: list[Verdict] = field(default_factory=list)
    typing: set[asyncio.Task[object]] = field(default_factory=set)
    """Customers typing a keycode right now."""
    traces: TraceBook | None = None
    """When set, every meter records its keypad trace into it."""
    client: str = "compact"
    """`compact` (agent_client.Agent) or `naive` (one JSON request per operation)."""
    mno: MnoSimulator | None = None
    gateway: SmsGateway | None = None
    inject: frozenset[str] = frozenset()
    """Faults to inject before the checks, to prove they can fail: `lose-op` (the platform
    forgets one acknowledged operation's effect), `duplicate-op` (applies one twice),
    `overcredit` (one meter is given a keycode nobody paid for)."""

    # -- the whole run ------------------------------------------------------------------

    async def run(self) -> RunStats:
        runner: web.AppRunner | None = None
        try:
            url, runner = await self._platform()
            self.clock = LabClock.start(self.scenario.time_scale)
            self.rng = random.Random(self.scenario.seed)
            await self._warm_up(url)
            await self._field()
            await self._check()
        finally:
            if self.mno is not None:
                await self.mno.stop(timeout_s=5)
            for handset in self.handsets:
                with contextlib.suppress(Exception):
                    await handset.close()
            if runner is not None:
                await runner.cleanup()
        return self.stats

    async def _platform(self) -> tuple[str, web.AppRunner | None]:
        s = self.scenario
        if self.target is not None:
            if self.fixture is None:
                raise HarnessError("--target needs --fixture (see `field-lab seed`)")
            url = self.target.rstrip("/")
            secret = os.environ.get("PAYG_MM_SECRET", "").encode()
            if secret and url.startswith("http://127.0.0.1"):
                await self._operator(url, secret)
            return url, None
        self.server_db = self.workdir / "server.db"
        self.fixture = await asyncio.to_thread(seed, self.server_db, s)
        self.gateway = SmsGateway(
            SmsConfig(delay_s=s.sms.delay_s, loss_rate=s.sms.loss_rate, seed=s.seed)
        )
        self.gateway.inbox.listen(self._sms_arrived)
        secret = secrets.token_bytes(16)
        platform = Platform(
            mm_secret=secret,
            sms=self.gateway,
            resend=ResendRule(resend_after_s=s.sms.resend_after_s, max_attempts=5),
        )
        runner = web.AppRunner(create_app(self.server_db, platform=platform), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        await self._operator(url, secret)
        return url, runner

    async def _operator(self, url: str, secret: bytes) -> None:
        m = self.scenario.mobile_money
        self.mno = MnoSimulator(
            url + "/v1/mm/callback",
            secret,
            MnoConfig(
                delay_s=m.delay_s,
                reorder_window_s=m.reorder_window_s,
                duplicate_rate=m.duplicate_rate,
                lost_answer_rate=m.lost_answer_rate,
                failure_rate=m.failure_rate,
                seed=self.scenario.seed,
            ),
        )
        await self.mno.start()

    # -- set-up: handsets, meters, the installed base --------------------------------------

    def _assign_profiles(self) -> list[str]:
        fleet = self.scenario.fleet
        rng = random.Random(f"{self.scenario.seed}:links")
        names = list(fleet.links)
        weights = [fleet.links[n] for n in names]
        return [rng.choices(names, weights)[0] for _ in range(fleet.agents)]

    async def _warm_up(self, url: str) -> None:
        """Provision every handset and sell the installed base (not measured)."""
        assert self.fixture is not None
        self.phase = "warm-up"
        fixture = self.fixture
        scheduler = LinkScheduler()
        self.scheduler = scheduler
        profiles = self._assign_profiles()
        rng = random.Random(f"{self.scenario.seed}:sites")
        for index, spec in enumerate(fixture.agents[: self.scenario.fleet.agents]):
            for serial in spec.devices:
                secret = fixture.secrets[serial]
                self.sites[serial] = Site(
                    serial,
                    secret,
                    index,
                    self.traces.recorder(serial, secret, 0.0)
                    if self.traces is not None
                    else meter_for(secret, 0.0),
                    random.Random(f"{self.scenario.seed}:customer:{serial}"),
                    phone=f"+2335{serial % 10**8:08d}",
                    reads_sms=rng.random() < self.scenario.customers.sms_share,
                )
        perfect = get_profile("perfect")
        semaphore = asyncio.Semaphore(32)

        async def provision(index: int) -> Handset:
            spec = fixture.agents[index]
            async with semaphore:
                port = scheduler.add(perfect, seed=index)
                handset = await Handset.provision(
                    index,
                    spec,
                    get_profile(profiles[index]),
                    port,
                    url,
                    self.workdir / f"handset-{index:05d}.db",
                    self._keycodes_arrived,
                    CLIENTS[self.client],
                )
                await handset.sync_once()  # stock and catalog
                return handset

        self.handsets = list(await asyncio.gather(*(provision(i) for i in range(len(profiles)))))
        installed = self.scenario.devices.installed_share
        sells: list[tuple[Handset, int]] = []
        for handset in self.handsets:
            count = round(len(handset.unsold) * installed)
            for serial in rng.sample(handset.unsold, count):
                handset.unsold.remove(serial)
                sells.append((handset, serial))
        for handset, serial in sells:
            await self._record_sale(handset, serial, intended=self.clock.real())

        async def drain(handset: Handset) -> None:
            async with semaphore:
                for _ in range(8):
                    await handset.sync_once(max_exchanges=32)
                    if not (await handset.agent.store.sendable(1)):
                        return

        await asyncio.gather(*(drain(h) for h in self.handsets))
        if self.typing:
            await asyncio.wait(set(self.typing), timeout=30)
        # Move every handset onto its scenario link for the measured phase.
        self.started = self.clock.real()
        outages = self._outage_plan()
        for handset in self.handsets:
            port = scheduler.add(
                handset.profile, seed=handset.index, outages=outages.get(handset.index)
            )
            await handset.transport.close()
            handset.transport = MeasuredTransport(url, port, handset.profile)
            handset.agent.transport = handset.transport
            handset.port = port

    def _outage_plan(self) -> dict[int, list[Outage]]:
        rng = random.Random(f"{self.scenario.seed}:outages")
        plan: dict[int, list[Outage]] = {}
        for outage in self.scenario.fleet.outages:
            if outage.for_s <= 0:
                continue
            chosen = rng.sample(range(len(self.handsets)), round(outage.share * len(self.handsets)))
            for index in chosen:
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

    # -- keycodes and operations ------------------------------------------------------------

    def _keycodes_arrived(self, handset: Handset, keycodes: list[Keycode]) -> None:
        for code in keycodes:
            site = self.sites.get(code.device)
            if site is None:
                self.counters["keycode_for_unknown_device"] += 1
                continue
            key = f"{handset.handset_id}:{code.op_seq}" if code.op_seq else MOBILE_MONEY
            self._type(site, code.text, key)
            self.counters["keycodes_received"] += 1

    def _sms_arrived(self, message: Message) -> None:
        """A text on a customer's phone: `PAYG <device>: enter <keycode>`."""
        head, _, text = message.text.partition(": enter ")
        try:
            site = self.sites[int(head.removeprefix("PAYG "))]
        except (ValueError, KeyError):
            self.counters["sms_unreadable"] += 1
            return
        self.counters["sms_received"] += 1
        if site.reads_sms and text:
            self._type(site, text, MOBILE_MONEY)

    def _type(self, site: Site, text: str, key: str | None) -> None:
        """The customer types a keycode they were given (each distinct code once)."""
        task = asyncio.get_running_loop().create_task(
            site.type_code(
                text,
                key,
                self.clock,
                seconds_per_key=self.scenario.customers.seconds_per_key,
                typo_rate=self.scenario.customers.typo_rate,
                instant=self.phase == "warm-up",
            ),
        )
        self.typing.add(task)
        task.add_done_callback(self.typing.discard)

    def _days(self) -> int:
        return self.rng.randint(1, 3)

    async def _record_sale(self, handset: Handset, serial: int, intended: float) -> Waiter:
        assert self.fixture is not None
        site = self.sites[serial]
        agent = handset.agent
        customer = await agent.register_customer(f"Customer {serial}", f"+2335{serial % 10**8:08d}")
        self.history.invoke(f"{handset.handset_id}:{customer}", "register_customer", intended)
        self.counters["handset_ops"] += 2
        days = self._days()
        sale = await agent.record_sale(
            customer, serial, self.fixture.plan, days * self.fixture.price_per_day
        )
        key = f"{handset.handset_id}:{sale}"
        self.history.invoke(key, "record_sale", intended)
        self.credit_of[key] = (serial, days * DAY_S)
        self._count_ops(handset, 2)
        site.sold = True
        waiter = site.expect(key, "sale", intended)
        handset.wake.set()
        return waiter

    def _count_ops(self, handset: Handset, n: int) -> None:
        if self.phase != "warm-up":
            for group in self.stats.groups(handset.profile.name):
                group.ops += n

    async def _visit(self, handset: Handset, intended: float) -> None:
        """An agent visits a new customer: sell, and stay until the light comes on."""
        if not handset.unsold:
            self.stats.no_stock += 1
            return
        serial = handset.unsold.pop(0)
        waiter = await self._record_sale(handset, serial, intended)
        deadline = intended + self.scenario.agents.visit_s
        try:
            await self._until_applied(waiter, deadline)
        finally:  # also when the run's end cancels the visit: it counts, as a failure
            ok = waiter.applied_at is not None and waiter.applied_at <= deadline
            for group in self.stats.groups(handset.profile.name):
                group.sale_failed.add(not ok)
                if waiter.applied_at is not None and ok:
                    group.sale_activation.record(waiter.applied_at - intended)

    async def _pay(self, site: Site, intended: float) -> None:
        """A customer pays: by mobile money (the operator calls the platform back) or in cash
        to their agent, who records it on the handset. Either way a keycode comes back."""
        assert self.fixture is not None
        handset = self.handsets[site.agent]
        days = self._days()
        amount = days * self.fixture.price_per_day
        mobile = (
            self.mno is not None and self.rng.random() < self.scenario.customers.mobile_money_share
        )
        if mobile:
            assert self.mno is not None
            txn = self.mno.pay(site.serial, amount, site.phone)
            key = f"mm:{txn}"
            self.history.invoke(key, "mobile_money", intended)
            if self.mno.history[txn].plan.fails:  # the operator tells the customer at once
                self.history.fail(key, self.clock.real(), "operator refused the payment")
                return
            site.mm_waiting.append(key)
        else:
            seq = await handset.agent.record_payment(site.serial, amount)
            key = f"{handset.handset_id}:{seq}"
            self.history.invoke(key, "record_payment", intended)
            self.counters["handset_ops"] += 1
            self._count_ops(handset, 1)
            handset.wake.set()
        self.credit_of[key] = (site.serial, days * DAY_S)
        waiter = site.expect(key, "payment", intended)
        try:
            await self._until_applied(waiter, self._end_of_settle)
        finally:  # a payment still dark when the run ends counts as not activated
            for group in self.stats.groups(handset.profile.name):
                group.payment_unactivated.add(waiter.applied_at is None)
                if waiter.applied_at is not None:
                    group.activation.record(waiter.applied_at - intended)

    async def _until_applied(self, waiter: Waiter, deadline: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter.done.wait(), max(0.0, deadline - self.clock.real()))

    # -- the measured phase -----------------------------------------------------------------

    def _plan(self) -> Plan:
        s = self.scenario
        rng = random.Random(f"{s.seed}:plan")
        events: list[tuple[float, str, int]] = []
        for handset in self.handsets:
            for t in poisson_times(rng, s.agents.visits_per_hour / 3600, 0.0, s.duration_s):
                events.append((t, "visit", handset.index))
        for serial, site in sorted(self.sites.items()):
            if site.sold:
                for t in poisson_times(rng, s.customers.payments_per_hour / 3600, 0, s.duration_s):
                    events.append((t, "pay", serial))
        events.sort()
        return Plan(events)

    async def _field(self) -> None:
        s = self.scenario
        self.phase = "field"
        start = self.clock.real()
        self._end_of_settle = start + s.duration_s + s.settle_s
        stop = asyncio.Event()
        loops = [
            asyncio.create_task(h.sync_loop(s.agents.sync_interval_s, stop)) for h in self.handsets
        ]
        readers = [
            asyncio.create_task(self._reader(i, start, stop)) for i in range(s.reports.readers)
        ]
        sampler = asyncio.create_task(self._sample(stop))
        actions: set[asyncio.Task[None]] = set()
        for at, kind, target in self._plan().events:
            delay = start + at - self.clock.real()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1.0:
                self.stats.late_starts += 1
            if kind == "visit":
                handset = self.handsets[target]
                task = asyncio.create_task(self._visit(handset, start + at))
            else:
                task = asyncio.create_task(self._pay(self.sites[target], start + at))
            actions.add(task)
            task.add_done_callback(actions.discard)
        remaining = start + s.duration_s - self.clock.real()
        if remaining > 0:
            await asyncio.sleep(remaining)
        self.phase = "settle"
        if actions:
            await asyncio.wait(actions, timeout=max(0.0, self._end_of_settle - self.clock.real()))
        for task in actions:
            task.cancel()
        stop.set()
        for handset in self.handsets:
            handset.wake.set()
        # An exchange stuck on a 2G link can take minutes to time out; its operations stay
        # queued on the handset (unknown, never lost), so the run does not wait for it.
        await asyncio.wait(loops + readers + [sampler], timeout=5)
        for task in loops + readers + [sampler]:
            task.cancel()
        await asyncio.gather(*loops, *readers, sampler, return_exceptions=True)
        # Let customers finish typing what arrived last.
        if self.typing:
            await asyncio.wait(set(self.typing), timeout=30)
        self.phase = "check"

    async def _reader(self, index: int, start: float, stop: asyncio.Event) -> None:
        """A distributor polling reports, open loop: one request every `interval_s`."""
        assert self.target is not None or self.server_db is not None
        interval = self.scenario.reports.interval_s
        url = self._url
        timeout = ClientTimeout(total=10)
        async with ClientSession(timeout=timeout) as session:
            n = 0
            while not stop.is_set():
                intended = (
                    start + index * interval / max(1, self.scenario.reports.readers) + n * interval
                )
                n += 1
                delay = intended - self.clock.real()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    if stop.is_set():
                        return
                path = REPORT_PATHS[n % len(REPORT_PATHS)]
                ok = False
                try:
                    async with session.get(url + path) as response:
                        await response.read()
                        ok = response.status == 200
                except (OSError, TimeoutError, Exception):
                    ok = False
                self.stats.report_failed.add(not ok)
                if ok:
                    self.stats.report.record(max(0.001, self.clock.real() - intended))

    async def _sample(self, stop: asyncio.Event) -> None:
        start = self.clock.real()
        while not stop.is_set():
            now = self.clock.real()
            sales = self.stats.total.sale_failed
            self.series.append(
                {
                    "t_s": round(now - start, 3),
                    "sales": sales.total,
                    "sales_ok": sales.total - sales.hits,
                    "activations": self.stats.total.activation.count,
                    "keycodes_received": self.counters["keycodes_received"],
                    "queue_depth": self._queue_depth(),
                    "links_down": sum(
                        1 for h in self.handsets if h.link_down(self.clock.loop.time())
                    ),
                    "handsets": len(self.handsets),
                }
            )
            if self.progress is not None:
                self.progress(self)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    def _queue_depth(self) -> int:
        done = sum(h.finished for h in self.handsets)
        return max(0, self.counters["handset_ops"] - done)

    @property
    def _url(self) -> str:
        return self.handsets[0].transport.base_url if self.handsets else ""

    # -- checks -------------------------------------------------------------------------------

    async def _inject_faults(self) -> None:
        unknown = self.inject - FAULTS
        if unknown:
            raise HarnessError(f"unknown faults {sorted(unknown)}; known: {sorted(FAULTS)}")
        if {"lose-op", "duplicate-op"} & self.inject:
            if self.server_db is None:
                raise HarnessError("platform faults need the platform's database")
            await asyncio.to_thread(
                _lose_or_duplicate,
                self.server_db,
                "lose-op" in self.inject,
                "duplicate-op" in self.inject,
            )
        if "overcredit" in self.inject:
            from server_stub.keycodes import issue

            site = next(site for site in self.sites.values() if site.sold)
            snap = site.meter.snapshot(self.clock.meter())
            ahead = (
                (snap.nexus.pd + 10) if snap.nexus else (snap.token.count + 2 if snap.token else 0)
            )
            extra = issue(site.secret, ahead, 5)
            await site.type_code(
                extra.text, None, self.clock, seconds_per_key=0, typo_rate=0, instant=True
            )

    async def _check(self) -> None:
        s = self.stats
        if self.inject:
            await self._inject_faults()
        # The handsets' view of each operation becomes the history's completion.
        for handset in self.handsets:
            for row in await handset.agent.store.queue():
                key = f"{handset.handset_id}:{row.op.seq}"
                if key not in self.credit_of and row.op.kind.name.lower() != "register_customer":
                    continue
                status = {
                    OpState.ACKNOWLEDGED: Status.OK,
                    OpState.REJECTED: Status.FAIL,
                }.get(row.state, Status.INFO)
                with contextlib.suppress(Exception):
                    self.history.complete(key, status, self.clock.real())
            for exchange in handset.transport.exchanges:
                for group in s.groups(handset.profile.name):
                    group.exchanges += 1
                    group.bytes_up += exchange.bytes_up
                    group.bytes_down += exchange.bytes_down
                    both = exchange.bytes_up + exchange.bytes_down
                    if exchange.ops:
                        group.op_bytes += both
                    else:
                        group.polls += 1
                        group.poll_bytes += both
                    if exchange.ok:
                        group.sync.record(exchange.seconds)
                        if exchange.floor > 0:
                            group.floor_ratio.record(exchange.seconds / exchange.floor)
                    else:
                        group.failed_exchanges += 1
            for group in s.groups(handset.profile.name):
                group.syncs += handset.syncs
        if self.mno is not None:
            await self.mno.drain(timeout_s=10)
            for txn, record in self.mno.history.items():
                key = f"mm:{txn}"
                if self.history.final(key) is Status.FAIL:
                    continue
                with contextlib.suppress(Exception):
                    self.history.complete(key, _operator_status(record), self.clock.real())
        if self.server_db is None:
            return
        applied = await asyncio.to_thread(_applied_keys, self.server_db)
        check = check_applied(self.history, applied)
        s.lost_ops = len(check.lost)
        s.duplicate_ops = len(check.duplicated)
        s.unexpected_ops = len(check.unexpected) + len(check.failed_but_applied)
        per_op = Counter(k for k in applied if k in self.credit_of)
        s.duplicate_keycodes = sum(1 for n in per_op.values() if n > 1)
        self.set_check = check
        readings = []
        lower: Counter[int] = Counter()
        upper: Counter[int] = Counter()
        for key, (device, credit) in self.credit_of.items():
            status = self.history.final(key)
            if status is Status.OK:
                lower[device] += credit
            if status is not Status.FAIL:
                upper[device] += credit
        for serial, site in self.sites.items():
            if site.sold:
                readings.append(Bounded(str(serial), site.granted, lower[serial], upper[serial]))
        bounds = check_bounds(readings, tolerance=1.0)
        s.overcredited = len(bounds.over)
        s.undercredited = len(bounds.under)
        self.credit_check = bounds


CLIENTS: dict[str, type[Agent]] = {"compact": Agent, "naive": NaiveAgent}
FAULTS = frozenset({"lose-op", "duplicate-op", "overcredit"})


def _lose_or_duplicate(db: Path, lose: bool, duplicate: bool) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        row = conn.execute(
            "SELECT keycode, device, handset, op_seq, text, days, credit_s, amount, issued_ms"
            " FROM keycodes WHERE op_seq > 0 ORDER BY keycode LIMIT 1"
        ).fetchone()
        if row is None:
            raise HarnessError("no keycode to inject a fault into")
        if lose:
            conn.execute("DELETE FROM keycodes WHERE keycode = ?", (row[0],))
        if duplicate:
            conn.execute(
                "INSERT INTO keycodes (device, message_id, handset, op_seq, text, days, credit_s,"
                " amount, issued_ms) VALUES (?, -1, ?, ?, ?, ?, ?, ?, ?)",
                row[1:3] + row[3:],
            )


def _operator_status(record: Txn) -> Status:
    """What the operator learnt: confirmed (ok), refused or failed (fail), or nothing (info)."""
    if record.final is Final.ACKNOWLEDGED:
        answers = [a.answer for a in record.attempts if a.seen and a.answer is not None]
        if answers and answers[-1].get("result") == "confirmed":
            return Status.OK
        return Status.FAIL
    if record.final is Final.REFUSED:
        return Status.FAIL
    return Status.INFO


def _applied_keys(db: Path) -> list[str]:
    """Every application the platform made, one entry each: customers, keycodes paid for by
    handset operations, and mobile-money payments confirmed (a device with more mobile-money
    keycodes than confirmed payments counts the extras against its last payment)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        keys = [f"{h}:{s}" for h, s in conn.execute("SELECT handset, seq FROM customers")]
        keys += [
            f"{h}:{s}"
            for h, s in conn.execute("SELECT handset, op_seq FROM keycodes WHERE op_seq > 0")
        ]
        confirmed: dict[int, list[str]] = {}
        for txn, device in conn.execute(
            "SELECT txn, device FROM mm_txns WHERE outcome = 'confirmed' AND keycode IS NOT NULL"
            " ORDER BY confirmed_ms"
        ):
            confirmed.setdefault(int(device), []).append(f"mm:{txn}")
        issued = dict(
            conn.execute("SELECT device, COUNT(*) FROM keycodes WHERE op_seq = 0 GROUP BY device")
        )
    for device, txns in confirmed.items():
        keys += txns
        keys += [txns[-1]] * max(0, int(issued.get(device, 0)) - len(txns))
    return keys


def new_workdir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="field-lab-")
