"""What agents and customers do in the field, and what the lab records of it.

Agents visit new customers and sell (staying until the light comes on, or the visit ends);
customers pay by mobile money or in cash to their agent, and type every keycode that reaches
them by SMS or through the agent's handset. Every operation and payment is invoked in the
run's history under its idempotency key, with what it buys (a `Claim`) for the credit check.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter

from agent_client.agent import NewSale, OfflineSale
from agent_client.escrow import EscrowRefused
from agent_client.protocol.frames import Keycode
from agent_client.protocol.ops import Kind
from field_lab.check.judge import Claim
from field_lab.check.keys import MOBILE_MONEY, mm_key, op_key
from field_lab.errors import ConfigError
from field_lab.lab.stats import RunStats
from field_lab.measure.history import History
from field_lab.scenario import Scenario
from field_lab.workload.behaviour import AgentBehaviour, CustomerBehaviour
from field_lab.workload.plan import Shard
from field_lab.world.clock import LabClock
from field_lab.world.fixture import AgentSpec, Fixture
from field_lab.world.handset import Handset
from field_lab.world.mno import MnoSimulator
from field_lab.world.sites import BY_OPERATOR, Site, Waiter, phone_of
from field_lab.world.sms import Message

DAY_S = 86_400


class Field:
    def __init__(
        self,
        scenario: Scenario,
        fixture: Fixture,
        sites: dict[int, Site],
        clock: LabClock,
        stats: RunStats,
        operator: MnoSimulator | None,
        agent: AgentBehaviour,
        customer: CustomerBehaviour,
        shard: Shard | None = None,
    ) -> None:
        self.scenario = scenario
        self.agent = agent
        self.customer = customer
        self.fixture = fixture
        self.sites = sites
        self.clock = clock
        self.stats = stats
        self.operator = operator
        self.history = History()
        self.claims: dict[str, Claim] = {}
        self.counters: Counter[str] = Counter()
        self.measured = False
        """False while setting up (the installed base): nothing is counted, typing is instant."""
        self.settle_by = 0.0
        """Lab seconds after which nobody waits for a keycode any more."""
        self.typing: set[asyncio.Task[object]] = set()
        self._choices = random.Random((shard or Shard()).seed(scenario.seed, "choices"))

    # -- keycodes reaching customers -----------------------------------------------------------

    def keycodes_arrived(self, handset: Handset, keycodes: list[Keycode]) -> None:
        """A handset synced: its agent tells each customer the keycodes for their device."""
        for code in keycodes:
            site = self.sites.get(code.device)
            if site is None:
                self.counters["keycode_for_unknown_device"] += 1
                continue
            settles = op_key(handset.handset_id, code.op_seq) if code.op_seq else BY_OPERATOR
            self.type(site, code.text, settles)
            self.counters["keycodes_received"] += 1

    def sms_arrived(self, message: Message) -> None:
        """A text on a customer's phone: `PAYG <device>: enter <keycode>`."""
        head, _, text = message.text.partition(": enter ")
        try:
            site = self.sites[int(head.removeprefix("PAYG "))]
        except (ValueError, KeyError):
            self.counters["sms_unreadable"] += 1
            return
        self.counters["sms_received"] += 1
        if site.reads_sms and text:
            self.type(site, text, BY_OPERATOR)

    def type(self, site: Site, text: str, settles: str | None) -> None:
        """The customer types a keycode they were given (each distinct code once)."""
        task = asyncio.get_running_loop().create_task(
            site.type_code(
                text,
                settles,
                self.clock,
                seconds_per_key=self.customer.seconds_per_key,
                typo_rate=self.customer.typo_rate,
                instant=not self.measured,
            ),
        )
        self.typing.add(task)
        task.add_done_callback(self.typing.discard)

    async def typed(self, timeout_s: float) -> None:
        """Let customers finish typing what reached them."""
        if self.typing:
            await asyncio.wait(set(self.typing), timeout=timeout_s)

    # -- agents' and customers' actions --------------------------------------------------------

    def _recorded(self, handset: Handset) -> None:
        if self.agent.sync_on_record:
            handset.wake()

    def _count_ops(self, handset: Handset, n: int) -> None:
        self.counters["handset_ops"] += n
        if self.measured:
            for group in self.stats.groups(handset.group, handset.spec.distributor):
                group.ops += n

    async def sell(self, handset: Handset, serial: int, intended: float) -> Waiter:
        """Register the customer and record the sale on the handset (queued until it syncs):
        one form, one transaction (`Agent.sell_to_new_customers`). With no signal the agent
        sells from the escrow: the customer types the released code at once; without a code
        to release, the sale waits for a sync like any other."""
        days = self._down_payment_days()  # drawn before any await: the same whatever the timing
        down = days * self.fixture.price_per_day
        agent = handset.agent
        released: OfflineSale | None = None
        if handset.covered:
            new = NewSale(f"Customer {serial}", phone_of(serial), serial, self._plan(handset), down)
            [(customer, sale)] = await agent.sell_to_new_customers([new])
        else:
            customer = await agent.register_customer(f"Customer {serial}", phone_of(serial))
            try:
                released = await agent.sell_offline(customer, serial, self._plan(handset), down)
            except EscrowRefused:
                self.counters["offline_sales_without_code"] += 1
            sale = (
                released.seq
                if released is not None
                else await agent.record_sale(customer, serial, self._plan(handset), down)
            )
        waiter = self._sold(handset, serial, customer, sale, days, intended)
        if released is not None:
            self.counters["offline_sales"] += 1
            self.type(self.sites[serial], released.keycode, op_key(handset.handset_id, sale))
        self._recorded(handset)
        return waiter

    async def sell_many(self, handset: Handset, serials: list[int], intended: float) -> None:
        """Sell each of `serials` to a new customer, recorded on the handset in one go (the
        installed base, entered before the run): the same operations, draws and history as
        one `sell` each, in one transaction instead of two per sale."""
        if not handset.covered:  # an escrowed sale releases its code: one at a time
            for serial in serials:
                await self.sell(handset, serial, intended)
            return
        sales, days = self.draw_sales(handset.spec, serials)
        made = await handset.agent.sell_to_new_customers(sales)
        self.record_sales(handset, serials, days, made, intended)

    def draw_sales(self, spec: AgentSpec, serials: list[int]) -> tuple[list[NewSale], list[int]]:
        """The sales of `serials` by `spec`'s agent to new customers, and the days each down
        payment buys (drawn in order: the same draws wherever the sales are then recorded)."""
        plan = self.fixture.plan_of(spec)
        days = [self._down_payment_days() for _ in serials]
        sales = [
            NewSale(f"Customer {s}", phone_of(s), s, plan, d * self.fixture.price_per_day)
            for s, d in zip(serials, days, strict=True)
        ]
        return sales, days

    def record_sales(
        self,
        handset: Handset,
        serials: list[int],
        days: list[int],
        made: list[tuple[int, int]],
        intended: float,
    ) -> None:
        """What the lab records of sales `handset` has queued: (customer, sale) seqs `made`
        for `serials`, whose down payments buy `days` each."""
        for serial, (customer, sale), n in zip(serials, made, days, strict=True):
            self._sold(handset, serial, customer, sale, n, intended)
        self._recorded(handset)

    def _down_payment_days(self) -> int:
        return _at_least_one(self.agent.down_payment_days(self._choices), "down_payment_days")

    def _plan(self, handset: Handset) -> int:
        return self.fixture.plan_of(handset.spec)

    def _sold(
        self, handset: Handset, serial: int, customer: int, sale: int, days: int, intended: float
    ) -> Waiter:
        """What the lab records of a sale the handset has queued: its two operations invoked
        in the history, what the sale buys, and the customer waiting for its keycode."""
        site = self.sites[serial]
        register = Kind.REGISTER_CUSTOMER.name.lower()
        self.history.invoke(op_key(handset.handset_id, customer), register, intended)
        key = op_key(handset.handset_id, sale)
        self.history.invoke(key, Kind.RECORD_SALE.name.lower(), intended)
        self.claims[key] = Claim(serial, days * DAY_S)
        self._count_ops(handset, 2)
        site.sold = True
        return site.expect(key, "sale", intended)

    async def visit(self, handset: Handset, intended: float) -> None:
        """An agent visits a new customer: sell, and stay until the light comes on."""
        held: set[int] = set()
        if not handset.covered:  # no signal: a device it holds a code for, if any
            held = {code.device for code in await handset.agent.escrow()}
        if not handset.unsold:
            self.stats.no_stock += 1
            return
        serial = next((d for d in handset.unsold if d in held), handset.unsold[0])
        handset.unsold.remove(serial)  # chosen and taken with no await between
        waiter = await self.sell(handset, serial, intended)
        deadline = intended + self.agent.visit_s
        try:
            await self._until_applied(waiter, deadline)
        finally:  # also when the run's end cancels the visit: it counts, as a failure
            ok = waiter.applied_at is not None and waiter.applied_at <= deadline
            for group in self.stats.groups(handset.group, handset.spec.distributor):
                group.sale_failed.add(not ok)
                if waiter.applied_at is not None and ok:
                    group.sale_activation.record(waiter.applied_at - intended)

    async def pay(self, handset: Handset, site: Site, intended: float) -> None:
        """A customer pays: by mobile money (the operator calls the platform back) or in cash
        to their agent, who records it on the handset. Either way a keycode comes back."""
        days = _at_least_one(self.customer.days(self._choices), "days")
        mobile = self.customer.by_mobile_money(self._choices)
        amount = days * self.fixture.price_per_day
        if mobile and self.operator is not None:
            txn = self.operator.pay(site.serial, amount, site.phone)
            key = mm_key(txn)
            self.history.invoke(key, MOBILE_MONEY, intended)
            if self.operator.history[txn].plan.fails:  # the operator tells the customer at once
                self.history.fail(key, self.clock.real(), "operator refused the payment")
                return
            site.mm_waiting.append(key)
        else:
            seq = await handset.agent.record_payment(site.serial, amount)
            key = op_key(handset.handset_id, seq)
            self.history.invoke(key, Kind.RECORD_PAYMENT.name.lower(), intended)
            self._count_ops(handset, 1)
            self._recorded(handset)
        self.claims[key] = Claim(site.serial, days * DAY_S)
        waiter = site.expect(key, "payment", intended)
        try:
            await self._until_applied(waiter, self.settle_by)
        finally:  # a payment still dark when the run ends counts as not activated
            for group in self.stats.groups(handset.group, handset.spec.distributor):
                group.payment_unactivated.add(waiter.applied_at is None)
                if waiter.applied_at is not None:
                    group.activation.record(waiter.applied_at - intended)

    async def _until_applied(self, waiter: Waiter, deadline: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter.done.wait(), max(0.0, deadline - self.clock.real()))


def _at_least_one(days: int, what: str) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ConfigError(f"a behaviour's {what}() must return whole days >= 1, got {days!r}")
    return days
