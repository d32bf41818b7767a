"""The platform the handsets talk to: our `server_stub` embedded on 127.0.0.1, or a user's own
at `--target URL`; beside it the mobile-money operator that calls it back, and the SMS gateway
(embedded only). The judge reads it through its audit API when it has a token.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from field_lab.check.evidence import AuditClient
from field_lab.errors import ConfigError
from field_lab.net import LOOPBACK
from field_lab.scenario import Scenario
from field_lab.workload.plan import Shard
from field_lab.world.fixture import Fixture, Stocking, seed
from field_lab.world.mno import MnoConfig, MnoSimulator
from field_lab.world.sms import SmsConfig, SmsGateway
from server_stub.app import Platform as StubConfig
from server_stub.app import create_app
from server_stub.escrow import EscrowPolicy
from server_stub.faults import PlatformFaults
from server_stub.notify import ResendRule


@dataclass(frozen=True)
class Platform:
    """A running platform as the lab sees it."""

    url: str
    fixture: Fixture
    audit: AuditClient | None
    """None: no audit token, so the server-side checks are unchecked."""
    operator: MnoSimulator | None
    """The mobile-money operator calling the platform back; None: customers pay cash only."""
    sms: SmsGateway | None
    """Where the platform's SMS go (embedded only); None: keycodes travel by sync only."""
    mm_secret: bytes | None = None
    """The operator's shared secret (shards run their own operators with it)."""
    report_token: str | None = None
    """The token report readers send when the fixture names no distributors (each named
    distributor's readers send its own token, from the fixture)."""


@asynccontextmanager
async def serving(
    db: Path,
    *,
    config: StubConfig | None = None,
    faults: PlatformFaults | None = None,
    port: int = 0,
    host: str = LOOPBACK,
    reuse_port: bool = False,
) -> AsyncIterator[str]:
    """`server_stub` in this process on `host` (`port` 0: any free one); yields its URL.
    `faults` is the only way a deliberately broken platform is built (tests, `make chaos`).
    `reuse_port`: other processes may listen on the same port (the platform's other workers,
    `config.workers`); the kernel spreads new connections among them."""
    runner = web.AppRunner(create_app(db, platform=config, faults=faults), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None)
        await site.start()
        yield f"http://{host}:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def operator(
    url: str, secret: bytes, scenario: Scenario, shard: Shard | None = None
) -> MnoSimulator:
    """The customers' operator; each shard of a run has its own, with its own transaction ids
    and seed (one shard: the single process's)."""
    shard = shard or Shard()
    m = scenario.mobile_money
    return MnoSimulator(
        url.rstrip("/") + "/v1/mm/callback",
        secret,
        MnoConfig(
            delay_s=m.delay_s,
            reorder_window_s=m.reorder_window_s,
            duplicate_rate=m.duplicate_rate,
            lost_answer_rate=m.lost_answer_rate,
            failure_rate=m.failure_rate,
            seed=shard.number(scenario.seed, "operator"),
        ),
        prefix="MM" if shard.count == 1 else f"MM{shard.index}S",
    )


def escrow_policy(scenario: Scenario) -> EscrowPolicy:
    """The embedded platform's escrow: the scenario's bound when some agents sell offline."""
    agents = scenario.agents
    devices = agents.escrow_devices if scenario.fleet.offline_share > 0 else 0
    return EscrowPolicy(devices=devices, days=agents.escrow_days)


@asynccontextmanager
async def embedded(
    workdir: Path,
    scenario: Scenario,
    *,
    faults: PlatformFaults | None = None,
    host: str = LOOPBACK,
) -> AsyncIterator[Platform]:
    """A fresh, seeded `server_stub` with an operator, an SMS gateway and an audit token,
    listening on `host` (a Ray run's head node's address, so that every node reaches it)."""
    fixture = await asyncio.to_thread(seed, workdir / "server.db", Stocking.of(scenario))
    s = scenario.sms
    gateway = SmsGateway(SmsConfig(delay_s=s.delay_s, loss_rate=s.loss_rate, seed=scenario.seed))
    mm_secret, audit_token = secrets.token_bytes(16), secrets.token_urlsafe(24)
    config = StubConfig(
        mm_secret=mm_secret,
        sms=gateway,
        resend=ResendRule(resend_after_s=s.resend_after_s, max_attempts=5),
        audit_token=audit_token,
        synchronous="normal",  # the lab never cuts the power: a fsync per commit buys nothing
        escrow=escrow_policy(scenario),
    )
    async with serving(workdir / "server.db", config=config, faults=faults, host=host) as url:
        mno = operator(url, mm_secret, scenario)
        await mno.start()
        try:
            audit = AuditClient(url, audit_token)
            yield Platform(url, fixture, audit, mno, gateway, mm_secret)
        finally:
            await mno.stop(timeout_s=5)


@asynccontextmanager
async def target(
    url: str,
    fixture: Fixture,
    scenario: Scenario,
    *,
    audit_token: str | None = None,
    mm_secret: bytes | None = None,
    shard: Shard | None = None,
    report_token: str | None = None,
) -> AsyncIterator[Platform]:
    """A platform someone else runs. Mobile money needs the operator's shared secret and a
    loopback target (the operator simulator sends real callbacks)."""
    url = url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"--target must be an http(s) URL, got {url!r}")
    audit = AuditClient(url, audit_token) if audit_token else None
    if audit is not None:
        await audit.check()
    mno = None
    if mm_secret and url.startswith(f"http://{LOOPBACK}"):
        mno = operator(url, mm_secret, scenario, shard)
        await mno.start()
    try:
        yield Platform(url, fixture, audit, mno, None, mm_secret, report_token)
    finally:
        if mno is not None:
            await mno.stop(timeout_s=5)
