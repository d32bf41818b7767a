"""End to end: provision a handset, queue 50 operations offline, sync once the platform is
reachable, and type every keycode that came down into a `meter_sim` meter of the right kind:
each must be applied and grant exactly the credit the platform announced."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestServer

from agent_client.agent import Agent
from agent_client.store import OpState
from server_stub.app import create_app
from tests.server_stub.fixtures import PRICE_PER_DAY, meter_for, seed_platform

NEXUS_REFILL_S = 720  # one keycode attempt per 720 s of device time after the initial burst


async def test_fifty_offline_operations_become_applied_keycodes(tmp_path: Path) -> None:
    seeded = seed_platform(tmp_path / "server.db", per_format=3)
    server = TestServer(create_app(tmp_path / "server.db"), host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url(""))
    agent = await Agent.provision(tmp_path / "handset.db", url, "ama", "code-ama-7f3a9c")
    first = await agent.sync()  # stock and catalog come down
    assert first.pending == 0
    devices = (await agent.status()).stock[:10]
    assert len(devices) == 10
    await agent.close()

    # offline: the platform is unreachable; 10 customers x (register, sale, 3 payments)
    agent = await Agent.open(tmp_path / "handset.db", server_url="http://127.0.0.1:9")
    payments = (3, 5, 2)
    for i, device in enumerate(devices):
        customer = await agent.register_customer(f"Customer {i}", f"+23320000{i:04d}")
        await agent.record_sale(customer, device, seeded.plan, (7 + i) * PRICE_PER_DAY)
        for days in payments:
            await agent.record_payment(device, days * PRICE_PER_DAY + i)
    offline = await agent.sync()
    assert offline.failures == 1
    assert offline.pending == 50
    await agent.close()

    # the link returns
    agent = await Agent.open(tmp_path / "handset.db", server_url=url)
    report = await agent.sync()
    assert report.pending == 0
    assert len(report.acked) == 50
    assert not report.rejected
    assert report.exchanges <= 3  # batches of 32 then 64: two exchanges carry all 50
    assert (await agent.status()).queue[OpState.ACKNOWLEDGED] == 50

    applied = 0
    for i, device in enumerate(devices):
        codes = await agent.keycodes_for(device)
        expected_days = [7 + i, *payments]
        assert [k.credit_s for k in codes] == [d * 86400 for d in expected_days]
        meter = meter_for(seeded.secrets[device])
        now = 0.0
        for code in codes:
            now += NEXUS_REFILL_S
            before = meter.credit_remaining(now)
            result = meter.enter_keycode(code.text, now)
            assert result.outcome == "applied", (device, code, result)
            assert meter.credit_remaining(now) - before == code.credit_s
            applied += 1
    assert applied == 40
    await agent.close()
    await server.close()
