"""A month of field life on one virtual clock: the engine behind `field-lab simulate`.

The parts are the lab's own: the real `server_stub` application and SQLite store (in process,
`inproc`), real `agent_client.Agent`s on their 2G links (`wire.LinkTransport`), real
`meter_sim` meters in the homes (`household`), the SMS gateway of `field_lab.world.sms`, and the
operator (`operator`). Only the clock is virtual (`vloop`).

Phases: set-up (simulated day -1: handsets provisioned, every device sold, codes typed at
once; not measured), the month (days 0..N-1: payments, visits, incidents), settle (no new
payments; late callbacks land, every agent syncs once more, codes are typed), then the
evidence the judge needs. Everything recorded in simulated seconds; darkness is attributed
on month-relative times (second 0 = day 0 00:00).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_client.adapters import CompactAdapter, Link, Provisioned
from agent_client.agent import Agent
from agent_client.database import Inline, Storage
from agent_client.errors import AgentError, ServerRefused
from agent_client.protocol.frames import Keycode
from agent_client.protocol.ops import Kind, Operation
from agent_client.protocol.sync import Result
from field_lab.check.evidence import HandsetEvidence, learn_from_handset, learn_from_operator
from field_lab.check.judge import Claim
from field_lab.check.keys import MOBILE_MONEY, mm_key, op_key
from field_lab.lab.collector import field_collector
from field_lab.link import Profile, get_profile
from field_lab.measure.history import History
from field_lab.scenario import Scenario
from field_lab.simulate import darkness
from field_lab.simulate.household import Household, Keyed, Paid
from field_lab.simulate.inproc import AppDispatch
from field_lab.simulate.month import DAY, Month, agent_scope, village_scope
from field_lab.simulate.operator import Operator, operator_config
from field_lab.simulate.schedule import Customer, Schedule
from field_lab.simulate.wire import Door, LinkTransport, Windows
from field_lab.workload.plan import link_profiles
from field_lab.world.fixture import Fixture
from field_lab.world.sites import meter_for, phone_of
from field_lab.world.sms import Message, SmsConfig, SmsGateway
from server_stub.app import STORE, create_app
from server_stub.app import Platform as StubConfig
from server_stub.faults import PlatformFaults
from server_stub.notify import Receipt, ResendRule

EPOCH = 1_767_571_200.0
"""Unix time of simulated second 0: Monday 2026-01-05 00:00 UTC (set-up starts then)."""
BASE = DAY
"""The month's day 0 starts one simulated day after set-up starts."""
SETTLE_S = 2 * DAY
"""After the month, at most this long for late callbacks and codes to land."""
FINAL_SYNC_EXCHANGES = 32
STORAGE = Storage(journal="wal", synchronous="off", runner=Inline())
"""Simulated handsets never lose power: a log append per commit, no sync, no thread."""


@dataclass(frozen=True)
class Evidence:
    """What the run leaves for the judge, the report and the attribution."""

    history: History
    claims: dict[str, Claim]
    handsets: list[HandsetEvidence]
    meters: dict[int, float]
    dark: list[darkness.Dark]
    deliveries: list[darkness.Delivery]
    outages: list[darkness.Outage]
    counters: dict[str, int]
    sim_seconds: float
    keyed: dict[int, list[Keyed]] = field(default_factory=dict)
    """Every code at each meter's keypad and its outcome (evidence for failed checks)."""


class LossyGateway:
    """The SMS gateway with the month's `sms_loss` incidents: while one lasts, that share of
    the messages submitted is dropped (seeded), the rest go to the real gateway."""

    def __init__(self, inner: SmsGateway, windows: Sequence[tuple[float, float, float]], seed: int):
        self.inner = inner
        self.windows = windows
        self.rng = random.Random(f"{seed}:sms-loss")
        self.lost = 0

    def submit(self, msisdn: str, text: str, ref: int, on_receipt: Receipt) -> None:
        now = asyncio.get_running_loop().time()
        loss = max((share for s, e, share in self.windows if s <= now < e), default=0.0)
        if loss and self.rng.random() < loss:
            self.lost += 1  # no receipt: the platform resends after its rule's wait
            return
        self.inner.submit(msisdn, text, ref, on_receipt)


class Watched:
    """Our compact adapter, telling the engine every keycode a handset's downlink brings."""

    max_batch = CompactAdapter.max_batch
    polls = CompactAdapter.polls

    def __init__(self, engine: Engine, index: int) -> None:
        self.inner = CompactAdapter()
        self.engine = engine
        self.index = index

    async def provision(self, link: Link, *, agent: str, code: str) -> Provisioned:
        return await self.inner.provision(link, agent=agent, code=code)

    async def exchange(self, link: Link, ops: Sequence[Operation], cursor: int) -> Result:
        result = await self.inner.exchange(link, ops, cursor)
        codes = [e for _, e in result.entries if isinstance(e, Keycode)]
        if codes:
            self.engine.keycodes_reached(self.index, link.handset, codes)
        return result


@dataclass
class Handset:
    index: int
    agent: Agent
    transport: LinkTransport
    profile: Profile
    offline: Windows


@dataclass
class Engine:
    scenario: Scenario
    month: Month
    fixture: Fixture
    schedule: Schedule
    db: Path
    workdir: Path
    faults: PlatformFaults | None = None
    audit_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    mm_secret: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    history: History = field(default_factory=History)
    claims: dict[str, Claim] = field(default_factory=dict)
    homes: dict[int, Household] = field(default_factory=dict)
    handsets: list[Handset] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)
    setting_up: bool = True
    progress: Callable[[str], None] | None = None
    """Told a line at each simulated day (and every few hundred handsets set up)."""
    customers: dict[int, Customer] = field(default_factory=dict)
    village_windows: dict[int, Windows] = field(default_factory=dict)
    _by_txn: dict[str, Paid] = field(default_factory=dict)
    _typing: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.customers = {c.serial: c for c in self.schedule.customers}

    # -- keycodes reaching customers ----------------------------------------------------------

    def keycodes_reached(self, index: int, handset_id: int, codes: list[Keycode]) -> None:
        """A handset's downlink brought codes: its agent tells each customer theirs."""
        for code in codes:
            home = self.homes.get(code.device)
            if home is None:
                self.counters["keycode_for_unknown_device"] += 1
                continue
            settles = op_key(handset_id, code.op_seq) if code.op_seq else None
            self.counters["keycodes_by_agent"] += 1
            self._type(home.reached(code.text, "agent", settles, instant=self.setting_up))

    def sms_arrived(self, message: Message) -> None:
        """`PAYG <device>: enter <keycode>` on a customer's phone (once coverage lets it in)."""
        head, _, text = message.text.partition(": enter ")
        home = self.homes.get(int(head.removeprefix("PAYG "))) if head[5:].isdigit() else None
        if home is None or not text:
            self.counters["sms_unreadable"] += 1
            return
        self.counters["sms_received"] += 1
        if home.reads_sms:
            self._type(self._sms_typed(home, text))

    async def _sms_typed(self, home: Household, text: str) -> None:
        now = asyncio.get_running_loop().time()
        hole = self.village_windows[home.village].covering(now)
        if hole is not None:  # the phone is out of coverage: the text waits at the network
            await asyncio.sleep(hole[1] - now)
        await home.reached(text, "sms", None, instant=self.setting_up)

    def _type(self, typing: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(typing)
        self._typing.add(task)
        task.add_done_callback(self._typing.discard)

    # -- the run ------------------------------------------------------------------------------

    async def run(self) -> Evidence:
        loop = asyncio.get_running_loop()
        incidents = self.month.incidents
        self.village_windows = {
            v: Windows((BASE + s, BASE + e) for s, e in w)
            for v, w in self.schedule.village_outages.items()
        }
        down = Windows(
            (BASE + i.start, BASE + i.end) for i in incidents if i.kind == "platform_down"
        )
        s = self.scenario.sms
        gateway = SmsGateway(
            SmsConfig(delay_s=s.delay_s, loss_rate=s.loss_rate, seed=self.scenario.seed),
            clock=loop.time,
        )
        gateway.inbox.listen(self.sms_arrived)
        lossy = LossyGateway(
            gateway,
            [(BASE + i.start, BASE + i.end, i.loss) for i in incidents if i.kind == "sms_loss"],
            self.scenario.seed,
        )
        config = StubConfig(
            mm_secret=self.mm_secret,
            sms=lossy,
            resend=ResendRule(  # resends wake the sender when due: no poll needed
                resend_after_s=max(s.resend_after_s, 600.0), max_attempts=5, poll_s=86_400.0
            ),
            audit_token=self.audit_token,
            synchronous="normal",
        )
        app = create_app(  # the store's work inline: no thread, no virtual-time race
            self.db,
            clock=lambda: EPOCH + loop.time(),
            platform=config,
            faults=self.faults,
            inline_store=True,
        )
        app.on_startup.freeze()  # as aiohttp's AppRunner does: start, then freeze the app
        await app.startup()
        app.freeze()
        app[STORE].db.execute("PRAGMA synchronous=OFF")  # a simulated platform never loses power
        door = Door(AppDispatch(app), down)
        operator = Operator(
            door,
            self.mm_secret,
            operator_config(self.scenario.mobile_money, self.scenario.seed),
            clock=loop.time,
            epoch=EPOCH,
            delays=[i for i in incidents if i.kind == "operator_delay"],
            base=BASE,
        )
        await operator.start()
        try:
            await self._set_up(door)
            self.setting_up = False
            await asyncio.sleep(BASE - loop.time())
            await self._to_field(door)
            with field_collector():  # set-up's heap frozen: collections scan the month's only
                await self._month(operator)
                end = BASE + self.month.end
                await self._settle(operator)
            evidence = await self._evidence(operator, end)
        finally:
            await operator.stop(timeout_s=0)
            for h in self.handsets:
                with contextlib.suppress(AgentError, OSError):
                    await h.agent.close()
            for task in list(self._typing):
                task.cancel()
            gateway.stop()
            await app.shutdown()
            await app.cleanup()
        self.counters["sms_lost_in_incidents"] = lossy.lost
        self.counters["sms_submitted"] = len(gateway.history)
        self.counters["platform_refused"] = door.refused
        self.counters["platform_requests"] = door.served
        evidence.counters.update(self.counters)
        return evidence

    async def _set_up(self, door: Door) -> None:
        """Provision every handset over a perfect link and sell its whole stock."""
        loop = asyncio.get_running_loop()
        perfect = get_profile("perfect")
        seed = self.scenario.seed
        by_agent: dict[int, list[int]] = {}
        for c in self.schedule.customers:
            by_agent.setdefault(c.agent, []).append(c.serial)
            secret = self.fixture.secrets[c.serial]
            self.homes[c.serial] = Household(
                c.serial,
                meter_for(secret, loop.time()),
                c.village,
                c.agent,
                c.reads_sms,
                self.scenario.customers.seconds_per_key,
            )

        async def one(index: int) -> None:
            spec = self.fixture.agents[index]
            transport = LinkTransport(door, perfect, seed=index, offline=Windows())
            agent = await Agent.provision(
                self.workdir / f"handset-{index:05d}.db",
                transport.base_url,
                spec.name,
                spec.code,
                transport=transport,
                clock=lambda: EPOCH + loop.time(),
                rng=random.Random(f"{seed}:handset:{index}"),
                adapter=Watched(self, index),
                storage=STORAGE,
            )
            self.handsets.append(Handset(index, agent, transport, perfect, Windows()))
            await agent.sync(max_exchanges=8)  # stock and catalog
            plan = self.fixture.plan_of(spec)  # its distributor's catalog: others refuse the sale
            for serial in by_agent.get(index, []):
                await self._sell(agent, serial, plan)
            await agent.sync(max_exchanges=FINAL_SYNC_EXCHANGES)

        for index in range(len(self.schedule.agents)):
            await one(index)  # one at a time: the same order, the same ids, every run
            if (index + 1) % 250 == 0:
                self._say(f"set-up: {index + 1} of {len(self.schedule.agents)} handsets")
        self.handsets.sort(key=lambda h: h.index)
        await self._typed()

    async def _sell(self, agent: Agent, serial: int, plan: int) -> None:
        now = asyncio.get_running_loop().time()
        customer = self.customers[serial]
        ref = await agent.register_customer(f"Customer {serial}", phone_of(serial))
        self.history.invoke(op_key(agent.handset, ref), Kind.REGISTER_CUSTOMER.name.lower(), now)
        price = self.fixture.price_per_day
        seq = await agent.record_sale(ref, serial, plan, customer.down_days * price)
        key = op_key(agent.handset, seq)
        self.history.invoke(key, Kind.RECORD_SALE.name.lower(), now)
        self.claims[key] = Claim(serial, customer.down_days * DAY)
        self.homes[serial].expect(self._paid(key, customer, now, mobile=False))

    def _paid(self, key: str, customer: Customer, at: float, *, mobile: bool) -> Paid:
        spec = self.fixture.agents[customer.agent]
        via = "sms" if mobile and customer.reads_sms else "agent"
        return Paid(key, at, mobile, agent_scope(spec.name), village_scope(customer.village), via)

    async def _typed(self, timeout_s: float = DAY) -> None:
        """Let customers finish typing what reached them (bounded, simulated seconds)."""
        if self._typing:
            await asyncio.wait(set(self._typing), timeout=timeout_s)

    async def _to_field(self, door: Door) -> None:
        """Every handset onto its scenario link, with its village's holes and its own
        offline spells; backgrounds sync on every record and whenever the link returns."""
        profiles = link_profiles(self.scenario)
        offline: dict[str, list[tuple[float, float]]] = {}
        for i in self.month.incidents:
            if i.kind == "agent_offline":
                offline.setdefault(str(i.agent), []).append((BASE + i.start, BASE + i.end))
        for h in self.handsets:
            plan = self.schedule.agents[h.index]
            spec = self.fixture.agents[h.index]
            h.offline = Windows([*self.village_windows[plan.village], *offline.get(spec.name, [])])
            h.profile = get_profile(profiles[h.index])
            h.transport = LinkTransport(door, h.profile, seed=h.index, offline=h.offline)
            h.agent.transport = h.transport
            h.agent.start_background()

    def _events(self) -> list[tuple[float, int, str, int]]:
        """(time, order, action, target) of the whole month, in time order."""
        events: list[tuple[float, int, str, int]] = []
        n = 0
        for c in self.schedule.customers:
            for p in c.payments:
                at = p.at if c.mobile else self.schedule.cash_time(c.agent, p.at)
                if at is None:
                    continue
                events.append((BASE + at, n, "pay", c.serial))
                n += 1
        for h in self.handsets:
            for start, _ in self.schedule.agents[h.index].windows:
                events.append((BASE + start, n, "visit", h.index))
                n += 1
            for _, end in h.offline:
                events.append((end, n, "online", h.index))
                n += 1
        events.sort()
        return events

    async def _month(self, operator: Operator) -> None:
        loop = asyncio.get_running_loop()
        end = BASE + self.month.end
        due = {c.serial: list(c.payments) for c in self.schedule.customers}
        by_index = {h.index: h for h in self.handsets}
        day = 0
        for at, _, action, target in self._events():
            if at >= end:
                break
            while at >= BASE + (day + 1) * DAY:
                day += 1
                self._say(f"day {day} of {self.month.days}: {self.counters.total()} events")
            await asyncio.sleep(at - loop.time())
            if action == "pay":
                payment = due[target].pop(0)
                await self._pay(operator, target, payment.days)
            elif action == "visit":
                self._type(self._poll(by_index[target]))
            else:
                by_index[target].agent.connectivity_changed(True)
        await asyncio.sleep(max(0.0, end - loop.time()))

    def _say(self, line: str) -> None:
        if self.progress is not None:
            self.progress(line)

    async def _poll(self, h: Handset) -> None:
        """An agent starts the working day: one sync fetches what came for their customers."""
        with contextlib.suppress(ServerRefused):
            await h.agent.sync(max_exchanges=8)
        self.counters["visits"] += 1

    async def _pay(self, operator: Operator, serial: int, days: int) -> None:
        now = asyncio.get_running_loop().time()
        customer = self.customers[serial]
        amount = days * self.fixture.price_per_day
        home = self.homes[serial]
        txn = ""
        if customer.mobile:
            txn = operator.pay(serial, amount, phone_of(serial))
            key = mm_key(txn)
            self.history.invoke(key, MOBILE_MONEY, now)
            self.counters["payments_mobile"] += 1
            if operator.history[txn].plan.fails:  # the operator tells the customer at once
                self.history.fail(key, now, "operator refused the payment")
                return
        else:
            agent = self.handsets[customer.agent].agent
            seq = await agent.record_payment(serial, amount)
            key = op_key(agent.handset, seq)
            self.history.invoke(key, Kind.RECORD_PAYMENT.name.lower(), now)
            self.counters["payments_cash"] += 1
        self.claims[key] = Claim(serial, days * DAY)
        paid = self._paid(key, customer, now, mobile=customer.mobile)
        if customer.mobile:
            self._by_txn[txn] = paid
        home.expect(paid)

    async def _settle(self, operator: Operator) -> None:
        """No new payments: late callbacks land, every agent syncs in coverage, codes typed."""
        door = operator.door
        await operator.drain(SETTLE_S / 2)
        for h in self.handsets:
            self.counters["exchanges"] += h.transport.exchanges  # the month's, before the new link
            h.offline = Windows()
            h.transport = LinkTransport(door, h.profile, seed=h.index, offline=h.offline)
            h.agent.transport = h.transport
            h.agent.connectivity_changed(True)
        for h in self.handsets:
            for _ in range(4):
                with contextlib.suppress(ServerRefused):
                    await h.agent.sync(max_exchanges=FINAL_SYNC_EXCHANGES, max_wait_s=600.0)
                if not await h.agent.store.sendable(1):
                    break
        await self._typed(SETTLE_S / 2)

    async def _evidence(self, operator: Operator, end: float) -> Evidence:
        now = asyncio.get_running_loop().time()
        for txn, paid in self._by_txn.items():
            attempts = operator.history[txn].attempts
            if attempts:
                paid.sent_at = attempts[0].sent_at
            issued = [a.answered_at for a in attempts if a.status is not None and a.status < 300]
            paid.issued_at = issued[0] if issued else None
        handsets = [await HandsetEvidence.read(h.agent.store) for h in self.handsets]
        for seen in handsets:
            learn_from_handset(self.history, seen, now)
        learn_from_operator(self.history, operator, now)
        for h in self.handsets:
            self.counters["exchanges"] += h.transport.exchanges
        dark: list[darkness.Dark] = []
        deliveries: list[darkness.Delivery] = []
        for serial in sorted(self.homes):
            home = self.homes[serial]
            dark += home.dark_intervals(BASE, end)
            deliveries += home.deliveries(BASE, end)
        outages = [
            darkness.Outage(village_scope(v), s, e)
            for v, windows in sorted(self.schedule.village_outages.items())
            for s, e in windows
        ]
        for h in self.handsets:
            scope = agent_scope(self.fixture.agents[h.index].name)
            village = self.schedule.agents[h.index].village
            outages += [
                darkness.Outage(scope, s, e) for s, e in self.schedule.village_outages[village]
            ]
        return Evidence(
            self.history,
            self.claims,
            handsets,
            {serial: home.granted for serial, home in self.homes.items()},
            dark,
            deliveries,
            outages,
            dict(self.counters),
            now,
            keyed={serial: home.keyed for serial, home in self.homes.items()},
        )
