"""The naive baseline adapter: one JSON request per operation, same outbox, same answers."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestServer

from agent_client.adapters import NaiveAdapter
from agent_client.agent import Agent
from agent_client.store import OpState
from meter_sim import Meter
from server_stub.app import create_app
from tests.server_stub.fixtures import PRICE_PER_DAY, seed_platform


async def test_naive_client_round_trips_once_per_operation(tmp_path: Path) -> None:
    seeded = seed_platform(tmp_path / "server.db", per_format=2)
    server = TestServer(create_app(tmp_path / "server.db"), host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url(""))
    try:
        first = await Agent.provision(tmp_path / "h.db", url, "ama", "code-ama")
        await first.sync()
        stock = (await first.status()).stock
        await first.close()
        agent = await Agent.open(tmp_path / "h.db", adapter=NaiveAdapter())
        device = stock[0]
        customer = await agent.register_customer("Esi", "+233200000001")
        await agent.record_sale(customer, device, seeded.plan, 3 * PRICE_PER_DAY)
        await agent.record_payment(device, 2 * PRICE_PER_DAY)
        await agent.record_payment(99_999_999, PRICE_PER_DAY)  # no such account
        report = await agent.sync()
        assert report.exchanges == 4
        assert len(report.acked) == 3
        assert [reason.name for _, reason in report.rejected] == ["UNKNOWN_ACCOUNT"]
        assert [k.credit_s for k in report.keycodes] == [3 * 86400, 2 * 86400]
        assert (await agent.status()).queue[OpState.ACKNOWLEDGED] == 3
        secret = seeded.secrets[device]
        meter = Meter.nexus(secret.key, "full") if secret.format.name == "NEXUS_FULL" else None
        if meter is not None:
            assert meter.enter_keycode(report.keycodes[0].text, 0).outcome == "applied"
        again = await agent.sync()
        assert again.exchanges == 0  # nothing left: acknowledged operations are not resent
        await agent.close()
    finally:
        await server.close()


async def test_naive_client_keeps_operations_when_the_link_fails(tmp_path: Path) -> None:
    seed_platform(tmp_path / "server.db", per_format=1)
    server = TestServer(create_app(tmp_path / "server.db"), host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url(""))
    first = await Agent.provision(tmp_path / "h.db", url, "ama", "code-ama")
    await first.close()
    await server.close()
    agent = await Agent.open(
        tmp_path / "h.db", server_url="http://127.0.0.1:9", adapter=NaiveAdapter()
    )
    await agent.register_customer("Kofi", "+233200000002")
    report = await agent.sync()
    assert report.failures == 1
    assert report.pending == 1
    await agent.close()
