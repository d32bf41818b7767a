"""The naive baseline adapter: one JSON request per operation, same outbox, same answers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from agent_client.adapters import NaiveAdapter
from agent_client.agent import Agent
from agent_client.store import OpState
from field_lab.testing.platform import PaygPlatform
from meter_sim import Meter

PRICE_PER_DAY = 100
pytestmark = pytest.mark.payg_platform(agents=1, devices=2, price_per_day=PRICE_PER_DAY)


async def test_naive_client_round_trips_once_per_operation(
    tmp_path: Path, payg_platform: PaygPlatform, payg_meter: Callable[[int], Meter]
) -> None:
    ama = payg_platform.agents[0]
    first = await Agent.provision(tmp_path / "h.db", payg_platform.url, ama.name, ama.code)
    await first.sync()
    stock = (await first.status()).stock
    await first.close()
    agent = await Agent.open(tmp_path / "h.db", adapter=NaiveAdapter())
    device = stock[0]
    customer = await agent.register_customer("Esi", "+233200000001")
    await agent.record_sale(customer, device, payg_platform.plan, 3 * PRICE_PER_DAY)
    await agent.record_payment(device, 2 * PRICE_PER_DAY)
    await agent.record_payment(99_999_999, PRICE_PER_DAY)  # no such account
    report = await agent.sync()
    assert report.exchanges == 4
    assert len(report.acked) == 3
    assert [reason.name for _, reason in report.rejected] == ["UNKNOWN_ACCOUNT"]
    assert [k.credit_s for k in report.keycodes] == [3 * 86400, 2 * 86400]
    assert (await agent.status()).queue[OpState.ACKNOWLEDGED] == 3
    assert [k.credit_s for k in await agent.keycodes()] == [3 * 86400, 2 * 86400]  # in the inbox
    meter = payg_meter(device)
    for keycode in report.keycodes:
        assert meter.enter_keycode(keycode.text, 0).outcome == "applied"
    again = await agent.sync()
    assert again.exchanges == 0  # nothing left: acknowledged operations are not resent
    await agent.close()


async def test_naive_client_keeps_operations_when_the_link_fails(
    tmp_path: Path, payg_platform: PaygPlatform
) -> None:
    ama = payg_platform.agents[0]
    first = await Agent.provision(tmp_path / "h.db", payg_platform.url, ama.name, ama.code)
    await first.close()
    agent = await Agent.open(
        tmp_path / "h.db", server_url="http://127.0.0.1:9", adapter=NaiveAdapter()
    )
    await agent.register_customer("Kofi", "+233200000002")
    report = await agent.sync()
    assert report.failures == 1
    assert report.pending == 1
    await agent.close()
