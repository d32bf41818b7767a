"""The sync endpoint through a real Agent: idempotent ingest, keycodes on the same response,
authorization by stock and customer, rejections parked without blocking the queue."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_client.agent import Agent
from agent_client.protocol.frames import Reason
from agent_client.store import OpState
from field_lab.testing.platform import PaygPlatform
from server_stub.store import Store

from .fixtures import PRICE_PER_DAY

pytestmark = pytest.mark.payg_platform(agents=2, devices=8, price_per_day=PRICE_PER_DAY)
"""Two agents, ama (payg_agent) and kofi, with four Nexus-full devices each."""


async def kofi_for(platform: PaygPlatform, tmp_path: Path) -> Agent:
    kofi = platform.agents[1]
    return await Agent.provision(tmp_path / "kofi.db", platform.url, kofi.name, kofi.code)


async def sell(agent: Agent, platform: PaygPlatform, index: int, down: int) -> int:
    """Register a customer and sell them the agent's `index`-th device; returns the device."""
    device = platform.agents[0].devices[index]
    customer = await agent.register_customer(f"Customer {index}", f"+2332000000{index:02d}")
    await agent.record_sale(customer, device, platform.plan, down)
    return device


async def test_sale_and_payment_bring_keycodes_back_on_the_same_sync(
    payg_platform: PaygPlatform, payg_agent: Agent
) -> None:
    agent = payg_agent
    device = await sell(agent, payg_platform, 0, 7 * PRICE_PER_DAY)
    await agent.record_payment(device, 3 * PRICE_PER_DAY + 50)
    report = await agent.sync()
    assert report.exchanges == 1
    assert report.pending == 0
    assert not report.rejected
    codes = await agent.keycodes_for(device)
    assert [k.credit_s for k in codes] == [7 * 86400, 3 * 86400]
    assert codes[0].text.startswith("*")
    assert codes[0].text.endswith("#")
    status = await agent.status()
    assert device not in status.stock
    assert set(payg_platform.agents[0].devices) - {device} == set(status.stock)


async def test_replays_are_acknowledged_without_applying_twice(
    payg_platform: PaygPlatform, payg_agent: Agent
) -> None:
    agent = payg_agent
    await sell(agent, payg_platform, 1, 2 * PRICE_PER_DAY)
    await agent.sync()
    # the response was "lost": put everything back in flight and send it again
    await agent.store._db.execute("UPDATE outbox SET state = 'in_flight'")
    report = await agent.sync()
    assert sorted(report.acked) == [1, 2]
    store = Store.open(payg_platform.db)
    assert store.counts()["keycodes"] == 1
    assert store.counts()["customers"] == 1
    store.close()


async def test_rejections_are_parked_and_do_not_block_the_rest(
    payg_platform: PaygPlatform, payg_agent: Agent
) -> None:
    ama = payg_agent
    theirs = payg_platform.agents[1].devices[0]
    mine = payg_platform.agents[0].devices[2]
    customer = await ama.register_customer("Abena", "+233200000003")
    await ama.sync()  # learn the stock
    await ama.store._db.execute("DELETE FROM stock")  # pretend the handset's view is stale
    plan = payg_platform.plan
    bad_sale = await ama.record_sale(customer, theirs, plan, 5 * PRICE_PER_DAY)
    low_sale = await ama.record_sale(customer, mine, plan, PRICE_PER_DAY - 1)
    unknown = await ama.record_payment(theirs, 500)
    good_sale = await ama.record_sale(customer, mine, plan, PRICE_PER_DAY)
    report = await ama.sync()
    assert dict(report.rejected) == {
        bad_sale: Reason.NOT_IN_STOCK,
        low_sale: Reason.AMOUNT_TOO_LOW,
        unknown: Reason.UNKNOWN_ACCOUNT,
    }
    assert good_sale in report.acked
    assert await ama.keycodes_for(theirs) == []
    rows = {row.op.seq: row for row in await ama.store.queue()}
    assert rows[bad_sale].state is OpState.REJECTED
    assert rows[bad_sale].reason == "not_in_stock"


async def test_another_agent_gets_no_keycodes_for_my_customers(
    payg_platform: PaygPlatform, payg_agent: Agent, tmp_path: Path
) -> None:
    ama = payg_agent
    kofi = await kofi_for(payg_platform, tmp_path)
    device = await sell(ama, payg_platform, 3, PRICE_PER_DAY)
    await ama.sync()
    pay = await kofi.record_payment(device, 10 * PRICE_PER_DAY)
    report = await kofi.sync()
    assert report.rejected == [(pay, Reason.UNKNOWN_ACCOUNT)]
    assert await kofi.keycodes_for(device) == []
    await kofi.close()


async def test_small_payments_carry_until_they_buy_a_day(
    payg_platform: PaygPlatform, payg_agent: Agent
) -> None:
    agent = payg_agent
    device = await sell(agent, payg_platform, 0, PRICE_PER_DAY + 60)
    await agent.record_payment(device, 30)
    await agent.record_payment(device, 20)
    await agent.sync()
    assert [k.credit_s for k in await agent.keycodes_for(device)] == [86400, 86400]
