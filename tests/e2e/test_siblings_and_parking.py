"""Stock changes reach every handset of an agent, and a refused operation is parked with its
reason where the agent (and `agent-client status`) can see it (issue 19)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from agent_client.agent import Agent
from agent_client.cli import main as agent_client_main
from agent_client.errors import InvalidOperation
from agent_client.protocol import envelope
from agent_client.protocol.frames import (
    DownlinkFrame,
    Reason,
    decode_uplink,
    encode_downlink,
)
from agent_client.store import OpState
from agent_client.transport import MockTransport, Reply, Request
from server_stub.app import create_app
from server_stub.keycodes import DeviceSecret
from server_stub.store import DeviceRecord, Store
from tests.server_stub.fixtures import PRICE_PER_DAY, seed_platform


async def test_a_sibling_handset_gets_stock_out_and_never_offers_the_sold_device(
    tmp_path: Path,
) -> None:
    seeded = seed_platform(tmp_path / "server.db", agents=("ama",), per_format=1)
    server = TestServer(create_app(tmp_path / "server.db"), host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url(""))
    seller = await Agent.provision(tmp_path / "a.db", url, "ama", "code-ama-7f3a9c")
    sibling = await Agent.provision(tmp_path / "b.db", url, "ama", "code-ama-7f3a9c")
    try:
        for handset in (seller, sibling):
            await handset.sync()
        device = seeded.stock["ama"][0]
        assert device in (await sibling.status()).stock

        customer = await seller.register_customer("Esi Mensah", "+233200000001")
        await seller.record_sale(customer, device, seeded.plan, 3 * PRICE_PER_DAY)
        assert not (await seller.sync()).rejected

        report = await sibling.sync()
        assert report.pending == 0
        assert device not in (await sibling.status()).stock
        assert device not in await sibling.store.stock()
        theirs = await sibling.register_customer("Kojo Owusu", "+233200000002")
        with pytest.raises(InvalidOperation, match="not in this agent's stock"):
            await sibling.record_sale(theirs, device, seeded.plan, 3 * PRICE_PER_DAY)

        # stock in on assignment reaches both handsets too
        store = Store.open(tmp_path / "server.db")
        secret = DeviceSecret(seeded.secrets[device].format, b"\x01" * 16)
        store.add_devices(seeded.agents["ama"][0], [DeviceRecord(20_000_001, secret)])
        store.close()
        for handset in (seller, sibling):
            await handset.sync()
            assert 20_000_001 in (await handset.status()).stock
    finally:
        await seller.close()
        await sibling.close()
        await server.close()


def platform_refusing(reasons: dict[int, int]) -> MockTransport:
    """A platform that refuses the listed seqs with the given reason numbers (9 bad_field,
    42 one this handset's code does not know) and acknowledges everything else."""

    def answer(request: Request) -> Reply:
        if request.path == "/v1/provision":
            return Reply(201, json.dumps({"handset": 7, "server_ms": 1}).encode())
        if request.path == envelope.KEY_PATH:
            return Reply(201, json.dumps({"server_ms": 1}).encode())
        frame = decode_uplink(envelope.open_envelope(request.body)[1])
        seqs = [op.seq for op in frame.ops]
        refused = tuple((s, Reason(reasons[s])) for s in seqs if s in reasons)
        acked = tuple(s for s in seqs if s not in reasons)
        reply = DownlinkFrame(2, acked, refused, frame.cursor + 1, (), False)
        return Reply(200, encode_downlink(reply))

    return MockTransport(answer)


async def test_a_refused_operation_is_parked_with_its_reason_and_shown(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    transport = platform_refusing({2: 9, 3: 42})
    agent = await Agent.provision(db, "http://p", "ama", "c", transport=transport)
    try:
        for i in range(4):
            await agent.register_customer(f"Customer {i}", f"+23320000000{i}")
        report = await agent.sync()
        assert report.acked == [1, 4]
        assert [(s, int(r)) for s, r in report.rejected] == [(2, 9), (3, 42)]
        status = await agent.status()
        assert status.parked == [(2, "bad_field"), (3, "reason_42")]
        assert status.queue[OpState.REJECTED] == 2
        assert report.pending == 0  # parked operations never block the queue
        await agent.record_payment(10_000_001, 500)
        assert (await agent.sync()).acked == [5]
    finally:
        await agent.close()


def test_agent_client_status_lists_parked_operations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def setup() -> None:
        agent = await Agent.provision(
            tmp_path / "h.db", "http://p", "ama", "c", transport=platform_refusing({1: 9})
        )
        await agent.register_customer("Esi", "+233200000001")
        await agent.sync()
        await agent.close()

    asyncio.run(setup())
    assert agent_client_main(["--db", str(tmp_path / "h.db"), "status"]) == 0
    status = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert status["parked"] == [{"seq": 1, "reason": "bad_field"}]
