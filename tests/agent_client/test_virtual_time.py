"""The Agent on a virtual clock over a MockTransport: backoff and retries take no wall time.

The platform here is a handler: it provisions, verifies each request's signature with the
real `auth.verify`, fails the first N syncs with 503, then acknowledges what the uplink
carried with a real downlink frame. The clock moves only when the Agent sleeps.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time
from pathlib import Path

import pytest

from agent_client.adapters import PROVISION_PATH
from agent_client.agent import Agent
from agent_client.protocol import envelope
from agent_client.protocol.auth import parse_claim, verify
from agent_client.protocol.frames import DownlinkFrame, decode_uplink, encode_downlink
from agent_client.protocol.sync import SyncConfig
from agent_client.store import OpState
from agent_client.transport import MockTransport, Reply, Request

HANDSET = 7


class VirtualClock:
    """Seconds since the epoch that move only when someone sleeps; every sleep is kept."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)  # still a checkpoint: other tasks run, as after a real sleep


class FlakyPlatform:
    """Answers provisioning, then `failures` syncs with 503, then acknowledges every op."""

    def __init__(self, clock: VirtualClock, failures: int, *, key_in_provisioning: bool = True):
        """`key_in_provisioning=False`: a platform that ignores the `sync_key` sent with the
        public key and takes it only at `/v2/key` (refusing v2 syncs `no_sync_key` before)."""
        self.clock = clock
        self.failures = failures
        self.key_in_provisioning = key_in_provisioning
        self.key_requests = 0
        self.public = b""
        self.sync_key = b""
        self.last_ms = 0
        self.sync_times: list[float] = []
        self.acked: list[int] = []

    def ms(self) -> int:
        return int(self.clock.now * 1000)

    def __call__(self, request: Request) -> Reply:
        if request.path == PROVISION_PATH:  # the sync key comes with the public key (v2)
            doc = json.loads(request.body)
            self.public = bytes.fromhex(doc["public_key"])
            if self.key_in_provisioning:
                self.sync_key = bytes.fromhex(doc["sync_key"])
            return Reply(201, json.dumps({"handset": HANDSET, "server_ms": self.ms()}).encode())
        if request.path == envelope.KEY_PATH:  # Ed25519-signed, as v1 requests are
            claim = parse_claim(request.headers)
            verify(
                claim, self.public, "POST", request.path, request.body, now_ms=self.ms(), last_ms=0
            )
            self.sync_key = request.body
            self.key_requests += 1
            return Reply(201, json.dumps({"server_ms": self.ms()}).encode())
        assert request.path == envelope.SYNC_PATH
        claim, body = envelope.open_envelope(request.body)
        if not self.sync_key:
            return Reply(401, json.dumps({"error": "no_sync_key", "server_ms": self.ms()}).encode())
        envelope.check_tag(claim, self.sync_key, body)
        assert claim.ts_ms > self.last_ms
        self.last_ms = claim.ts_ms
        self.sync_times.append(self.clock.now)
        if self.failures:
            self.failures -= 1
            return Reply(503, b"")
        uplink = decode_uplink(body)
        seqs = tuple(op.seq for op in uplink.ops)
        self.acked += seqs
        frame = DownlinkFrame(self.ms(), seqs, (), uplink.cursor + 1, (), False)
        return Reply(200, encode_downlink(frame))


async def provision(tmp_path: Path, clock: VirtualClock, platform: FlakyPlatform) -> Agent:
    return await Agent.provision(
        tmp_path / "h.db",
        "http://platform.test",
        "ama",
        "code-ama-7f3a9c",
        transport=MockTransport(platform),
        clock=clock.time,
        sleep=clock.sleep,
        config=SyncConfig(),
        rng=random.Random(7),
    )


def ceilings(config: SyncConfig, failures: int) -> list[float]:
    """The capped exponential schedule: the k-th backoff lies in [ceiling/2, ceiling]."""
    return [min(config.backoff_cap_s, config.backoff_base_s * 2**k) for k in range(failures)]


async def test_ten_minutes_of_backoff_take_no_wall_time(tmp_path: Path) -> None:
    clock = VirtualClock()
    platform = FlakyPlatform(clock, failures=12)
    agent = await provision(tmp_path, clock, platform)
    seq = await agent.register_customer("Esi", "+233200000001")
    start, wall = clock.now, time.perf_counter()
    report = await agent.sync(max_wait_s=3600.0)
    wall = time.perf_counter() - wall
    assert (report.exchanges, report.failures, report.acked, report.pending) == (13, 12, [seq], 0)
    assert platform.acked == [seq]
    virtual = clock.now - start
    assert virtual > 600.0  # ten minutes of backoff...
    assert wall < 1.0  # ...in under a second
    assert len(clock.sleeps) == 12
    for slept, ceiling in zip(clock.sleeps, ceilings(SyncConfig(), 12), strict=True):
        assert ceiling / 2 <= slept <= ceiling
    gaps = [b - a for a, b in zip(platform.sync_times, platform.sync_times[1:], strict=False)]
    assert gaps == pytest.approx(clock.sleeps)  # each retry went out when its sleep ended
    assert virtual == pytest.approx(sum(clock.sleeps))
    await agent.close()


async def test_waiting_stops_at_max_wait_in_virtual_time(tmp_path: Path) -> None:
    clock = VirtualClock()
    agent = await provision(tmp_path, clock, FlakyPlatform(clock, failures=100))
    await agent.register_customer("Esi", "+233200000001")
    report = await agent.sync(max_wait_s=60.0)
    assert sum(clock.sleeps) <= 60.0
    assert report.pending == 1
    assert report.failures == len(clock.sleeps) + 1  # the last failure's backoff was too long
    assert agent.core.retry_at > clock.now
    await agent.close()


async def test_background_retries_wake_on_the_injected_sleep(tmp_path: Path) -> None:
    clock = VirtualClock()
    platform = FlakyPlatform(clock, failures=6)
    agent = await provision(tmp_path, clock, platform)
    agent.start_background(max_wait_s=0.0)  # every backoff is left to the background alarm
    seq = await agent.register_customer("Esi", "+233200000001")
    for _ in range(500):
        row = await agent.store.operation(seq)
        if row is not None and row.state is OpState.ACKNOWLEDGED:
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail(f"not acknowledged; virtual sleeps {clock.sleeps}")
    assert platform.acked == [seq]
    assert len(clock.sleeps) == 6
    for slept, ceiling in zip(clock.sleeps, ceilings(SyncConfig(), 6), strict=True):
        assert ceiling / 2 <= slept <= ceiling
    await agent.close()


async def test_provision_and_sync_over_a_mock_open_no_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_socket(*args: object, **kwargs: object) -> socket.socket:
        raise AssertionError("a socket was opened")

    monkeypatch.setattr(socket, "socket", no_socket)
    monkeypatch.setattr(socket, "create_connection", no_socket)
    monkeypatch.setattr(socket, "getaddrinfo", no_socket)
    clock = VirtualClock()
    platform = FlakyPlatform(clock, failures=0)
    agent = await provision(tmp_path, clock, platform)
    assert agent.handset == HANDSET
    seq = await agent.record_payment(1001, 500)
    assert (await agent.sync()).acked == [seq]
    status = await agent.status()
    assert (status.handset, status.server_url) == (HANDSET, "http://platform.test")
    assert status.queue[OpState.ACKNOWLEDGED] == 1
    await agent.close()
    again = await Agent.open(tmp_path / "h.db", transport=MockTransport(platform))
    assert again.handset == HANDSET
    await again.close()


@pytest.mark.parametrize("key_in_provisioning", [True, False])
async def test_the_sync_key_goes_with_provisioning_or_when_refused(
    tmp_path: Path, key_in_provisioning: bool
) -> None:
    """The sync key travels in the provisioning request (one request, no `/v2/key`); a
    platform that ignores it refuses the first sync `no_sync_key`, and the handset registers
    it then and the same sync goes through."""
    clock = VirtualClock()
    platform = FlakyPlatform(clock, failures=0, key_in_provisioning=key_in_provisioning)
    agent = await provision(tmp_path, clock, platform)
    seq = await agent.record_payment(1001, 500)
    assert (await agent.sync()).acked == [seq]
    assert platform.sync_key == envelope.sync_key(agent.link.key.seed)
    assert platform.key_requests == (0 if key_in_provisioning else 1)
    await agent.close()
