"""A platform adapter of the user's own, driven by the Agent over MockTransport: what it kept
at provisioning survives a restart, its acks and rejections settle the outbox, its keycodes
land in the inbox, a failure leaves the batch queued, and max_batch and polls are obeyed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from agent_client.adapters import ADAPTERS, Link, PlatformAdapter, Provisioned
from agent_client.agent import Agent
from agent_client.errors import TransientError
from agent_client.protocol.frames import Keycode, Reason
from agent_client.protocol.keycodes import KeycodeFormat
from agent_client.protocol.ops import Operation
from agent_client.protocol.sync import Result, SyncConfig
from agent_client.store import OpState
from agent_client.transport import MockTransport, Reply, Request

FAST = SyncConfig(backoff_base_s=0.01, backoff_cap_s=0.02)


class Ledger:
    """A toy platform: JSON batches; refuses payments to account 13; one keycode a payment."""

    def __init__(self) -> None:
        self.requests: list[dict[str, object]] = []
        self.down = False

    def __call__(self, request: Request) -> Reply:
        if self.down:
            raise ConnectionResetError("the radio dropped")
        if request.path == "/register":
            return Reply(201, json.dumps({"id": 7, "token": "t-7"}).encode())
        doc = json.loads(request.body)
        assert request.headers["Authorization"] == "Bearer t-7"
        self.requests.append(doc)
        return Reply(200, json.dumps(doc).encode())


class LedgerAdapter:
    max_batch = 2
    polls = False

    async def provision(self, link: Link, *, agent: str, code: str) -> Provisioned:
        reply = await link.transport.post("/register", b"{}", {})
        doc = json.loads(reply.body)
        return Provisioned(doc["id"], None, {"token": doc["token"]})

    async def exchange(self, link: Link, ops: Sequence[Operation], cursor: int) -> Result:
        body = json.dumps([[op.seq, op.fields] for op in ops]).encode()
        headers = {"Authorization": f"Bearer {link.meta['token']}"}
        echoed = json.loads((await link.transport.post("/batch", body, headers)).body)
        acked = tuple(seq for seq, fields in echoed if fields[0] != 13)
        rejected = tuple((seq, Reason.UNKNOWN_ACCOUNT) for seq, fields in echoed if fields[0] == 13)
        entries = tuple(
            (cursor + i, Keycode(seq, fields[0], KeycodeFormat.NEXUS_FULL, 12345, 86400))
            for i, (seq, fields) in enumerate([(s, f) for s, f in echoed if f[0] != 13], start=1)
        )
        return Result(acked, rejected, entries, cursor + len(entries), False, link.now_ms(), True)


async def test_a_users_adapter_drives_the_handset(tmp_path: Path) -> None:
    assert isinstance(LedgerAdapter(), PlatformAdapter)
    ledger = Ledger()
    agent = await Agent.provision(
        tmp_path / "h.db",
        "http://x",
        "ama",
        "1234",
        transport=MockTransport(ledger),
        adapter=LedgerAdapter(),
    )
    await agent.close()
    agent = await Agent.open(
        tmp_path / "h.db", transport=MockTransport(ledger), adapter=LedgerAdapter()
    )
    assert agent.handset == 7
    assert agent.link.meta == {"token": "t-7"}  # kept across the restart
    for account in (21, 13, 22):
        await agent.record_payment(account, 100)
    ledger.down = True
    report = await agent.sync()
    assert (report.failures, report.pending) == (1, 3)  # nothing lost to the dead link
    ledger.down = False
    report = await agent.sync(max_wait_s=5)
    assert [len(r) for r in ledger.requests] == [2, 1]  # max_batch
    assert sorted(report.acked) == [1, 3]
    assert report.rejected == [(2, Reason.UNKNOWN_ACCOUNT)]
    assert [k.device for k in await agent.keycodes()] == [21, 22]
    states = {row.op.seq: row.state for row in await agent.store.queue()}
    assert states == {1: OpState.ACKNOWLEDGED, 2: OpState.REJECTED, 3: OpState.ACKNOWLEDGED}
    again = await agent.sync()
    assert again.exchanges == 0  # polls = False: nothing to send, nothing asked
    await agent.close()


async def test_an_adapter_failure_is_transient_and_keeps_the_batch(tmp_path: Path) -> None:
    class Broken(LedgerAdapter):
        async def exchange(self, link: Link, ops: Sequence[Operation], cursor: int) -> Result:
            raise TransientError("the platform answered garbage")

    ledger = Ledger()
    agent = await Agent.provision(
        tmp_path / "h.db",
        "http://x",
        "ama",
        "1234",
        transport=MockTransport(ledger),
        adapter=Broken(),
    )
    await agent.record_payment(5, 100)
    report = await agent.sync()
    assert (report.failures, report.pending) == (1, 1)
    assert report.last_error == "the platform answered garbage"
    await agent.close()


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_the_built_in_adapters_are_adapters(name: str) -> None:
    assert isinstance(ADAPTERS[name](), PlatformAdapter)
