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
from field_lab.world.fixture import Fixture
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
            for group in self.stats.groups(handset.profile.name, handset.spec.distributor):
                group.ops += n

    async def sell(self, handset: Handset, serial: int, intended: float) -> Waiter:
        """Register the customer and record the sale on the handset (offline)."""
        days = _at_least_one(self.agent.down_payment_days(self._choices), "down_payment_days")
        # drawn before any await: the same choices whatever the timing
        site = self.sites[serial]
        agent = handset.agent
        customer = await agent.register_customer(f"Customer {serial}", phone_of(serial))
        self.history.invoke(
            op_key(handset.handset_id, customer), Kind.REGISTER_CUSTOMER.name.lower(), intended
        )
        sale = await agent.record_sale(
            customer,
            serial,
            self.fixture.plan_of(handset.spec),
            days * self.fixture.price_per_day,
        )
        key = op_key(handset.handset_id, sale)
        self.history.invoke(key, Kind.RECORD_SALE.name.lower(), intended)
        self.claims[key] = Claim(serial, days * DAY_S)
        self._count_ops(handset, 2)
        site.sold = True
        waiter = site.expect(key, "sale", intended)
        self._recorded(handset)
        return waiter

    async def visit(self, handset: Handset, intended: float) -> None:
        """An agent visits a new customer: sell, and stay until the light comes on."""
        if not handset.unsold:
            self.stats.no_stock += 1
            return
        waiter = await self.sell(handset, handset.unsold.pop(0), intended)
        deadline = intended + self.agent.visit_s
        try:
            await self._until_applied(waiter, deadline)
        finally:  # also when the run's end cancels the visit: it counts, as a failure
            ok = waiter.applied_at is not None and waiter.applied_at <= deadline
            for group in self.stats.groups(handset.profile.name, handset.spec.distributor):
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
            for group in self.stats.groups(handset.profile.name, handset.spec.distributor):
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
